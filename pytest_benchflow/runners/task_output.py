"""The output of a task that runs elsewhere (a container, a pod, an actor), saved in its log directory.

Each stream is read in a thread of its own as it arrives: saved capped (:class:`~.logs.CappedLog`), with
the session's secrets masked even when one is split between two chunks (:class:`~.logs.MaskedStream`),
and stdout's ``BENCHFLOW_PROGRESS`` lines handed to the task's progress callback. A runner gives each
stream as a function that opens it (called in the reader's thread, since opening may block)::

    output = TaskOutput(spec, max_bytes)
    output.read(lambda: container.logs(stdout=True, stderr=False, stream=True, follow=True), stdout=True)
    output.read(lambda: container.logs(stdout=False, stderr=True, stream=True, follow=True), stdout=False)
    status = container.wait()
    output.finish()
    if status:
        raise TaskError(f"exited with status {status}\\n" + output.tail())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator

from ..environment import PROGRESS_PREFIX, ProgressCallback, parse_progress
from ..errors import TaskError
from ..redaction import redact
from .base import TaskSpec
from .logs import MAX_LOG_BYTES, CappedLog, MaskedStream, lines, tail

__all__ = ["STDERR_LOG", "STDOUT_LOG", "TaskOutput"]

logger = logging.getLogger("pytest_benchflow.runners")

#: The names of the saved streams in the task's log directory.
STDOUT_LOG, STDERR_LOG = "container.stdout.log", "container.stderr.log"
# The output of a task that ended is read to its end unless nothing more arrives for this long.
READER_STALL = 10
_PROGRESS = PROGRESS_PREFIX.encode()

#: Opens one output stream of the task: arbitrary byte chunks, ending when the task's stream does.
StreamOpener = Callable[[], Iterable[bytes]]


class TaskOutput:
    """The task's stdout and stderr, each read into ``<log dir>/container.std{out,err}.log``.

    Raises:
        TaskError: (on creation) a log file cannot be written (a link planted in the log directory).
    """

    def __init__(self, spec: TaskSpec, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.spec = spec
        self.stdout_path, self.stderr_path = spec.log_dir / STDOUT_LOG, spec.log_dir / STDERR_LOG
        self._unread: dict[bool, CappedLog] = {}
        self._readers: list[tuple[threading.Thread, CappedLog]] = []
        try:
            for stdout, path in ((True, self.stdout_path), (False, self.stderr_path)):
                self._unread[stdout] = CappedLog(path, max_bytes)
        except OSError as e:
            self.close()
            raise TaskError(f"cannot write the container's output to {path}: {e.strerror or e}") from None

    def read(self, open_stream: StreamOpener, *, stdout: bool, name: str = "task") -> None:
        """Start reading one stream (stdout's progress lines go to the task's callback); ``name`` is for logging."""
        out = self._unread.pop(stdout)
        progress = self.spec.progress if stdout else None
        thread = threading.Thread(
            target=_read, args=(open_stream, out, self._mask(), progress, name), daemon=True, name="benchflow-output"
        )
        thread.start()
        self._readers.append((thread, out))

    def finish(self, stall: float = READER_STALL) -> None:
        """The task ended: wait for its streams while they still bring something (a flood takes a while to
        arrive), giving up on one that brought nothing for ``stall`` seconds."""
        for thread, log in self._readers:
            received = -1
            while thread.is_alive() and log.received != received:
                received = log.received
                thread.join(timeout=stall)

    def close(self) -> None:
        """Close the logs of streams never read (the task did not start); a reader closes its own."""
        for log in self._unread.values():
            log.close()
        self._unread.clear()

    def tail(self) -> str:
        """The last lines of the saved output, for a broken task's error."""
        return tail(self.stderr_path, self.stdout_path)

    def _mask(self) -> MaskedStream:
        secrets = self.spec.secret_values
        return MaskedStream(lambda text: redact(text, secrets), max(map(len, secrets), default=0))


def _read(
    open_stream: StreamOpener, out: CappedLog, mask: MaskedStream, progress: ProgressCallback | None, name: str
) -> None:
    def saved(chunks: Iterable[bytes]) -> Iterator[bytes]:
        # Whole chunks are masked and written (per line would be too slow for a task that floods).
        for chunk in chunks:
            out.write(mask.feed(chunk))
            yield chunk

    try:
        stream = saved(open_stream())
        if progress is None:
            for _ in stream:
                pass
            return
        for line in lines(stream):
            if line.startswith(_PROGRESS):
                parsed = parse_progress(line.decode(errors="replace"))
                if parsed is not None:
                    progress(*parsed)
    except Exception as e:
        # The task's place went away mid-stream: the runner's own wait reports it; the log ends here.
        logger.info("output stream of %s ended: %s: %s", name, type(e).__name__, e)
    finally:
        out.write(mask.flush())
        out.close()
