#!/usr/bin/env bash
# Packages a locally built hoist binary into a FROM-scratch image, for
# machines that cannot pull the Dockerfile's build image (no registry access).
# The binary is linked against glibc, so its shared libraries (from ldd) go in
# beside it, with the CA bundle for HTTPS notifications.
#
#   scripts/package-image.sh [BINARY] [TAG]
#   defaults: target/release/hoist (built if missing), hoist:local
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/hoist}
tag=${2:-hoist:local}
if [ ! -x "$binary" ]; then
  [ "$binary" = target/release/hoist ] || { echo "package-image: $binary not found" >&2; exit 1; }
  cargo build --release --locked
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc/ssl/certs" "$context/rootfs/tmp" "$context/rootfs/var/lib/hoist"
cp "$binary" "$context/rootfs/usr/local/bin/hoist"
# Each shared library at the path the loader expects.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
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
echo "$tag"
