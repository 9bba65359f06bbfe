"""Several Docker engines in one session: tasks spread over them, start-up checks, images per engine, an engine lost mid-run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from container_toy import ARGS, TOY_IMAGE, junit
from images import ROOT, _unavailable, engine

from conftest import INTERRUPTIBLE, RawServer, runs_by_start

pytestmark = pytest.mark.docker

SCRIPT = ROOT / "scripts" / "docker-engine.sh"
MAIN = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
D2 = "unix:///run/benchflow-d2/docker.sock"  # where scripts/docker-engine.sh starts engine d2


EXTRA_ENGINES = "BENCHFLOW_TEST_EXTRA_ENGINES"


def _asked_for_extra_engines() -> None:
    """Starting engines is for CI and who asks: anyone else's test run leaves their machine as it was."""
    if os.environ.get(EXTRA_ENGINES) != "1":
        pytest.skip(f"starts an extra Docker engine (root): run with {EXTRA_ENGINES}=1 (CI does)")
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        _unavailable("an extra Docker engine needs root and dockerd")


def _engine_script(*args: str, host: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"TARGET_HOST": host} if host else {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _answers(host: str) -> bool:
    try:
        with contextlib.closing(docker.DockerClient(base_url=host, timeout=10)) as client:
            return bool(client.ping())
    except Exception:
        return False


def _start(name: str) -> str:
    started = _engine_script("start", name)
    if started.returncode:
        _unavailable(f"Docker engine {name} did not start: {started.stderr.strip()[-300:]}")
    return started.stdout.strip()


def load_images(host: str, *images: str) -> None:
    """Copy ``images`` from the main engine into the engine at ``host``, unless it holds them already;
    the versions they replace there are removed (nothing left dangling)."""
    main, other = engine(), docker.DockerClient(base_url=host)
    try:
        for image in images:
            wanted = main.images.get(image).id
            try:
                old = other.images.get(image).id
            except docker.errors.ImageNotFound:
                old = None
            if old == wanted:
                continue
            loaded = _engine_script("load", "target", image, host=host, timeout=600)
            assert loaded.returncode == 0, loaded.stderr
            if old:
                with contextlib.suppress(docker.errors.APIError):
                    other.images.remove(old)
    finally:
        other.close()
        main.close()


@pytest.fixture
def private_engine() -> Iterator[Callable[[str], str]]:
    """Starts engines of this test's own (by name), each stopped when the test ends whatever happens."""
    _asked_for_extra_engines()
    names: list[str] = []

    def start(name: str, *images: str) -> str:
        names.append(name)
        host = _start(name)
        load_images(host, *images)
        return host

    yield start
    for name in names:
        _engine_script("stop", name)


@pytest.fixture(scope="session")
def second_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The second engine CI starts (``BENCHFLOW_DOCKER_HOST_2``), or one started here and stopped at the
    end, with the test images. xdist workers share it: the last one done stops it, if one of them started it."""
    given = os.environ.get("BENCHFLOW_DOCKER_HOST_2")
    if not given:
        _asked_for_extra_engines()  # before building images it would not need
    toy_image, mmlu_image = request.getfixturevalue("toy_image"), request.getfixturevalue("mmlu_image")
    if given:
        load_images(given, toy_image, mmlu_image)
        yield given
        return
    base = Path(tempfile.gettempdir()) / "benchflow-test-engine-d2"
    with open(f"{base}.lock", "w") as starting:
        fcntl.flock(starting, fcntl.LOCK_EX)
        # Not running: this run starts it, so this run stops it (the marker names the run: one left
        # by a run that crashed does not make this run stop an engine someone else started).
        run, ours = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid()), Path(f"{base}.ours")
        if not _answers(D2):
            ours.write_text(run)
        elif ours.exists() and ours.read_text() != run:
            ours.unlink()
        host = _start("d2")
        users = open(f"{base}.users", "w")  # held for the whole session
        fcntl.flock(users, fcntl.LOCK_SH)
    try:
        load_images(host, toy_image, mmlu_image)
        yield host
    finally:
        with open(f"{base}.lock", "w") as starting:
            fcntl.flock(starting, fcntl.LOCK_EX)
            users.close()
            with open(f"{base}.users", "w") as last:
                try:
                    fcntl.flock(last, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another worker of this run still uses it
                if ours.exists():
                    _engine_script("stop", "d2")
                    ours.unlink()


# A bench that runs only in a container (whose image no test needs: these sessions stop before any task).
IMAGE_BENCH = """
from pytest_benchflow import BaseAgent, BaseBench, BenchArgs

class B(BaseBench):
    def get_args(self, t): return BenchArgs(None)
    def get_image_name(self): return "x"
    def get_results_dir_in_container(self): return "/r"
    def get_log_files_dir_in_container(self): return "/l"
    def get_all_tasks(self, s): return {"task_ids": ["t"], "error_message": None}
    def get_result(self, t): return {"is_resolved": True, "metrics": {}}

class A(BaseAgent):
    def call_api(self, i): return "x"
"""


def wait_for_running(pytester: pytest.Pytester, proc: Any, host: str, count: int) -> Path:
    """The run directory of ``proc``'s session, once ``count`` of its containers run on ``host``."""
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline and proc.poll() is None
        runs = list(pytester.path.glob(".benchflow/2*"))
        if runs and len([c for c in labelled(host, runs[0]) if c["State"] == "running"]) >= count:
            return runs[0]
        time.sleep(0.2)


def kill_mid_run(
    pytester: pytest.Pytester, command: list[str], name: str, host: str, running: int, exit_code: int = 1
) -> Path:
    """Run ``command``, SIGKILL engine ``name`` once ``running`` of its containers run; the run directory."""
    proc = pytester.popen(command, **INTERRUPTIBLE)
    try:
        run = wait_for_running(pytester, proc, host, running)
        subprocess.run(["bash", str(SCRIPT), "kill", name], check=True, timeout=120)
        assert proc.wait(timeout=300) == exit_code
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["bash", str(SCRIPT), "stop", name], timeout=120)
    return run


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def labelled(host: str, run: Path) -> list[dict[str, Any]]:
    """The run's containers on ``host`` (one listing, no inspection: a container removed meanwhile is simply not there)."""
    client = docker.APIClient(base_url=host)
    try:
        found: list[dict[str, Any]] = client.containers(all=True, filters={"label": f"benchflow.run={run.name}"})
        return found
    finally:
        client.close()


def test_mmlu_pro_spreads_over_two_engines_and_scores_as_in_process(
    pytester: pytest.Pytester, mmlu_image: str, second_engine: str
) -> None:
    common = ["--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent", "-p", "no:randomly"]
    pytester.runpytest_subprocess(*common, "--benchflow-runner=local", "--junitxml=local.xml")
    result = pytester.runpytest_subprocess(
        *common,
        "--benchflow-runner=docker",
        f"--benchflow-docker-host={MAIN}",
        f"--benchflow-docker-host={second_engine}",
        "--benchflow-docker-slots=1",
        "-n",
        "2",
        "--junitxml=docker.xml",
        "--benchflow-html=report.html",
    )
    assert result.parseoutcomes().get("errors") is None
    assert junit(pytester.path / "local.xml") == junit(pytester.path / "docker.xml")
    run = runs_by_start(pytester)[-1]
    by_engine: dict[str, int] = {}
    for record in records(run):
        by_engine[record["engine"]] = by_engine.get(record["engine"], 0) + 1
    assert set(by_engine) == {MAIN, second_engine} and sum(by_engine.values()) == 14
    engines = json.loads((run / "summary.json").read_text())["benches"]["mmlu_pro"]["engines"]
    assert {url: row["tasks"] for url, row in engines.items()} == by_engine
    (line,) = [line for line in result.outlines if line.startswith("  engines: ")]
    assert all(f"{url} {n} tasks, " in line for url, n in by_engine.items())
    page = (pytester.path / "report.html").read_text()
    assert page.count('<tr class="engine">') == 2
    assert all(f'<td>{url}</td><td class="num">{n}</td>' in page for url, n in by_engine.items())
    assert labelled(MAIN, run) == [] and labelled(second_engine, run) == []


def test_an_image_missing_on_one_engine_with_pull_never_names_that_engine(
    docker_toy: pytest.Pytester, toy_image: str, second_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine().images.get(toy_image).tag("benchflow-test/only-main", "1")
    (docker_toy.path / "docker_toy.py").write_text(
        (docker_toy.path / "docker_toy.py").read_text().replace(TOY_IMAGE, "benchflow-test/only-main:1")
    )
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(6)]))
    monkeypatch.setenv("NAP", "1")
    hosts = [f"--benchflow-docker-host={MAIN}", f"--benchflow-docker-host={second_engine}"]
    common = [*ARGS, *hosts, "--benchflow-docker-slots=1", "--benchflow-pull=never", "-n", "2"]
    missing = f"image 'benchflow-test/only-main:1' is not present on {second_engine} and --benchflow-pull=never"
    try:
        result = docker_toy.runpytest_subprocess(*common, "--benchflow-rerun-infra=0")
        run = runs_by_start(docker_toy)[-1]
        # Rerun (the default): each task that met the missing image runs again, on the other engine.
        rerun = docker_toy.runpytest_subprocess(*common)
    finally:
        engine().images.remove("benchflow-test/only-main:1")  # the tag only: the image is the toy's
    found = records(run)
    assert {r["engine"] for r in found if r["outcome"] == "passed"} == {MAIN}
    errors = [r for r in found if r["outcome"] == "error"]
    assert errors and all(r["engine"] == second_engine for r in errors)
    assert all(r["reason"] == missing and r["error_kind"] == "infra" for r in errors)
    assert result.ret == 1
    assert rerun.ret == 0
    again = records(runs_by_start(docker_toy)[-1])
    assert all(r["outcome"] == "passed" and r["engine"] == MAIN for r in again)
    rerun_tasks = [r for r in again if "attempts" in r]
    assert all(
        r["attempts"][0]["engine"] == second_engine and r["attempts"][0]["reason"] == missing for r in rerun_tasks
    )


def test_an_engine_killed_mid_run_fails_only_its_tasks(
    docker_toy: pytest.Pytester, toy_image: str, monkeypatch: pytest.MonkeyPatch, private_engine: Any
) -> None:
    doomed = private_engine("d3", toy_image)
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(10)]))
    monkeypatch.setenv("NAP", "6")
    command = [
        sys.executable,
        "-m",
        "pytest",
        *ARGS,
        f"--benchflow-docker-host={MAIN}",
        f"--benchflow-docker-host={doomed}",
        "--benchflow-docker-slots=2",
        "-n",
        "4",
    ]
    run = kill_mid_run(docker_toy, [*command, "--benchflow-rerun-infra=0"], "d3", doomed, running=2)
    found = records(run)
    assert len(found) == 10
    lost = [r for r in found if r["outcome"] == "error"]
    assert len(lost) == 2, found
    assert all(r["engine"] == doomed and r["error_kind"] == "infra" for r in lost)
    assert all(f"lost the Docker engine {doomed} while it ran" in r["reason"] for r in lost)
    # Every other task ran, on the engine that remained, and left no container behind.
    assert {r["engine"] for r in found if r["outcome"] == "passed"} == {MAIN} and len(found) - len(lost) == 8
    assert labelled(MAIN, run) == []


def test_an_engine_killed_mid_run_with_a_rerun_ends_with_no_error(
    docker_toy: pytest.Pytester, toy_image: str, monkeypatch: pytest.MonkeyPatch, private_engine: Any
) -> None:
    # An engine of its own (d5): the tests around kill d3 and d4, perhaps at the same time in another worker.
    doomed = private_engine("d5", toy_image)
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(6)]))
    monkeypatch.setenv("NAP", "6")
    hosts = [f"--benchflow-docker-host={MAIN}", f"--benchflow-docker-host={doomed}"]
    command = [sys.executable, "-m", "pytest", *ARGS, *hosts, "--benchflow-docker-slots=2", "-n", "4"]
    run = kill_mid_run(docker_toy, [*command, "--benchflow-rerun-infra=1"], "d5", doomed, running=2, exit_code=0)
    found = records(run)
    assert len(found) == 6 and all(r["outcome"] == "passed" and r["engine"] == MAIN for r in found), found
    rerun = [r for r in found if "attempts" in r]
    assert len(rerun) == 2
    for record in rerun:
        (attempt,) = record["attempts"]
        assert (attempt["error_kind"], attempt["engine"]) == ("infra", doomed)
        assert f"lost the Docker engine {doomed} while it ran" in attempt["reason"]
    bench = json.loads((run / "summary.json").read_text())["benches"]["DockerToy"]
    assert (bench["errors"], bench["reruns"]) == (0, 2)
    assert labelled(MAIN, run) == []


def test_when_the_only_engine_dies_the_remaining_tasks_say_so(
    docker_toy: pytest.Pytester, toy_image: str, monkeypatch: pytest.MonkeyPatch, private_engine: Any
) -> None:
    # An engine of its own (d4): the test above kills d3, perhaps at the same time in another worker.
    only = private_engine("d4", toy_image)
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(4)]))
    monkeypatch.setenv("NAP", "30")
    command = [sys.executable, "-m", "pytest", *ARGS, f"--benchflow-docker-host={only}", "--benchflow-docker-slots=1"]
    command.append("--benchflow-rerun-infra=0")  # the first task's own error, not its rerun's
    first, *rest = records(kill_mid_run(docker_toy, command, "d4", only, running=1))
    assert first["outcome"] == "error" and f"lost the Docker engine {only} while it ran" in first["reason"]
    assert len(rest) == 3 and all(r["outcome"] == "error" for r in rest)
    assert all(r["reason"].startswith(f"no Docker engine left to run the task ({only}: ") for r in rest)
    assert all(r["error_kind"] == "infra" for r in [first, *rest])


def test_interrupting_removes_the_containers_on_every_engine(
    docker_toy: pytest.Pytester, second_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps([f"nap{i}" for i in range(4)]))
    monkeypatch.setenv("NAP", "60")
    hosts = [f"--benchflow-docker-host={MAIN}", f"--benchflow-docker-host={second_engine}"]
    command = [sys.executable, "-m", "pytest", *ARGS, *hosts, "--benchflow-docker-slots=1", "-n", "2"]
    proc = docker_toy.popen(command, **INTERRUPTIBLE)
    try:
        run = wait_for_running(docker_toy, proc, MAIN, 1)
        wait_for_running(docker_toy, proc, second_engine, 1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert labelled(MAIN, run) == [] and labelled(second_engine, run) == []
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True


def test_start_up_checks_are_usage_errors(
    docker_toy: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_TASKS", json.dumps(["nap0"]))  # the tasks are listed first, then the engines checked
    silent = f"unix://{tmp_path}/nobody.sock"
    result = docker_toy.runpytest_subprocess(
        *ARGS, f"--benchflow-docker-host={MAIN}", f"--benchflow-docker-host={silent}"
    )
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [f"*Docker engine not answering: {silent} (*); start it or leave it out of --benchflow-docker-host*"]
    )
    assert not list(docker_toy.path.glob(".benchflow/2*"))
    # A loopback agent cannot be reached from a machine of its own: said before anything runs.
    remote = docker_toy.runpytest_subprocess(*ARGS, "--benchflow-docker-host=tcp://192.0.2.7:2376")
    assert remote.ret == 4
    remote.stderr.fnmatch_lines(
        ["*is on this machine's loopback, which containers on tcp://192.0.2.7:2376 cannot reach; give an --agent-url*"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--benchflow-docker-host=http//oops"], "--benchflow-docker-host 'http//oops': not an engine URL"),
        (["--benchflow-docker-host=ftp://h"], "--benchflow-docker-host 'ftp://h': not an engine URL"),
        (["--benchflow-docker-slots=0"], "--benchflow-docker-slots = '0': expected a positive whole number"),
        (["--benchflow-docker-slots=many"], "--benchflow-docker-slots = 'many': expected a positive whole number"),
    ],
)
def test_bad_engine_settings_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    # No engine needed: settings are checked before anything connects.
    pytester.makepyfile(img=IMAGE_BENCH)
    result = pytester.runpytest_subprocess("--benchflow=img.py:B", "--agent-url=http://127.0.0.1:9", *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_an_ssh_engine_without_paramiko_says_how_to_install_it(pytester: pytest.Pytester) -> None:
    # No engine needed. paramiko is not a dependency (the `ssh` extra): here it cannot be imported.
    pytester.makepyfile(img=IMAGE_BENCH, paramiko="raise ImportError('no paramiko here')")
    result = pytester.runpytest_subprocess(
        "--benchflow=img.py:B", "--agent-url=http://127.0.0.1:9", "--benchflow-docker-host=ssh://bench@10.0.0.6"
    )
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [
            "ERROR: --benchflow-docker-host 'ssh://10.0.0.6': ssh:// engines need the paramiko package: "
            "pip install paramiko (or, in the clone, pip install -e '.[ssh]')"
        ]
    )
    assert "not answering" not in result.stderr.str()


@pytest.mark.parametrize("kind", ["silent", "web page"])
def test_something_else_at_an_engine_url_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path, kind: str) -> None:
    # No engine needed: the session must stop at its start-up check, within the probe's timeout.
    web_page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
    impostor = RawServer(web_page if kind == "web page" else None, tmp_path / "engine.sock")
    pytester.makepyfile(img=IMAGE_BENCH)
    url = impostor.url
    try:
        started = time.monotonic()
        result = pytester.runpytest_subprocess(
            "--benchflow=img.py:B", "--agent=img:A", f"--benchflow-docker-host={url}"
        )
        took = time.monotonic() - started
    finally:
        impostor.close()
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: Docker engine not answering: {url} (*); start it or leave it out of *"])
    assert took < 30 and "Traceback" not in result.stderr.str()
    assert not list(pytester.path.glob(".benchflow/2*"))


def test_ini_names_several_engines(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeini(f"[pytest]\nbenchflow_docker_hosts = unix://{tmp_path}/a.sock\n  unix://{tmp_path}/b.sock\n")
    pytester.makepyfile(img=IMAGE_BENCH)
    result = pytester.runpytest_subprocess("--benchflow=img.py:B", "--agent=img:A")
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [f"*Docker engines not answering: unix://{tmp_path}/a.sock (*); unix://{tmp_path}/b.sock (*)*"]
    )


def test_a_resumed_run_starts_with_no_engine_lost(docker_toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_benchflow.runners.docker import DockerRunner

    engine()
    monkeypatch.setenv("TOY_TASKS", '["alpha"]')
    docker_toy.runpytest_subprocess(*ARGS).assert_outcomes(passed=1)
    (run,) = docker_toy.path.glob(".benchflow/2*")
    # A session of this run that was killed left its engine marked lost in the run's slot directory.
    crashed = DockerRunner(run.name)
    crashed.pool.lost(crashed.pool.engines[0], "connection refused")
    monkeypatch.setenv("TOY_TASKS", '["alpha", "beta"]')
    docker_toy.runpytest_subprocess(*ARGS, f"--benchflow-resume={run}").assert_outcomes(passed=1)
    by_task = {r["task_id"]: r for r in records(run)}
    assert by_task["beta"]["outcome"] == "passed" and by_task["beta"]["engine"] == MAIN
