#!/usr/bin/env bash
# Packages a locally built hoist binary into a FROM-scratch image, for
# machines that cannot pull the Dockerfile's build image (no registry access).
#
#   scripts/package-image.sh [BINARY] [TAG]
#
# BINARY (default: empty, meaning "the release build") is any hoist binary:
# a static one goes in alone; a dynamically linked one goes in with the
# shared libraries `ldd` lists, at the paths the loader expects (about 3.2 MB
# more, which would put the image over 10 MB).
# The release build is built (or brought up to date) first, static: with
# musl (x86_64-unknown-linux-musl, which needs the rustup target and a musl C
# compiler, Debian's musl-tools, for ring's and SQLite's C code) when this
# machine has both, else with glibc linked statically (crt-static; its own
# target directory, so the ordinary release build's cache stays valid).
# glibc 2.34 and later carry the files and dns name services inside libc, so
# the static binary resolves names in a scratch image (/etc/hosts and the
# engine's DNS). PACKAGE_LIBC=musl or glibc forces the choice (musl then
# fails rather than fall back); PACKAGE_LIBC=glibc-dynamic packages the
# ordinary dynamically linked build. TAG defaults to hoist:local. Prints the tag on stdout; on stderr, what went in and the
# image size.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-}
tag=${2:-hoist:local}
libc=${PACKAGE_LIBC:-auto}
musl_target=x86_64-unknown-linux-musl
gnu_target=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}

say() { echo "package-image: $*" >&2; }

musl_available() {
  command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$musl_target" &&
    command -v musl-gcc >/dev/null
}

build_musl() {
  say "building the static release binary ($musl_target)"
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --quiet --bin hoist --target "$musl_target" >&2
}
build_glibc() {
  say "building the static release binary (glibc, crt-static)"
  # --target keeps the flag off build scripts and proc macros, which cannot be static.
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --quiet --bin hoist --target "$gnu_target" >&2
}
build_glibc_dynamic() {
  say "building the release binary (glibc, dynamically linked)"
  cargo build --release --locked --quiet --bin hoist >&2
}
if [ -z "$binary" ]; then
  case "$libc" in
    auto)
      if musl_available && build_musl; then
        binary=$target_dir/$musl_target/release/hoist
      else
        musl_available && say "the musl build failed: packaging a static glibc one instead" ||
          say "no musl build: the $musl_target target or musl-gcc is missing; packaging a static glibc one"
        build_glibc
        binary=$target_dir/$gnu_target/release/hoist
      fi
      ;;
    musl)
      musl_available || { say "PACKAGE_LIBC=musl, but the $musl_target target or musl-gcc is missing (rustup target add $musl_target; apt-get install musl-tools)"; exit 1; }
      build_musl
      binary=$target_dir/$musl_target/release/hoist
      ;;
    glibc)
      build_glibc
      binary=$target_dir/$gnu_target/release/hoist
      ;;
    glibc-dynamic)
      build_glibc_dynamic
      binary=$target_dir/release/hoist
      ;;
    *) say "PACKAGE_LIBC must be auto, musl, glibc or glibc-dynamic, not $libc"; exit 64 ;;
  esac
fi
[ -x "$binary" ] || { say "$binary not found"; exit 1; }

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc/ssl/certs" "$context/rootfs/tmp" "$context/rootfs/var/lib/hoist"
cp "$binary" "$context/rootfs/usr/local/bin/hoist"
# A dynamically linked binary takes each shared library, at the path the
# loader expects; a static one needs none (ldd then lists no path).
libraries=$(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true)
for lib in $libraries; do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
# The CA bundle for HTTPS and SMTP notifications (SSL_CERT_FILE below).
cp /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV HOIST_LISTEN=0.0.0.0:8080 HOIST_STATE_DIR=/var/lib/hoist SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/hoist", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/hoist"]
CMD ["run"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" >/dev/null 2>"$context/build.log" || { cat "$context/build.log" >&2; exit 1; }
size=$(docker image inspect -f '{{.Size}}' "$tag")
if [ -n "$libraries" ]; then linkage="glibc-linked, with $(echo "$libraries" | wc -w) shared libraries"; else linkage="static"; fi
say "$tag: $binary ($(stat -c %s "$binary") bytes, $linkage); image $size bytes"
echo "$tag"
