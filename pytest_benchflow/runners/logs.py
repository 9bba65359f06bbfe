"""Reading a task's output streams: lines from a byte stream, and the last lines of saved logs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["TAIL_LINES", "lines", "tail"]

#: How many lines of a broken task's output its error shows.
TAIL_LINES = 20


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines (each ending in ``\\n``, the last one perhaps not) from arbitrary chunks.

    A stream that breaks off ends the lines; what was pending is still yielded.
    """
    pending = b""
    try:
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"
    except Exception:  # the engine or the connection went away: the log ends here
        pass
    if pending:
        yield pending


def tail(*paths: Path, count: int = TAIL_LINES) -> str:
    """The last ``count`` lines of the files, introduced for an error message."""
    found: list[str] = []
    for path in paths:
        try:
            found += path.read_text(errors="replace").splitlines()
        except OSError:
            pass
    last = found[-count:]
    return "last lines of the container's output:\n" + "\n".join(last) if last else "(the task printed nothing)"
