#!/usr/bin/env bash
# Fuzzes hoist's untrusted-input parsers with cargo-fuzz (libFuzzer) on the
# stable toolchain: no sanitizer (`-s none`), so no nightly flag is needed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Runs each target (default: all of them) for SECONDS_PER_TARGET (default 60),
# one after another, from a corpus seeded with the sample payloads in
# tests/fixtures/payloads (HOIST_PAYLOADS overrides) and tests/fuzz/seeds/. The
# corpora (tests/fuzz/corpus/, git-ignored) grow across runs. Prints the
# executions and crashes of every target; exits 1 when any target crashed,
# leaving the input under tests/fuzz/artifacts/TARGET/. Replay one with
#   cargo fuzz run --fuzz-dir tests/fuzz -s none TARGET tests/fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
body_parsers=(distribution harbor github gitea dockerhub quay acr ci)
[ ${#targets[@]} -gt 0 ] || targets=("${body_parsers[@]}" signature reference aliases)
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
fuzz_dir=tests/fuzz
payloads="${HOIST_PAYLOADS:-tests/fixtures/payloads}"
seeds="$fuzz_dir/seeds"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

echo "fuzz: building the targets"
start=$SECONDS
cargo fuzz build --fuzz-dir "$fuzz_dir" -s none
echo "fuzz: built in $((SECONDS - start)) s"

# Seed corpora: every sample payload for the body parsers (each reads its
# own format, but a neighbour's is good mutation material), "secret\nsignature\nbody"
# triples for the signature check, the reference list for the text parsers
# (aliases also get "aliases\nreference" pairs).
for target in "${body_parsers[@]}" signature reference aliases; do
  mkdir -p "$fuzz_dir/corpus/$target"
done
if compgen -G "$payloads/*.json" >/dev/null; then
  for target in "${body_parsers[@]}"; do
    cp "$payloads"/*.json "$fuzz_dir/corpus/$target/"
  done
  for file in "$payloads"/github-package-published.json "$payloads"/gitea-package.json; do
    [ -f "$file" ] || continue
    signature=$(openssl dgst -sha256 -hmac test-secret -r <"$file" | cut -d' ' -f1)
    { printf 'test-secret\nsha256=%s\n' "$signature"; cat "$file"; } >"$fuzz_dir/corpus/signature/$(basename "$file")"
  done
else
  echo "fuzz: no payloads in $payloads; starting the body parsers from an empty corpus" >&2
fi
n=0
while IFS= read -r line; do
  n=$((n + 1))
  printf '%s' "$line" >"$fuzz_dir/corpus/reference/seed-$n"
  printf '%s' "$line" >"$fuzz_dir/corpus/aliases/seed-$n"
  case "$line" in
    *=*) printf '%s\n%s' "$line" "127.0.0.1:5000/team/app:1.4" >"$fuzz_dir/corpus/aliases/seed-$n-ref" ;;
  esac
done <"$seeds/references.txt"

logs="$fuzz_dir/logs"
mkdir -p "$logs"
summary=()
failed=0
for target in "${targets[@]}"; do
  case "$target" in
    distribution | harbor | github | gitea | dockerhub | quay | acr | ci | signature) dict="$seeds/json.dict" ;;
    reference | aliases) dict="$seeds/reference.dict" ;;
    *) echo "fuzz: unknown target $target" >&2; exit 2 ;;
  esac
  artifacts="$fuzz_dir/artifacts/$target"
  mkdir -p "$artifacts"
  marker="$logs/.$target.start"
  touch "$marker"
  echo "fuzz: $target for $seconds s"
  status=0
  cargo fuzz run --fuzz-dir "$fuzz_dir" -s none "$target" -- \
    -max_total_time="$seconds" -timeout=10 -dict="$dict" -print_final_stats=1 \
    >"$logs/$target.log" 2>&1 || status=$?
  crashes=$(find "$artifacts" -type f -newer "$marker" | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -1)
  corpus=$(find "$fuzz_dir/corpus/$target" -type f | wc -l)
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    # The run failed without leaving an input (a build error, say): count it.
    crashes=1
    echo "fuzz: $target exited with $status and left no input; see $logs/$target.log" >&2
  fi
  if [ "$crashes" -gt 0 ]; then
    failed=1
    grep -m1 -A8 "panicked at\|ERROR: libFuzzer" "$logs/$target.log" >&2 || tail -20 "$logs/$target.log" >&2
    find "$artifacts" -type f -newer "$marker" >&2
  fi
  summary+=("$(printf '%-13s %12s executions %8s exec/s %6s corpus %3s crashes' \
    "$target" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes")")
done

echo "fuzz: ${seconds} s per target, $((SECONDS - start)) s in all including the build"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: crashes found; inputs under $fuzz_dir/artifacts/" >&2
  exit 1
fi
