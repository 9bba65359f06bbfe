"""Keeping a bounded part of a stream that may be endless: its head and its tail, the middle cut and marked."""

from __future__ import annotations

__all__ = ["HeadTail", "cut_marker"]


def cut_marker(cut: int) -> bytes:
    """The line that stands where ``cut`` bytes of output were left out."""
    return f"\n[benchflow: {cut} bytes of output cut here]\n".encode()


class HeadTail:
    """The first and last bytes of a stream, at most ``cap`` in all (half each); memory stays about ``2 * cap``
    however much is written, so a command printing without end cannot fill the harness's memory."""

    def __init__(self, cap: int) -> None:
        self.cap = max(0, cap)
        self._head_cap = self.cap - self.cap // 2
        self._tail_cap = self.cap // 2
        self._head = bytearray()
        self._tail = bytearray()
        #: Bytes written in all.
        self.total = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.total += len(data)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data or not self._tail_cap:
            return
        self._tail += data
        # Trimmed now and then, not on every write: each trim copies the tail.
        if len(self._tail) > 2 * self._tail_cap:
            del self._tail[: -self._tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def value(self) -> bytes:
        """What was kept: everything, or the head, a line saying how much was cut, and the tail."""
        if not self.truncated:
            return bytes(self._head + self._tail)
        tail = self._tail[-self._tail_cap :] if self._tail_cap else b""
        return bytes(self._head) + cut_marker(self.total - len(self._head) - len(tail)) + bytes(tail)
