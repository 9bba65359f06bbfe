"""What a hostile command does inside a sandbox, each on a real engine: contained, the test ends, nothing left."""

from __future__ import annotations

import resource
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from images import base_image, engine
from test_sandbox import SANDBOX_BENCH, left_behind, pids

from conftest import INTERRUPTIBLE
from pytest_benchflow.runners.docker_sandbox import DockerSandbox, DockerSandboxProvider
from pytest_benchflow.sandbox import SandboxSpec

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image() -> str:
    return base_image(engine())


@pytest.fixture
def provider() -> Iterator[DockerSandboxProvider]:
    made = DockerSandboxProvider(f"sandbox-attack-{secrets.token_hex(4)}", slots=4)
    yield made
    made.close_all()
    made.sweep()
    assert left_behind(made.run_id) == ([], [])  # no container, no snapshot image


@pytest.fixture
def box(provider: DockerSandboxProvider, image: str) -> Iterator[DockerSandbox]:
    with provider.open(SandboxSpec(image, pids=64, memory_mb=256, max_file_mb=10)) as opened:
        opened.exec("echo kept > /kept")
        yield opened
        # Whatever the attack did, the sandbox still answers and its files are there.
        assert opened.exec("cat /kept", timeout=60).stdout == "kept\n"


def test_fork_bomb_is_held_by_the_pids_limit_and_killed_at_the_timeout(box: DockerSandbox) -> None:
    # bash retries a failed fork instead of giving up: the bomb lasts until something kills it.
    result = box.exec("bash -c 'while :; do sleep 1000 & done'", timeout=5)
    assert result.timed_out and result.exit_code == 124
    assert "Resource temporarily unavailable" in result.stderr  # it hit the limit
    assert not [p for p in pids(box) if "sleep 1000" in p]
    classic = box.exec("f(){ f|f& }; f", timeout=10)  # dash gives up on its own once the limit is reached
    assert classic.exit_code is not None


def test_yes_without_end_is_cut_and_stopped(box: DockerSandbox) -> None:
    result = box.exec("yes", timeout=3, output_cap=4096)
    assert result.timed_out and result.truncated
    assert result.stdout.startswith("y\ny\n") and "bytes of output cut here]" in result.stdout
    assert len(result.stdout) < 4200
    assert not [p for p in pids(box) if p.startswith("yes")]


def test_sleep_infinity_times_out_and_a_daemon_does_not_hold_the_task(
    provider: DockerSandboxProvider, box: DockerSandbox
) -> None:
    started = time.monotonic()
    assert box.exec("sleep infinity", timeout=2).timed_out
    daemon = box.exec("setsid sh -c 'while :; do sleep 1; done' & echo started", timeout=30)
    assert daemon.stdout == "started\n" and not daemon.timed_out  # the engine stops waiting for its output
    assert time.monotonic() - started < 60
    # Closing the sandbox (the provider fixture checks) removes the daemon with the container.


def test_filling_the_disk_stops_at_the_file_size_limit(box: DockerSandbox) -> None:
    result = box.exec("head -c 100M /dev/zero > /big; echo status=$?; stat -c %s /big", timeout=60)
    lines = result.stdout.split()
    assert lines[0] == "status=153"  # SIGXFSZ: the file size limit (max_file_mb=10) ended the writer
    assert int(lines[1]) == 10 << 20
    assert "File size limit exceeded" in result.stderr


def test_ten_gigabytes_on_stdout_are_cut_with_bounded_memory(box: DockerSandbox) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = box.exec("head -c 10G /dev/zero; echo done >&2", timeout=60)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.truncated and len(result.stdout) < 1024 * 1024 + 100  # 1 MiB kept, the rest cut and marked
    assert "bytes of output cut here]" in result.stdout
    assert result.timed_out or result.stderr == "done\n"  # all read, or stopped at the limit on a slow machine
    assert grown_mb < 100, f"the harness grew by {grown_mb:.0f} MB reading it"


def test_no_secret_of_the_harness_is_inside(
    provider: DockerSandboxProvider, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-harness-{secrets.token_hex(8)}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("INTELLIGENCE_URL", f"http://user:{secret}@127.0.0.1:1")
    with provider.open(SandboxSpec(image, env={"TASK_VAR": "given"})) as box:
        found = box.exec(
            "env; cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; "
            "grep -rsal " + secret + " /proc/[0-9]*/environ /proc/[0-9]*/cmdline /etc /root /tmp; true",
            timeout=60,
        )
        assert secret not in found.stdout + found.stderr
        assert "TASK_VAR=given" in found.stdout  # what the bench gave is there, nothing else of the host's
        assert "INTELLIGENCE_URL" not in found.stdout and "OPENAI_API_KEY" not in found.stdout
        config_env = engine().api.inspect_container(box.id)["Config"]["Env"]
        assert not [e for e in config_env if secret in e or e.startswith(("OPENAI", "INTELLIGENCE"))]


@pytest.mark.parametrize("network", ["none", "bridge"])
def test_the_agent_url_and_the_docker_socket_are_out_of_reach(
    provider: DockerSandboxProvider, image: str, echo_agent: str, network: str
) -> None:
    port = echo_agent.rsplit(":", 1)[1]
    probe = (
        "import socket, sys\n"
        "for host in sys.argv[1:]:\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=3).close(); print('reached', host)\n"
        "    except OSError as e:\n"
        "        print('refused', host, type(e).__name__)\n"
    )
    with provider.open(SandboxSpec(image, network=network)) as box:  # type: ignore[arg-type]
        gateway = box.exec("ip route 2>/dev/null | awk '/default/ {print $3}'").stdout.strip() or "172.17.0.1"
        reached = box.exec(["python3", "-c", probe, "127.0.0.1", "localhost", gateway, "host.docker.internal"])
        assert "reached" not in reached.stdout, reached.stdout
        sockets = box.exec(
            "ls -la /var/run/docker.sock /run/docker.sock 2>&1; echo DOCKER_HOST=$DOCKER_HOST; "
            "find / -xdev -name 'docker*.sock' 2>/dev/null"
        )
        assert "No such file" in sockets.stdout and "DOCKER_HOST=\n" in sockets.stdout
        assert sockets.stdout.count(".sock") == 2  # only ls's two complaints: no socket anywhere
        mounts = box.exec("cat /proc/mounts").stdout
        assert "docker.sock" not in mounts


def test_kill_everything_from_inside_leaves_the_sandbox_working(box: DockerSandbox) -> None:
    box.exec("sleep 1000 >/dev/null 2>&1 &")
    result = box.exec("kill -9 -1; sleep 0.5; echo after", timeout=30)
    assert not result.timed_out
    assert not [p for p in pids(box) if "sleep 1000" in p]
    # The container's first process is the namespace's init: kill -9 -1 from inside cannot end it.
    assert box.exec("echo alive").stdout == "alive\n"
    assert engine().api.inspect_container(box.id)["State"]["Running"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_session_leaves_no_sandbox(
    pytester: pytest.Pytester, image: str, echo_agent: str, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    pytester.makepyfile(sandbox_bench=SANDBOX_BENCH)
    monkeypatch.setenv("SANDBOX_IMAGE", image)
    proc = pytester.popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--benchflow=sandbox_bench.py:SandboxBench",
            f"--agent-url={echo_agent}",
            "-k",
            "hangs",
        ],
        **INTERRUPTIBLE,
    )
    run_id = _running_sandbox(pytester.path, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert left_behind(run_id) == ([], [])


def _running_sandbox(path: Path, proc: Any) -> str:
    """The run id of the session ``proc`` once the task 'hangs' has its sandbox running."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        output = path / ".benchflow"
        runs = [p.name for p in output.iterdir() if p.is_dir()] if output.exists() else []
        if runs:
            labels = [f"benchflow.run={runs[0]}", "benchflow.task=hangs"]
            if engine().api.containers(filters={"label": labels}):
                time.sleep(1)  # into its `sleep 1000`
                return runs[0]
        time.sleep(0.2)
    pytest.fail("the task's sandbox never started")
