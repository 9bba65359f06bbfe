"""Several Docker engines: clients per engine, a slot on one of them for each running task, engines lost mid-run."""

from __future__ import annotations

import fcntl
import importlib
import os
import random
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..deadline import within
from ..envnumbers import in_range, parse_number, shown_value
from ..errors import InfraError, RunnerError, first_line
from ..redaction import public_url
from .loopback import is_local_url, is_loopback_url

if TYPE_CHECKING:
    import docker

__all__ = [
    "DEFAULT_ENGINE",
    "Engine",
    "EnginePool",
    "docker_module",
    "is_local_engine",
    "is_loopback_url",
    "parse_engines",
    "remove_failed_build_layers",
]

#: The engine ``docker.from_env()`` finds when ``DOCKER_HOST`` is unset.
DEFAULT_ENGINE = "unix:///var/run/docker.sock"
_SCHEMES = ("unix", "tcp", "ssh", "npipe", "http", "https")
# How long a probe of an engine that stopped answering waits before calling it lost.
_PROBE_TIMEOUT = 5
# How often a task waiting for a free slot looks again.
_SLOT_POLL = 0.05


def docker_module() -> Any:
    # Imported on first use: pytest starts without it when no task runs in a container.
    import docker
    import docker.errors

    return docker


#: Whether containers of the engine at a URL run on this machine (so share its loopback with host networking).
is_local_engine = is_local_url


@dataclass
class Engine:
    """One Docker engine of the session: ``url`` as given, ``shown`` without credentials."""

    index: int
    url: str
    shown: str = ""
    #: Containers it may run at once for this run (None: not known yet, from its CPU count).
    slots: int | None = None
    _clients: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self.shown = self.shown or public_url(self.url)

    def client(self, timeout: int | None = None) -> docker.DockerClient:
        """This thread's client of the engine; with ``timeout``, this thread's client whose every call
        gives up after that many seconds (cleanup must not hang on an engine that went away)."""
        clients: dict[int | None, docker.DockerClient] | None = getattr(self._clients, "by_timeout", None)
        if clients is None:
            clients = self._clients.by_timeout = {}
        client = clients.get(timeout)
        if client is None:
            client = clients[timeout] = _connect(self.url, timeout)
        return client

    def close(self) -> None:
        """Close this thread's clients."""
        for client in getattr(self._clients, "by_timeout", {}).values():
            client.close()
        self._clients.by_timeout = {}

    def answers(self, timeout: int = _PROBE_TIMEOUT) -> bool:
        """Whether the engine answers a ping within ``timeout`` seconds in all (a new connection)."""

        def ping() -> None:
            with closing(_connect(self.url, timeout)) as client:
                client.ping()

        try:
            within(timeout, ping, f"Docker engine {self.shown}")
            return True
        except Exception:
            return False


def _connect(url: str, timeout: int | None) -> docker.DockerClient:
    """A client as ``DOCKER_HOST=url`` would give (TLS from ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH``)."""
    environment = {**os.environ, "DOCKER_HOST": url}
    kwargs: dict[str, Any] = {"environment": environment, "use_ssh_client": url.startswith("ssh://")}
    if timeout is not None:
        kwargs["timeout"] = timeout
    client: docker.DockerClient = docker_module().from_env(**kwargs)
    # Proxies read once, here: requests would read os.environ on every call, from task threads
    # (--benchflow-concurrency) while pytest's thread sets and deletes PYTEST_CURRENT_TEST in it,
    # and a KeyError or "changed size during iteration" there would error the task.
    proxies = client.api.merge_environment_settings(client.api.base_url, {}, None, None, None)["proxies"]
    client.api.trust_env = False
    client.api.proxies.update(proxies)
    return client


def _why(e: Exception) -> str:
    """The operating system's reason inside a connection error's layers, else its first line."""
    text = str(e)
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return found.group(0) if found else first_line(text)


#: More concurrent containers per engine than this is a typo.
MAX_SLOTS = 10_000


def parse_slots(raw: str) -> int | None:
    """``--benchflow-docker-slots``: containers per engine at once (None when not given: each engine's CPUs)."""
    if not raw.strip():
        return None
    value = parse_number(raw, int)
    if value is None or not in_range(value, 0, above=True, maximum=MAX_SLOTS):
        shown = shown_value(raw)
        raise RunnerError(
            f"--benchflow-docker-slots = {shown!r}: expected a positive whole number of at most {MAX_SLOTS:,}"
        )
    return int(value)


def parse_engines(setting: str) -> list[str]:
    """The engine URLs of a whitespace-separated setting (empty: the engine ``DOCKER_HOST`` names, or the default).

    Raises:
        RunnerError: a URL whose scheme the Docker SDK does not speak.
    """
    urls = list(dict.fromkeys(setting.split())) or [os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE]
    for url in urls:
        scheme = urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise RunnerError(
                f"--benchflow-docker-host {public_url(url)!r}: not an engine URL "
                "(unix:///path/docker.sock, tcp://host:2376 or ssh://user@host)"
            )
        if scheme == "ssh" and not _has_paramiko():
            # The Docker SDK needs it for ssh:// even when it talks through the ssh command.
            raise RunnerError(
                f"--benchflow-docker-host {public_url(url)!r}: ssh:// engines need the paramiko package: "
                "pip install paramiko (or, in the clone, pip install -e '.[ssh]')"
            )
    return urls


def _has_paramiko() -> bool:
    try:
        importlib.import_module("paramiko")  # by name: it has no type stubs, and is optional
    except ImportError:
        return False
    return True


class EnginePool:
    """The session's engines and the slots that bound how many containers each runs at once.

    Slots are lock files (``flock``) in a directory named after the run, so every process of the
    session on this machine (xdist workers) shares them, and a process that dies frees its slots.
    An engine found lost is marked there too: no process assigns it a task again.
    """

    def __init__(self, urls: list[str], run_id: str, slots: int | None = None) -> None:
        self.engines = [Engine(i, url, slots=slots) for i, url in enumerate(urls)]
        self.directory = Path(tempfile.gettempdir()) / f"benchflow-engines-{run_id}"
        self._turn = random.randrange(len(self.engines))
        self._lock = threading.Lock()

    def check(self) -> None:
        """Ping every engine once and learn its CPU count (for default slots).

        Raises:
            RunnerError: naming each engine that does not answer.
        """
        silent = []
        for engine in self.engines:
            try:
                # A total deadline: an engine URL that trickles its answers must not hang the start.
                within(_PROBE_TIMEOUT, partial(self._probe, engine), f"Docker engine {engine.shown}")
            except TimeoutError:
                silent.append(f"{engine.shown} (no whole answer within {_PROBE_TIMEOUT} s)")
            except Exception as e:
                silent.append(f"{engine.shown} ({_why(e)})")
        if silent:
            raise RunnerError(
                f"Docker engine{'s' if len(silent) > 1 else ''} not answering: {'; '.join(silent)}; "
                "start it or leave it out of --benchflow-docker-host"
            )

    def _probe(self, engine: Engine) -> None:
        with closing(_connect(engine.url, _PROBE_TIMEOUT)) as client:
            client.ping()
            self._learn_slots(engine, client)

    def _learn_slots(self, engine: Engine, client: docker.DockerClient) -> None:
        if engine.slots is None:
            engine.slots = max(1, int(client.info().get("NCPU") or 1))

    def _own_directory(self) -> None:
        """Create the slot directory (mode 0700), or accept it only as a real directory of this user's:
        its name is predictable, and the temporary directory is everyone's."""
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise InfraError(
                f"{self.directory} (the run's Docker engine slots) is not a directory of this user's; remove it"
            )

    def lost(self, engine: Engine, reason: str) -> None:
        """Assign no further task to ``engine``, in any process of the session."""
        self._own_directory()
        (self.directory / f"e{engine.index}.lost").write_text(reason, encoding="utf-8")

    def is_lost(self, engine: Engine) -> bool:
        return (self.directory / f"e{engine.index}.lost").exists()

    def remaining(self) -> list[Engine]:
        return [e for e in self.engines if not self.is_lost(e)]

    @contextmanager
    def slot(self, avoid: Collection[str] = ()) -> Iterator[Engine]:
        """Hold a free slot of a remaining engine for the duration of the block; wait while all are busy.
        Engines named in ``avoid`` (by ``shown``: where the task's earlier attempts failed) are used only
        when no other remains.

        Raises:
            InfraError: every engine was lost, or the slot directory is not ours.
        """
        self._own_directory()
        while True:
            remaining = self.remaining()
            if not remaining:
                lost = "; ".join(
                    f"{e.shown}: {(self.directory / f'e{e.index}.lost').read_text(encoding='utf-8')}"
                    for e in self.engines
                )
                raise InfraError(f"no Docker engine left to run the task ({lost})")
            remaining = [e for e in remaining if e.shown not in avoid] or remaining
            with self._lock:
                self._turn += 1
                start = self._turn
            # Engines in turn from a rotating start: consecutive tasks spread over them.
            for engine in remaining[start % len(remaining) :] + remaining[: start % len(remaining)]:
                fd = self._take(engine)
                if fd is not None:
                    try:
                        yield engine
                    finally:
                        os.close(fd)  # releases the lock
                    return
            time.sleep(_SLOT_POLL)

    def _take(self, engine: Engine) -> int | None:
        if engine.slots is None:
            try:
                self._learn_slots(engine, engine.client())
            except Exception:
                engine.slots = 1  # it will be found lost when the task tries it
        for slot in range(engine.slots or 1):
            fd = os.open(self.directory / f"e{engine.index}-s{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def close(self) -> None:
        for engine in self.engines:
            engine.close()

    def remove_directory(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


_LAYER = re.compile(r"^\s*---> ([0-9a-f]{12,64})\s*$")


def remove_failed_build_layers(api: Any, output: list[str]) -> None:
    """After a failed ``docker build``: remove the untagged layers it left that nothing uses (the images named
    on its ``---> <id>`` lines and now dangling), so a failed build leaves no dangling image behind."""
    ids = {m.group(1) for line in output for m in [_LAYER.match(line)] if m}
    if not ids:
        return
    try:
        dangling = api.images(filters={"dangling": True}, quiet=True)
    except Exception:
        return
    for image_id in dangling:
        short = image_id.removeprefix("sha256:")
        if any(short.startswith(i) for i in ids):
            try:
                api.remove_image(image_id)
            except Exception:  # used meanwhile, or gone: nothing to clean
                pass
