"""``BenchClient``: how a benchmark asks the agent for a response over HTTP.

The public face is :class:`BenchClient` (with :class:`ClientSettings` and :class:`ClientOptions`, its
settings and their keyword arguments). The machinery lives in private modules, one job each:

- ``_request``: :func:`~._request.request_json`, the one function that sends one JSON request to an
  agent URL with everything a task's request gets (response cache, the per-agent concurrency limit and
  the task's stop signal, retries with backoff, the size cap, usage counting, the transcript line).
  ``get_response`` is ``prepare_input`` → ``request_json`` → ``parse_response``; any other conversation
  with an agent (a multi-turn agent loop) sends its requests through it too.
- ``_batch``: many calls a few at a time, in input order (``get_responses``);
- ``_limit``: one adaptive concurrency limit per agent URL in the process;
- ``_pool``: keep-alive HTTP sessions per thread and URL (shared with ``OpenAIChatAgent``);
- ``_settings``: timeouts, retries and concurrency from arguments or the environment, backoff delays;
- ``_cancel``: a task's stop signal at its time limit (set by the runner).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import AgentBadResponse
from ..redaction import public_url
from ..untrusted import excerpt
from ._batch import run_batch
from ._limit import limit_for
from ._request import request_json
from ._settings import ClientOptions, ClientSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["BenchClient", "ClientOptions", "ClientSettings"]


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
        shown_id = None if sample_id is None else str(sample_id)
        answer: dict[str, Any] = request_json(
            self.response_url, body, self.settings, self._interpret, agent_url=self.intelligence_url, sample_id=shown_id
        )
        return answer

    def _interpret(self, raw: Any) -> dict[str, Any]:
        """The agent's decoded answer checked and parsed: what ``get_response`` returns."""
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
        if workers > 1:
            limit_for(self.intelligence_url, workers)  # this batch may have that many in flight
        return run_batch(inputs, ask, workers, return_exceptions, on_done, on_result)

    def _asker(self, sample_ids: Sequence[str | int] | None) -> Callable[[int, dict[str, Any]], Any]:
        if sample_ids is None:
            return lambda i, raw: self.get_response(raw)  # a 0.1.x override may not take sample_id
        return lambda i, raw: self.get_response(raw, sample_id=sample_ids[i])
