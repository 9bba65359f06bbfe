"""A sandbox's cost against the bare Docker SDK doing the same, side by side: `python perf/sandbox.py [ROUNDS]`.

Two figures, medians over rounds that alternate the contenders (the engine's noise hits both alike):

- lifecycle: open + one exec + close (our provider) vs ``containers.run(detach=True)`` + ``exec_run`` +
  ``remove(force=True)`` (the SDK), same image, same command, same limits and entrypoint;
- exec: one round trip in a running sandbox vs ``exec_run`` in a running container.

Needs a Docker engine and ``BENCHFLOW_BASE_IMAGE`` (default ``benchflow/base:bookworm``).
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable

import docker

from pytest_benchflow.runners.docker_sandbox import _INIT, DockerSandboxProvider
from pytest_benchflow.sandbox import SandboxSpec

IMAGE = os.environ.get("BENCHFLOW_BASE_IMAGE", "benchflow/base:bookworm")
COMMAND = "echo hello"
EXECS_PER_ROUND = 20


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    client = docker.from_env()
    provider = DockerSandboxProvider(f"perf-sandbox-{secrets.token_hex(4)}", slots=2)
    spec = SandboxSpec(IMAGE)
    limits = {
        "mem_limit": "2048m",
        "memswap_limit": "2048m",
        "nano_cpus": 1_000_000_000,
        "pids_limit": 512,
        "network_mode": "none",
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"],
    }

    def ours() -> None:
        with provider.open(spec) as box:
            assert box.exec(COMMAND).stdout == "hello\n"

    def bare() -> None:
        container = client.containers.run(IMAGE, entrypoint=["sh", "-c", _INIT], detach=True, **limits)
        assert container.exec_run(["sh", "-c", COMMAND]).output == b"hello\n"
        container.remove(force=True)

    lifecycle: dict[str, list[float]] = {"ours": [], "bare": []}
    for contender in (ours, bare):  # warm-up: connections, image lookups
        contender()
    for i in range(rounds):
        order = [("ours", ours), ("bare", bare)] if i % 2 == 0 else [("bare", bare), ("ours", ours)]
        for name, fn in order:
            lifecycle[name].append(timed(fn))

    execs: dict[str, list[float]] = {"ours": [], "bare": []}
    with provider.open(spec) as box:
        container = client.containers.get(box.id)
        for i in range(rounds * EXECS_PER_ROUND):
            pair = [
                ("ours", lambda: box.exec(COMMAND)),
                ("bare", lambda: container.exec_run(["sh", "-c", COMMAND])),
            ]
            for name, fn in pair if i % 2 == 0 else reversed(pair):
                execs[name].append(timed(fn))
    provider.close_all()
    provider.sweep()

    for title, figures in (("open + exec + close", lifecycle), ("exec round trip", execs)):
        ours_ms, bare_ms = (statistics.median(figures[k]) * 1000 for k in ("ours", "bare"))
        print(f"{title}: ours {ours_ms:.1f} ms, bare SDK {bare_ms:.1f} ms: {ours_ms / bare_ms:.2f}x")


if __name__ == "__main__":
    main()
