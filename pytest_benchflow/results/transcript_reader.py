"""Reading a task's ``transcript.jsonl`` back: exchanges by sample id, trimmed for a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..runfiles import read_text, split_lines
from ..transcript import TRANSCRIPT_FILE

__all__ = ["FIELD_LIMIT", "read_transcript"]

#: Longest text kept per field of an exchange in a report (prompts of many-shot benches run long).
FIELD_LIMIT = 20_000


def _text(value: Any) -> str:
    """A request or parsed result as one reads it: each field's text as written, not JSON-escaped."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        return "\n\n".join(
            f"[{k}]\n{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, indent=1, default=str)}"
            for k, v in value.items()
        )
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _trim(value: Any) -> str:
    text = _text(value)
    return (
        text if len(text) <= FIELD_LIMIT else text[:FIELD_LIMIT] + f"\n… ({len(text) - FIELD_LIMIT:,} more characters)"
    )


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tool_calls(value: Any) -> list[dict[str, Any]] | None:
    """An agent loop's tool calls of one turn (name, arguments, exit code, duration, output), trimmed."""
    if not isinstance(value, list):
        return None
    calls = []
    for call in value:
        if isinstance(call, dict):
            calls.append(
                {
                    "name": _trim(call.get("name") or ""),
                    "arguments": _trim(call.get("arguments") or ""),
                    "exit_code": _number(call.get("exit_code")),
                    "timed_out": call.get("timed_out") is True,
                    "duration": _number(call.get("duration")),
                    "output": _trim(call.get("output") or ""),
                    "error": None if call.get("error") is None else _trim(call.get("error")),
                }
            )
    return calls


def read_transcript(run_dir: Path, log_dir: str) -> list[dict[str, Any]]:
    """The exchanges of the task whose log directory is ``log_dir`` (relative to ``run_dir``), trimmed.

    Each is ``{"sample_id", "request", "response", "parsed", "error", "latency", "attempts"}`` with
    texts cut at ``FIELD_LIMIT``; a turn of an agent loop adds ``step`` and ``tool_calls``, and a
    verifier's line ``verifier`` and ``exit_code`` (docs/protocol.md). A missing or unreadable file (a
    link or FIFO in its place included: never waited on), or a ``log_dir`` that leads out of the run
    directory (a tampered results file), gives none; unreadable lines are skipped.
    """
    root = run_dir.resolve()
    path = (root / log_dir / TRANSCRIPT_FILE).resolve()
    if not log_dir or not path.is_relative_to(root):
        return []
    try:
        lines = split_lines(read_text(path, errors="replace"))
    except OSError:
        return []
    exchanges = []
    for line in lines:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue  # the line being written when the run was cut off, or one nested too deeply to read
        if not isinstance(entry, dict):
            continue
        sample_id = entry.get("sample_id")
        exchanges.append(
            {
                "sample_id": None if sample_id is None else str(sample_id),
                "request": _trim(entry.get("request")),
                "response": _trim(entry.get("response")),
                "parsed": _trim(entry.get("parsed")),
                "error": None if entry.get("error") is None else _trim(entry.get("error")),
                "latency": entry.get("latency") if isinstance(entry.get("latency"), (int, float)) else None,
                "attempts": entry.get("attempts") if isinstance(entry.get("attempts"), int) else None,
                "step": entry.get("step") if isinstance(entry.get("step"), int) else None,
                "tool_calls": _tool_calls(entry.get("tool_calls")),
                "verifier": entry.get("verifier") is True,
                "exit_code": _number(entry.get("exit_code")),
                "cached": entry.get("cached") is True,
            }
        )
    return exchanges
