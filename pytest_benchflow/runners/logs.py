"""A task's output streams: lines from a byte stream, saved capped and masked; the last lines of saved logs."""

from __future__ import annotations

import codecs
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..untrusted import printable

__all__ = ["LINE_PIECE", "MAX_LOG_BYTES", "TAIL_LINES", "CappedLog", "MaskedStream", "lines", "tail"]

#: How many lines of a broken task's output its error shows.
TAIL_LINES = 20
#: Most bytes of one output stream saved per task (``benchflow_max_log_bytes``, ``BENCHFLOW_MAX_LOG_BYTES``):
#: the first and the last half are kept, what lies between is cut with a line saying so.
MAX_LOG_BYTES = 16 * 1024 * 1024
#: A line longer than this is handed on in pieces of this size (a stream without newlines is still saved).
LINE_PIECE = 64 * 1024

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def lines(chunks: Iterable[bytes], longest: int = LINE_PIECE) -> Iterator[bytes]:
    """Whole lines (each ending in ``\\n``, the last one perhaps not) from arbitrary chunks.

    A line longer than ``longest`` bytes comes in pieces of that size (only its last piece ends in
    ``\\n``), so memory stays bounded and the work linear whatever the stream holds. A stream that
    breaks off ends the lines; what was pending is still yielded.
    """
    pending = bytearray()
    try:
        for chunk in chunks:
            pending += chunk
            start = 0
            while True:
                end = pending.find(b"\n", start, start + longest)
                if end >= 0:
                    yield bytes(pending[start : end + 1])
                    start = end + 1
                elif len(pending) - start >= longest:
                    yield bytes(pending[start : start + longest])
                    start += longest
                else:
                    break
            del pending[:start]
    except Exception:  # the engine or the connection went away: the log ends here
        pass
    if pending:
        yield bytes(pending)


class MaskedStream:
    """Masks text that arrives in pieces, so that a secret split over two pieces is masked too.

    Pieces are arbitrary byte chunks (UTF-8 characters split between them are put back together).
    Text up to a newline is masked and handed on at once; a piece that ends mid-line is masked
    with what came before it, and its last ``overlap`` characters are held back until the next
    piece (or :meth:`flush`) shows whether they begin a secret.
    """

    def __init__(self, scrub: Callable[[str], str], longest_secret: int) -> None:
        self.scrub = scrub
        # Room for the longest secret in its longest written form (\\u escapes, URL encoding).
        self.overlap = 256 + 12 * longest_secret
        self._held = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        """The masked text that is final once ``piece`` arrived."""
        text = self.scrub(self._held + self._decoder.decode(piece))
        if text.endswith("\n"):
            self._held = ""
            return text
        self._held = text[-self.overlap :]
        return text[: -self.overlap]

    def flush(self) -> str:
        """What was held back, masked (the stream ended)."""
        text, self._held = self.scrub(self._held + self._decoder.decode(b"", final=True)), ""
        return text


class CappedLog:
    """A log file that keeps at most ``cap`` bytes of what is written to it: the first half, then a
    line saying how much was cut, then the last half (held in memory until :meth:`close`).

    Opened without following a link: a planted symlink at ``path`` is refused (``OSError``).
    """

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.head_room = cap - cap // 2
        self.tail_room = cap // 2
        self.written = 0
        self.cut = 0
        #: Bytes given to :meth:`write` so far (whether kept or cut).
        self.received = 0
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._file = os.fdopen(os.open(path, _WRITE_FLAGS, 0o644), "wb")

    def write(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        self.received += len(data)
        if self.written < self.head_room:
            room = self.head_room - self.written
            head = _char_start(data, room) if len(data) > room else len(data)
            self._file.write(data[:head])
            self.written += head
            if head == len(data):
                return
            self.head_room = self.written  # the head is full: everything from here on is tail or cut
            data = data[head:]
        self._tail.append(data)
        self._tail_size += len(data)
        while len(self._tail) > 1 and self._tail_size - len(self._tail[0]) >= self.tail_room:
            dropped = self._tail.popleft()
            self._tail_size -= len(dropped)
            self.cut += len(dropped)

    def close(self) -> None:
        tail = b"".join(self._tail)
        self._tail.clear()
        extra = len(tail) - self.tail_room
        if extra > 0:
            start = _char_start(tail, extra)
            self.cut += start
            tail = tail[start:]
        if self.cut:
            self._file.write(
                f"\n[pytest-benchflow: {self.cut} bytes of output cut here; the first {self.written} and the "
                f"last {len(tail)} bytes are kept (benchflow_max_log_bytes / BENCHFLOW_MAX_LOG_BYTES)]\n".encode()
            )
        self._file.write(tail)
        self._file.close()


def _char_start(data: bytes, at: int) -> int:
    """``at``, moved back to the start of the UTF-8 character it falls in (a cut never splits one)."""
    while 0 < at < len(data) and data[at] & 0xC0 == 0x80:
        at -= 1
    return at


def tail(*paths: Path, count: int = TAIL_LINES) -> str:
    """The last ``count`` lines of the files, introduced for an error message."""
    found: list[str] = []
    for path in paths:
        try:
            found += path.read_text(errors="replace").splitlines()
        except OSError:
            pass
    # Printable: the lines go into an error message, and a terminal would act on a container's escape codes.
    last = [printable(line) for line in found[-count:]]
    return "last lines of the container's output:\n" + "\n".join(last) if last else "(the task printed nothing)"
