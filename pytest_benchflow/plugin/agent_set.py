"""The agents of a session, started, health-checked and named: one as always, or several side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ..errors import AgentLaunchError
from ..redaction import public_url, redact, url_secrets
from .agents_given import AgentGiven, check_names, derived_name
from .launch import agent_info, agent_secrets, check_agent, provide_agent

__all__ = ["SessionAgent", "start_agents"]


@dataclass
class SessionAgent:
    """One agent of the session: its name ("" when it is the only one), URL and what it said at ``GET /info``."""

    name: str
    url: str
    #: How the user named it (``--agent module:Class``, ``--agent-cmd …`` masked, ``--agent-url URL``): what stays
    #: the same when a served agent's port changes, so resume checks it and the response cache keys on it.
    given: str
    info: dict[str, Any] | None = None
    #: Why its ``GET /info`` is not kept (too slow, too large), None when nothing is wrong.
    info_note: str | None = None


def _given_text(given: AgentGiven | None, url: str, secrets: set[str]) -> str:
    if given is None or given.how == "url":
        return f"--agent-url {public_url(url)}"
    return f"{given.flag} {redact(given.value, secrets)}"


def _start_one(config: pytest.Config, given: AgentGiven | None, secrets: set[str], several: bool) -> SessionAgent:
    """Start (or take) one agent and check it answers; a usage error naming it when it does not."""
    what = ""
    if given is not None and several:
        what = f"agent {given.name}" if given.name else f"agent {given.flag} {public_url(given.value)}"
    try:
        url, started = provide_agent(
            given.value if given and given.how == "url" else None,
            given.value if given and given.how == "agent" else None,
            given.value if given and given.how == "cmd" else None,
        )
    except AgentLaunchError as e:
        raise AgentLaunchError(f"{what}: {e}" if what else str(e)) from None
    if started is not None:
        config.add_cleanup(started.stop)  # whatever happens next, the agent is stopped with the session
    # The agent's own key is a secret too: its provider may quote it in any answer or error.
    secrets.update(url_secrets(url), agent_secrets(started))
    problem = check_agent(url)
    if problem:
        flag = given.flag if given and several else "--agent-url"
        raise pytest.UsageError(
            (f"{what}: " if what else "") + f"{problem}; start the agent or fix {flag} before running the benchmark"
        )
    return SessionAgent(name=(given.name or "") if given else "", url=url, given=_given_text(given, url, secrets))


def start_agents(config: pytest.Config, given: list[AgentGiven], secrets: set[str]) -> list[SessionAgent]:
    """Every agent of the session started and answering ``GET /health``, with its ``GET /info``; with several,
    each named (unnamed ones from ``/info`` or how they were given), the names unique.

    ``given`` empty means ``$INTELLIGENCE_URL``. ``secrets`` receives the agents' secrets as they are known.
    """
    several = len(given) > 1
    agents: list[SessionAgent] = []
    candidates: list[AgentGiven | None] = [*given] or [None]
    for one in candidates:
        agent = _start_one(config, one, secrets, several)
        agent.info, agent.info_note = agent_info(agent.url)
        if several:
            assert one is not None
            agent.name = one.name or derived_name(one, agent.url, agent.info)
        agents.append(agent)
    if several:
        check_names([a.name for a in agents])
    elif agents[0].name:
        agents[0].name = ""  # one agent: its items and records look as they always did
    return agents
