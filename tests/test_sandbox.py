"""Sandboxes on a real engine: exec, files, snapshots, slots, env.sandbox in a task, the session's sweep."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from images import base_image, engine

from conftest import in_process_bench
from pytest_benchflow.runners.docker_sandbox import DockerSandbox, DockerSandboxProvider
from pytest_benchflow.sandbox import ExecResult, SandboxError, SandboxSpec
from pytest_benchflow.sandbox.output import HeadTail

pytestmark = pytest.mark.docker


def left_behind(run_id: str) -> tuple[list[Any], list[Any]]:
    """The run's sandbox containers and snapshot images still on the engine."""
    api = engine().api
    labels = [f"benchflow.run={run_id}", "benchflow.sandbox"]
    # A container whose removal was asked for and is under way (state "removing", on a loaded engine) is gone.
    containers = [c for c in api.containers(all=True, filters={"label": labels}) if c.get("State") != "removing"]
    return containers, api.images(filters={"label": labels})


@pytest.fixture(scope="module")
def image() -> str:
    return base_image(engine())


@pytest.fixture
def provider() -> Iterator[DockerSandboxProvider]:
    """A provider for a run of its own; at the end nothing of that run may be left on the engine."""
    made = DockerSandboxProvider(f"sandbox-test-{secrets.token_hex(4)}", slots=4)
    yield made
    made.close_all()
    made.sweep()
    assert left_behind(made.run_id) == ([], [])


@pytest.fixture
def box(provider: DockerSandboxProvider, image: str) -> Iterator[DockerSandbox]:
    with provider.open(SandboxSpec(image)) as opened:
        yield opened


def pids(box: DockerSandbox) -> list[str]:
    """The command lines of the sandbox's processes (but the container's own and the listing's)."""
    listing = box.exec("for p in /proc/[0-9]*; do echo $(tr '\\0' ' ' < $p/cmdline); done").stdout
    return [line for line in listing.splitlines() if line and "/proc/[0-9]" not in line and "86400" not in line]


def test_exec_exit_code_output_env_workdir_user_stdin(box: DockerSandbox) -> None:
    result = box.exec("echo out; echo err >&2; exit 3")
    assert result == ExecResult(3, "out\n", "err\n")
    assert not result.ok
    assert box.exec(["printf", "%s", "a b"]).stdout == "a b"
    assert box.exec("echo $GREETING", env={"GREETING": "hi"}).stdout == "hi\n"
    assert box.exec("pwd", workdir="/tmp").stdout == "/tmp\n"
    assert box.exec("id -u", user="65534").stdout == "65534\n"
    assert box.exec("wc -c", stdin=b"x" * 100_000).stdout.strip() == "100000"
    assert box.exec("cat", stdin="line\n").stdout == "line\n"


def test_timeout_kills_the_whole_tree_children_and_their_daemons(box: DockerSandbox) -> None:
    started = time.monotonic()
    result = box.exec(
        "echo started; sh -c 'sleep 1001 & sleep 1002' & setsid sleep 1003 >/dev/null 2>&1 & sleep 1004", timeout=2
    )
    assert result.timed_out and result.exit_code == 124 and not result.ok
    assert result.stdout == "started\n"  # what came before the limit is kept
    assert time.monotonic() - started < 60
    assert [p for p in pids(box) if "100" in p] == []  # every process of the tree, setsid's daemon included
    assert box.exec("echo still usable").stdout == "still usable\n"


def test_a_daemon_left_behind_does_not_keep_exec_waiting(box: DockerSandbox) -> None:
    # The daemon holds the exec's output open; the engine gives up waiting for it ~2 s after the command exits.
    result = box.exec("sleep 1000 & echo served", timeout=60)
    assert result == ExecResult(0, "served\n", "")
    assert any("sleep 1000" in p for p in pids(box))  # left running, as an agent's server should be
    quiet = box.exec("nohup sleep 1000 >/dev/null 2>&1 & echo quiet", timeout=60)
    assert quiet.stdout == "quiet\n"


def test_output_beyond_the_cap_is_cut_in_the_middle_and_marked(box: DockerSandbox) -> None:
    result = box.exec("seq 1 200000; seq 1 10 >&2", output_cap=1000)
    assert result.truncated and result.exit_code == 0
    assert result.stdout.startswith("1\n2\n3\n") and result.stdout.endswith("199999\n200000\n")
    assert "bytes of output cut here]" in result.stdout and len(result.stdout) < 1100
    assert result.stderr == "".join(f"{i}\n" for i in range(1, 11))


def test_head_tail_keeps_memory_bounded() -> None:
    kept = HeadTail(100)
    for _ in range(10_000):
        kept.write(b"x" * 1000)
    assert kept.total == 10_000_000 and kept.truncated
    assert len(kept._tail) <= 2 * 50 + 1000 and len(kept._head) == 50
    assert kept.value() == b"x" * 50 + b"\n[benchflow: 9999900 bytes of output cut here]\n" + b"x" * 50
    small = HeadTail(100)
    small.write(b"abc")
    small.write(b"def")
    assert small.value() == b"abcdef" and not small.truncated


def test_files_write_read_cap_upload_download(box: DockerSandbox, tmp_path: Path) -> None:
    box.write_file("/work/deep/er/note.txt", "hello")  # parents created
    assert box.read_file("/work/deep/er/note.txt") == b"hello"
    assert box.read_file("/work/deep/er/note.txt", max_bytes=2) == b"he"
    box.exec("head -c 50000000 /dev/zero > /work/big")
    assert box.read_file("/work/big", max_bytes=10) == b"\0" * 10
    with pytest.raises(SandboxError, match="no such file"):
        box.read_file("/work/missing")
    with pytest.raises(SandboxError, match="not a regular file"):
        box.read_file("/work/deep")
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    box.upload(source, "/work/project")
    assert box.exec("cat /work/project/pkg/mod.py").stdout == "x = 1\n"
    box.exec("ln -s /etc/passwd /work/project/escape; ln -s pkg/mod.py /work/project/inside")
    with pytest.raises(Exception, match="escape"):  # a link out of the destination is refused, as for results
        box.download("/work/project", tmp_path / "out")
    box.exec("rm /work/project/escape")
    box.download("/work/project", tmp_path / "out2")
    assert (tmp_path / "out2" / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert (tmp_path / "out2" / "inside").read_text() == "x = 1\n"


def test_snapshot_has_the_files_and_none_of_the_processes(provider: DockerSandboxProvider, box: DockerSandbox) -> None:
    box.exec("echo result > /work.txt; sleep 1000 >/dev/null 2>&1 &")
    with box.snapshot() as verifier:
        assert verifier.exec("cat /work.txt").stdout == "result\n"
        assert not [p for p in pids(verifier) if "sleep 1000" in p]
        assert verifier.engine == box.engine
    # The snapshot's image went with it; the agent's sandbox is untouched.
    assert left_behind(provider.run_id)[1] == []
    assert box.exec("cat /work.txt").stdout == "result\n"


def test_closed_sandbox_is_gone_and_says_so(provider: DockerSandboxProvider, image: str) -> None:
    box = provider.open(SandboxSpec(image))
    box.close()
    box.close()  # idempotent
    assert left_behind(provider.run_id)[0] == []
    with pytest.raises(SandboxError, match="closed"):
        box.exec("true")


def test_closing_from_another_thread_ends_a_running_exec(provider: DockerSandboxProvider, image: str) -> None:
    box = provider.open(SandboxSpec(image))
    closer = threading.Timer(2, box.close)
    closer.start()
    with pytest.raises(SandboxError):
        box.exec("sleep 1000")
    closer.join()  # its removal done: the provider fixture then finds nothing left


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"network": "host"}, "network 'host'"),
        ({"cpus": 0}, "cpus=0"),
        ({"memory_mb": "lots"}, "memory_mb='lots'"),
        ({"image": ""}, "give an image name"),
    ],
)
def test_bad_spec_is_one_line(provider: DockerSandboxProvider, image: str, spec: dict[str, Any], match: str) -> None:
    from pytest_benchflow.sandbox import SandboxSpecError

    with pytest.raises(SandboxSpecError, match=match):  # the bench's error, not rerun as infra
        provider.open(SandboxSpec(**{"image": image, **spec}))


def test_missing_image_is_named(image: str) -> None:
    provider = DockerSandboxProvider(f"sandbox-test-{secrets.token_hex(4)}", pull="never")
    with pytest.raises(SandboxError, match=r"not present on .*--benchflow-pull=never"):
        provider.open(SandboxSpec("benchflow-test/no-such-image:404"))
    provider.sweep()


def test_sandboxes_of_one_group_share_a_slot_others_wait(image: str) -> None:
    provider = DockerSandboxProvider(f"sandbox-test-{secrets.token_hex(4)}", slots=1)
    try:
        agent = provider.open(SandboxSpec(image, group="task-a"))
        verifier = provider.open(SandboxSpec(image, group="task-a"))  # would deadlock with a slot each
        opened: list[DockerSandbox] = []
        other = threading.Thread(target=lambda: opened.append(provider.open(SandboxSpec(image, group="task-b"))))
        other.start()
        other.join(3)
        assert other.is_alive() and not opened  # the one slot is task-a's
        agent.close()
        verifier.close()
        other.join(60)
        assert opened and opened[0].exec("true").ok
    finally:
        provider.close_all()
        provider.sweep()
    assert left_behind(provider.run_id) == ([], [])


def test_container_is_locked_down(provider: DockerSandboxProvider, image: str) -> None:
    with provider.open(SandboxSpec(image, cpus=0.5, memory_mb=256, pids=64)) as box:
        info = engine().api.inspect_container(box.id)
        host = info["HostConfig"]
        assert host["NetworkMode"] == "none" and not host["Privileged"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert set(host["CapDrop"]) >= {"NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"}
        assert host["Memory"] == 256 << 20 and host["MemorySwap"] == 256 << 20
        assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 64
        assert not host["Binds"] and not info["Mounts"]
        assert info["Config"]["Labels"]["benchflow.run"] == provider.run_id


SANDBOX_BENCH = in_process_bench(
    "SandboxBench",
    """
    def evaluate(env):
        image = os.environ["SANDBOX_IMAGE"]
        box = env.sandbox(image, cpus=1, memory_mb=512)
        answer = box.exec("echo $((6 * 7))").stdout.strip()
        box.exec("echo " + answer + " > /answer")
        with box.snapshot() as verifier:
            checked = verifier.exec("cat /answer").stdout.strip()
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps({"answer": checked, "engine": box.engine}))
        if env["TEST_START_ID"] == "forgets":
            box.exec("sleep 1000 >/dev/null 2>&1 &")  # and never closes it
        if env["TEST_START_ID"] == "hangs":
            box.exec("sleep 1000")
    """,
    """
    data = json.loads(Path(self.results_dir, "r.json").read_text())
    return {"is_resolved": data["answer"] == "42", "metrics": {}}
    """,
    tasks=("closes", "forgets", "hangs"),
)


def test_env_sandbox_in_a_task_labelled_and_closed_at_task_end(
    pytester: pytest.Pytester, image: str, echo_agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(sandbox_bench=SANDBOX_BENCH)
    monkeypatch.setenv("SANDBOX_IMAGE", image)
    seen: list[dict[str, str]] = []
    stop = threading.Event()

    def watch() -> None:  # the labels of the sandboxes while the session runs
        while not stop.is_set():
            for c in engine().api.containers(filters={"label": "benchflow.sandbox"}):
                if c["Labels"].get("benchflow.bench") == "SandboxBench":
                    seen.append(c["Labels"])
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = pytester.runpytest_subprocess(
            "--benchflow=sandbox_bench.py:SandboxBench", f"--agent-url={echo_agent}", "--benchflow-timeout=30", "-rA"
        )
    finally:
        stop.set()
        watcher.join()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*hangs*timed out after 30 s*"])
    (run_dir,) = (pytester.path / ".benchflow").iterdir()
    assert left_behind(run_dir.name) == ([], [])
    assert {label["benchflow.task"] for label in seen} >= {"closes", "forgets"}
    assert all(label["benchflow.run"] == run_dir.name for label in seen)


def test_unknown_sandbox_provider_is_a_usage_error(pytester: pytest.Pytester, echo_agent: str) -> None:
    pytester.makepyfile(sandbox_bench=SANDBOX_BENCH)
    result = pytester.runpytest_subprocess(
        "--benchflow=sandbox_bench.py:SandboxBench", f"--agent-url={echo_agent}", "--benchflow-sandbox=k8s"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--benchflow-sandbox 'k8s': choose one of docker*"])


def test_env_sandbox_without_a_provider_says_why() -> None:
    from pytest_benchflow.environment import TaskEnvironment

    with pytest.raises(SandboxError, match="pytest --benchflow"):
        TaskEnvironment().sandbox("python:3.12-slim")


def test_a_sandbox_that_cannot_open_is_an_infra_error_rerun_once(
    pytester: pytest.Pytester, echo_agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(sandbox_bench=SANDBOX_BENCH)
    monkeypatch.setenv("SANDBOX_IMAGE", "benchflow-test/no-such-image:0")
    result = pytester.runpytest_subprocess(
        "--benchflow=sandbox_bench.py:SandboxBench",
        f"--agent-url={echo_agent}",
        "--benchflow-pull=never",
        "-k",
        "closes",
    )
    result.assert_outcomes(errors=1)
    (run_dir,) = (pytester.path / ".benchflow").iterdir()
    (record,) = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert record["error_kind"] == "infra" and "no-such-image" in record["reason"]
    assert [a["error_kind"] for a in record["attempts"]] == ["infra"]  # run again once, by default


def test_a_sandbox_asked_for_wrongly_is_the_benchs_error() -> None:
    from pytest_benchflow.errors import error_kind
    from pytest_benchflow.sandbox import SandboxSpecError

    assert error_kind(SandboxError("the engine went away")) == "infra"
    assert error_kind(SandboxSpecError("sandbox network 'wifi': choose 'none' or 'bridge'")) == "bench"
