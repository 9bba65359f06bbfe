#!/usr/bin/env bash
# An extra Docker engine beside the main one, for multi-engine tests and benchmarks (root only):
#   docker-engine.sh start NAME          start it (if not running); prints its DOCKER_HOST
#   docker-engine.sh load NAME IMAGE...  copy images from the main engine into it (docker save | load;
#                                        into $TARGET_HOST instead when set)
#   docker-engine.sh kill NAME           SIGKILL it, as a crash would, then clean up what it leaves
#   docker-engine.sh stop NAME           stop it and clean up
# It has its own socket, data root, exec root, pid file and containerd namespace, and shares the
# main engine's bridge (--bridge docker0; "--bridge none" would make it delete docker0 and break
# the main engine's networking) without touching iptables.
set -euo pipefail
command=${1:?usage: docker-engine.sh start|load|kill|stop NAME [IMAGE...]}
name=${2:?engine name}
shift 2
run=/run/benchflow-$name
data=/var/lib/benchflow-$name
host=unix://$run/docker.sock

answers() { DOCKER_HOST=$host timeout 10 docker info >/dev/null 2>&1; }

clean_up() {
  # After a SIGKILL its containers, container shims and containerd live on. Containers' processes
  # are found by their cgroup (named after the container ids in its data root), the shims and
  # containerd by the namespace and paths on their command line; then what they left mounted
  # under the exec and data roots is unmounted.
  ids=$(ls "$data/containers" 2>/dev/null | paste -sd'|' || true)
  if [ -n "$ids" ]; then
    for proc in /proc/[0-9]*; do
      if grep -qE "$ids" "$proc/cgroup" 2>/dev/null; then kill -9 "${proc#/proc/}" 2>/dev/null || true; fi
    done
  fi
  for pid in $(pgrep -f "^(containerd|/usr/bin/containerd-shim-runc-v2) .*benchflow-$name[ /]" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
  sleep 0.5
  awk -v a="$run" -v b="$data" '$2 ~ "^"a || $2 ~ "^"b {print $2}' /proc/mounts | sort -r | while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done
  rm -rf "$run"
}

case $command in
start)
  if answers; then echo "$host"; exit 0; fi
  clean_up
  mkdir -p "$run" "$data"
  nohup dockerd --host "$host" --data-root "$data" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
    --containerd-namespace "benchflow-$name" --containerd-plugins-namespace "benchflow-$name-plugins" \
    --iptables=false --ip6tables=false --bridge docker0 >"/tmp/dockerd-$name.log" 2>&1 &
  for _ in $(seq 1 120); do answers && break; sleep 0.5; done
  answers || { echo "docker-engine: $name did not start, see /tmp/dockerd-$name.log" >&2; exit 1; }
  echo "$host"
  ;;
load)
  for image in "$@"; do
    docker save "$image" | DOCKER_HOST=${TARGET_HOST:-$host} docker load -q >/dev/null
  done
  ;;
kill)
  if [ -f "$run/docker.pid" ]; then kill -9 "$(cat "$run/docker.pid")" 2>/dev/null || true; fi
  clean_up
  ;;
stop)
  if [ -f "$run/docker.pid" ]; then
    pid=$(cat "$run/docker.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  clean_up
  ;;
*)
  echo "docker-engine: unknown command $command" >&2; exit 2
  ;;
esac
