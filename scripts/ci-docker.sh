#!/usr/bin/env bash
# CI set-up of real Docker engines (installed from Debian's packages, no registry needed) and of
# the images the tests use. Meant to be sourced: exports BENCHFLOW_BASE_IMAGE and BENCHFLOW_DOCKER_HOST_2.
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
# A second engine beside the first, for the multi-engine tests (they load their images into it).
BENCHFLOW_DOCKER_HOST_2=$(bash "$(dirname "${BASH_SOURCE[0]}")/docker-engine.sh" start d2)
export BENCHFLOW_DOCKER_HOST_2
# The tests that start engines of their own (an engine killed mid-run) run here; elsewhere they skip
# unless asked, so that a user's test run leaves no engine behind.
export BENCHFLOW_TEST_EXTRA_ENGINES=1
echo "ci-docker: second engine up at $BENCHFLOW_DOCKER_HOST_2" >&2
