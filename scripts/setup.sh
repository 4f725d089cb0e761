#!/usr/bin/env bash
# Installs and starts what hoist's tests and benchmarks need on a fresh Debian
# machine: the Distribution registry, static busybox (test images are built
# FROM scratch with it), htpasswd (apache2-utils: registries with a login),
# aiosmtpd (a real SMTP server for the email tests), wrk (intake benchmark),
# docker-compose (v1), haproxy (the allow-list socket proxy), unshare/nsenter/mount (util-linux, mount) and ip
# (iproute2) for the engine-fault tests' private engine and small tmpfs, and
# a running Docker engine. Safe to run again.
set -euo pipefail

need_packages=()
command -v docker-registry >/dev/null || need_packages+=(docker-registry)
[ -x /usr/bin/busybox ] && /usr/bin/busybox --list 2>/dev/null | grep -qx httpd || need_packages+=(busybox-static)
command -v htpasswd >/dev/null || need_packages+=(apache2-utils)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need_packages+=(python3-aiosmtpd)
command -v wrk >/dev/null || need_packages+=(wrk)
command -v openssl >/dev/null || need_packages+=(openssl)
command -v docker >/dev/null || need_packages+=(docker.io)
# compose v1: the sidecar example and the seed-label test run real compose projects.
command -v docker-compose >/dev/null || need_packages+=(docker-compose)
{ command -v unshare && command -v nsenter; } >/dev/null || need_packages+=(util-linux)
command -v mount >/dev/null || need_packages+=(mount)
command -v ip >/dev/null || need_packages+=(iproute2)
# The least-privilege test runs hoist through an allow-list proxy (as docker-socket-proxy images do).
command -v haproxy >/dev/null || need_packages+=(haproxy)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "setup: installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi
# The Debian package may start its own registry on :5000; hoist's tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# Likewise the haproxy service: the socket-proxy test runs its own.
if command -v systemctl >/dev/null && systemctl is-active --quiet haproxy 2>/dev/null; then
  systemctl stop haproxy || true
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting the docker engine"
  (service docker start || (nohup dockerd >/var/log/dockerd.log 2>&1 &)) >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info >/dev/null 2>&1 || { echo "setup: the docker engine is not running" >&2; exit 1; }
echo "setup: docker $(docker version --format '{{.Server.Version}}'), $(docker-registry --version 2>/dev/null | awk '{print $NF}') registry, busybox, htpasswd, aiosmtpd ready"
