"""A response cache in SQLite: the same request to the same agent is answered once, across runs and processes."""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .redaction import redact
from .usage import current_meter

if TYPE_CHECKING:
    import sqlite3

__all__ = ["CACHE_MODES", "EpochCache", "ResponseCache", "current_cache"]

#: off: no cache; use: answer from the cache and store misses; refresh: ask again and overwrite.
CACHE_MODES = ("off", "use", "refresh")

logger = logging.getLogger("pytest_benchflow.cache")

# Seconds a read or write waits for another process's lock: a busy cache costs an answer its
# caching, never its task. After a failure the cache is left alone for _HOLD_OFF seconds, so a lock
# held for the whole run costs each answer nothing rather than a wait.
_BUSY_TIMEOUT = 2.0
_HOLD_OFF = 30.0


class ResponseCache:
    """Answers keyed by agent identity, canonical request JSON and epoch, in one SQLite file.

    Safe for several processes (WAL journal, one short transaction per write) and for
    interruption (SQLite's atomic commits). Keys are SHA-256 digests, and answers are stored
    with ``secret_values`` masked, so no secret is written in clear.

    Best effort once open: a lookup or a write that fails (a lock held elsewhere for more than
    2 s, a disk error) is skipped — a miss, an answer not stored — and counted in ``skipped``,
    with one warning per cache; ``problem`` says what went wrong first.
    """

    def __init__(self, path: Path, identity: str, mode: str = "use", secret_values: Iterable[str] = ()) -> None:
        if mode not in ("use", "refresh"):
            raise ValueError(f"cache mode {mode!r}: choose use or refresh")
        self.path, self.identity, self.mode = path, identity, mode
        self.secret_values = secret_values  # a live collection: values added later are masked too
        self.hits = self.stored = self.skipped = 0
        self.problem: str | None = None
        self._hold_off_until = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()
        import sqlite3  # here: a session without --benchflow-cache never loads SQLite

        self._db_error = sqlite3.Error
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, body BLOB NOT NULL, stored REAL)")

    def _connection(self) -> sqlite3.Connection:
        import sqlite3  # already loaded by __init__: a dictionary look-up

        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def key(self, body: bytes, epoch: int = 1) -> str:
        request = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
        # Epoch 1 is keyed "0", as every answer was before epochs existed: older caches stay valid.
        return hashlib.sha256(f"{self.identity}\n{epoch - 1}\n{request}".encode()).hexdigest()

    def get(self, body: bytes, epoch: int = 1) -> bytes | None:
        """The stored answer body for this request in ``epoch`` (None on a miss, and always with ``refresh``)."""
        if self.mode == "refresh" or not self._usable():
            return None
        try:
            row = (
                self._connection()
                .execute("SELECT body FROM answers WHERE key = ?", (self.key(body, epoch),))
                .fetchone()
            )
        except self._db_error as e:
            self._skip("lookup", e)
            return None
        if row is None or not _readable(row[0]):
            return None  # a corrupted or tampered entry is a miss: the agent is asked, its answer replaces it
        with self._lock:
            self.hits += 1
        return bytes(row[0])

    def put(self, body: bytes, answer: bytes, epoch: int = 1) -> None:
        """Store ``answer`` (secrets masked); skipped, never raised, when the cache cannot take it."""
        if not self._usable():
            return
        masked = redact(answer.decode("utf-8", errors="replace"), self.secret_values).encode()
        try:
            self._connection().execute(
                "INSERT OR REPLACE INTO answers (key, body, stored) VALUES (?, ?, julianday('now'))",
                (self.key(body, epoch), masked),
            )
        except self._db_error as e:
            self._skip("write", e)
            return
        with self._lock:
            self.stored += 1

    def _usable(self) -> bool:
        if time.monotonic() >= self._hold_off_until:
            return True
        with self._lock:
            self.skipped += 1
        return False

    def _skip(self, what: str, error: sqlite3.Error) -> None:
        with self._lock:
            self.skipped += 1
            self._hold_off_until = time.monotonic() + _HOLD_OFF
            first = self.problem is None
            if first:
                self.problem = f"{self.path}: {what} failed ({error})"
        if first:
            logger.warning("--benchflow-cache %s; answers are kept, uncached, while it lasts", self.problem)

    def count_skipped(self, skipped: int, problem: str | None) -> None:
        """Add what another process's copy of this cache skipped (an xdist worker's), for :meth:`note`."""
        with self._lock:
            self.skipped += skipped
            self.problem = self.problem or problem

    def note(self) -> str | None:
        """A line for the end of the session when lookups or writes were skipped, else None."""
        if not self.skipped:
            return None
        return f"--benchflow-cache: {self.skipped} lookups or writes skipped (answers kept, not cached): {self.problem}"

    def scope(self, context: contextvars.Context | None = None, epoch: int = 1) -> contextvars.Context:
        """A context (a copy of ``context``, else of the current one) in which clients use this cache
        for ``epoch``: each epoch of a task asks the agent again."""
        context = (context or contextvars.copy_context()).copy()
        context.run(_CACHE.set, EpochCache(self, epoch))
        return context


def _readable(body: Any) -> bool:
    """Whether a stored answer is JSON, as every answer stored was (only answers the client could read are)."""
    try:
        json.loads(bytes(body))
    except (TypeError, ValueError, RecursionError):
        return False
    return True


class EpochCache(NamedTuple):
    """A cache seen from one epoch of a task: what a client asks."""

    cache: ResponseCache
    epoch: int

    def get(self, body: bytes) -> bytes | None:
        answer = self.cache.get(body, self.epoch)
        current_meter().looked_up(answer is not None)  # the task's summary says where answers came from
        return answer

    def put(self, body: bytes, answer: bytes) -> None:
        self.cache.put(body, answer, self.epoch)


_CACHE: contextvars.ContextVar[EpochCache | None] = contextvars.ContextVar("benchflow_cache", default=None)


def current_cache() -> EpochCache | None:
    """The cache of the task this code runs for (in-process runs only), or None."""
    return _CACHE.get()


def describe(info: dict[str, Any] | None, where: str) -> str:
    """An agent's identity for cache keys: where it is (its URL, or the ``--agent``/``--agent-cmd`` that
    started it) and what it said at ``GET /info`` (None without one).

    Both, because neither alone tells agents apart: two agents may answer the same ``/info`` (or
    none) at different URLs, and one URL may serve different agents over time. The one case left,
    a different model behind the same location and the same ``/info``, is the user's to mark
    (docs/results.md: ``refresh`` or another ``--benchflow-cache-path``).
    """
    return json.dumps({"agent": where, "info": info}, sort_keys=True)
