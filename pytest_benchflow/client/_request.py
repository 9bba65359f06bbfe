"""One JSON request to an agent, with everything a task's request gets: :func:`request_json`.

:func:`request_json` is the one way the SDK sends a request to an agent; ``BenchClient.get_response`` is
``prepare_input`` → ``request_json`` → ``parse_response``, and any other conversation with an agent (a
multi-turn agent loop) goes through it too, so that each of its requests gets, in order:

1. the task's response cache (:func:`~pytest_benchflow.cache.current_cache`): a stored answer is used as is;
2. the process's concurrency limit of that agent (:func:`._limit.limit_for`, keyed by ``agent_url``),
   halved on each 429, and the task's stop signal (:mod:`._cancel`): nothing is sent once it is set;
3. retries of transient failures (429 for ``rate_limit_seconds``, 5xx and transport errors ``retries``
   times) with :func:`._settings.backoff_delay`, ``Retry-After`` honoured;
4. the answer's size cap and JSON decoding, and every failure as an ``AgentError`` naming the URL
   (credentials masked);
5. the agent's ``X-Benchflow-Usage`` added to the task's usage meter;
6. one line in the task's transcript (:func:`~pytest_benchflow.transcript.current_transcript`), written
   whatever the outcome, with the request, the answer, what ``interpret`` made of it and any error.

A caller that writes transcript lines of its own can use :class:`AgentRequest` (steps 1 to 5) directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

from ..cache import current_cache
from ..errors import AgentBadResponse, AgentError, AgentHTTPError, AgentTimeout, AgentUnreachable, TaskCancelled
from ..redaction import public_url
from ..transcript import current_transcript
from ..untrusted import excerpt
from ..usage import USAGE_HEADER, current_meter, parse_usage
from ._cancel import current_cancel
from ._limit import AdaptiveLimit, limit_for
from ._pool import keepalive_post
from ._settings import ClientSettings, retry_after_seconds

__all__ = ["AgentRequest", "request_json"]


def request_json(
    url: str,
    body: dict[str, Any],
    settings: ClientSettings,
    interpret: Callable[[Any], dict[str, Any]] | None = None,
    *,
    agent_url: str | None = None,
    sample_id: str | None = None,
) -> Any:
    """POST ``body`` as JSON to ``url`` and return the decoded answer, or ``interpret(answer)`` when given.

    ``agent_url`` (default ``url``) names the agent whose concurrency limit the request shares.
    ``interpret`` runs inside the transcript's record: its failure is the line's error, and its dict
    (less ``raw_response``, which ``response`` already holds) the line's ``parsed``. The line goes
    under ``sample_id``.

    Raises:
        AgentError: a subclass saying why no usable answer came back (or whatever ``interpret`` raises).
        TaskCancelled: the task was stopped at its time limit before the request could be sent.
    """
    request = AgentRequest(url, settings, agent_url or url)
    transcript = current_transcript()
    if transcript is None:
        answer = request.send(json.dumps(body).encode())
        return answer if interpret is None else interpret(answer)
    started = time.perf_counter()
    parsed: dict[str, Any] | None = None
    error: str | None = None
    try:
        answer = request.send(json.dumps(body).encode())
        if interpret is None:
            return answer
        parsed = interpret(answer)
        return parsed
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        raise
    finally:
        transcript.record(
            sample_id=sample_id,
            request=body,
            response=request.raw,
            parsed={k: v for k, v in parsed.items() if k != "raw_response"} if parsed is not None else None,
            latency=time.perf_counter() - started,
            attempts=request.attempts,
            usage=request.usage,
            cached=request.cached,
            error=error,
        )


def _transient(status: int) -> bool:
    """Worth retrying: overload (429) and server errors (5xx); other 4xx will not change."""
    return status == 429 or status >= 500


def _cut_off(e: requests.exceptions.RequestException) -> bool:
    """The connection was made and then dropped mid-exchange (as opposed to never made)."""
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return True
    text = str(e)
    return "RemoteDisconnected" in text or "IncompleteRead" in text or "Connection aborted" in text


class AgentRequest:
    """One request to ``url`` (cache, limit, retries, size cap, decoding, usage) and what it saw."""

    __slots__ = ("agent_url", "attempts", "cached", "raw", "settings", "url", "usage")

    def __init__(self, url: str, settings: ClientSettings, agent_url: str) -> None:
        self.url = url
        self.settings = settings
        self.agent_url = agent_url
        self.attempts = 0
        self.cached = False
        #: The decoded answer, once there is one.
        self.raw: Any = None
        self.usage: tuple[int, int] | None = None

    @property
    def shown_url(self) -> str:
        # Only for messages: never on the hot path.
        return public_url(self.url)

    def send(self, body: bytes) -> Any:
        """The decoded answer to ``body``, from the cache or from the agent, retried as the settings say."""
        settings = self.settings
        timeout = (settings.connect_timeout, settings.read_timeout)
        cancel = current_cancel()
        cache = current_cache()
        cached = cache.get(body) if cache is not None else None
        if cached is not None:
            self.cached = True
            raw = self.raw = self.decode(200, cached)
            return raw
        limit = limit_for(self.agent_url, settings.max_concurrency)
        # 429 is retried for as long as BENCHFLOW_RATE_LIMIT_SECONDS allows; other failures count against `retries`.
        rate_limited_until = time.monotonic() + settings.rate_limit_seconds
        attempt = failures = 0
        while True:
            self.attempts = attempt + 1
            if not limit.acquire(cancel):
                raise TaskCancelled(f"request to {self.shown_url} not sent: the task was stopped at its time limit")
            try:
                response, content = self._post(body, timeout, limit)
            except requests.exceptions.RequestException as e:
                error, retry_after, throttled = self._transport_error(e, attempt), None, False
            else:
                throttled = response.status_code == 429
                limit.record(throttled)
                if response.status_code < 300:
                    reported = response.headers.get(USAGE_HEADER)
                    self.usage = parse_usage(reported)
                    current_meter().add(self.usage, ignored=bool(reported) and self.usage is None)
                    answer = self.raw = self.decode(response.status_code, content)
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

    def _post(self, body: bytes, timeout: tuple[float, float], limit: AdaptiveLimit) -> tuple[requests.Response, bytes]:
        """One POST and its whole answer, in the concurrency slot already taken from ``limit`` (given back here)."""
        try:
            response = keepalive_post(self.url, body, timeout)
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
            f"agent at {self.shown_url} answered with more than {cap} bytes (BENCHFLOW_MAX_RESPONSE_BYTES)",
            url=self.shown_url,
        )

    def _transport_error(self, e: requests.exceptions.RequestException, attempt: int) -> AgentError:
        url, settings = self.shown_url, self.settings
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
        url, status, body = self.shown_url, response.status_code, excerpt(content.decode("utf-8", errors="replace"))
        after = f" after {attempt + 1} attempts" if attempt else ""
        message = f"agent at {url} answered HTTP {status}{after}: {body or '(empty body)'}"
        return AgentHTTPError(message, url=url, status=status, body_excerpt=body)

    def decode(self, status: int, content: bytes) -> Any:
        """``content`` as JSON, or an ``AgentBadResponse`` saying why it is none."""
        try:
            return json.loads(content)
        except RecursionError:
            url = self.shown_url
            raise AgentBadResponse(f"agent at {url} answered JSON nested too deeply to read", url=url) from None
        except ValueError:
            url = self.shown_url
            if not content:
                message = f"agent at {url} answered HTTP {status} with an empty body"
            else:
                text = content.decode("utf-8", errors="replace")
                message = f"agent at {url} answered with a body that is not JSON: {excerpt(text)}"
            raise AgentBadResponse(message, url=url) from None
