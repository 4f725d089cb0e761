#!/usr/bin/env bash
# Builds a stand-in for haproxy:2.6-alpine, the socket proxy image
# compose/socket-proxy.yml defaults to, for machines that cannot pull it:
# FROM scratch, Debian's /usr/sbin/haproxy (2.6 on bookworm; scripts/setup.sh
# installs it) with the shared libraries `ldd` lists, at the paths the loader
# expects (as scripts/package-image.sh packages a glibc-linked hoist).
#
#   scripts/socket-proxy-image.sh [TAG]
#
# It keeps the conventions of the official image that the compose file relies
# on: the binary at /usr/local/sbin/haproxy, the configuration read from
# /usr/local/etc/haproxy/haproxy.cfg (the path the compose file mounts), the
# process run in the foreground in master-worker mode (`haproxy -W -db -f
# ...`, what the official entrypoint makes of its CMD), SIGUSR1 (graceful
# stop) as the stop signal, and USER haproxy (uid and gid 99): as with the
# official image, the proxy cannot open the engine's socket (root:docker,
# 0660) unless the compose file runs it as root, which it does.
# TAG defaults to hoist-socket-proxy:local. Prints the tag on stdout.
set -euo pipefail
tag=${1:-hoist-socket-proxy:local}
binary=${HAPROXY_BINARY:-/usr/sbin/haproxy}

say() { echo "socket-proxy-image: $*" >&2; }

[ -x "$binary" ] || { say "$binary not found (Debian package haproxy; scripts/setup.sh installs it)"; exit 1; }

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
rootfs=$context/rootfs
mkdir -p "$rootfs/usr/local/sbin" "$rootfs/usr/local/etc/haproxy" "$rootfs/var/lib/haproxy" "$rootfs/etc" "$rootfs/tmp"
cp "$binary" "$rootfs/usr/local/sbin/haproxy"
libraries=$(ldd "$binary" | grep -o '/[^ ]*')
for lib in $libraries; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
# root (for `user: root`) and haproxy, as the official image's passwd has them.
cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
haproxy:x:99:99:haproxy:/var/lib/haproxy:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
haproxy:x:99:
GROUP
chmod 1777 "$rootfs/tmp"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
RUN ["/usr/local/sbin/haproxy", "-v"]
STOPSIGNAL SIGUSR1
USER haproxy
WORKDIR /var/lib/haproxy
ENTRYPOINT ["/usr/local/sbin/haproxy", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" >/dev/null 2>"$context/build.log" || { cat "$context/build.log" >&2; exit 1; }
say "$tag: $("$binary" -v | head -n 1) with $(echo "$libraries" | wc -w) shared libraries; image $(docker image inspect -f '{{.Size}}' "$tag") bytes"
echo "$tag"
