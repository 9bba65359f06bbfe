"""Whether a task started somewhere else can reach the agent: the loopback checks of container runners.

An agent on this machine's loopback (``--agent-url http://127.0.0.1:…``, the default) is reachable
only from this machine's network namespace: a container on a local engine reaches it with host
networking, a container, pod or actor on another machine never does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from ..errors import RunnerError

__all__ = ["check_agent_reachable", "is_local_url", "is_loopback_url", "network_for_agent"]


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine's loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_url(url: str) -> bool:
    """Whether what the service at ``url`` starts runs on this machine (a local socket, or a loopback address)."""
    return urlsplit(url).scheme in ("unix", "npipe") or is_loopback_url(url)


def network_for_agent(agent_url: str) -> str | None:
    """The network a task on this machine needs for the agent: ``"host"`` for a loopback agent, else None
    (the orchestrator's default)."""
    return "host" if is_loopback_url(agent_url) else None


def check_agent_reachable(agent_url: str, remote: Sequence[str]) -> None:
    """Refuse a loopback agent when tasks may run on the ``remote`` places (shown names, no credentials).

    Raises:
        RunnerError: a usage error naming the places and what to give instead.
    """
    if remote and is_loopback_url(agent_url):
        raise RunnerError(
            f"the agent at {agent_url} is on this machine's loopback, which containers on "
            f"{', '.join(remote)} cannot reach; give an --agent-url that host can reach "
            "(this machine's address, or an agent running there)"
        )
