"""The agents a session evaluates, as the user gave them: ``--agent-url``, ``--agent`` and ``--agent-cmd``, each
repeatable and optionally named (``NAME=VALUE``); their names once the agents answered ``GET /info``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from ..errors import AgentLaunchError
from ..redaction import public_url

__all__ = ["MAX_AGENTS", "NAME_PATTERN", "AgentGiven", "agents_given", "check_names", "derived_name"]

#: More agents than this in one session is a typo (every task is an item per agent); docs/results.md says so.
MAX_AGENTS = 50
#: An agent's name: in node ids (``…::biology[gpt4o]``), ``-k`` expressions and directory names, so only
#: characters all three take; at most 40 of them.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}")
# A name that would read as an epoch suffix (``[epoch2]``, ``[x-epoch2]``): node ids could not be split back.
_EPOCH_LIKE = re.compile(r"(.*-)?epoch[0-9]+")
# What may stand before "=" in a value to name it: anything else ("http://h/?a=b", "python x.py --p={port}") is
# the value itself.
_PREFIX = re.compile(r"([^=:/\s]+)=(.+)", re.DOTALL)

How = Literal["url", "agent", "cmd"]
_FLAGS: dict[How, str] = {"url": "--agent-url", "agent": "--agent", "cmd": "--agent-cmd"}


@dataclass(frozen=True)
class AgentGiven:
    """One agent as given: how (a URL, a BaseAgent class, a command), its value, and its name when given."""

    how: How
    value: str
    name: str | None = None

    @property
    def flag(self) -> str:
        return _FLAGS[self.how]


def _as_list(given: Any) -> list[str]:
    if not given:
        return []
    return [given] if isinstance(given, str) else [str(v) for v in given if str(v).strip()]


def _check_name(name: str, shown: str) -> None:
    if not NAME_PATTERN.fullmatch(name) or _EPOCH_LIKE.fullmatch(name):
        raise AgentLaunchError(
            f"{shown}: agent name {name!r} cannot be part of a node id; use up to 40 letters, digits, '_', '.', "
            "'+' or '-', starting with a letter or digit (and not epochN)"
        )


def agents_given(urls: Any, refs: Any, commands: Any) -> list[AgentGiven]:
    """The agents of ``--agent-url``, ``--agent`` and ``--agent-cmd`` (each a value or a list of them), in that
    order; ``name=`` prefixes split off and checked. Empty when none was given.

    Raises:
        AgentLaunchError: a name that cannot be in a node id, two agents with one name, more than MAX_AGENTS.
    """
    found: list[AgentGiven] = []
    for how, values in (("url", urls), ("agent", refs), ("cmd", commands)):
        for raw in _as_list(values):
            kind = cast(How, how)
            # "name=value" names the agent ("A=1 cmd {port}" was never a command that ran: shlex has no assignments).
            named = _PREFIX.fullmatch(raw)
            if named:
                _check_name(named.group(1), f"{_FLAGS[kind]} {named.group(1)}=…")
                found.append(AgentGiven(kind, named.group(2), named.group(1)))
            else:
                found.append(AgentGiven(kind, raw))
    if len(found) > MAX_AGENTS:
        raise AgentLaunchError(
            f"{len(found)} agents given: at most {MAX_AGENTS} run in one session (each task is an item per agent)"
        )
    check_names([g.name for g in found if g.name])
    return found


def check_names(names: list[str]) -> None:
    """An error naming the first name two agents share."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise AgentLaunchError(f"two agents are named {name!r}: give each its own name (--agent-url NAME=URL, …)")
        seen.add(name)


def derived_name(given: AgentGiven, url: str, info: dict[str, Any] | None) -> str:
    """The name of an agent given without one: its ``GET /info`` name, else its class (``--agent``) or its URL's
    host and port, cleaned to the characters a name may have.

    Raises:
        AgentLaunchError: nothing usable (a name of only other characters).
    """
    told = (info or {}).get("name")
    if isinstance(told, str) and told.strip():
        source = told
    elif given.how == "agent":
        source = given.value.rpartition(":")[2]
    else:
        parts = urlsplit(url)
        source = f"{parts.hostname}_{parts.port}" if parts.port else str(parts.hostname)
    shown = public_url(given.value) if given.how == "url" else given.value
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]+", "_", source).strip("_.+-")[:40]
    if not cleaned or _EPOCH_LIKE.fullmatch(cleaned):
        raise AgentLaunchError(
            f"{given.flag} {shown!r}: cannot name the agent from {source!r}; give it a name ({given.flag} NAME=…)"
        )
    return cleaned
