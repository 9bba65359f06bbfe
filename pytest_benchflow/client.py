"""``BenchClient``: how a benchmark asks the agent for a response over HTTP."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .errors import AgentBadResponse, AgentError, AgentHTTPError, AgentTimeout, AgentUnreachable
from .redaction import public_url

__all__ = ["BenchClient", "ClientSettings"]

_EXCERPT = 200
_MAX_BACKOFF = 30.0
_MAX_RETRY_AFTER = 120.0


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """A one-line excerpt of ``text`` short enough for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ClientSettings:
    """Timeouts, retries and concurrency of a :class:`BenchClient`.

    Each value comes from the keyword argument, else from its environment variable,
    else from the default: ``BENCHFLOW_CONNECT_TIMEOUT`` (10 s), ``BENCHFLOW_READ_TIMEOUT``
    (300 s), ``BENCHFLOW_RETRIES`` (3 retries after the first attempt),
    ``BENCHFLOW_BACKOFF`` (0.5 s, doubled per retry, with jitter, at most 30 s),
    ``BENCHFLOW_MAX_CONCURRENCY`` (8 requests in flight in :meth:`BenchClient.get_responses`).
    """

    def __init__(
        self,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.connect_timeout = (
            connect_timeout if connect_timeout is not None else _env_float("BENCHFLOW_CONNECT_TIMEOUT", 10.0)
        )
        self.read_timeout = read_timeout if read_timeout is not None else _env_float("BENCHFLOW_READ_TIMEOUT", 300.0)
        self.retries = int(retries if retries is not None else _env_float("BENCHFLOW_RETRIES", 3))
        self.backoff = backoff if backoff is not None else _env_float("BENCHFLOW_BACKOFF", 0.5)
        self.max_concurrency = int(
            max_concurrency if max_concurrency is not None else _env_float("BENCHFLOW_MAX_CONCURRENCY", 8)
        )
        if self.retries < 0 or self.max_concurrency < 1 or min(self.connect_timeout, self.read_timeout) <= 0:
            raise ValueError("BenchClient: retries must be >= 0, max_concurrency >= 1 and timeouts > 0")

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based): exponential, full jitter."""
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER)
        ceiling = min(_MAX_BACKOFF, self.backoff * (2**retry))
        return random.uniform(ceiling / 2, ceiling)


_JSON = {"Content-Type": "application/json"}
_SESSIONS = threading.local()


def _transient(status: int) -> bool:
    """Worth retrying: overload (429) and server errors (5xx); other 4xx will not change."""
    return status == 429 or status >= 500


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


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
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """``max_retry`` is BenchFlow 0.1.x's total number of attempts; prefer ``retries``."""
        if retries is None and max_retry is not None:
            retries = max(0, max_retry - 1)
        self.intelligence_url = intelligence_url.rstrip("/")
        self.settings = ClientSettings(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=retries,
            backoff=backoff,
            max_concurrency=max_concurrency,
        )

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
        # One keep-alive session per thread and agent, shared by every client in the process:
        # a benchmark that makes a client per task still reuses its connection.
        sessions: dict[str, requests.Session] | None = getattr(_SESSIONS, "by_url", None)
        if sessions is None:
            sessions = _SESSIONS.by_url = {}
        session = sessions.get(self.intelligence_url)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # requests rescans the whole environment for proxy and CA settings on every call
            # (half the cost of a local call); read them once for this URL instead.
            env = session.merge_environment_settings(self.response_url, {}, None, None, None)
            session.trust_env = False
            session.proxies.update(env["proxies"])
            session.verify = env["verify"]
            sessions[self.intelligence_url] = session
        return session

    @abstractmethod
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        """Turn the benchmark's raw step inputs into the JSON body sent to the agent."""

    @abstractmethod
    def parse_response(self, raw_response: str) -> dict[str, Any]:
        """Turn the agent's answer (normally a string) into the dict the benchmark uses."""

    def get_response(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        """prepare → POST ``{intelligence_url}/response`` → parse.

        Returns the parsed dict, with the agent's answer also under ``raw_response``.

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
        raw = self._post(json.dumps(body).encode())
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
        return parsed

    def get_responses(
        self,
        raw_step_inputs: Iterable[dict[str, Any]],
        max_concurrency: int | None = None,
        *,
        return_exceptions: bool = False,
        on_done: Callable[[int, int], None] | None = None,
    ) -> list[Any]:
        """:meth:`get_response` for many inputs, ``max_concurrency`` requests in flight.

        Results come back in input order. When a call fails and ``return_exceptions``
        is false, no further calls are started, the ones in flight finish, and the
        failure of the earliest failed input is raised. With ``return_exceptions``,
        every input is tried and a failed one has its exception in its place.
        ``on_done(done, total)`` is called (from worker threads) after each call.
        """
        inputs = list(raw_step_inputs)
        workers = max(1, min(max_concurrency or self.settings.max_concurrency, len(inputs) or 1))
        if workers == 1:
            return self._serially(inputs, return_exceptions, on_done)
        results: list[Any] = [None] * len(inputs)
        done = 0
        lock = threading.Lock()
        stop = threading.Event()

        def one(i: int) -> None:
            nonlocal done
            if stop.is_set():
                return
            try:
                results[i] = self.get_response(inputs[i])
            except Exception as e:
                if not return_exceptions:
                    stop.set()
                    raise
                results[i] = e
            with lock:  # callbacks in order, so progress never goes backwards
                done += 1
                if on_done is not None:
                    on_done(done, len(inputs))

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="benchflow-client") as pool:
            futures: list[Future[None]] = [pool.submit(one, i) for i in range(len(inputs))]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
        for f in futures:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        return results

    def _serially(
        self, inputs: list[dict[str, Any]], return_exceptions: bool, on_done: Callable[[int, int], None] | None
    ) -> list[Any]:
        # One at a time needs no thread pool (and a one-question task is the common case).
        results: list[Any] = []
        for i, raw in enumerate(inputs):
            try:
                results.append(self.get_response(raw))
            except Exception as e:
                if not return_exceptions:
                    raise
                results.append(e)
            if on_done is not None:
                on_done(i + 1, len(inputs))
        return results

    def _post(self, body: bytes) -> Any:
        settings = self.settings
        timeout = (settings.connect_timeout, settings.read_timeout)
        attempts = settings.retries + 1
        for attempt in range(attempts):
            try:
                response = self._session().post(self.response_url, data=body, headers=_JSON, timeout=timeout)
            except requests.exceptions.RequestException as e:
                error, retry_after = self._transport_error(e, attempt), None
            else:
                if response.status_code < 300:
                    return self._decode(response)
                error, retry_after = self._http_error(response, attempt), _retry_after(response)
                if not _transient(response.status_code):
                    raise error
            if attempt == attempts - 1:
                raise error
            time.sleep(settings.delay(attempt, retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_error(self, e: requests.exceptions.RequestException, attempt: int) -> AgentError:
        url, settings = self._shown_url, self.settings
        tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
        error: AgentError
        if isinstance(e, requests.exceptions.ConnectTimeout):
            message = f"agent at {url} did not accept a connection within {settings.connect_timeout:g} s ({tries})"
            error = AgentUnreachable(message + "; is it running?", url=url)
        elif isinstance(e, requests.exceptions.Timeout):
            error = AgentTimeout(f"agent at {url} did not answer within {settings.read_timeout:g} s ({tries})", url=url)
        else:
            reason = excerpt(str(e.args[0] if e.args else e), 120)
            error = AgentUnreachable(
                f"cannot connect to the agent at {url} ({tries}): {reason}; is it running?", url=url
            )
        error.__cause__ = e
        return error

    def _http_error(self, response: requests.Response, attempt: int) -> AgentHTTPError:
        url, status, body = self._shown_url, response.status_code, excerpt(response.text)
        after = f" after {attempt + 1} attempts" if attempt else ""
        message = f"agent at {url} answered HTTP {status}{after}: {body or '(empty body)'}"
        return AgentHTTPError(message, url=url, status=status, body_excerpt=body)

    def _decode(self, response: requests.Response) -> Any:
        content = response.content
        try:
            return json.loads(content)
        except ValueError:
            url = self._shown_url
            if not content:
                message = f"agent at {url} answered HTTP {response.status_code} with an empty body"
            else:
                message = f"agent at {url} answered with a body that is not JSON: {excerpt(response.text)}"
            raise AgentBadResponse(message, url=url) from None
