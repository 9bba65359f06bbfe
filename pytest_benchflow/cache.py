"""A response cache in SQLite: the same request to the same agent is answered once, across runs and processes."""

from __future__ import annotations

import contextvars
import hashlib
import json
import threading
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


class ResponseCache:
    """Answers keyed by agent identity, canonical request JSON and epoch, in one SQLite file.

    Safe for several processes (WAL journal, one short transaction per write) and for
    interruption (SQLite's atomic commits). Keys are SHA-256 digests, and answers are stored
    with ``secret_values`` masked, so no secret is written in clear.
    """

    def __init__(self, path: Path, identity: str, mode: str = "use", secret_values: Iterable[str] = ()) -> None:
        if mode not in ("use", "refresh"):
            raise ValueError(f"cache mode {mode!r}: choose use or refresh")
        self.path, self.identity, self.mode = path, identity, mode
        self.secret_values = secret_values  # a live collection: values added later are masked too
        self.hits = self.stored = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, body BLOB NOT NULL, stored REAL)")

    def _connection(self) -> sqlite3.Connection:
        import sqlite3  # here: a session without --benchflow-cache never loads SQLite

        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
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
        if self.mode == "refresh":
            return None
        row = self._connection().execute("SELECT body FROM answers WHERE key = ?", (self.key(body, epoch),)).fetchone()
        if row is None:
            return None
        with self._lock:
            self.hits += 1
        return bytes(row[0])

    def put(self, body: bytes, answer: bytes, epoch: int = 1) -> None:
        masked = redact(answer.decode("utf-8", errors="replace"), self.secret_values).encode()
        self._connection().execute(
            "INSERT OR REPLACE INTO answers (key, body, stored) VALUES (?, ?, julianday('now'))",
            (self.key(body, epoch), masked),
        )
        with self._lock:
            self.stored += 1

    def scope(self, context: contextvars.Context | None = None, epoch: int = 1) -> contextvars.Context:
        """A context (a copy of ``context``, else of the current one) in which clients use this cache
        for ``epoch``: each epoch of a task asks the agent again."""
        context = (context or contextvars.copy_context()).copy()
        context.run(_CACHE.set, EpochCache(self, epoch))
        return context


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


def describe(info: dict[str, Any] | None, url: str) -> str:
    """An agent's identity for cache keys: what it said at ``GET /info``, else its URL."""
    return json.dumps(info, sort_keys=True) if info else url
