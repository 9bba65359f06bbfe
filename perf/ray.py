"""The Ray runner, side by side, medians: `python perf/ray.py [ROUNDS] [overhead|nodes|memory ...]`.

overhead: the Ray runner's per-task overhead vs the local runner's. In-process per-question MMLU-Pro
items (an instant agent on loopback) at the same
``--benchflow-concurrency``, run by the local runner and by the Ray runner on a local Ray cluster
(a head on 127.0.0.1 with as many logical CPUs as the concurrency, so Ray never queues a task the
local runner would run). Each runner runs SMALL and LARGE items; the per-task cost is the slope
(wall(LARGE) - wall(SMALL)) / (LARGE - SMALL), so the session's fixed costs (pytest's start, Ray's
connect) drop out. Rounds alternate the contenders; figures are medians.

nodes: two worker nodes vs one on container tasks bound by the node's capacity, not by CPU (on one
machine the nodes share its CPUs): each worker node advertises ``docker: 2``, each task sleeps 3 s (RAY_PERF_NAP) in
its container and needs ``docker: 1``, so one node runs 2 at a time and two nodes 4. Each round starts
its cluster (a head without Docker, then the workers, all on 127.0.0.1), lets it settle (RAY_PERF_SETTLE
seconds, default 5: the nodes' own start-up, their prestarted worker processes, is over before the clock
starts) and stops it after. Beside the session's wall (the headline), each round is split from its records:
the session's start (pytest's start to the first task submitted), the task phase (to the last task done)
and the end (cleanup, the sweep, disconnect). RAY_PERF_ENGINES=2 gives the second worker node an engine of
its own (scripts/docker-engine.sh's d2, as on a real cluster each node has one); default: both nodes use the
one engine of the machine.

memory: one pytest process driving 256 in-process per-question items on a cluster of two worker nodes
at ``--benchflow-concurrency`` 8, the pytest process's peak RSS (``ru_maxrss``), the local runner's
beside it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file's name would shadow the ray package: perf/ leaves the path, perf/run.py's helpers load by file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("benchflow_perf_run", HERE / "run.py")
assert _spec is not None and _spec.loader is not None
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
NAP_BENCH, NAP_SCRIPT, ours, per_question_run, serve, synthetic_questions, timed = (
    _run.NAP_BENCH,
    _run.NAP_SCRIPT,
    _run.ours,
    _run.per_question_run,
    _run.serve,
    _run.synthetic_questions,
    _run.timed,
)

CONCURRENCY = int(os.environ.get("RAY_PERF_CONCURRENCY", "4"))
SMALL, LARGE = 20, int(os.environ.get("RAY_PERF_ITEMS", "400"))
QUIET = ["-q", "-p", "no:cacheprovider", "--tb=no", "-rN", "-p", "no:randomly"]
# Small nodes, as in tests/test_ray.py: the machine has 2 cores and other work to do.
NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024}
NAP_IMAGE = "benchflow-perf/nap:1"
NAP_TASKS, DOCKER_SLOTS = int(os.environ.get("RAY_PERF_NAP_TASKS", "16")), 2
NAP_SECONDS = float(os.environ.get("RAY_PERF_NAP", "3"))
SETTLE = float(os.environ.get("RAY_PERF_SETTLE", "5"))
MEMORY_ITEMS, MEMORY_CONCURRENCY = int(os.environ.get("RAY_PERF_MEMORY_ITEMS", "256")), 8


def _check_all_passed(tmp: Path, walls: dict[tuple[str, int], list[float]]) -> None:
    """Every run recorded all its items as passed (a figure of runs that failed fast would mean nothing)."""
    for (name, n), values in walls.items():
        runs = sorted((tmp / f"out-{name}-{n}").glob("*/results.jsonl"))
        assert len(runs) == len(values), (name, n, runs)
        for results in runs:
            outcomes = [json.loads(line)["outcome"] for line in results.read_text().splitlines()]
            assert outcomes == ["passed"] * n, (name, n, results, outcomes[:5])


def _passed(output: Path, n: int, runs: int) -> None:
    """``runs`` runs under ``output``, each recording its ``n`` tasks as passed."""
    found = sorted(output.glob("*/results.jsonl"))
    assert len(found) == runs, (output, found)
    for results in found:
        outcomes = [json.loads(line)["outcome"] for line in results.read_text().splitlines()]
        assert outcomes == ["passed"] * n, (results, outcomes[:5])


def _cluster(head_cpus: int, workers: int = 0, engines: tuple[str, ...] = (), **worker: Any) -> Any:
    """A Ray cluster on loopback: a head with ``head_cpus`` logical CPUs and ``workers`` worker nodes, the
    i-th of them on Docker engine ``engines[i]`` when given (its processes inherit that DOCKER_HOST)."""
    import ray
    from ray.cluster_utils import Cluster

    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # loopback only
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": head_cpus, "include_dashboard": False})
    own = os.environ.get("DOCKER_HOST")
    try:
        for i in range(workers):
            if i < len(engines):
                os.environ["DOCKER_HOST"] = engines[i]
            cluster.add_node(**NODE, **worker)
    finally:
        os.environ.pop("DOCKER_HOST", None)
        if own is not None:
            os.environ["DOCKER_HOST"] = own
    cluster.wait_for_nodes()
    return cluster


def _engines() -> tuple[str, ...]:
    """The worker nodes' engines: with RAY_PERF_ENGINES=2, the machine's and a second one (started, nap image
    loaded); else none named (every node uses the machine's)."""
    if os.environ.get("RAY_PERF_ENGINES", "1") != "2":
        return ()
    import subprocess

    script = HERE.parent / "scripts" / "docker-engine.sh"
    second = subprocess.run(["bash", str(script), "start", "d2"], capture_output=True, text=True, check=True)
    subprocess.run(["bash", str(script), "load", "d2", NAP_IMAGE], check=True, capture_output=True)
    return (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", second.stdout.strip())


def overhead(rounds: int) -> None:
    cluster = _cluster(CONCURRENCY)
    argv, port = ours()
    quiet = QUIET
    runners = {
        "local": ["--benchflow-runner=local"],
        "ray": ["--benchflow-runner=ray", f"--benchflow-ray-address={cluster.address}"],
    }
    walls: dict[tuple[str, int], list[float]] = {(r, n): [] for r in runners for n in (SMALL, LARGE)}
    try:
        with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "pytest.ini").write_text("[pytest]\n")
            for n in (SMALL, LARGE):
                (tmp / f"data{n}.json").write_text(json.dumps(synthetic_questions(n, categories=1)))
            for _ in range(rounds):
                for key in random.sample(list(walls), len(walls)):
                    name, n = key
                    command = [
                        *per_question_run(url, tmp / f"data{n}.json", tmp / f"out-{name}-{n}", quiet),
                        *runners[name],
                        f"--benchflow-concurrency={CONCURRENCY}",
                    ]
                    walls[key].append(timed(command, tmp, dict(os.environ))[0])
            _check_all_passed(tmp, walls)
    finally:
        cluster.shutdown()
    median = {key: statistics.median(values) for key, values in walls.items()}
    print(f"per-question items at --benchflow-concurrency {CONCURRENCY}, medians of {rounds} rounds")
    for name in runners:
        per_task = (median[(name, LARGE)] - median[(name, SMALL)]) / (LARGE - SMALL)
        print(
            f"  {name:>5}: {SMALL} items {median[(name, SMALL)]:.2f} s, {LARGE} items {median[(name, LARGE)]:.2f} s, "
            f"per task {per_task * 1000:.0f} ms"
        )
    local = (median[("local", LARGE)] - median[("local", SMALL)]) / (LARGE - SMALL)
    over = (median[("ray", LARGE)] - median[("ray", SMALL)]) / (LARGE - SMALL)
    print(f"  Ray's extra cost per task (slope): {(over - local) * 1000:.0f} ms")
    whole = (median[("ray", LARGE)] - median[("local", LARGE)]) / LARGE
    print(f"  Ray's extra cost per task at {LARGE} items, its session start included: {whole * 1000:.0f} ms")
    for key, values in sorted(walls.items()):
        print(f"  {key[0]:>5} {key[1]:>4} items, every round: {', '.join(f'{v:.2f}' for v in values)} s")


def _nap_image() -> None:
    """perf/run.py's nap image (a container that sleeps NAP seconds and writes a result), built on the engine."""
    import docker

    client = docker.from_env()
    base = os.environ.get("BENCHFLOW_BASE_IMAGE") or "benchflow/base:bookworm"
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "nap.py").write_text(NAP_SCRIPT)
        (Path(ctx) / "Dockerfile").write_text(f'FROM {base}\nCOPY nap.py /nap.py\nENTRYPOINT ["python3", "/nap.py"]\n')
        client.images.build(path=ctx, tag=NAP_IMAGE, rm=True)


def _nap_containers(engines: tuple[str, ...] = ()) -> list[str]:
    import docker

    clients = [docker.DockerClient(base_url=e) for e in engines] if engines else [docker.from_env()]
    return [c.id for client in clients for c in client.containers.list(all=True, filters={"ancestor": NAP_IMAGE})]


def _phases(output: Path, started: float, ended: float) -> tuple[float, float, float]:
    """(session start, task phase, end) of the newest run under ``output``, from its records' times."""
    newest = max(output.glob("*/results.jsonl"), key=lambda p: p.stat().st_mtime)
    records = [json.loads(line) for line in newest.read_text().splitlines()]
    first = min(r["finished_at"] - r["duration"] for r in records)  # the first tasks start at once: exact
    last = max(r["finished_at"] for r in records)
    return first - started, last - first, ended - last


def nodes(rounds: int) -> None:
    import time

    _nap_image()
    engines = _engines()
    before = set(_nap_containers(engines))
    walls: dict[int, list[float]] = {1: [], 2: []}
    phases: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "nap_bench.py").write_text(NAP_BENCH)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        runtime_env = json.dumps({"env_vars": {"PYTHONPATH": str(tmp)}})
        env = {**os.environ, "PYTHONPATH": str(tmp), "NAP_TASKS": str(NAP_TASKS)}
        for _ in range(rounds):
            for workers in random.sample(list(walls), len(walls)):
                cluster = _cluster(1, workers, engines, num_cpus=1, resources={"docker": DOCKER_SLOTS})
                time.sleep(SETTLE)
                try:
                    command = [
                        sys.executable, "-m", "pytest", "--benchflow=nap_bench.py:Nap", "--agent=nap_bench:Idle",
                        *QUIET,
                        f"--benchflow-arg=NAP={NAP_SECONDS:g}", f"--benchflow-output={tmp / f'out-{workers}'}",
                        "--benchflow-runner=ray", f"--benchflow-ray-address={cluster.address}",
                        f"--benchflow-ray-runtime-env={runtime_env}", f"--benchflow-concurrency={NAP_TASKS}",
                    ]  # fmt: skip
                    started = time.time()
                    walls[workers].append(timed(command, tmp, env)[0])
                    phases[workers].append(_phases(tmp / f"out-{workers}", started, time.time()))
                    loads.append(os.getloadavg()[0])
                finally:
                    cluster.shutdown()
        for workers, values in walls.items():
            _passed(tmp / f"out-{workers}", NAP_TASKS, len(values))
    left = set(_nap_containers(engines)) - before
    assert not left, f"containers left behind: {left}"
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    ideal = NAP_TASKS / DOCKER_SLOTS * NAP_SECONDS
    print(
        f"{NAP_TASKS} container tasks of {NAP_SECONDS:g} s, docker: {DOCKER_SLOTS} per worker node, "
        f"medians of {rounds} rounds "
        f"(session wall, cluster start excluded), load average {min(loads):.1f} to {max(loads):.1f}, "
        f"{'an engine per worker node' if engines else 'one engine for both worker nodes'}"
    )
    print(f"  one worker node: {one:.1f} s (ideal {ideal:.0f} s), two: {two:.1f} s (ideal {ideal / 2:.0f} s)")
    print(f"  two vs one: {one / two:.2f}x (goal >= 1.7x)")
    for workers, values in walls.items():
        print(f"  {workers} worker node(s), every round: {', '.join(f'{v:.1f}' for v in values)} s")
        start, phase, end = (statistics.median(p[i] for p in phases[workers]) for i in range(3))
        print(f"    medians: session start {start:.1f} s, task phase {phase:.1f} s, end {end:.1f} s")
    task_phase = [statistics.median(p[1] for p in phases[w]) for w in (1, 2)]
    print(f"  task phase alone, two vs one: {task_phase[0] / task_phase[1]:.2f}x")


def memory(rounds: int) -> None:
    cluster = _cluster(0, 2, num_cpus=MEMORY_CONCURRENCY // 2)
    argv, port = ours()
    runners = {
        "local": ["--benchflow-runner=local"],
        "ray": ["--benchflow-runner=ray", f"--benchflow-ray-address={cluster.address}"],
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    try:
        with serve(argv, port) as url, tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "pytest.ini").write_text("[pytest]\n")
            data = tmp / "data.json"
            data.write_text(json.dumps(synthetic_questions(MEMORY_ITEMS, categories=1)))
            for _ in range(rounds):
                for name in random.sample(list(runners), len(runners)):
                    command = [
                        *per_question_run(url, data, tmp / f"out-{name}", QUIET),
                        *runners[name],
                        f"--benchflow-concurrency={MEMORY_CONCURRENCY}",
                    ]
                    runs[name].append(timed(command, tmp, dict(os.environ)))
            for name, found in runs.items():
                _passed(tmp / f"out-{name}", MEMORY_ITEMS, len(found))
    finally:
        cluster.shutdown()
    print(
        f"{MEMORY_ITEMS} per-question items from one pytest process at --benchflow-concurrency {MEMORY_CONCURRENCY}, "
        f"two worker nodes of {MEMORY_CONCURRENCY // 2} logical CPUs, medians of {rounds} rounds"
    )
    for name, found in runs.items():
        wall, peak = statistics.median(w for w, _ in found), statistics.median(m for _, m in found)
        every = ", ".join(f"{m:.0f}" for _, m in found)
        print(f"  {name:>5}: peak RSS of the pytest process {peak:.0f} MiB (every round: {every}), wall {wall:.1f} s")


SECTIONS = {"overhead": overhead, "nodes": nodes, "memory": memory}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for name in sys.argv[2:] or list(SECTIONS):
        print(f"\n== {name}")
        SECTIONS[name](rounds)


if __name__ == "__main__":
    main()
