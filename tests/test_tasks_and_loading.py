"""Task listing validation and finding benchmark classes by name, module or file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_runner import FileBench

from pytest_benchflow import TaskListError
from pytest_benchflow.bench import list_task_ids
from pytest_benchflow.bench_lookup import BenchLoadError, installed_benchmarks, load_bench_class


class Listing(FileBench):
    def __init__(self, listing: Any) -> None:
        super().__init__()
        self.listing = listing

    def get_all_tasks(self, split: str) -> Any:
        return self.listing


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        ({"task_ids": [], "error_message": "dataset not downloaded"}, r"reported: dataset not downloaded"),
        ({"task_ids": [], "error_message": None}, r"returned no tasks"),
        ({"task_ids": ["a", "b", "a"]}, r"duplicate task ids: a"),
        ({"task_ids": ["a", 2]}, r"task ids must be strings, got int 2"),
        (["a"], r"returned list, expected a dict"),
        ({"ids": ["a"]}, r"has no 'task_ids' list"),
    ],
)
def test_bad_listings(listing: Any, message: str) -> None:
    with pytest.raises(TaskListError, match=message):
        list_task_ids(Listing(listing), "test")


def test_good_listing_keeps_order() -> None:
    assert list_task_ids(Listing({"task_ids": ["z", "a", "m"], "error_message": ""}), "test") == ["z", "a", "m"]


def test_registered_name() -> None:
    assert "mmlu_pro" in installed_benchmarks()
    assert load_bench_class("mmlu_pro").__name__ == "MMLUProBench"


def test_unknown_name_lists_installed() -> None:
    with pytest.raises(BenchLoadError, match=r"unknown benchmark 'mmlu'; installed: .*mmlu_pro"):
        load_bench_class("mmlu")


def test_module_and_file_references(tmp_path: Path) -> None:
    assert load_bench_class("test_runner:FileBench") is FileBench
    (tmp_path / "mine.py").write_text(
        "from test_runner import FileBench\nclass Mine(FileBench):\n    pass\nclass NotABench:\n    pass\n"
        "from pytest_benchflow import BaseBench\nclass Half(BaseBench):\n    def get_args(self, t): ...\n"
    )
    assert load_bench_class(f"{tmp_path}/mine.py:Mine").__name__ == "Mine"
    with pytest.raises(BenchLoadError, match=r"is not a subclass of pytest_benchflow.BaseBench"):
        load_bench_class(f"{tmp_path}/mine.py:NotABench")
    with pytest.raises(
        BenchLoadError,
        match=r"Half does not implement get_all_tasks, get_entrypoint|Half does not implement get_all_tasks",
    ):
        load_bench_class(f"{tmp_path}/mine.py:Half")
    with pytest.raises(BenchLoadError, match=r"benchmark 'missing.py:X': file not found: missing.py"):
        load_bench_class("missing.py:X")
    with pytest.raises(BenchLoadError, match=r"has no attribute 'Nope'"):
        load_bench_class(f"{tmp_path}/mine.py:Nope")
