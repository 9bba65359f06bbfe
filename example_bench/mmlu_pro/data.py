"""Loading MMLU-Pro questions: the shipped demo set, local JSON / JSON lines / parquet, or Hugging Face."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_FEWSHOT",
    "DEMO_TEST",
    "HF_PREFIX",
    "DataError",
    "by_category",
    "load_questions",
    "question_index",
    "split_sources",
    "task_slug",
]

_HERE = Path(__file__).parent / "data"
#: Demo questions written by us (not MMLU-Pro): used when DATA_FILE is not given.
DEMO_TEST = _HERE / "demo_test.json"
DEMO_FEWSHOT = _HERE / "demo_fewshot.json"
#: ``DATA_FILE=hf:TIGER-Lab/MMLU-Pro`` loads through the ``datasets`` library (extra ``mmlu-pro``).
HF_PREFIX = "hf:"
FIELDS = ("question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src")


class DataError(ValueError):
    """A data file is missing, unreadable or not in the MMLU-Pro record schema."""


def task_slug(category: str) -> str:
    """The task id of a category: its name with spaces as underscores (``computer science`` → ``computer_science``)."""
    return category.replace(" ", "_")


def _read_records(source: str, split: str) -> list[dict[str, Any]]:
    if source.startswith(HF_PREFIX):
        try:
            from datasets import load_dataset
        except ImportError:
            raise DataError(
                f"DATA_FILE={source} needs the datasets library: "
                "pip install datasets (or, in the clone, pip install -e '.[mmlu-pro]')"
            ) from None
        return [dict(r) for r in load_dataset(source[len(HF_PREFIX) :], split=split)]
    path = Path(source)
    if not path.is_file():
        raise DataError(f"MMLU-Pro data file not found: {source}")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{source}: reading parquet needs pyarrow: "
                "pip install pyarrow (or, in the clone, pip install -e '.[parquet]')"
            ) from None
        return list(pq.read_table(path).to_pylist())
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except ValueError as e:
        raise DataError(f"{source}: not valid JSON: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a list of question records")
    return data


def _clean(record: Any, source: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"{source}: a record is {type(record).__name__}, expected an object")
    missing = [
        f for f in ("question_id", "question", "options", "answer", "answer_index", "category") if f not in record
    ]
    if missing:
        raise DataError(f"{source}: question {record.get('question_id', '?')} lacks {', '.join(missing)}")
    clean = {f: record.get(f, "") for f in FIELDS}
    # As the official scripts do: the dataset pads options with "N/A".
    clean["options"] = [o for o in record["options"] if o != "N/A"]
    clean["cot_content"] = clean["cot_content"] or ""
    return clean


def split_sources(sources: str) -> list[str]:
    """The paths and ``hf:NAME`` references of an ``os.pathsep``-joined list (``hf:`` survives the split)."""
    parts, out = sources.split(os.pathsep), []
    while parts:
        part = parts.pop(0)
        if part + ":" == HF_PREFIX and parts:
            part = HF_PREFIX + parts.pop(0)
        if part:
            out.append(part)
    return out


def _versions(sources: str) -> tuple[float, ...]:
    return tuple(
        os.stat(s).st_mtime if not s.startswith(HF_PREFIX) and os.path.exists(s) else 0.0
        for s in split_sources(sources)
    )


@lru_cache(maxsize=4)
def _load(sources: str, split: str, versions: tuple[float, ...]) -> tuple[dict[str, Any], ...]:
    records = tuple(_clean(r, source) for source in split_sources(sources) for r in _read_records(source, split))
    if not records:
        raise DataError(f"no MMLU-Pro questions in {sources!r}")
    return records


def load_questions(sources: str, split: str = "test") -> tuple[dict[str, Any], ...]:
    """The question records of ``sources`` (paths or ``hf:NAME``, ``os.pathsep``-separated), cleaned.

    Cached while the files are unchanged (a task per question must not reread 12,032 records).
    """
    return _load(sources, split, _versions(sources))


@lru_cache(maxsize=4)
def _index(sources: str, split: str, versions: tuple[float, ...]) -> dict[str, tuple[str, dict[str, dict[str, Any]]]]:
    groups = by_category(_load(sources, split, versions))
    return {task_slug(c): (c, {str(q["question_id"]): q for q in qs}) for c, qs in groups.items()}


def question_index(sources: str, split: str = "test") -> dict[str, tuple[str, dict[str, dict[str, Any]]]]:
    """Task slug → (category, question id → record), built once per data set."""
    return _index(sources, split, _versions(sources))


def by_category(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by category, in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["category"], []).append(r)
    return groups
