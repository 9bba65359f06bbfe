#!/usr/bin/env bash
# Build the images pytest-benchflow's examples and tests use, without any image registry:
#   - a Python base image: python:3.11-slim when present or pullable, otherwise Debian bookworm
#     made with debootstrap and `docker import`ed as benchflow/base:bookworm;
#   - benchflow/mmlu-pro:0.2, the MMLU-Pro example, with the project installed from wheels built here.
# Idempotent: an existing base image is reused; example images are rebuilt (layers cached).
# Prints the base image's name on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OFFLINE_BASE=benchflow/base:bookworm
BASE=${BENCHFLOW_BASE_IMAGE:-}

log() { echo "build-images: $*" >&2; }

if [ -z "$BASE" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1 || timeout 30 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    BASE=python:3.11-slim
  else
    BASE=$OFFLINE_BASE
  fi
fi

if [ "$BASE" = "$OFFLINE_BASE" ] && ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
  ROOTFS=$(mktemp -d /tmp/benchflow-rootfs.XXXXXX)
  log "no registry reachable: building $BASE with debootstrap (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$ROOTFS" http://deb.debian.org/debian >/tmp/benchflow-debootstrap.log 2>&1 \
    || { log "debootstrap failed, see /tmp/benchflow-debootstrap.log"; exit 1; }
  tar -C "$ROOTFS" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE" >/dev/null
  rm -rf "$ROOTFS"
fi

# Python packages go into images as wheels built on this host (containers here cannot reach PyPI).
CTX=example_bench/mmlu_pro/.build
rm -rf "$CTX" && mkdir -p "$CTX/wheels"
"$PYTHON" -m pip wheel -q --no-deps -w "$CTX/wheels" . >&2
"$PYTHON" -m pip download -q -d "$CTX/wheels" --only-binary=:all: requests "pydantic>=2.5" "PyYAML>=6" >&2
log "building benchflow/mmlu-pro:0.2 on $BASE"
docker build -q --build-arg BASE_IMAGE="$BASE" -t benchflow/mmlu-pro:0.2 -f example_bench/mmlu_pro/Dockerfile "$CTX" >&2
echo "$BASE"
