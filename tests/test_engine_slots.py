"""Engine slots: shared by the session's processes through lock files, freed when a process dies, lost engines skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_benchflow.errors import TaskError
from pytest_benchflow.runners.engines import EnginePool, is_local_engine, parse_engines

ENGINES = ["unix:///run/a.sock", "unix:///run/b.sock"]


def pool(run_id: str, slots: int = 1) -> EnginePool:
    return EnginePool(ENGINES, run_id, slots)


def test_tasks_take_free_slots_across_engines_and_wait_when_all_are_busy() -> None:
    run_id = f"slots-{os.getpid()}-{time.monotonic_ns()}"
    first, other = pool(run_id), pool(run_id)  # two processes of one session see the same slots
    try:
        with first.slot() as a, other.slot() as b:
            assert {a.url, b.url} == set(ENGINES)
            waited: list[str] = []

            def third() -> None:
                with first.slot() as engine:
                    waited.append(engine.url)

            thread = threading.Thread(target=third)
            thread.start()
            time.sleep(0.3)
            assert waited == [] and thread.is_alive()  # both engines are full
        thread.join(timeout=5)
        assert len(waited) == 1
    finally:
        first.remove_directory()


def test_a_dead_process_frees_its_slot() -> None:
    run_id = f"dead-{os.getpid()}-{time.monotonic_ns()}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pytest_benchflow.runners.engines import EnginePool\n"
            f"pool = EnginePool({ENGINES!r}, {run_id!r}, 1)\n"
            "with pool.slot(), pool.slot():\n"
            "    print('holding', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    mine = pool(run_id)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        got: list[str] = []
        thread = threading.Thread(target=lambda: got.append(_take_and_release(mine)), daemon=True)
        thread.start()
        time.sleep(0.3)
        assert got == []
        holder.send_signal(signal.SIGKILL)
        thread.join(timeout=5)
        assert len(got) == 1
    finally:
        holder.kill()
        holder.wait()
        mine.remove_directory()


def _take_and_release(p: EnginePool) -> str:
    with p.slot() as engine:
        return engine.url


def test_lost_engines_get_no_task_and_losing_all_is_an_error() -> None:
    run_id = f"lost-{os.getpid()}-{time.monotonic_ns()}"
    first, other = pool(run_id, slots=4), pool(run_id, slots=4)
    try:
        first.lost(first.engines[0], "connection refused")
        for _ in range(6):
            with other.slot() as engine:
                assert engine.url == ENGINES[1]  # another process sees the loss
        other.lost(other.engines[1], "EOF")
        with pytest.raises(
            TaskError,
            match=r"no Docker engine left to run the task \(unix:///run/a.sock: connection refused; unix:///run/b.sock: EOF\)",
        ):
            with first.slot():
                pass
    finally:
        first.remove_directory()


def test_engine_urls() -> None:
    assert parse_engines("  unix:///a.sock tcp://h:2376 unix:///a.sock ") == ["unix:///a.sock", "tcp://h:2376"]
    assert is_local_engine("unix:///var/run/docker.sock") and is_local_engine("tcp://127.0.0.1:2375")
    assert not is_local_engine("tcp://10.0.0.5:2376") and not is_local_engine("ssh://me@builder")


def test_a_planted_link_at_the_slot_directory_is_refused(tmp_path: Path) -> None:
    run_id = f"planted-{os.getpid()}-{time.monotonic_ns()}"
    p = pool(run_id)
    p.directory.symlink_to(tmp_path)
    try:
        with pytest.raises(
            TaskError, match="the run's Docker engine slots\\) is not a directory of this user's; remove it"
        ):
            with p.slot():
                pass
        assert list(tmp_path.iterdir()) == []  # nothing was created through the link
    finally:
        p.directory.unlink()
