"""Keep-alive HTTP sessions, one per thread and URL, shared by everything in the process that asks that URL."""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar

__all__ = ["keepalive_post", "keepalive_session"]

_SESSIONS = threading.local()


def keepalive_session(url: str) -> requests.Session:
    """This thread's keep-alive session for ``url``'s server, shared by everything in the process that asks it.

    A benchmark that makes a client per task still reuses its connection. requests rescans
    the whole environment for proxy and CA settings on every call (half the cost of a local
    call); they are read once for ``url`` instead.
    """
    return _keepalive(url).session


def keepalive_post(url: str, body: bytes, timeout: tuple[float, float]) -> requests.Response:
    """POST the JSON ``body`` to ``url`` on this thread's keep-alive connection; the answer is streamed.

    The request goes straight to the session's transport adapter: ``Session.request`` would merge
    settings and hooks an agent request never has, and prepare the same URL and headers again,
    which is half the CPU of a request on loopback (many tasks at once share one core for that).
    Default headers, proxies, CA bundle, cookies (only looked at when there are some), timeouts,
    and requests' exceptions are the session's, as before.
    """
    connection = _keepalive(url)
    request = connection.template.copy()
    request.body = body
    request.headers["Content-Length"] = str(len(body))
    cookies = connection.session.cookies
    if cookies:  # what the agent set before goes back, as with Session.post (a load balancer's sticky session)
        request.prepare_cookies(cookies)
    response = connection.adapter.send(
        request, stream=True, timeout=timeout, verify=connection.verify, proxies=connection.session.proxies
    )
    if "Set-Cookie" in response.headers:
        extract_cookies_to_jar(cookies, request, response.raw)  # type: ignore[no-untyped-call]  # untyped in the stubs
    return response


class _KeepAlive:
    """One thread's connection to one agent URL: its session, the session's adapter, a prepared POST to copy."""

    __slots__ = ("adapter", "session", "template", "verify")

    def __init__(self, url: str) -> None:
        session = self.session = requests.Session()
        adapter = self.adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        env = session.merge_environment_settings(url, {}, None, None, None)
        session.trust_env = False
        session.proxies.update(env["proxies"])
        verify = env["verify"]
        # merge_environment_settings gives the CA bundle's path or True; None would mean the default, True.
        self.verify: bool | str = True if verify is None else verify
        session.verify = self.verify
        # Prepared by the session: its default headers (User-Agent, Accept, Accept-Encoding) go out as with
        # Session.post, which an agent's gateway may compress for or admit by; the URL's credentials too.
        self.template = session.prepare_request(
            requests.Request("POST", url, headers={"Content-Type": "application/json"})
        )


def _keepalive(url: str) -> _KeepAlive:
    connections: dict[str, _KeepAlive] | None = getattr(_SESSIONS, "by_url", None)
    if connections is None:
        connections = _SESSIONS.by_url = {}
    connection = connections.get(url)
    if connection is None:
        connection = connections[url] = _KeepAlive(url)
    return connection
