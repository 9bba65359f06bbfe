"""The Docker runner on a real engine: outcomes, faults, cleanup, security defaults, 0.1.x images."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from container_toy import ARGS, junit
from images import build, engine
from legacy import legacy_wheel

from conftest import INTERRUPTIBLE, runs_by_start

pytestmark = pytest.mark.docker


def leftover(run_dir: Path) -> list[Any]:
    """The run's containers (one listing, no inspection: one removed meanwhile is simply not there)."""
    found: list[Any] = engine().api.containers(all=True, filters={"label": f"benchflow.run={run_dir.name}"})
    return found


def run_dir_of(pytester: pytest.Pytester) -> Path:
    (found,) = [p for p in (pytester.path / ".benchflow").iterdir() if p.is_dir()]
    return found


def own_container(docker_toy: pytest.Pytester, task: str, proc: Any, client: Any = None) -> Any:
    """The running container of ``task`` in the run this test started (never another session's)."""
    client, output = client or engine(), docker_toy.path / ".benchflow"
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and proc.poll() is None
        runs = [p.name for p in output.iterdir() if p.is_dir()] if output.exists() else []
        if runs:
            labels = [f"benchflow.run={runs[0]}", f"benchflow.task={task}"]
            with contextlib.suppress(docker.errors.NotFound):  # listed, then removed before inspected
                found = client.containers.list(filters={"label": labels})
                if found:
                    return found[0]
        time.sleep(0.2)


def test_task_in_container_with_results_logs_and_secret(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["alpha", "beta"]')
    secret = "tok-0123456789-secret"
    result = docker_toy.runpytest(*ARGS, f"--benchflow-arg=TOY_TOKEN={secret}", "--junitxml=j.xml", "-rA")
    result.assert_outcomes(passed=2)
    run_dir = run_dir_of(docker_toy)
    results, logs = run_dir / "DockerToy" / "results" / "alpha", run_dir / "DockerToy" / "logs" / "alpha"
    assert json.loads((results / "result.json").read_text())["token_seen"] is True
    assert (logs / "trace.txt").read_text() == "trace of alpha"
    stdout = (logs / "container.stdout.log").read_text()
    for name in (
        "INTELLIGENCE_URL",
        "TEST_START_ID",
        "TEST_START_IDX",
        "BENCHFLOW_RESULTS_DIR",
        "BENCHFLOW_LOG_DIR",
        "BENCHFLOW_SPLIT",
    ):
        assert name in stdout
    assert "secret in container: ***" in (logs / "container.stdout.log").read_text()
    for text in (result.stdout.str(), (docker_toy.path / "j.xml").read_text(), (run_dir / "summary.json").read_text()):
        assert secret not in text
    for path in run_dir.rglob("*"):
        if path.is_file() and path.name != "result.json":  # the bench's own results are read by get_result
            assert secret not in path.read_text(errors="replace"), path
    # The client in the container counted its tokens; the runner copied them out with the logs.
    (record, _) = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert record["usage"] == {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9, "requests": 1}
    assert leftover(run_dir) == []


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("exit1", "*container of 'benchflow-test/toy:1' exited with status 1*"),
        ("noresults", "*get_result raised FileNotFoundError*result.json*"),
        ("invalid", "*get_result raised JSONDecodeError*"),
        ("symlink", "*symlink 'results/etc' -> '/etc' points outside the task directory*"),
        ("linkescape", "*symlink 'up' resolves outside the task directory (removed)*"),
    ],
)
def test_faults_are_errors_with_reasons(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, task: str, message: str
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([task]))
    result = docker_toy.runpytest(*ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    if task == "exit1":
        result.stdout.fnmatch_lines(["last lines of the container's output:", "fatal: something broke"])
    run_dir = run_dir_of(docker_toy)
    assert not (run_dir / "DockerToy" / "results" / task / "etc").exists()
    assert not (run_dir / "DockerToy" / "results" / task / "up").exists()
    assert leftover(run_dir) == []


def test_archive_over_the_cap_errors_fast_and_cleans_up(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["bigresults", "alpha"]')
    monkeypatch.setenv("BENCHFLOW_MAX_ARCHIVE_BYTES", "100000")
    started = time.monotonic()
    result = docker_toy.runpytest_subprocess(*ARGS)
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(
        ["*results archive of /app/results is larger than the 100000 byte cap (BENCHFLOW_MAX_ARCHIVE_BYTES)*"]
    )
    assert time.monotonic() - started < 45
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    run_dir = run_dir_of(docker_toy)
    assert json.loads((run_dir / "summary.json").read_text())["benches"]["DockerToy"]["errors"] == 1
    assert leftover(run_dir) == []


def test_a_flood_of_output_is_saved_capped_with_head_and_tail(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["flood"]')
    monkeypatch.setenv("FLOOD_BYTES", str(5 * 1000 * 1000))
    monkeypatch.setenv("BENCHFLOW_MAX_LOG_BYTES", "1000000")
    docker_toy.runpytest_subprocess(*ARGS).assert_outcomes(passed=1)
    log = run_dir_of(docker_toy) / "DockerToy" / "logs" / "flood" / "container.stdout.log"
    assert log.stat().st_size < 1000000 + 300
    text = log.read_text()
    assert text.startswith("env keys:") and "first line of the flood\n" in text
    assert text.endswith(
        'last line of the flood\nBENCHFLOW_PROGRESS {"done": 1, "total": 1}\nsecret in container: None\n'
    )
    assert "bytes of output cut here; the first 500000 and the last 500000 bytes are kept" in text
    # The ini setting wins over the environment; a bad value is a usage error naming the setting.
    docker_toy.makeini("[pytest]\nbenchflow_max_log_bytes = 2000\n")
    docker_toy.runpytest_subprocess(*ARGS).assert_outcomes(passed=1)
    assert (runs_by_start(docker_toy)[-1] / log.relative_to(log.parents[3])).stat().st_size < 2000 + 300
    monkeypatch.setenv("BENCHFLOW_MAX_LOG_BYTES", "lots")
    docker_toy.makeini("[pytest]\n")
    bad = docker_toy.runpytest_subprocess(*ARGS)
    assert bad.ret == 4
    bad.stderr.fnmatch_lines(["*BENCHFLOW_MAX_LOG_BYTES = 'lots': expected a positive whole number*"])


def test_output_without_a_newline_is_saved_and_masked(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["longline"]')
    monkeypatch.setenv("FLOOD_BYTES", str(60 * 1024 * 1024))
    monkeypatch.setenv("BENCHFLOW_MAX_LOG_BYTES", "4000000")
    secret = "tok-0123456789-secret"
    docker_toy.runpytest_subprocess(*ARGS, f"--benchflow-arg=TOY_TOKEN={secret}").assert_outcomes(passed=1)
    text = (run_dir_of(docker_toy) / "DockerToy" / "logs" / "longline" / "container.stdout.log").read_text()
    assert "start:yyyy" in text and "zzzz:end\nBENCHFLOW_PROGRESS" in text
    assert "bytes of output cut here" in text and len(text) < 4000000 + 300
    # The secret straddled two of the pieces a long line is read in: masked all the same.
    assert secret not in text and "y***z" in text


def test_user_and_capabilities(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", '["alpha"]')
    docker_toy.makeini("[pytest]\nbenchflow_user = 4321:4321\n")
    docker_toy.runpytest(*ARGS).assert_outcomes(passed=1)
    (line,) = (run_dir_of(docker_toy) / "results.jsonl").read_text().splitlines()
    assert json.loads(line)["metrics"]["uid"] == 4321


def test_default_capabilities_are_dropped(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_benchflow.runners.docker import DEFAULT_CAP_DROP

    monkeypatch.setenv("TOY_TASKS", '["sleep"]')
    proc = docker_toy.popen([sys.executable, "-m", "pytest", *ARGS], **INTERRUPTIBLE)
    try:
        found = [own_container(docker_toy, "sleep", proc)]
        assert set(found[0].attrs["HostConfig"]["CapDrop"]) == set(DEFAULT_CAP_DROP)
        assert found[0].attrs["Config"]["User"] == ""
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_timeout_kills_and_removes(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", '["sleep"]')
    started = time.monotonic()
    result = docker_toy.runpytest(*ARGS, "--benchflow-timeout=2")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*task 'sleep' timed out after 2 s (container killed)*"])
    # The container would sleep 120 s: ending well before that is the behaviour (generous for a loaded machine).
    assert time.monotonic() - started < 90
    assert leftover(run_dir_of(docker_toy)) == []


def test_ten_thousand_small_files(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", '["manyfiles"]')
    docker_toy.runpytest(*ARGS).assert_outcomes(passed=1)
    assert len(list((run_dir_of(docker_toy) / "DockerToy" / "results" / "manyfiles").iterdir())) == 10001


def test_missing_image_and_pull_policy(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_toy.makepyfile(
        gone="from docker_toy import DockerToy\nclass Gone(DockerToy):\n    def get_image_name(self):\n        return 'benchflow-test/does-not-exist:0'\n"
    )
    monkeypatch.setenv("TOY_TASKS", '["a", "b", "c"]')
    # Checked once, before any task: one line naming the image and the engine, not one error per task.
    result = docker_toy.runpytest_subprocess("--benchflow=gone.py:Gone", "--agent=docker_toy:Upper")
    assert result.ret == 4
    (line,) = [line for line in result.stderr.lines if "benchflow-test/does-not-exist:0" in line]
    assert line.startswith("ERROR: Gone: cannot pull image 'benchflow-test/does-not-exist:0' on unix://")
    assert "Server Error for http" not in line and not list(docker_toy.path.glob(".benchflow/2*"))
    never = docker_toy.runpytest_subprocess(
        "--benchflow=gone.py:Gone", "--agent=docker_toy:Upper", "--benchflow-pull=never"
    )
    assert never.ret == 4
    never.stderr.fnmatch_lines(
        ["ERROR: Gone: image 'benchflow-test/does-not-exist:0' is not present on * and --benchflow-pull=never"]
    )


def test_a_get_image_name_that_raises_is_one_usage_error_not_an_internal_one(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_toy.makepyfile(
        broken="from docker_toy import DockerToy\nclass Broken(DockerToy):\n    def get_image_name(self):\n        raise RuntimeError('no image today')\n"
    )
    monkeypatch.setenv("TOY_TASKS", '["a", "b"]')
    result = docker_toy.runpytest_subprocess("--benchflow=broken.py:Broken", "--agent=docker_toy:Upper")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: Broken: Broken.get_image_name() raised RuntimeError: no image today"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_the_cache_says_once_that_containers_do_not_use_it(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["alpha", "beta"]')
    result = docker_toy.runpytest_subprocess(*ARGS, "--benchflow-cache=use", "-n", "2")
    result.assert_outcomes(passed=2)
    said = [line for line in result.outlines if line.startswith("--benchflow-cache: ")]
    assert said == [
        "--benchflow-cache: DockerToy runs outside this process (--benchflow-runner docker), "
        "where agent answers are neither read from the cache nor stored"
    ]


def test_agent_unreachable_from_inside_the_container(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["alpha"]')
    docker_toy.makeini("[pytest]\nbenchflow_network = none\n")
    result = docker_toy.runpytest(*ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*exited with status 1*", "*AgentUnreachable*cannot connect to the agent*"])


def test_security_defaults_and_labels(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_TASKS", '["sleep"]')
    docker_toy.makeini("[pytest]\nbenchflow_memory = 512m\nbenchflow_cpus = 1.5\nbenchflow_pids = 128\n")
    proc = docker_toy.popen([sys.executable, "-m", "pytest", *ARGS], **INTERRUPTIBLE)
    client = engine()
    try:
        container = own_container(docker_toy, "sleep", proc)
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False and "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == 512 * 1024**2 and host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 128
        assert not host.get("Binds") and not container.attrs["Mounts"]
        assert container.labels["benchflow.bench"] == "DockerToy" and container.labels["benchflow.run"]
        run_label = container.labels["benchflow.run"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)  # as the other interrupt tests: cleanup calls may each take up to 30 s on a busy engine
    assert client.api.containers(all=True, filters={"label": f"benchflow.run={run_label}"}) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_container(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    monkeypatch.setenv("TOY_TASKS", '["alpha", "sleep", "beta"]')
    proc = docker_toy.popen([sys.executable, "-m", "pytest", *ARGS, "-n", "2"], **INTERRUPTIBLE)
    own_container(docker_toy, "sleep", proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    run_dir = run_dir_of(docker_toy)
    assert leftover(run_dir) == []
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"] is True


# --- MMLU-Pro in its container -------------------------------------------------------------


def test_mmlu_pro_docker_matches_in_process(pytester: pytest.Pytester, mmlu_image: str) -> None:
    common = ["--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent", "-p", "no:randomly"]
    pytester.runpytest_subprocess(*common, "--benchflow-runner=local", "--junitxml=local.xml")
    docker_run = pytester.runpytest_subprocess(*common, "--benchflow-runner=docker", "-n", "2", "--junitxml=docker.xml")
    assert docker_run.parseoutcomes().get("errors") is None
    local, in_docker = junit(pytester.path / "local.xml"), junit(pytester.path / "docker.xml")
    assert len(local) == 14 and local == in_docker
    # The same samples either way; the container's transcripts are copied out with its logs.
    runs = runs_by_start(pytester)
    samples = [
        sorted((s["sample_id"], s["score"]) for s in map(json.loads, (run / "samples.jsonl").read_text().splitlines()))
        for run in runs
    ]
    assert samples[0] == samples[1] and len(samples[0]) > 14
    exchanges = [json.loads(line) for p in runs[1].glob("mmlu_pro/logs/*/transcript.jsonl") for line in p.open()]
    assert sorted(e["sample_id"] for e in exchanges) == sorted(s for s, _ in samples[1])
    assert all(e["attempts"] == 1 and e["error"] is None for e in exchanges)


def test_transcripts_off_reaches_the_container(pytester: pytest.Pytester, mmlu_image: str) -> None:
    pytester.runpytest_subprocess(
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
        "--benchflow-runner=docker",
        "--benchflow-transcripts=off",
        "benchflow:mmlu_pro::law",
    ).assert_outcomes(failed=1)
    (log_dir,) = pytester.path.glob(".benchflow/2*/mmlu_pro/logs/law")
    assert (log_dir / "container.stdout.log").exists() and not (log_dir / "transcript.jsonl").exists()


def test_mmlu_pro_replay_in_container_reproduces_published_scores(
    pytester: pytest.Pytester, mmlu_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_mmlu_pro import CS, HISTORY

    client = engine()
    build(
        client,
        "benchflow-test/mmlu-pro-replay:1",
        {"Dockerfile": f"FROM {mmlu_image}\nCOPY history_result.json computer_science_result.json /data/\n"},
        extra={"history_result.json": HISTORY, "computer_science_result.json": CS},
    )
    pytester.makepyfile(
        replay_bench="from example_bench.mmlu_pro import MMLUProBench\nclass Replay(MMLUProBench):\n    def get_image_name(self):\n        return 'benchflow-test/mmlu-pro-replay:1'\n"
    )
    monkeypatch.setenv("REPLAY_FILE", f"{HISTORY}{os.pathsep}{CS}")
    monkeypatch.setenv("DATA_FILE", "/data/history_result.json:/data/computer_science_result.json")
    # get_all_tasks runs on the host: it reads the same files there
    pytester.makeconftest("""
import os
def pytest_benchflow_task_environment(bench, task_id, env):
    env["DATA_FILE"] = "/data/history_result.json:/data/computer_science_result.json"
""")
    monkeypatch.setenv("DATA_FILE", f"{HISTORY}{os.pathsep}{CS}")
    result = pytester.runpytest_subprocess(
        "--benchflow=replay_bench.py:Replay",
        "--agent=example_bench.mmlu_pro.agents:ReplayAgent",
        "--benchflow-runner=docker",
        "--benchflow-arg=NUM_SHOTS=0",
        "-n",
        "2",
    )
    result.assert_outcomes(passed=2)
    (summary,) = pytester.path.glob(".benchflow/*/summary.json")
    breakdown = json.loads(summary.read_text())["benches"]["Replay"]["breakdown"]
    assert (breakdown["history"]["correct"], breakdown["computer_science"]["correct"]) == (267, 321)
    samples = json.loads(summary.read_text())["benches"]["Replay"]["samples"]
    assert (samples["samples"], samples["clusters"]) == (381 + 410, 2)
    assert samples["mean"] == pytest.approx((267 + 321) / (381 + 410))


LEGACY_ENTRY = """
import json, os
from benchflow import BenchClient

class Client(BenchClient):
    def prepare_input(self, raw):
        return {"question": raw["q"]}
    def parse_response(self, raw):
        return {"answer": raw}

task = os.environ["TEST_START_IDX"]
out = Client(os.environ["INTELLIGENCE_URL"]).get_response({"q": task})
os.makedirs("/app/results", exist_ok=True)
json.dump({"answer": out["answer"], "token_seen": False}, open("/app/results/result.json", "w"))
os.makedirs("/app/logs", exist_ok=True)
open("/app/logs/trace.txt", "w").write("legacy " + task)
"""


def test_image_using_published_benchflow_client_runs_unchanged(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = engine()
    wheel = legacy_wheel(tmp_path)
    dockerfile = (
        "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nCOPY wheels /tmp/wheels\n"
        "RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels "
        "requests pydantic PyYAML fastapi uvicorn docker && /opt/venv/bin/pip install -q --no-index --no-deps /tmp/wheels/"
        + wheel.name
        + "\n"
        'COPY entry.py /app/entry.py\nENTRYPOINT ["/opt/venv/bin/python", "/app/entry.py"]\n'
    )
    build(
        client,
        "benchflow-test/legacy:0.1.13",
        {"Dockerfile": dockerfile, "entry.py": LEGACY_ENTRY},
        wheel_requirements=["fastapi", "uvicorn", "docker"],
        extra={f"wheels/{wheel.name}": wheel},
    )
    docker_toy.makepyfile(
        legacy="from docker_toy import DockerToy\nclass Legacy(DockerToy):\n    def get_image_name(self):\n        return 'benchflow-test/legacy:0.1.13'\n"
    )
    monkeypatch.setenv("TOY_TASKS", '["one", "two"]')
    docker_toy.runpytest("--benchflow=legacy.py:Legacy", "--agent=docker_toy:Upper").assert_outcomes(passed=2)


class EngineOverTCP:
    """The local engine's API re-served on a loopback TCP port: DOCKER_HOST=tcp://… as for a remote engine."""

    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        import socket
        import threading

        self.socket_path = socket_path
        self.sockets: list[Any] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(self.socket_path)
            self.sockets += [client, engine]
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def kill(self) -> None:
        """The engine goes away: no new connection, and every open one is cut."""
        for s in (self.listener, *self.sockets):
            try:
                s.shutdown(2)  # wakes the accept() blocked in the other thread, unlike close()
            except OSError:
                pass
        self.listener.close()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(2)
                except OSError:
                    pass


def test_engine_named_by_docker_host_and_progress(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    engine()  # skip or fail as configured before touching the socket
    proxy = EngineOverTCP()
    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    monkeypatch.setenv("TOY_TASKS", '["alpha", "beta"]')
    result = docker_toy.runpytest_subprocess(*ARGS, "--benchflow-progress=always")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["DockerToy alpha: 1/1, *"])  # the container's progress line, shown live
    run_dir = run_dir_of(docker_toy)
    assert (run_dir / "DockerToy" / "logs" / "beta" / "trace.txt").read_text() == "trace of beta"
    proxy.listener.close()


def test_an_engine_that_dies_mid_task_ends_the_run_normally(
    docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = engine()
    proxy = EngineOverTCP()
    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    monkeypatch.setenv("TOY_TASKS", '["sleep"]')
    output = docker_toy.path / "out.txt"
    with open(output, "w") as out:
        proc = docker_toy.popen(
            [sys.executable, "-m", "pytest", *ARGS, "--benchflow-timeout=60", "--benchflow-rerun-infra=0"],
            stdout=out,
            stderr=out,
            preexec_fn=INTERRUPTIBLE["preexec_fn"],
        )
        found: list[Any] = []
        try:
            found.append(own_container(docker_toy, "sleep", proc, client))
            proxy.kill()
            # Cleanup cannot reach the engine: each Docker call gives up, is logged, and the run ends.
            assert proc.wait(timeout=120) == pytest.ExitCode.TESTS_FAILED
        finally:
            for container in found:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
    text = output.read_text()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    run_dir = run_dir_of(docker_toy)
    (record,) = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert record["outcome"] == "error" and f"lost the Docker engine {proxy.url} while it ran" in record["reason"]
    assert record["engine"] == proxy.url
    assert json.loads((run_dir / "summary.json").read_text())["benches"]["DockerToy"]["errors"] == 1
