"""Running a task in-process: environment, isolation between threads, timeouts and broken results."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_benchflow import (
    BaseBench,
    BenchArgs,
    ResultError,
    TaskError,
    TaskSpec,
    TaskTimeout,
    run_task,
)
from pytest_benchflow.schemas import ResolvedArgs


class FileBench(BaseBench):
    """Its entrance writes the environment it got; get_result reads it back from self.results_dir."""

    def __init__(self, entrance: Any = None, result: Any = None) -> None:
        super().__init__()
        self.entrance = entrance or self.write_env
        self.result = result

    @staticmethod
    def write_env(env: Mapping[str, str]) -> None:
        time.sleep(0.01 * (hash(env["TEST_START_ID"]) % 5))
        Path(env["BENCHFLOW_RESULTS_DIR"], "env.json").write_text(json.dumps(dict(env)))

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs(None)

    def get_image_name(self) -> str:
        return "none"

    def get_results_dir_in_container(self) -> str:
        return "/r"

    def get_log_files_dir_in_container(self) -> str:
        return "/l"

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        return {"task_ids": ["a"], "error_message": None}

    def get_entrypoint(self) -> Any:
        return self.entrance

    def get_result(self, task_id: str) -> Any:
        if self.result is not None:
            return self.result
        env = json.loads(Path(str(self.results_dir), "env.json").read_text())
        return {
            "is_resolved": env["TEST_START_ID"] == task_id,
            "metrics": {"dir_ok": env["BENCHFLOW_RESULTS_DIR"] == self.results_dir},
        }


def spec(tmp_path: Path, task_id: str = "t1", **kw: Any) -> TaskSpec:
    return TaskSpec(
        bench_name="file",
        task_id=task_id,
        agent_url="http://127.0.0.1:9",
        args=ResolvedArgs({"API_KEY": "sk-123456", "N": "3"}, ["API_KEY"]),
        results_dir=tmp_path / task_id / "results",
        log_dir=tmp_path / task_id / "logs",
        **kw,
    )


def test_environment_of_a_task(tmp_path: Path) -> None:
    before = dict(os.environ)
    run_task(FileBench(), spec(tmp_path, split="validation"))
    env = json.loads((tmp_path / "t1" / "results" / "env.json").read_text())
    assert env == {
        "API_KEY": "sk-123456",
        "N": "3",
        "INTELLIGENCE_URL": "http://127.0.0.1:9",
        "TEST_START_ID": "t1",
        "TEST_START_IDX": "t1",
        "BENCHFLOW_SPLIT": "validation",
        "BENCHFLOW_RESULTS_DIR": str(tmp_path / "t1" / "results"),
        "BENCHFLOW_LOG_DIR": str(tmp_path / "t1" / "logs"),
    }
    assert dict(os.environ) == before


def test_concurrent_tasks_of_one_instance_see_their_own_directories(tmp_path: Path) -> None:
    bench = FileBench()
    results: dict[str, Any] = {}

    def one(task_id: str) -> None:
        results[task_id] = run_task(bench, spec(tmp_path, task_id))

    threads = [threading.Thread(target=one, args=(f"task{i}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.is_resolved and r.metrics["dir_ok"] and r.task_id == tid for tid, r in results.items())
    assert len(results) == 16


def test_timeout(tmp_path: Path) -> None:
    bench = FileBench(entrance=lambda env: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(TaskTimeout, match=r"task 't1' timed out after 0.2 s"):
        run_task(bench, spec(tmp_path, timeout=0.2))
    assert time.monotonic() - started < 15  # the behaviour: it did not wait for the entrance to end


def test_entrance_exception_is_a_task_error(tmp_path: Path) -> None:
    def broken(env: Mapping[str, str]) -> None:
        raise KeyError("DATA")

    with pytest.raises(TaskError, match=r"task 't1': the evaluation raised KeyError: 'DATA'"):
        run_task(FileBench(entrance=broken), spec(tmp_path))


def test_bench_without_entrance(tmp_path: Path) -> None:
    bench = FileBench()
    bench.entrance = None
    bench.get_entrypoint = lambda: None  # type: ignore[method-assign]
    with pytest.raises(TaskError, match=r"file has no in-process entrance .* container runner \(--benchflow-runner\)"):
        run_task(bench, spec(tmp_path))


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (42, r"get_result returned int, expected a BenchmarkResult or a dict"),
        ({"metrics": {}}, r"field is_resolved: Field required"),
        ({"is_resolved": True, "metrics": "high"}, r"field metrics: Input should be a valid dictionary"),
    ],
)
def test_bad_results(tmp_path: Path, returned: Any, message: str) -> None:
    with pytest.raises(ResultError, match=message):
        run_task(FileBench(result=returned), spec(tmp_path))


def test_get_result_raising_names_task(tmp_path: Path) -> None:
    bench = FileBench(entrance=lambda env: None)  # writes nothing: get_result cannot read its file
    with pytest.raises(ResultError, match=r"task 't1': get_result raised FileNotFoundError"):
        run_task(bench, spec(tmp_path))
