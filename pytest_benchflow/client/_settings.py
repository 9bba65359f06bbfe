"""A client's settings (timeouts, retries, concurrency, the answer's size cap) and how long to wait before a retry."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypedDict

from ..envnumbers import MAX_SECONDS, env_number

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MAX_RESPONSE_BYTES", "ClientOptions", "ClientSettings", "backoff_delay", "retry_after_seconds"]

_MAX_BACKOFF = 30.0
_MAX_RETRY_AFTER = 120.0
#: Largest answer body accepted from an agent (``BENCHFLOW_MAX_RESPONSE_BYTES``).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of :class:`BenchClient` and :class:`ClientSettings` (None: the default)."""

    connect_timeout: float | None
    read_timeout: float | None
    retries: int | None
    backoff: float | None
    max_concurrency: int | None


def _setting(given: float | None, variable: str, default: float, maximum: float | None = None) -> float:
    return given if given is not None else env_number(variable, default, maximum=maximum)


class ClientSettings:
    """Timeouts, retries and concurrency of a :class:`BenchClient`.

    Each value comes from the keyword argument, else from its environment variable,
    else from the default: ``BENCHFLOW_CONNECT_TIMEOUT`` (10 s), ``BENCHFLOW_READ_TIMEOUT``
    (300 s), ``BENCHFLOW_RETRIES`` (3 retries after the first attempt),
    ``BENCHFLOW_BACKOFF`` (0.5 s, doubled per retry, with jitter, at most 30 s),
    ``BENCHFLOW_MAX_CONCURRENCY`` (8 requests in flight in :meth:`BenchClient.get_responses`,
    and at most that many to one agent from the whole process, fewer while it answers 429),
    ``BENCHFLOW_RATE_LIMIT_SECONDS`` (600: how long 429 answers are retried; they do not count
    against the retries).
    """

    def __init__(self, **given: Unpack[ClientOptions]) -> None:
        connect, read = given.get("connect_timeout"), given.get("read_timeout")
        self.connect_timeout = _setting(connect, "BENCHFLOW_CONNECT_TIMEOUT", 10.0, MAX_SECONDS)
        self.read_timeout = _setting(read, "BENCHFLOW_READ_TIMEOUT", 300.0, MAX_SECONDS)
        self.retries = int(_setting(given.get("retries"), "BENCHFLOW_RETRIES", 3))
        self.backoff = _setting(given.get("backoff"), "BENCHFLOW_BACKOFF", 0.5)
        self.max_concurrency = int(_setting(given.get("max_concurrency"), "BENCHFLOW_MAX_CONCURRENCY", 8))
        self.max_response_bytes = env_number("BENCHFLOW_MAX_RESPONSE_BYTES", MAX_RESPONSE_BYTES, minimum=1)
        self.rate_limit_seconds = env_number("BENCHFLOW_RATE_LIMIT_SECONDS", 600.0)
        if self.retries < 0 or self.max_concurrency < 1 or min(self.connect_timeout, self.read_timeout) <= 0:
            raise ValueError("BenchClient: retries must be >= 0, max_concurrency >= 1 and timeouts > 0")

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        return backoff_delay(retry, self.backoff, retry_after)


def backoff_delay(retry: int, base: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): ``base`` doubled per retry (at most
    30 s) with jitter, or longer when the server's ``Retry-After`` says so (honoured up to 120 s).

    Our own backoff is the floor: a ``Retry-After`` of zero, negative or in the past would
    otherwise mean no backoff at all, hundreds of requests a second to an overloaded server."""
    ceiling = min(_MAX_BACKOFF, base * (2**retry))
    own = random.uniform(ceiling / 2, ceiling)
    return own if retry_after is None else max(own, min(retry_after, _MAX_RETRY_AFTER))


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's value in seconds (delta or HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):  # OverflowError: a date field too large for datetime
        return None
