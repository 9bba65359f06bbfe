#!/usr/bin/env bash
# Build the images pytest-benchflow's examples and tests use, without any image registry:
#   - a Python base image: python:3.11-slim when present or pullable, otherwise Debian bookworm
#     made with debootstrap and `docker import`ed as benchflow/base:bookworm;
#   - benchflow/mmlu-pro:0.2, the MMLU-Pro example, built by `pytest-benchflow build` (wheels made here).
# Idempotent: an existing base image is reused; example images are rebuilt (layers cached).
# Prints the base image's name on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OFFLINE_BASE=benchflow/base:bookworm
BASE=${BENCHFLOW_BASE_IMAGE:-}
MMLU_IMAGE=${BENCHFLOW_MMLU_IMAGE:-benchflow/mmlu-pro:0.2}

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

# `pytest-benchflow build` makes the image offline: the project's wheel built here, its dependencies downloaded
# as wheels for the base image's Python (containers here cannot reach PyPI). It needs the project's own
# dependencies; a Python without them gets a private virtual environment with the project installed.
if ! "$PYTHON" -c "import docker, pydantic, requests, yaml, pytest" >/dev/null 2>&1; then
  TOOLS=${TMPDIR:-/tmp}/benchflow-build-tools
  [ -x "$TOOLS/bin/python" ] || "$PYTHON" -m venv "$TOOLS" >&2
  log "installing the project into $TOOLS to build with"
  "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check . >&2
  PYTHON=$TOOLS/bin/python
fi
log "building $MMLU_IMAGE on $BASE"
# From the checkout (its pyproject.toml registers mmlu_pro among others), whichever pytest-benchflow is installed.
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" -m pytest_benchflow build . --bench mmlu_pro --base-image "$BASE" \
  --dockerfile example_bench/mmlu_pro/Dockerfile --tag "$MMLU_IMAGE" >&2
echo "$BASE"
