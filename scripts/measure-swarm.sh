#!/usr/bin/env bash
# Measures, on a single-node swarm, the time from `docker push` returning to a
# 2-replica service having converged on the pushed digest:
#   hoist:  the registry notifies hoist, which pins the service to the digest;
#   manual: `docker service update --detach --image repo:tag@digest` run as
#           soon as the push returns (what an operator or a CI step would do).
# "Converged" is the same for both: UpdateStatus completed, spec image pinned
# to the digest, and both running tasks on it (polled every 100 ms). The
# service keeps Swarm's default update_config (parallelism 1, monitor 5s).
#
#   scripts/measure-swarm.sh [RUNS]        (default 5 runs of each)
#
# Needs what scripts/setup.sh installs and a built hoist (HOIST_BIN, default
# target/release/hoist, else target/debug/hoist). Inits a swarm if none is
# active and leaves it at the end only then.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=${HOIST_BIN:-}
[ -n "$bin" ] || { [ -x target/release/hoist ] && bin=target/release/hoist || bin=target/debug/hoist; }
[ -x "$bin" ] || { echo "measure: build hoist first (cargo build --release)" >&2; exit 1; }
export DOCKER_BUILDKIT=0

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg_port=$(free_port); hoist_port=$(free_port)
token=measure-$RANDOM$RANDOM
service=hoist-measure-$$
repo=127.0.0.1:$reg_port/measure/app
tag=$repo:1
initialised=no
reg_pid=""; hoist_pid=""

lock=${TMPDIR:-/tmp}/hoist-swarm-tests.lock   # shared with the swarm tests
cleanup() {
  [ -f "$lock/pid" ] && [ "$(cat "$lock/pid")" = $$ ] && rm -rf "$lock"
  docker service rm "$service" >/dev/null 2>&1 || true
  [ -n "$hoist_pid" ] && kill "$hoist_pid" 2>/dev/null || true
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null || true
  [ "$initialised" = yes ] && docker swarm leave --force >/dev/null 2>&1 || true
  docker images -q "$repo" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
until mkdir "$lock" 2>/dev/null; do
  holder=$(cat "$lock/pid" 2>/dev/null || true)
  [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null && rm -rf "$lock" && continue
  sleep 1
done
echo $$ > "$lock/pid"

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  initialised=yes
fi

cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: 127.0.0.1:$reg_port}
notifications:
  endpoints:
    - name: hoist
      url: http://127.0.0.1:$hoist_port/v1/hooks/distribution
      headers: {Authorization: [Bearer $token]}
      timeout: 2s
      threshold: 3
      backoff: 1s
      ignore: {mediatypes: [application/octet-stream], actions: [pull, mount]}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!

cp "$(command -v busybox)" "$work/busybox"
cat > "$work/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG VERSION=0
RUN ["/bin/sh", "-c", "mkdir -p /www && echo $VERSION > /www/index.html"]
ENV PATH=/bin
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
EOF
version=0
build_and_push() {  # prints the pushed digest; sets push_done (epoch seconds)
  version=$((version + 1))
  docker build -q --build-arg VERSION="$version-$$" -t "$tag" "$work" >/dev/null 2>&1
  local out; out=$(docker push "$tag")
  push_done=$(date +%s.%N)
  digest=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' <<<"$out")
}
converged() {  # $1 = pinned image
  local state; state=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
  [ "$state" = "$1 completed" ] || return 1
  [ "$(docker service ps --no-trunc --filter desired-state=running --format '{{.Image}} {{.CurrentState}}' "$service" | grep -c "^$1 Running")" = 2 ]
}
wait_converged() {  # $1 = pinned image; prints seconds since push_done
  local deadline=$(( $(date +%s) + 180 ))
  until converged "$1"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "measure: $service never converged on $1" >&2; exit 1; }
    sleep 0.1
  done
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$push_done" "$(date +%s.%N)"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

build_and_push
docker service create --quiet --detach=false --name "$service" --replicas 2 --label hoist.enable=true "$tag" >/dev/null

HOIST_LISTEN=127.0.0.1:$hoist_port HOIST_WEBHOOK_TOKEN=$token HOIST_STATE_DIR=$work RUST_LOG=warn \
  "$bin" run >"$work/hoist.log" 2>&1 &
hoist_pid=$!
until curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$hoist_port/v1/targets" | grep -q "\"$service\""; do sleep 0.2; done

hoist_times=(); manual_times=(); cli_times=()
for run in $(seq 1 "$runs"); do
  build_and_push
  hoist_times+=("$(wait_converged "$tag@$digest")")
done
kill "$hoist_pid"; wait "$hoist_pid" 2>/dev/null || true; hoist_pid=""
for run in $(seq 1 "$runs"); do
  build_and_push
  docker service update --quiet --detach --image "$tag@$digest" "$service" >/dev/null
  manual_times+=("$(wait_converged "$tag@$digest")")
done
# For reference: the CLI's own blocking update (it waits a monitor period more).
for run in $(seq 1 "$runs"); do
  build_and_push
  start=$(date +%s.%N)
  docker service update --quiet --detach=false --image "$tag@$digest" "$service" >/dev/null
  cli_times+=("$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(date +%s.%N)")")
done

echo "push returned -> 2 replicas converged on the digest (seconds, $runs runs each)"
echo "hoist (registry notification):            ${hoist_times[*]}  median $(printf '%s\n' "${hoist_times[@]}" | median)"
echo "docker service update --detach --image:   ${manual_times[*]}  median $(printf '%s\n' "${manual_times[@]}" | median)"
echo "docker service update --image (blocking): ${cli_times[*]}  median $(printf '%s\n' "${cli_times[@]}" | median)  (CLI's own wait)"
