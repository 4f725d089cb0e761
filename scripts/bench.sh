#!/usr/bin/env bash
# hoist's benchmark suite (benches/bench.py does the measuring).
#
#   scripts/bench.sh            full run (about 20 minutes, plus the release
#                               builds): builds the release binary (and a static
#                               musl one), installs the peer (ouroboros-cli, from
#                               PyPI) into target/bench-venv, and writes
#                               benches/RESULTS.md and benches/results.csv. Fails
#                               (after writing them) when the image
#                               scripts/package-image.sh builds is 10 MB or more.
#   scripts/bench.sh --smoke    one iteration each with small counts (about a
#                               minute), on the debug binary, no peer; writes to
#                               target/bench-smoke/. Proves the suite still works.
#
# Tuning (full run defaults): BENCH_ITERATIONS=10 BENCH_FANOUT=1,10,50
# BENCH_TARGETS=1000 BENCH_INTAKE_SECONDS=15 BENCH_CONNECTIONS=16,64
# BENCH_STARTUPS=3 BENCH_PEER_ITERATIONS=5; BENCH_ONLY=latency,downtime,fanout,intake,sizes,peer.
# Load goes to 127.0.0.1 only. Everything created is named hbench-<pid>-* and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=true ;;
    *) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 64 ;;
  esac
done

scripts/setup.sh
python=$(command -v python3)
args=()
if $smoke; then
  # The same debug build `cargo test` makes (with the crash-test hooks): a
  # build without them would replace target/debug/hoist, which the recovery
  # tests run, with one that cannot pause.
  cargo build --locked --quiet --features fault-injection
  args+=(--smoke --hoist target/debug/hoist --out target/bench-smoke --command "scripts/bench.sh --smoke")
  only=${BENCH_ONLY:-latency,downtime,fanout,intake,sizes}
else
  echo "bench: building the release binary"
  cargo build --release --locked --quiet
  args+=(--hoist target/release/hoist --out benches --command "scripts/bench.sh")
  only=${BENCH_ONLY:-latency,downtime,fanout,intake,sizes,peer}

  # The images scripts/package-image.sh builds (the `sizes` part packages both
  # binaries with it): by default the static musl binary, when the musl target
  # is (or can be) installed; the glibc one otherwise, which is measured too.
  musl_target=x86_64-unknown-linux-musl
  musl_installed() { command -v rustup >/dev/null && rustup target list --installed | grep -qx "$musl_target"; }
  if [[ ",$only," == *,sizes,* ]]; then
    musl_installed || rustup target add "$musl_target" >/dev/null 2>&1 || true
    if musl_installed; then
      # ring and SQLite compile C: they need a musl C compiler (Debian's musl-tools).
      if ! command -v musl-gcc >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends musl-tools >/dev/null 2>&1 ||
          { apt-get update -qq && apt-get install -y -qq --no-install-recommends musl-tools >/dev/null 2>&1; } || true
      fi
      echo "bench: building the static musl binary"
      # The same build as scripts/package-image.sh's default.
      if CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --quiet --bin hoist --target "$musl_target" 2>target/bench-musl-build.log; then
        args+=(--musl-binary "target/$musl_target/release/hoist")
      else
        args+=(--musl-note "the musl build failed, so scripts/package-image.sh would package the glibc binary: $(tail -n 3 target/bench-musl-build.log | tr '\n' ' ')")
      fi
    else
      args+=(--musl-note "the $musl_target target is not installed and could not be added, so scripts/package-image.sh packages the glibc binary")
    fi
  fi

  # The peer, in its own virtualenv.
  venv=target/bench-venv
  if [ ! -x "$venv/bin/ouroboros" ]; then
    echo "bench: installing ouroboros-cli into $venv"
    if ! { "$python" -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check "ouroboros-cli==1.4.2"; } >target/bench-peer-install.log 2>&1; then
      args+=(--peer-note "ouroboros-cli could not be installed: $(tail -n 3 target/bench-peer-install.log | tr '\n' ' ')")
    fi
  fi
  [ -x "$venv/bin/ouroboros" ] && args+=(--ouroboros "$venv/bin/ouroboros")
fi

exec "$python" benches/bench.py "${args[@]}" --only "$only"
