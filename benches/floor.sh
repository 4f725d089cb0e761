#!/usr/bin/env bash
# The floor: what a deploy script run right after `docker push` does by hand.
#
#   benches/floor.sh IMAGE NAME [NAME...] -- [docker run options...]
#
# Pulls IMAGE once, then for each NAME in turn: stop, remove, and run it again
# from IMAGE with the given options (--name NAME is added). No health check,
# no rollback: the least work that gets the new image running.
set -euo pipefail
image=$1
shift
names=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  names+=("$1")
  shift
done
[ $# -gt 0 ] && shift
docker pull -q "$image" >/dev/null
for name in "${names[@]}"; do
  docker stop "$name" >/dev/null
  docker rm "$name" >/dev/null
  docker run -d --name "$name" "$@" "$image" >/dev/null
done
