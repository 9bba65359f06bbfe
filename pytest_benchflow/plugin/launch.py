"""Providing the agent for a session: a given URL, a BaseAgent served in-process, or a command."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from ..agent_server import AgentServer, BaseAgent
from ..bench_lookup import import_object
from ..deadline import within
from ..errors import AgentLaunchError, BenchLoadError
from ..redaction import public_url
from ..untrusted import bounded_info

__all__ = [
    "HARNESS_AGENT_CLASSES",
    "MAX_INFO_BYTES",
    "PROBE_SECONDS",
    "AgentProcess",
    "Stoppable",
    "agent_info",
    "agent_secrets",
    "check_agent",
    "check_url",
    "provide_agent",
    "serve_agent_class",
]


class Stoppable(Protocol):
    """An agent the session started: stopping it is safe more than once."""

    url: str

    def stop(self) -> None: ...


def provide_agent(url: str | None, agent_ref: str | None, command: str | None) -> tuple[str, Stoppable | None]:
    """The agent's URL, and what the session started to serve it (None for a given URL).

    At most one of ``url`` (else ``$INTELLIGENCE_URL``), ``agent_ref`` and ``command`` may be given.

    Raises:
        AgentLaunchError: none or several given, a malformed URL, or an agent that does not start.
    """
    given = [flag for flag, v in (("--agent-url", url), ("--agent", agent_ref), ("--agent-cmd", command)) if v]
    if len(given) > 1:
        raise AgentLaunchError(f"name the agent one way only, not with {' and '.join(given)}")
    if not given:
        url = os.environ.get("INTELLIGENCE_URL")
        if not url:
            raise AgentLaunchError(
                "no agent: give --agent-url URL (or $INTELLIGENCE_URL), --agent module:Class "
                "or --agent-cmd 'COMMAND {port}'"
            )
    if url:
        return check_url(url), None
    agent: Stoppable = serve_agent_class(agent_ref) if agent_ref else AgentProcess(str(command))
    return agent.url, agent


def agent_secrets(agent: Stoppable | None) -> list[str]:
    """The secret values (an API key) of an agent the session serves in-process (``--agent``)."""
    return list(agent.agent.secret_values()) if isinstance(agent, AgentServer) else []


def check_url(url: str) -> str:
    """``url`` with any trailing slash removed, or an error naming what is wrong with it."""
    try:
        parts = urlsplit(url)
    except ValueError as e:  # "Invalid IPv6 URL" and the like
        raise AgentLaunchError(f"agent URL {url!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AgentLaunchError(f"agent URL {public_url(url)!r} is not an http:// or https:// URL with a host")
    try:
        _ = parts.port  # raises ValueError for a non-numeric port
    except ValueError:
        raise AgentLaunchError(f"agent URL {public_url(url)!r} has an invalid port") from None
    return url.rstrip("/")


#: Largest ``GET /info`` body read from the wire: an agent describes itself in a few hundred bytes.
MAX_INFO_BYTES = 64 * 1024
#: Seconds a start-up probe of the agent (``/health``, ``/info``) may take in all, however it trickles.
PROBE_SECONDS = 5.0


class _TooLarge(Exception):
    pass


def _get(url: str, timeout: float, limit: int) -> tuple[int, bytes]:
    """GET ``url``: its status and body, read up to ``limit`` bytes (``_TooLarge`` beyond), all within ``timeout``."""

    def get() -> tuple[int, bytes]:
        # Not redirected: a 3xx would make the session fetch (and keep, for /info) whatever the agent points at,
        # a service only this machine reaches included. The benchmark's requests are not redirected either.
        with requests.get(url, timeout=timeout, stream=True, allow_redirects=False) as response:
            body = bytearray()
            for chunk in response.iter_content(16 * 1024):
                body += chunk
                if len(body) > limit:
                    raise _TooLarge
            return response.status_code, bytes(body)

    return within(timeout, get, f"GET {public_url(url)}")


def check_agent(url: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when the agent answers ``GET /health`` (or ``GET /``, for 0.1.x agents) within ``timeout``
    seconds in all, else why not."""
    last = ""
    for path in ("/health", "/"):
        try:
            status, _ = _get(url + path, timeout, MAX_INFO_BYTES)
        except TimeoutError:
            return f"agent at {public_url(url)} did not answer GET {path} within {timeout:g} s"
        except _TooLarge:
            return f"agent at {public_url(url)} answered GET {path} with more than {MAX_INFO_BYTES} bytes"
        except requests.RequestException as e:
            return f"agent at {public_url(url)} does not answer: {type(e).__name__}"
        if status == 200:
            return None
        last = f"agent at {public_url(url)} answered GET {path} with HTTP {status}"
    return last


def agent_info(url: str, timeout: float = PROBE_SECONDS) -> tuple[dict[str, Any] | None, str | None]:
    """The agent's ``GET /info`` object (name, model, settings), or None when it has none (0.1.x agents);
    and a note when it has one that could not be read (too slow in all, or over ``MAX_INFO_BYTES``)."""
    shown = public_url(url)
    try:
        status, body = _get(url + "/info", timeout, MAX_INFO_BYTES)
        info = json.loads(body) if status == 200 else None
    except TimeoutError:
        return None, f"agent at {shown} did not answer GET /info within {timeout:g} s: its info is not kept"
    except _TooLarge:
        return None, f"agent at {shown} answered GET /info with more than {MAX_INFO_BYTES} bytes: its info is not kept"
    except (requests.RequestException, ValueError, RecursionError):
        return None, None
    # Kept in summary.json and shown in the terminal: bounded and printable, whatever the agent sent.
    return (bounded_info(info) if isinstance(info, dict) else None), None


#: ``--agent NAME`` for the agents the Harbor bench plays itself (pytest_benchflow.harbor).
HARNESS_AGENT_CLASSES = {
    "oracle": "pytest_benchflow.harbor.bench:OracleAgent",
    "nop": "pytest_benchflow.harbor.bench:NopAgent",
}


def serve_agent_class(ref: str, host: str = "127.0.0.1") -> AgentServer:
    """Instantiate the BaseAgent named ``module:Class`` (or ``file.py:Class``) and serve it."""
    # The harness-side agents of Harbor tasks are named without a module (--agent oracle, --agent nop).
    target = HARNESS_AGENT_CLASSES.get(ref, ref)
    try:
        cls = import_object(target, what=f"--agent {ref!r}")
    except BenchLoadError as e:
        raise AgentLaunchError(str(e)) from e
    if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
        name = ref.rpartition(":")[2]
        raise AgentLaunchError(f"--agent {ref!r}: {name} is not a subclass of pytest_benchflow.BaseAgent")
    try:
        agent = cls()
    except Exception as e:
        raise AgentLaunchError(f"--agent {ref!r}: {cls.__name__}() raised {type(e).__name__}: {e}") from e
    return agent.serve(host=host)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class AgentProcess:
    """An agent started from a command line with ``{port}`` in it, stopped with its process group."""

    def __init__(self, command: str, host: str = "127.0.0.1", start_timeout: float = 60.0) -> None:
        if "{port}" not in command:
            raise AgentLaunchError(f"--agent-cmd {command!r} must contain {{port}}, where the agent should listen")
        self.port = _free_port(host)
        self.url = f"http://{host}:{self.port}"
        try:
            argv = shlex.split(command.replace("{port}", str(self.port)))
        except ValueError as e:
            raise AgentLaunchError(f"--agent-cmd {command!r}: {e} (check the quotes)") from None
        if not argv:
            raise AgentLaunchError("--agent-cmd is empty")
        self._output = tempfile.TemporaryFile()
        try:
            # Its own process group: stopping it stops whatever it started too.
            self._proc = subprocess.Popen(argv, stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._output.close()
            raise AgentLaunchError(f"--agent-cmd: cannot start {argv[0]!r}: {e.strerror}") from e
        try:
            self._wait_until_ready(start_timeout)
        except BaseException:  # Ctrl-C or SIGTERM while waiting included: never leave it running
            self.stop()
            raise

    def _wait_until_ready(self, start_timeout: float) -> None:
        deadline = time.monotonic() + start_timeout
        while check_agent(self.url, timeout=1.0) is not None:
            if self._proc.poll() is not None:
                raise AgentLaunchError(
                    f"--agent-cmd exited with status {self._proc.returncode} before answering: {self.output_tail()}"
                )
            if time.monotonic() > deadline:
                raise AgentLaunchError(
                    f"--agent-cmd did not answer GET /health on {self.url} within {start_timeout:g} s"
                )
            time.sleep(0.1)

    def output_tail(self, limit: int = 400) -> str:
        self._output.seek(0)
        text = self._output.read().decode(errors="replace")
        return " ".join(text[-limit:].split()) or "(no output)"

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after 10 s); safe to call more than once."""
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            except ProcessLookupError:
                pass
        self._output.close()
