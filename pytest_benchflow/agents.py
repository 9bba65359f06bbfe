"""Ready-made agents: ``OpenAIChatAgent`` evaluates any OpenAI-compatible chat-completions endpoint."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import requests

from .agent_server import BaseAgent
from .client._pool import keepalive_session
from .client._settings import backoff_delay, retry_after_seconds
from .envnumbers import MAX_SECONDS, env_number
from .errors import AgentOverloaded
from .redaction import public_url, redact, url_secrets
from .untrusted import excerpt
from .usage import AgentAnswer, AgentMessage

__all__ = ["OpenAIChatAgent"]


MESSAGE_FORMS = ("user", "system")
#: Largest provider body read (``OPENAI_MAX_RESPONSE_BYTES``): a chat completion is kilobytes.
MAX_PROVIDER_BYTES = 16 * 1024 * 1024


class OpenAIChatAgent(BaseAgent):
    """Asks an OpenAI-compatible chat endpoint: ``prompt`` followed by ``input_text``.

    By default both go in one user message (``OPENAI_MESSAGE_FORM=user``), as the MMLU-Pro
    authors' API evaluation sends them; ``OPENAI_MESSAGE_FORM=system`` sends ``prompt`` as the
    system message and ``input_text`` as the user message instead.

    Configured from the environment (or keyword arguments): ``OPENAI_BASE_URL``
    (default ``https://api.openai.com/v1``; any compatible server such as vLLM or
    Ollama works), ``OPENAI_MODEL`` (default ``gpt-4o-mini``), ``OPENAI_API_KEY``,
    ``OPENAI_TEMPERATURE`` (default 0), ``OPENAI_MAX_TOKENS`` (default 4000),
    ``OPENAI_TIMEOUT`` seconds (default 300), ``OPENAI_MAX_RETRY_SECONDS`` (default 600: how long
    429s, 5xx and connection errors from the provider are retried, honouring ``Retry-After``,
    before the benchmark is answered 429 or 503 with ``Retry-After``), ``OPENAI_MAX_RESPONSE_BYTES``
    (default 16 MiB: a provider body over it, declared or sent, is an error, and is never read
    whole). The key is sent only in the ``Authorization`` header and is masked as ``***`` in every
    error, whatever the provider quotes; a session serving this agent (``--agent``) masks it in
    everything it prints or writes.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        message_form: str | None = None,
        max_retry_seconds: float | None = None,
    ) -> None:
        env = os.environ
        self.base_url = (base_url or env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.model = model or env.get("OPENAI_MODEL") or "gpt-4o-mini"
        self._api_key = api_key if api_key is not None else env.get("OPENAI_API_KEY", "")
        self.temperature = temperature if temperature is not None else env_number("OPENAI_TEMPERATURE", 0.0)
        self.max_tokens = max_tokens if max_tokens is not None else env_number("OPENAI_MAX_TOKENS", 4000, minimum=1)
        self.timeout = timeout if timeout is not None else env_number("OPENAI_TIMEOUT", 300.0, maximum=MAX_SECONDS)
        self.max_retry_seconds = (
            max_retry_seconds if max_retry_seconds is not None else env_number("OPENAI_MAX_RETRY_SECONDS", 600.0)
        )
        self.max_response_bytes = env_number("OPENAI_MAX_RESPONSE_BYTES", MAX_PROVIDER_BYTES, minimum=1)
        self.message_form = message_form or env.get("OPENAI_MESSAGE_FORM") or "user"
        if self.message_form not in MESSAGE_FORMS:
            raise ValueError(f"OPENAI_MESSAGE_FORM={self.message_form!r}: choose user or system")
        self._local = threading.local()

    def info(self) -> dict[str, Any]:
        return {
            "name": type(self).__name__,
            "model": self.model,
            "base_url": public_url(self.base_url),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "message_form": self.message_form,
        }

    def secret_values(self) -> list[str]:
        return ([self._api_key] if self._api_key else []) + url_secrets(self.base_url)

    def _masked(self, text: str) -> str:
        """``text`` (a provider's answer, an error) without the key or the base URL's credentials, in any spelling."""
        return redact(text, self.secret_values())

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> requests.Response:
        """POST to the provider, retrying 429, 5xx and connection errors within ``max_retry_seconds``.

        Raises:
            AgentOverloaded: the budget ran out (429 with Retry-After after rate limits, else 503).
        """
        session = keepalive_session(url)
        deadline = time.monotonic() + self.max_retry_seconds
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                # Streamed: the body is read here, up to the cap, not whole by requests.
                response = session.post(url, json=body, headers=headers, timeout=self.timeout, stream=True)
                if response.status_code != 429 and response.status_code < 500:
                    return self._read_capped(response, url)
                response.close()  # its body is not wanted: retried
            except requests.RequestException as e:
                status, reason = 503, f"{url} unreachable: {type(e).__name__}"
            else:
                status = 429 if response.status_code == 429 else 503
                reason = f"{url} answered HTTP {response.status_code}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            wait = backoff_delay(attempt, 0.5, retry_after)
            if time.monotonic() + wait > deadline:
                budget = f"OPENAI_MAX_RETRY_SECONDS={self.max_retry_seconds:g}"
                raise AgentOverloaded(
                    self._masked(f"{reason}; gave up after {attempt + 1} attempts ({budget})"),
                    status=status,
                    retry_after=wait,
                )
            time.sleep(wait)
            attempt += 1

    def _excerpt(self, response: requests.Response) -> str:
        return excerpt(self._masked(response.text))

    def _shown(self, data: dict[str, Any]) -> str:
        return excerpt(self._masked(json.dumps(data, default=str)))

    def _read_capped(self, response: requests.Response, url: str) -> requests.Response:
        """``response`` with its body read, refusing more than ``max_response_bytes`` (declared or sent).

        Raises:
            RuntimeError: over the cap (the connection is closed, the rest never read).
        """
        cap = self.max_response_bytes
        with response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise RuntimeError(f"{url} answered more than {cap} bytes (OPENAI_MAX_RESPONSE_BYTES)")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > cap:
                    raise RuntimeError(f"{url} answered more than {cap} bytes (OPENAI_MAX_RESPONSE_BYTES)")
        # requests keeps a read body here; .text and .json() then use it as they would their own.
        response._content = bytes(body)
        return response

    def __repr__(self) -> str:
        return f"OpenAIChatAgent(base_url={self.base_url!r}, model={self.model!r})"

    def call_api(self, task_step_inputs: dict[str, Any]) -> AgentAnswer | AgentMessage:
        if "messages" in task_step_inputs:  # a multi-step task (docs/protocol.md): function calling
            return self._chat(task_step_inputs)
        prompt, text = task_step_inputs.get("prompt") or "", task_step_inputs.get("input_text", "")
        if self.message_form == "system" and prompt:
            messages = [{"role": "system", "content": prompt}, {"role": "user", "content": text}]
        else:
            messages = [{"role": "user", "content": prompt + text}]
        data = self._complete({"messages": messages})
        try:
            text = str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(
                self._masked(f"{self._url} answered without choices[0].message.content: ") + self._shown(data)
            ) from None
        return AgentAnswer(text, _usage(data))

    def _chat(self, request: dict[str, Any]) -> AgentMessage:
        """Forward the history and the tools; answer the assistant message (content and/or tool_calls)."""
        messages, tools = request.get("messages"), request.get("tools") or []
        if not isinstance(messages, list) or not isinstance(tools, list):
            raise ValueError("a multi-step request needs messages and tools as lists (docs/protocol.md)")
        data = self._complete({"messages": messages, **({"tools": tools} if tools else {})})
        try:
            message = data["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(
                self._masked(f"{self._url} answered without choices[0].message: ") + self._shown(data)
            ) from None
        # Only what the chat format defines goes back: the history is resent to the provider every turn.
        answer = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            answer["tool_calls"] = message["tool_calls"]
        return AgentMessage(answer, _usage(data))

    @property
    def _url(self) -> str:
        return self.base_url + "/chat/completions"

    def _complete(self, fields: dict[str, Any]) -> dict[str, Any]:
        """One chat completion with the configured model and settings; its JSON object."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {"model": self.model, **fields, "temperature": self.temperature, "max_tokens": self.max_tokens}
        response = self._post(self._url, body, headers)
        # Masked before the excerpt is cut: a key cut in two would not be recognised.
        if response.status_code != 200:
            raise RuntimeError(
                self._masked(f"{self._url} answered HTTP {response.status_code}: ") + self._excerpt(response)
            )
        try:
            data = response.json()
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise RuntimeError(self._masked(f"{self._url} answered without a JSON object: ") + self._excerpt(response))
        return data


def _usage(data: dict[str, Any]) -> dict[str, Any] | None:
    """The provider's own counts, passed on to the benchmark (OpenAI names them prompt/completion)."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    return {"input_tokens": usage.get("prompt_tokens", 0) or 0, "output_tokens": usage.get("completion_tokens", 0) or 0}
