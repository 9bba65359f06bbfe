"""Harbor task overhead, image cached: our sandbox + oracle + verifier vs the same steps with the bare Docker SDK.

    .venv/bin/python perf/harbor.py [TASK_DIR]   (default: example_bench/terminal/fix-median; BENCH_ROUNDS=5)

Ours: ``run_trial`` with ``--agent oracle`` (open the sandbox, upload solution/, run solve.sh, upload tests/,
run test.sh, read the reward, keep the verifier's files, close). Bare: ``containers.run(detach)`` with the same
limits, ``put_archive`` of solution/, ``exec_run`` of solve.sh, ``put_archive`` of tests/, ``exec_run`` of
test.sh, ``get_archive`` of reward.txt, ``remove(force)``. Alternated, medians over rounds.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_benchflow.harbor import Trial, load_task, run_trial  # noqa: E402
from pytest_benchflow.harbor.images import ensure_image, image_tag  # noqa: E402
from pytest_benchflow.runners.docker_sandbox import DockerSandboxProvider  # noqa: E402
from pytest_benchflow.sandbox import TaskSandboxes  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def tar_of(directory: Path) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=child.name)
    return data.getvalue()


def bare(client: docker.DockerClient, image: str, task_dir: Path) -> float:
    started = time.perf_counter()
    container = client.containers.run(
        image,
        ["sleep", "infinity"],
        detach=True,
        network_mode="none",
        mem_limit="512m",
        nano_cpus=10**9,
        pids_limit=512,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    try:
        container.exec_run(["mkdir", "-p", "/solution", "/tests", "/logs/verifier"])
        container.put_archive("/solution", tar_of(task_dir / "solution"))
        container.exec_run(["bash", "/solution/solve.sh"])
        container.put_archive("/tests", tar_of(task_dir / "tests"))
        container.exec_run(["bash", "/tests/test.sh"])
        stream, _ = container.get_archive("/logs/verifier/reward.txt")
        assert b"".join(stream)
    finally:
        container.remove(force=True)
    return time.perf_counter() - started


def ours(provider: DockerSandboxProvider, task_dir: Path, logs: Path) -> float:
    started = time.perf_counter()
    trial = Trial(load_task(task_dir, task_dir.name), logs / uuid.uuid4().hex, agent="", harness_agent="oracle")
    sandboxes = TaskSandboxes(provider, {}, uuid.uuid4().hex)
    try:
        assert run_trial(trial, sandboxes).resolved
    finally:
        sandboxes.close()
    return time.perf_counter() - started


def main() -> None:
    task_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "example_bench/terminal/fix-median"
    client = docker.from_env()
    provider = DockerSandboxProvider(f"perf-harbor-{uuid.uuid4().hex[:8]}")
    task = load_task(task_dir, task_dir.name)
    image = image_tag(task.task_id, task.environment_dir)
    with tempfile.TemporaryDirectory() as scratch:
        logs = Path(scratch)
        ensure_image(provider.pool.remaining()[0], image, task.environment_dir, 600, logs / "build.log")
        ours(provider, task_dir, logs), bare(client, image, task_dir)  # warm both paths
        times: dict[str, list[float]] = {"ours": [], "bare": []}
        try:
            for _ in range(ROUNDS):
                times["ours"].append(ours(provider, task_dir, logs))
                times["bare"].append(bare(client, image, task_dir))
        finally:
            provider.close_all()
            provider.sweep()
    mine, theirs = statistics.median(times["ours"]), statistics.median(times["bare"])
    print(f"Harbor task {task_dir.name}, image cached, {ROUNDS} rounds (medians)")
    print(f"  sandbox + oracle + verifier (run_trial)     {mine * 1000:8.0f} ms")
    print(f"  the same steps, bare Docker SDK             {theirs * 1000:8.0f} ms")
    print(f"  ratio                                       {mine / theirs:8.2f}x")


if __name__ == "__main__":
    main()
