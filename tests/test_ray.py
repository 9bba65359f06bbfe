"""The Ray runner on a real three-process Ray cluster on loopback: a head and two worker nodes with Docker.

The cluster starts once per test session (per xdist worker: the tests share the group "ray", which
``dev.py test`` keeps on one worker) and is stopped at the end, leaving no process. Every node listens on
127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from container_toy import ARGS
from images import base_image, conformance_image, engine
from test_mmlu_pro import replay_args
from test_runner_conformance import docker_leftovers

from conftest import INTERRUPTIBLE, in_process_bench, runs_by_start
from pytest_benchflow.runners.ray import RayRunner
from pytest_benchflow.runners.ray_sandbox import RaySandboxProvider
from pytest_benchflow.sandbox import SandboxError, SandboxSpec
from pytest_benchflow.testing import check_runner

pytestmark = pytest.mark.xdist_group("ray")

# Small nodes: the CI machine has 2 cores and other work to do.
_NODE = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}
_DOCKER_SLOTS = 2


class RayCluster:
    """The session's cluster: its address, and its worker nodes (each with Docker)."""

    def __init__(self) -> None:
        import ray
        from ray.cluster_utils import Cluster

        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # keep this process's Ray calls on loopback
        self.cluster = Cluster(initialize_head=True, head_node_args={**_NODE, "include_dashboard": False})
        self.workers = [self.add_worker(), self.add_worker()]
        self.address = str(self.cluster.address)

    def add_worker(self) -> Any:
        return self.cluster.add_node(**_NODE, resources={"docker": _DOCKER_SLOTS})

    def kill(self, node: Any) -> None:
        """SIGKILL every process of a worker node, then start a fresh one (the next tests need two)."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)
        self.workers.append(self.add_worker())

    def shutdown(self) -> None:
        self.cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.shutdown()


def runner_for(cluster: RayCluster, **settings: str) -> Any:
    values = {o.name: o.default for o in RayRunner.options()}
    values.update(benchflow_ray_address=cluster.address, **settings)
    return lambda run_id: RayRunner.from_options(values, run_id)


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_the_ray_runner_conforms_in_process(ray_cluster: RayCluster, tmp_path: Path) -> None:
    report = check_runner(runner_for(ray_cluster), tmp_path)
    assert all(o.status == "passed" for o in report.outcomes if o.name != "cleanup"), str(report)


@pytest.mark.docker
def test_the_ray_runner_conforms_with_containers_on_worker_nodes(ray_cluster: RayCluster, tmp_path: Path) -> None:
    image = conformance_image(engine())
    report = check_runner(runner_for(ray_cluster), tmp_path, image=image, leftovers=docker_leftovers)
    assert all(o.status == "passed" for o in report.outcomes), str(report)


@pytest.fixture
def replay(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    from test_mmlu_pro import CS, HISTORY

    monkeypatch.setenv("REPLAY_FILE", f"{HISTORY}{os.pathsep}{CS}")
    return pytester


def test_mmlu_pro_replay_over_the_nodes_gives_the_in_process_records(
    replay: pytest.Pytester, ray_cluster: RayCluster
) -> None:
    question = ["--benchflow-arg=TASK_UNIT=question", "--benchflow-limit=6"]
    in_process = replay.runpytest_subprocess(*replay_args(*question, "--benchflow-runner=local"))
    local = records(runs_by_start(replay)[-1])
    result = replay.runpytest_subprocess(
        *replay_args(
            *question,
            "--benchflow-runner=ray",
            f"--benchflow-ray-address={ray_cluster.address}",
            "--benchflow-concurrency=3",
        )
    )
    assert result.parseoutcomes() == in_process.parseoutcomes()
    assert result.parseoutcomes().get("errors") is None
    over_ray = records(runs_by_start(replay)[-1])
    same = ("task_id", "outcome", "is_resolved", "metrics", "usage", "samples")
    assert [{k: r.get(k) for k in same} for r in over_ray] == [{k: r.get(k) for k in same} for r in local]
    nodes = {r["engine"] for r in over_ray}
    assert all(n.startswith("ray node 127.0.0.1 ") for n in nodes) and len(nodes) >= 2, nodes
    summary = json.loads((runs_by_start(replay)[-1] / "summary.json").read_text())
    assert set(summary["benches"]["mmlu_pro"]["engines"]) == nodes


def test_an_address_that_does_not_answer_is_a_usage_error_before_any_task(replay: pytest.Pytester) -> None:
    result = replay.runpytest_subprocess(*replay_args("--benchflow-runner=ray", "--benchflow-ray-address=127.0.0.1:9"))
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--benchflow-ray-address '127.0.0.1:9': no Ray cluster answers there*"])
    assert not list(replay.path.glob(".benchflow/2*/results.jsonl")) or not records(runs_by_start(replay)[-1])


def _labelled(run: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = engine().api.containers(all=True, filters={"label": f"benchflow.run={run.name}"})
    return found


def _over_ray(bench: str, agent_url: str, address: str) -> list[str]:
    """The arguments running ``bench`` (a ``file.py:Class`` beside the test) on the cluster at ``address``."""
    return [
        f"--benchflow={bench}",
        f"--agent-url={agent_url}",
        "--benchflow-runner=ray",
        f"--benchflow-ray-address={address}",
        "-p",
        "no:cacheprovider",
    ]


def _toy_over_ray(docker_toy: pytest.Pytester, ray_cluster: RayCluster, *extra: str) -> list[str]:
    """The pytest command running the container toy on the cluster (the toy's code reaches the nodes by runtime_env)."""
    runtime_env = json.dumps({"env_vars": {"PYTHONPATH": str(docker_toy.path)}})
    return [
        sys.executable,
        "-m",
        "pytest",
        *ARGS,
        "--benchflow-runner=ray",
        f"--benchflow-ray-address={ray_cluster.address}",
        f"--benchflow-ray-runtime-env={runtime_env}",
        *extra,
    ]


@pytest.mark.docker
def test_a_worker_node_killed_mid_run_reruns_its_tasks_on_the_other_node(
    docker_toy: pytest.Pytester, ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [f"nap{i}" for i in range(4)]
    monkeypatch.setenv("TOY_TASKS", json.dumps(tasks))
    monkeypatch.setenv("NAP", "12")
    command = _toy_over_ray(docker_toy, ray_cluster, "--benchflow-concurrency=4", "--benchflow-rerun-infra=1")
    proc = docker_toy.popen(command, **INTERRUPTIBLE)
    doomed = ray_cluster.workers[0]
    try:
        run = _wait_running(docker_toy, proc, 4)
        ray_cluster.kill(doomed)
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    done = records(run)
    assert sorted(r["task_id"] for r in done) == tasks and all(r["outcome"] == "passed" for r in done)
    killed = f"{doomed.node_id[:12]}"
    rerun = [r for r in done if r.get("attempts")]
    assert len(rerun) == _DOCKER_SLOTS, done  # the killed node's tasks, and only those
    for record in rerun:
        (first,) = record["attempts"]
        assert first["error_kind"] == "infra" and killed in first["engine"] and killed in first["reason"]
        assert killed not in record["engine"]
    assert _labelled(run) == []


def _wait_running(pytester: pytest.Pytester, proc: Any, count: int) -> Path:
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline and proc.poll() is None
        runs = list(pytester.path.glob(".benchflow/2*"))
        if runs and len([c for c in _labelled(runs[0]) if c["State"] == "running"]) >= count:
            return runs[0]
        time.sleep(0.2)


@pytest.mark.docker
def test_ctrl_c_cancels_the_ray_tasks_and_removes_their_containers(
    docker_toy: pytest.Pytester, ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(4)]))
    monkeypatch.setenv("NAP", "120")
    command = _toy_over_ray(docker_toy, ray_cluster, "--benchflow-concurrency=4")
    proc = docker_toy.popen(command, **INTERRUPTIBLE)
    try:
        run = _wait_running(docker_toy, proc, 4)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _labelled(run) == []
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True


# --- sandboxes on Ray: actors on worker nodes, each holding a container on its node's engine ------------------


def sandbox_provider(cluster: RayCluster, run_id: str) -> RaySandboxProvider:
    values = {o.name: o.default for o in RaySandboxProvider.options()}
    values["benchflow_ray_address"] = cluster.address
    return RaySandboxProvider.from_options(values, run_id)


def _worker_ids(cluster: RayCluster) -> set[str]:
    return {w.node_id[:12] for w in cluster.workers}


@pytest.mark.docker
def test_a_ray_sandbox_runs_on_a_worker_node_files_round_trip_and_close_leaves_nothing(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    provider = sandbox_provider(ray_cluster, f"ray-sandbox-{secrets.token_hex(4)}")
    try:
        box = provider.open(SandboxSpec(base_image(engine()), group="t"))
        assert box.engine is not None and box.engine.startswith("ray node 127.0.0.1 ")
        assert box.engine.rsplit(" ", 1)[-1] in _worker_ids(ray_cluster)  # the head has no Docker
        result = box.exec("echo $((6 * 7)); echo oops >&2; exit 3", timeout=60)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "42\n", "oops\n")
        assert box.exec("sleep 30", timeout=1).timed_out
        box.write_file("/work/deep/note.txt", "hello")
        assert box.read_file("/work/deep/note.txt") == b"hello"
        with pytest.raises(SandboxError, match="no such file"):
            box.read_file("/work/missing")
        source = tmp_path / "src"
        (source / "pkg").mkdir(parents=True)
        (source / "pkg" / "mod.py").write_text("x = 1\n")
        box.upload(source, "/work/project")
        assert box.exec("cat /work/project/pkg/mod.py").stdout == "x = 1\n"
        box.exec("ln -s /etc/passwd /work/project/escape")
        with pytest.raises(Exception, match="escape"):  # extracted here, as safely as a task's results
            box.download("/work/project", tmp_path / "out")
        box.exec("rm /work/project/escape")
        box.download("/work/project", tmp_path / "out2")
        assert (tmp_path / "out2" / "pkg" / "mod.py").read_text() == "x = 1\n"
        with box.snapshot() as verifier:
            assert verifier.engine == box.engine  # one group: one actor, one node
            assert verifier.exec("cat /work/deep/note.txt").stdout == "hello"
        assert len(_sandboxes(provider.run_id)) == 1
        box.close()
        assert _sandboxes(provider.run_id) == []
        with pytest.raises(SandboxError, match="closed"):
            box.exec("true")
    finally:
        provider.close_all()
        provider.sweep()
    assert _sandboxes(provider.run_id) == []


@pytest.mark.docker
def test_close_all_kills_the_actors_and_removes_their_containers(ray_cluster: RayCluster) -> None:
    provider = sandbox_provider(ray_cluster, f"ray-sandbox-{secrets.token_hex(4)}")
    try:
        boxes = [provider.open(SandboxSpec(base_image(engine()), group=g)) for g in ("a", "b")]
        assert len(_sandboxes(provider.run_id)) == 2
    finally:
        provider.close_all()  # Ctrl-C and the session's end
    assert _sandboxes(provider.run_id) == []
    with pytest.raises(SandboxError):
        boxes[0].exec("true")


def _sandboxes(run_id: str) -> list[dict[str, Any]]:
    labels = [f"benchflow.run={run_id}", "benchflow.sandbox"]
    found: list[dict[str, Any]] = engine().api.containers(all=True, filters={"label": labels})
    return found


RAY_SANDBOX_BENCH = in_process_bench(
    "RaySandboxBench",
    """
    def evaluate(env):
        box = env.sandbox(os.environ["SANDBOX_IMAGE"], cpus=1, memory_mb=512)
        answer = box.exec("echo $((6 * 7))").stdout.strip()
        box.write_file("/answer", answer)
        with box.snapshot() as verifier:
            checked = verifier.read_file("/answer").decode()
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps({"answer": checked, "engine": box.engine}))
    """,
    """
    data = json.loads(Path(self.results_dir, "r.json").read_text())
    return {"is_resolved": data["answer"] == "42", "metrics": {}}
    """,
    tasks=("one", "two"),
)


@pytest.mark.docker
def test_a_bench_on_the_head_drives_sandboxes_on_worker_nodes(
    pytester: pytest.Pytester, ray_cluster: RayCluster, echo_agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(ray_sandbox_bench=RAY_SANDBOX_BENCH)
    monkeypatch.setenv("SANDBOX_IMAGE", base_image(engine()))
    result = pytester.runpytest_subprocess(
        "--benchflow=ray_sandbox_bench.py:RaySandboxBench",
        f"--agent-url={echo_agent}",
        "--benchflow-sandbox=ray",
        f"--benchflow-ray-address={ray_cluster.address}",
        "--benchflow-timeout=120",
    )
    result.assert_outcomes(passed=2)
    run = runs_by_start(pytester)[-1]
    engines = {json.loads(p.read_text())["engine"] for p in run.rglob("r.json")}
    assert engines and all(e.rsplit(" ", 1)[-1] in _worker_ids(ray_cluster) for e in engines), engines
    assert _sandboxes(run.name) == []


HANGING_SANDBOX_BENCH = in_process_bench(
    "HangingSandboxBench",
    """
    def evaluate(env):
        box = env.sandbox(os.environ["SANDBOX_IMAGE"], cpus=1, memory_mb=512)
        box.exec("sleep 300")
    """,
    """
    return {"is_resolved": False, "metrics": {}}
    """,
    tasks=("a", "b"),
)


@pytest.mark.docker
def test_ctrl_c_kills_the_sandbox_actors_and_removes_their_containers(
    pytester: pytest.Pytester, ray_cluster: RayCluster, echo_agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(hanging_sandbox_bench=HANGING_SANDBOX_BENCH)
    monkeypatch.setenv("SANDBOX_IMAGE", base_image(engine()))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--benchflow=hanging_sandbox_bench.py:HangingSandboxBench",
        f"--agent-url={echo_agent}",
        "--benchflow-sandbox=ray",
        f"--benchflow-ray-address={ray_cluster.address}",
        "--benchflow-concurrency=2",
        "-p",
        "no:cacheprovider",
    ]
    proc = pytester.popen(command, **INTERRUPTIBLE)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline and proc.poll() is None
            runs = list(pytester.path.glob(".benchflow/2*"))
            if runs and len([c for c in _sandboxes(runs[0].name) if c["State"] == "running"]) >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _sandboxes(runs[0].name) == []


AGENTIC_BENCH = """
import json, os
from pathlib import Path
from pytest_benchflow import BaseBench, BenchArgs, BenchmarkResult
from pytest_benchflow.agent_loop import run_agent


def evaluate(env):
    with env.sandbox(os.environ["BENCHFLOW_BASE_IMAGE"]) as box:
        run = run_agent(env["INTELLIGENCE_URL"], box, "Write 21 doubled to /work/answer.", sample_id="solve")
        check = box.exec('test "$(cat /work/answer)" = 42')
        result = {"stop": run.stop_reason, "ok": check.exit_code == 0, "engine": box.engine}
    Path(env["BENCHFLOW_RESULTS_DIR"], "result.json").write_text(json.dumps(result))


class AgenticBench(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)

    def get_all_tasks(self, split):
        return {"task_ids": ["double"], "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        r = json.loads(Path(self.results_dir, "result.json").read_text())
        return BenchmarkResult(is_resolved=r["ok"], metrics={}, log=r["stop"])
"""


@pytest.mark.docker
def test_an_agentic_task_drives_its_sandbox_on_a_worker_node(
    pytester: pytest.Pytester, ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_agent_session import SCRIPT
    from tool_model import ToolModel

    model = ToolModel(SCRIPT)
    try:
        monkeypatch.setenv("BENCHFLOW_BASE_IMAGE", base_image(engine()))
        monkeypatch.setenv("OPENAI_BASE_URL", model.url)
        monkeypatch.setenv("OPENAI_MODEL", "tool-model")
        monkeypatch.setenv("OPENAI_MAX_RETRY_SECONDS", "0")
        monkeypatch.delenv("INTELLIGENCE_URL", raising=False)
        pytester.makepyfile(agentic_bench=AGENTIC_BENCH)
        result = pytester.runpytest_subprocess(
            "--benchflow=agentic_bench.py:AgenticBench",
            "--agent=pytest_benchflow.agents:OpenAIChatAgent",
            "--benchflow-sandbox=ray",
            f"--benchflow-ray-address={ray_cluster.address}",
            "-p",
            "no:cacheprovider",
            timeout=600,
        )
    finally:
        model.stop()
    result.assert_outcomes(passed=1)
    run = runs_by_start(pytester)[-1]
    (done,) = [json.loads(p.read_text()) for p in run.rglob("result.json")]
    assert done["ok"] and done["engine"].rsplit(" ", 1)[-1] in _worker_ids(ray_cluster), done
    assert _sandboxes(run.name) == []


WHERE_BENCH = in_process_bench(
    "WhereBench",
    """
    def evaluate(env):
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps({"pid": os.getpid()}))
    """,
    """
    import ray

    if task_id == "broken":
        raise ValueError("no result here")
    ran = json.loads(Path(self.results_dir, "r.json").read_text())
    node = ray.get_runtime_context().get_node_id()
    return {"is_resolved": True, "metrics": {"entrance_pid": ran["pid"], "pid": os.getpid(), "node": node}}
    """,
    tasks=("where", "broken"),
)


def test_get_result_runs_on_the_node_where_the_entrance_ran(
    pytester: pytest.Pytester, ray_cluster: RayCluster, echo_agent: str
) -> None:
    pytester.makepyfile(where_bench=WHERE_BENCH)
    result = pytester.runpytest_subprocess(*_over_ray("where_bench.py:WhereBench", echo_agent, ray_cluster.address))
    result.assert_outcomes(passed=1, errors=1)
    done = {r["task_id"]: r for r in records(runs_by_start(pytester)[-1])}
    metrics = done["where"]["metrics"]
    assert metrics["pid"] == metrics["entrance_pid"], metrics  # the node's worker process, not the driver
    assert done["where"]["engine"].endswith(" " + metrics["node"][:12]), done["where"]
    broken = done["broken"]  # a raising get_result on the node: the driver's ResultError, same words and kind
    assert broken["reason"].startswith("task 'broken': get_result raised ValueError: no result here"), broken
    assert broken["error_kind"] == "bench", broken  # a ResultError's kind, as on the local runner


NODE_SANDBOX_BENCH = in_process_bench(
    "NodeSandboxBench",
    """
    def evaluate(env):
        box = env.sandbox("SANDBOX_IMAGE", cpus=1, memory_mb=512)  # the nodes do not have the test's environment
        if env["TEST_START_ID"] == "hangs-on-ray":
            box.exec("sleep 300")  # past the task's timeout: its worker is killed on the node
        answer = box.exec("echo $((6 * 7))").stdout.strip()
        box.write_file("/answer", answer)
        with box.snapshot() as verifier:
            checked = verifier.read_file("/answer").decode()
        import docker

        labels = ["benchflow.task=hangs-on-ray", "benchflow.sandbox"]
        left = docker.from_env().containers.list(all=True, filters={"label": labels})
        done = {"answer": checked, "engine": box.engine, "left": len(left)}
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps(done))
    """,
    """
    data = json.loads(Path(self.results_dir, "r.json").read_text())
    return {"is_resolved": data["answer"] == "42" and data["left"] == 0, "metrics": {"engine": data["engine"]}}
    """,
    tasks=("hangs-on-ray", "drives-on-ray"),
)


@pytest.mark.docker
def test_an_in_process_task_on_a_node_drives_its_sandboxes_and_a_timeout_leaves_none(
    pytester: pytest.Pytester, ray_cluster: RayCluster, echo_agent: str
) -> None:
    pytester.makepyfile(node_sandbox_bench=NODE_SANDBOX_BENCH.replace("SANDBOX_IMAGE", base_image(engine())))
    command = [
        sys.executable,
        "-m",
        "pytest",
        *_over_ray("node_sandbox_bench.py:NodeSandboxBench", echo_agent, ray_cluster.address),
        "--benchflow-sandbox=ray",
        "--benchflow-timeout=20",
    ]
    proc = pytester.popen(command, **INTERRUPTIBLE)
    hung = False  # the timed-out task's sandbox was seen running before its timeout
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            hung = hung or bool(engine().api.containers(filters={"label": "benchflow.task=hangs-on-ray"}))
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert hung
    run = runs_by_start(pytester)[-1]
    done = {r["task_id"]: r for r in records(run)}
    assert done["hangs-on-ray"]["error_kind"] == "timeout", done["hangs-on-ray"]
    drives = done["drives-on-ray"]  # its sandbox on a worker node; none of the timed-out task's left meanwhile
    assert drives["outcome"] == "passed", drives
    assert drives["metrics"]["engine"].rsplit(" ", 1)[-1] in _worker_ids(ray_cluster), drives
    assert drives["engine"].startswith("ray node 127.0.0.1 "), drives  # the task itself ran on a node
    assert _sandboxes(run.name) == []


CONTAINER_ONLY_BENCH = """
from pytest_benchflow import BaseBench, BenchArgs


class ContainerOnly(BaseBench):
    def get_args(self, task_id):
        return BenchArgs({"optional": {}})

    def get_image_name(self):
        return "benchflow-test/never-pulled:1"

    def get_results_dir_in_container(self):
        return "/results"

    def get_log_files_dir_in_container(self):
        return "/logs"

    def get_all_tasks(self, split):
        return {"task_ids": ["t"], "error_message": None}

    def get_result(self, task_id):
        return {"is_resolved": True, "metrics": {}, "log": {}, "other": {}}
"""


def test_a_cluster_without_a_docker_node_is_refused_for_a_container_bench_before_any_task(
    pytester: pytest.Pytester, echo_agent: str
) -> None:
    from ray.cluster_utils import Cluster

    # A cluster of its own, a head alone, advertising no Docker (the session's cluster has Docker nodes).
    bare = Cluster(initialize_head=True, head_node_args={**_NODE, "include_dashboard": False})
    try:
        pytester.makepyfile(container_only=CONTAINER_ONLY_BENCH)
        result = pytester.runpytest_subprocess(*_over_ray("container_only.py:ContainerOnly", echo_agent, bare.address))
    finally:
        bare.shutdown()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*no node of the Ray cluster * has a Docker engine for 'benchflow-test/never-pulled:1'*"]
    )
    assert not list(pytester.path.glob(".benchflow/*/results.jsonl"))


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("benchflow_ray_num_cpus = -1", "benchflow_ray_num_cpus = '-1': expected a number of at least 0"),
        ("benchflow_ray_memory = lots", "benchflow_ray_memory = 'lots': expected a number of at least 0"),
        ("benchflow_ray_num_cpus = nan", "benchflow_ray_num_cpus = 'nan': expected a number of at least 0"),
        ("benchflow_ray_resources = {docker: 1}", "benchflow_ray_resources = '{docker: 1}': not JSON *"),
        ("benchflow_ray_resources = [1]", "benchflow_ray_resources = '?1?': expected a JSON object"),  # ? for [ ]
        (
            'benchflow_ray_resources = {"gpu": -2}',
            "benchflow_ray_resources: 'gpu' = -2: expected a number of at least 0",
        ),
        ("benchflow_ray_runtime_env = not json", "benchflow_ray_runtime_env = 'not json': not JSON *"),
    ],
)
def test_bad_ray_settings_are_one_line_usage_errors_before_any_cluster(
    pytester: pytest.Pytester, echo_agent: str, ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(container_only=CONTAINER_ONLY_BENCH)
    # The address is never reached: the settings are refused first.
    result = pytester.runpytest(*_over_ray("container_only.py:ContainerOnly", echo_agent, "127.0.0.1:9"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *{message}"])
