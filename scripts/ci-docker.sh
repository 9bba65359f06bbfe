#!/usr/bin/env bash
# CI set-up of a real Docker engine (installed from Debian's packages, no registry needed) and of
# the images the tests use. Meant to be sourced: exports BENCHFLOW_BASE_IMAGE.
set -euo pipefail
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "ci-docker: installing docker.io and debootstrap" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "ci-docker: starting dockerd" >&2
  nohup dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null || { echo "ci-docker: dockerd did not start, see /tmp/dockerd.log" >&2; exit 1; }
fi
BENCHFLOW_BASE_IMAGE=$(bash "$(dirname "${BASH_SOURCE[0]}")/build-images.sh" | tail -n 1)
export BENCHFLOW_BASE_IMAGE
echo "ci-docker: engine up, base image $BENCHFLOW_BASE_IMAGE" >&2
