"""``BenchClient``: how a benchmark asks the agent for a response over HTTP."""

from __future__ import annotations

import contextvars
import json
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypedDict

import requests
from requests.adapters import HTTPAdapter

from .cache import current_cache
from .envnumbers import MAX_SECONDS, env_number
from .errors import AgentBadResponse, AgentError, AgentHTTPError, AgentTimeout, AgentUnreachable, TaskCancelled
from .redaction import public_url
from .transcript import current_transcript
from .untrusted import printable
from .usage import USAGE_HEADER, current_meter, parse_usage

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MAX_RESPONSE_BYTES",
    "BenchClient",
    "ClientOptions",
    "ClientSettings",
    "backoff_delay",
    "cancel_scope",
    "keepalive_session",
]

_EXCERPT = 200
_MAX_BACKOFF = 30.0
_MAX_RETRY_AFTER = 120.0
#: Largest answer body accepted from an agent (``BENCHFLOW_MAX_RESPONSE_BYTES``).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

# How often a request waiting for a concurrency slot looks whether its task was stopped.
_CANCEL_POLL = 0.05

# Set by the runner for a task with a time limit: once set, the task's clients start no request.
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("benchflow_cancel", default=None)


def cancel_scope(event: threading.Event) -> contextvars.Context:
    """A context in which every :class:`BenchClient` call stops starting requests once ``event`` is set.

    Threads that :meth:`BenchClient.get_responses` starts inherit it.
    """
    context = contextvars.copy_context()
    context.run(_CANCEL.set, event)
    return context


def current_cancel() -> threading.Event | None:
    """The event that stops the calling task's clients (None outside a cancel scope)."""
    return _CANCEL.get()


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """A one-line excerpt of ``text`` short enough for an error message, printable: it quotes what an agent
    sent, and a terminal would act on its escape codes (OSC 52 writes the clipboard)."""
    flat = " ".join(text.split())
    return printable(flat, limit - 1 if len(flat) > limit else None)


class AdaptiveLimit:
    """How many requests may be in flight to one agent from this process, adapting to its 429s.

    Shared by every client of the same agent URL: it halves on a 429 and grows back by one per
    success, never above the largest ``max_concurrency`` asked for, never below one.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = self.limit = ceiling
        self.in_flight = 0
        self._changed = threading.Condition()

    def __enter__(self) -> AdaptiveLimit:
        self.acquire(None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self, cancel: threading.Event | None) -> bool:
        """Take a slot, waiting for one; False, holding none, once ``cancel`` is set (before or while waiting):
        a request queued behind others must not be sent after its task's time limit."""
        with self._changed:
            while self.in_flight >= self.limit and not (cancel is not None and cancel.is_set()):
                self._changed.wait(None if cancel is None else _CANCEL_POLL)
            if cancel is not None and cancel.is_set():
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._changed:
            self.in_flight -= 1
            self._changed.notify()

    def widen(self, ceiling: int) -> None:
        """A wider batch raises the ceiling (and the limit as much); a halving in force stays in force."""
        with self._changed:
            if ceiling > self.ceiling:
                self.limit += ceiling - self.ceiling
                self.ceiling = ceiling
                self._changed.notify_all()

    def record(self, throttled: bool) -> None:
        with self._changed:
            self.limit = max(1, self.limit // 2) if throttled else min(self.ceiling, self.limit + 1)
            self._changed.notify_all()


_LIMITS: dict[str, AdaptiveLimit] = {}
_LIMITS_LOCK = threading.Lock()


def _limit_for(url: str, ceiling: int) -> AdaptiveLimit:
    with _LIMITS_LOCK:
        limit = _LIMITS.get(url)
        if limit is None:
            limit = _LIMITS[url] = AdaptiveLimit(ceiling)
        else:
            limit.widen(ceiling)
        return limit


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


_JSON = {"Content-Type": "application/json"}


class _Exchange:
    """What one ``get_response`` call saw, for its transcript line."""

    __slots__ = ("attempts", "cached", "parsed", "raw", "usage")

    def __init__(self) -> None:
        self.attempts = 0
        self.cached = False
        self.raw: Any = None
        self.parsed: dict[str, Any] | None = None
        self.usage: tuple[int, int] | None = None


_SESSIONS = threading.local()


def _transient(status: int) -> bool:
    """Worth retrying: overload (429) and server errors (5xx); other 4xx will not change."""
    return status == 429 or status >= 500


def _cut_off(e: requests.exceptions.RequestException) -> bool:
    """The connection was made and then dropped mid-exchange (as opposed to never made)."""
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return True
    text = str(e)
    return "RemoteDisconnected" in text or "IncompleteRead" in text or "Connection aborted" in text


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


def keepalive_session(url: str) -> requests.Session:
    """This thread's keep-alive session for ``url``'s server, shared by everything in the process that asks it.

    A benchmark that makes a client per task still reuses its connection. requests rescans
    the whole environment for proxy and CA settings on every call (half the cost of a local
    call); they are read once for ``url`` instead.
    """
    sessions: dict[str, requests.Session] | None = getattr(_SESSIONS, "by_url", None)
    if sessions is None:
        sessions = _SESSIONS.by_url = {}
    session = sessions.get(url)
    if session is None:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        env = session.merge_environment_settings(url, {}, None, None, None)
        session.trust_env = False
        session.proxies.update(env["proxies"])
        session.verify = env["verify"]
        sessions[url] = session
    return session


class BenchClient(ABC):
    """The benchmark's side of the conversation with the agent.

    Subclass it and implement :meth:`prepare_input` (what to send) and
    :meth:`parse_response` (what the answer means); then call :meth:`get_response`
    (or :meth:`get_responses` for many inputs at once). Connections are pooled and
    kept alive per thread; an instance may be shared between threads.

    Errors: every failure to get a usable answer is an :class:`~pytest_benchflow.AgentError`
    (``AgentUnreachable``, ``AgentTimeout``, ``AgentHTTPError``, ``AgentBadResponse``)
    whose message names the URL.
    """

    #: The agent's answer must be a JSON string; set to False to accept any JSON value.
    expects_text: bool = True

    def __init__(
        self,
        intelligence_url: str,
        max_retry: int | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        """``max_retry`` is BenchFlow 0.1.x's total number of attempts; prefer ``retries``."""
        if options.get("retries") is None and max_retry is not None:
            options["retries"] = max(0, max_retry - 1)
        self.intelligence_url = intelligence_url.rstrip("/")
        self.settings = ClientSettings(**options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The BenchFlow docs' prose calls it parse_input; accept that spelling.
        if "parse_input" in cls.__dict__ and "prepare_input" not in cls.__dict__:
            cls.prepare_input = cls.__dict__["parse_input"]  # type: ignore[method-assign]

    @property
    def response_url(self) -> str:
        return self.intelligence_url + "/response"

    @property
    def _shown_url(self) -> str:
        # Only for messages: never on the hot path.
        return public_url(self.response_url)

    def _ensure_state(self) -> None:
        # Subclasses written for 0.1.x sometimes set attributes without calling super().__init__.
        if "settings" not in self.__dict__:
            self.settings = ClientSettings()

    def _session(self) -> requests.Session:
        return keepalive_session(self.response_url)

    @abstractmethod
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        """Turn the benchmark's raw step inputs into the JSON body sent to the agent."""

    @abstractmethod
    def parse_response(self, raw_response: str) -> dict[str, Any]:
        """Turn the agent's answer (normally a string) into the dict the benchmark uses."""

    def get_response(self, raw_step_inputs: dict[str, Any], sample_id: str | int | None = None) -> dict[str, Any]:
        """prepare → POST ``{intelligence_url}/response`` → parse.

        Returns the parsed dict, with the agent's answer also under ``raw_response``. The
        exchange goes to the task's transcript (``transcript.jsonl``), under ``sample_id`` when given.

        Raises:
            AgentError: a subclass saying why no usable answer came back.
            TypeError: ``prepare_input`` did not return a dict.
        """
        if raw_step_inputs is None:
            raise ValueError("raw_step_inputs cannot be None")
        self._ensure_state()
        body = self.prepare_input(raw_step_inputs)
        if not isinstance(body, dict):
            raise TypeError(f"{type(self).__name__}.prepare_input returned {type(body).__name__}, expected a dict")
        transcript = current_transcript()
        exchange = _Exchange()
        if transcript is None:
            return self._answer(json.dumps(body).encode(), exchange)
        started = time.perf_counter()
        error: str | None = None
        try:
            return self._answer(json.dumps(body).encode(), exchange)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            parsed = exchange.parsed
            transcript.record(
                sample_id=None if sample_id is None else str(sample_id),
                request=body,
                response=exchange.raw,
                parsed={k: v for k, v in parsed.items() if k != "raw_response"} if parsed is not None else None,
                latency=time.perf_counter() - started,
                attempts=exchange.attempts,
                usage=exchange.usage,
                cached=exchange.cached,
                error=error,
            )

    def _answer(self, body: bytes, exchange: _Exchange) -> dict[str, Any]:
        raw = exchange.raw = self._post(body, exchange)
        if self.expects_text and not isinstance(raw, str):
            raise AgentBadResponse(
                f"agent at {self._shown_url} answered with a JSON {type(raw).__name__} where a string "
                f"was expected: {excerpt(json.dumps(raw))}",
                url=self._shown_url,
            )
        try:
            parsed = self.parse_response(raw)
        except Exception as e:
            raise AgentBadResponse(
                f"{type(self).__name__}.parse_response failed on the answer of {self._shown_url} "
                f"({type(e).__name__}: {e}): {excerpt(str(raw))}",
                url=self._shown_url,
            ) from e
        if not isinstance(parsed, dict):
            raise AgentBadResponse(
                f"{type(self).__name__}.parse_response returned {type(parsed).__name__}, expected a dict",
                url=self._shown_url,
            )
        parsed["raw_response"] = raw
        exchange.parsed = parsed
        return parsed

    def get_responses(
        self,
        raw_step_inputs: Iterable[dict[str, Any]],
        max_concurrency: int | None = None,
        *,
        return_exceptions: bool = False,
        on_done: Callable[[int, int], None] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
        sample_ids: Sequence[str | int] | None = None,
    ) -> list[Any]:
        """:meth:`get_response` for many inputs, ``max_concurrency`` requests in flight.

        Results come back in input order. When a call fails and ``return_exceptions``
        is false, no further calls are started, the ones in flight finish, and the
        failure of the earliest failed input is raised. With ``return_exceptions``,
        every input is tried and a failed one has its exception in its place.
        ``on_done(done, total)`` is called (from worker threads) after each call, and
        ``on_result(index, result)`` with each answer as it arrives (one call at a time), so a
        caller can keep what was answered even when the batch then fails. ``sample_ids`` (one
        per input) name each exchange in the transcript.
        """
        inputs = list(raw_step_inputs)
        if sample_ids is not None and len(sample_ids) != len(inputs):
            raise ValueError(f"get_responses: {len(sample_ids)} sample ids for {len(inputs)} inputs")
        ask = self._asker(sample_ids)
        workers = max(1, min(max_concurrency or self.settings.max_concurrency, len(inputs) or 1))
        if workers == 1:
            return self._serially(inputs, ask, return_exceptions, on_done, on_result)
        _limit_for(self.intelligence_url, workers)  # this batch may have that many in flight
        results: list[Any] = [None] * len(inputs)
        failures: dict[int, BaseException] = {}
        lock = threading.Lock()
        next_index = done = 0

        def work() -> None:
            nonlocal next_index, done
            while True:
                with lock:
                    if next_index >= len(inputs) or (failures and not return_exceptions):
                        return
                    i, next_index = next_index, next_index + 1
                try:
                    results[i] = ask(i, inputs[i])
                except Exception as e:
                    with lock:
                        failures[i] = e
                    if not return_exceptions:
                        return
                    results[i] = e
                with lock:  # callbacks one at a time, so progress never goes backwards
                    done += 1
                    if on_result is not None and i not in failures:
                        on_result(i, results[i])
                    if on_done is not None:
                        on_done(done, len(inputs))

        # Daemon threads, each in the caller's context: a task abandoned at its time limit
        # (see cancel_scope) neither starts new requests nor keeps the process from exiting.
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(work,), name="benchflow-client", daemon=True)
            for _ in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures and not return_exceptions:
            raise failures[min(failures)]
        return results

    def _asker(self, sample_ids: Sequence[str | int] | None) -> Callable[[int, dict[str, Any]], Any]:
        if sample_ids is None:
            return lambda i, raw: self.get_response(raw)  # a 0.1.x override may not take sample_id
        return lambda i, raw: self.get_response(raw, sample_id=sample_ids[i])

    def _serially(
        self,
        inputs: list[dict[str, Any]],
        ask: Callable[[int, dict[str, Any]], Any],
        return_exceptions: bool,
        on_done: Callable[[int, int], None] | None,
        on_result: Callable[[int, Any], None] | None,
    ) -> list[Any]:
        # One at a time needs no thread pool (and a one-question task is the common case).
        results: list[Any] = []
        for i, raw in enumerate(inputs):
            try:
                results.append(ask(i, raw))
            except Exception as e:
                if not return_exceptions:
                    raise
                results.append(e)
            else:
                if on_result is not None:
                    on_result(i, results[i])
            if on_done is not None:
                on_done(i + 1, len(inputs))
        return results

    def _post(self, body: bytes, exchange: _Exchange) -> Any:
        settings = self.settings
        timeout = (settings.connect_timeout, settings.read_timeout)
        cancel = _CANCEL.get()
        cache = current_cache()
        cached = cache.get(body) if cache is not None else None
        if cached is not None:
            exchange.cached = True
            return self._decode(200, cached)
        limit = _limit_for(self.intelligence_url, settings.max_concurrency)
        # 429 is retried for as long as BENCHFLOW_RATE_LIMIT_SECONDS allows; other failures count against `retries`.
        rate_limited_until = time.monotonic() + settings.rate_limit_seconds
        attempt = failures = 0
        while True:
            exchange.attempts = attempt + 1
            if not limit.acquire(cancel):
                raise TaskCancelled(f"request to {self._shown_url} not sent: the task was stopped at its time limit")
            try:
                response, content = self._send(body, timeout, limit)
            except requests.exceptions.RequestException as e:
                error, retry_after, throttled = self._transport_error(e, attempt), None, False
            else:
                throttled = response.status_code == 429
                limit.record(throttled)
                if response.status_code < 300:
                    reported = response.headers.get(USAGE_HEADER)
                    exchange.usage = parse_usage(reported)
                    current_meter().add(exchange.usage, ignored=bool(reported) and exchange.usage is None)
                    answer = self._decode(response.status_code, content)
                    if cache is not None:
                        cache.put(body, content)
                    return answer
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                error = self._http_error(response, content, attempt)
                if not _transient(response.status_code):
                    raise error
            failures += not throttled
            delay = settings.delay(attempt, retry_after)
            if failures > settings.retries or (throttled and time.monotonic() + delay > rate_limited_until):
                raise error
            attempt += 1
            if cancel is not None:
                cancel.wait(delay)
            else:
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, body: bytes, timeout: tuple[float, float], limit: AdaptiveLimit) -> tuple[requests.Response, bytes]:
        """One POST and its whole answer, in the concurrency slot already taken from ``limit`` (given back here)."""
        try:
            response = self._session().post(
                self.response_url, data=body, headers=_JSON, timeout=timeout, stream=True, allow_redirects=False
            )
            with response:
                return response, self._read_body(response)
        finally:
            limit.release()

    def _read_body(self, response: requests.Response) -> bytes:
        """The whole body, refusing more than ``max_response_bytes`` (declared or sent)."""
        cap = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit():
            if int(declared) > cap:
                raise self._too_large(cap)
            # Content-Length counts the bytes on the wire: a compressed body may inflate far beyond it.
            if response.headers.get("Content-Encoding", "identity").strip().lower() == "identity":
                return response.content  # no more than declared is read
        chunks, size = [], 0
        for chunk in response.iter_content(256 * 1024):
            size += len(chunk)
            if size > cap:
                raise self._too_large(cap)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, cap: int) -> AgentBadResponse:
        return AgentBadResponse(
            f"agent at {self._shown_url} answered with more than {cap} bytes (BENCHFLOW_MAX_RESPONSE_BYTES)",
            url=self._shown_url,
        )

    def _transport_error(self, e: requests.exceptions.RequestException, attempt: int) -> AgentError:
        url, settings = self._shown_url, self.settings
        tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
        error: AgentError
        if isinstance(e, requests.exceptions.ConnectTimeout):
            message = f"agent at {url} did not accept a connection within {settings.connect_timeout:g} s ({tries})"
            error = AgentUnreachable(message + "; is it running?", url=url)
        elif isinstance(e, requests.exceptions.Timeout):
            error = AgentTimeout(f"agent at {url} did not answer within {settings.read_timeout:g} s ({tries})", url=url)
        elif _cut_off(e):
            reason = excerpt(str(e.args[0] if e.args else e), 120)
            error = AgentUnreachable(
                f"agent at {url} closed the connection before its answer was complete ({tries}): {reason}", url=url
            )
        else:
            reason = excerpt(str(e.args[0] if e.args else e), 120)
            error = AgentUnreachable(
                f"cannot connect to the agent at {url} ({tries}): {reason}; is it running?", url=url
            )
        error.__cause__ = e
        return error

    def _http_error(self, response: requests.Response, content: bytes, attempt: int) -> AgentHTTPError:
        url, status, body = self._shown_url, response.status_code, excerpt(content.decode("utf-8", errors="replace"))
        after = f" after {attempt + 1} attempts" if attempt else ""
        message = f"agent at {url} answered HTTP {status}{after}: {body or '(empty body)'}"
        return AgentHTTPError(message, url=url, status=status, body_excerpt=body)

    def _decode(self, status: int, content: bytes) -> Any:
        try:
            return json.loads(content)
        except RecursionError:
            url = self._shown_url
            raise AgentBadResponse(f"agent at {url} answered JSON nested too deeply to read", url=url) from None
        except ValueError:
            url = self._shown_url
            if not content:
                message = f"agent at {url} answered HTTP {status} with an empty body"
            else:
                text = content.decode("utf-8", errors="replace")
                message = f"agent at {url} answered with a body that is not JSON: {excerpt(text)}"
            raise AgentBadResponse(message, url=url) from None
