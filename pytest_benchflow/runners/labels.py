"""Labels of what a runner starts for a task, with values every orchestrator accepts.

Docker takes any string as a label value; Kubernetes, Ray and most clouds do not. A label value here
is always at most 63 characters of ``[A-Za-z0-9._-]``, beginning and ending with a letter or digit
(Kubernetes' rule, the strictest in common use), so the same labels work on any of them and a
sweep by label finds what a run left wherever it ran. A value that had to change ends in a short
digest of the raw one, so two task ids never share a label. The raw task id is not lost: the task's
environment carries it (``TEST_START_ID``), and so does its record in ``results.jsonl``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

__all__ = [
    "BENCH_LABEL",
    "LABEL_VALUE_MAX",
    "RUN_LABEL",
    "TASK_LABEL",
    "run_selector",
    "safe_label_value",
    "safe_labels",
]

#: The run a container (or pod, or actor) belongs to: what ``cleanup_run`` sweeps by.
RUN_LABEL = "benchflow.run"
#: The bench of the task.
BENCH_LABEL = "benchflow.bench"
#: The task (its id made safe; the raw id is in the task's environment as ``TEST_START_ID``).
TASK_LABEL = "benchflow.task"
#: Longest label value (Kubernetes' limit).
LABEL_VALUE_MAX = 63

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_VALID = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
# Hex digits of the raw value's digest a changed value ends in (collisions need 2**40 tries).
_DIGEST = 10


def safe_label_value(raw: str) -> str:
    """``raw`` as a label value any orchestrator accepts: itself when it already is one, else its
    safe characters (others replaced by ``_``), cut to fit, then ``-`` and a digest of ``raw``."""
    if _VALID.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8", errors="surrogatepass")).hexdigest()[:_DIGEST]
    stem = _UNSAFE.sub("_", raw).strip("._-")[: LABEL_VALUE_MAX - _DIGEST - 1].rstrip("._-")
    return f"{stem}-{digest}" if stem else digest


def safe_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` with every value made safe (:func:`safe_label_value`); keys are the runner's own names."""
    return {key: safe_label_value(value) for key, value in labels.items()}


def run_selector(run_id: str) -> str:
    """The ``key=value`` selector of what run ``run_id`` labelled (its value made safe as the labels' are)."""
    return f"{RUN_LABEL}={safe_label_value(run_id)}"
