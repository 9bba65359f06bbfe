"""Transcripts: every exchange a task's clients make with the agent, one JSON line each in its log directory."""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

from .redaction import redact
from .runfiles import json_line, open_for_writing
from .untrusted import map_strings

__all__ = ["TRANSCRIPTS_ENV", "TRANSCRIPT_FILE", "Transcript", "current_transcript", "no_transcript"]

#: The file, in the task's log directory (``BENCHFLOW_LOG_DIR``), copied out with the logs from a container.
TRANSCRIPT_FILE = "transcript.jsonl"
#: ``off`` in a task's environment: its clients keep no transcript (``--benchflow-transcripts off``).
TRANSCRIPTS_ENV = "BENCHFLOW_TRANSCRIPTS"


class Transcript:
    """Appends exchanges to ``path`` as JSON lines, from any thread, each line flushed as written.

    Secret values are masked before a line is written. The file is opened on the first exchange,
    so a task that asks nothing leaves none.
    """

    def __init__(self, path: Path, secret_values: Collection[str] = ()) -> None:
        self.path = path
        self.secret_values = secret_values
        self._file: IO[bytes] | None = None
        self._closed = False
        self._lock = threading.Lock()

    def record(
        self,
        *,
        sample_id: str | None,
        request: Any,
        response: Any,
        parsed: Any,
        latency: float,
        attempts: int | None,
        usage: tuple[int, int] | None,
        cached: bool,
        error: str | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Append one exchange; ``extra`` adds fields of its own (an agent loop's ``step`` and ``tool_calls``)."""
        entry = {
            "time": round(time.time(), 3),
            "sample_id": sample_id,
            "request": request,
            "response": response,
            "parsed": parsed,
            "latency": round(latency, 6),
            "attempts": attempts,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]} if usage else None,
            "cached": cached,
            "error": error,
            **(extra or {}),
        }
        try:
            line = json_line(entry, allow_nan=True, default=str)
        except RecursionError:  # an answer nested deeper than json can write: kept to a readable depth
            line = json_line(map_strings(entry, str), allow_nan=True, default=str)
        if self.secret_values:
            line = redact(line, self.secret_values)
        with self._lock:
            if self._closed:
                return  # a request abandoned at the task's time limit answered late: the task is over
            try:
                if self._file is None:
                    self._file = self._open()
                self._file.write(line.encode("utf-8"))  # unbuffered: on disk once written
            except OSError:
                self._closed = True  # a transcript is a record, never a reason for the task to fail

    def _open(self) -> IO[bytes]:
        """The file, to append to; never through a link planted in a resumed run."""
        try:
            return open_for_writing(self.path, "ab")
        except FileNotFoundError:  # its directory is made on the first line (a container's log dir may not be)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return open_for_writing(self.path, "ab")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None

    def scope(self, context: contextvars.Context | None = None) -> contextvars.Context:
        """A context (a copy of ``context``, else of the current one) in which clients record here."""
        context = (context or contextvars.copy_context()).copy()
        context.run(_TRANSCRIPT.set, self)
        return context


def no_transcript(context: contextvars.Context | None = None) -> contextvars.Context:
    """A context in which clients record no transcript (``--benchflow-transcripts off``)."""
    context = (context or contextvars.copy_context()).copy()
    context.run(_TRANSCRIPT.set, False)
    return context


# None: not set (a process of its own: see current_transcript); False: switched off.
_TRANSCRIPT: contextvars.ContextVar[Transcript | bool | None] = contextvars.ContextVar(
    "benchflow_transcript", default=None
)
_PROCESS: list[Transcript | None] = []
_PROCESS_LOCK = threading.Lock()


def current_transcript() -> Transcript | None:
    """Where this task's exchanges go: set by the runner in-process; in a container, one transcript
    for the whole process in ``$BENCHFLOW_LOG_DIR`` unless ``BENCHFLOW_TRANSCRIPTS=off``."""
    given = _TRANSCRIPT.get()
    if isinstance(given, Transcript):
        return given
    if given is False:
        return None
    if not _PROCESS:
        with _PROCESS_LOCK:
            if not _PROCESS:
                log_dir = os.environ.get("BENCHFLOW_LOG_DIR")
                off = os.environ.get(TRANSCRIPTS_ENV, "on").lower() == "off"
                _PROCESS.append(Transcript(Path(log_dir) / TRANSCRIPT_FILE) if log_dir and not off else None)
    return _PROCESS[0]
