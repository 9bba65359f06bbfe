"""Keep-alive HTTP sessions, one per thread and URL, shared by everything in the process that asks that URL."""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter

__all__ = ["keepalive_session"]

_SESSIONS = threading.local()


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
