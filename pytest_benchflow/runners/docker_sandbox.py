"""``DockerSandboxProvider``: sandboxes as live containers on the session's Docker engines.

Each sandbox is a container whose first process only waits (it reaps orphans and, being the
namespace's init, survives ``kill -9 -1`` from inside); commands run in it through the Engine
API's exec. The containers are unprivileged as task containers are (``no-new-privileges``,
dropped capabilities, memory, CPU, process and file-size limits, no network unless asked, no host
mount, no Docker socket) and carry the run's labels, so the session's sweep finds them.
"""

from __future__ import annotations

import io
import logging
import posixpath
import secrets
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

from ..configuration import Setting
from ..envnumbers import in_range
from ..errors import BenchflowError, RunnerError, first_line
from ..sandbox import (
    DEFAULT_EXEC_OUTPUT_CAP,
    DEFAULT_READ_CAP,
    ExecResult,
    Sandbox,
    SandboxError,
    SandboxProvider,
    SandboxSpec,
    SandboxSpecError,
)
from ..sandbox.output import HeadTail
from .archive import check_links, extract_archive, spool
from .docker import DEFAULT_CAP_DROP, PULL_POLICIES, RUN_LABEL
from .docker import OPTIONS as RUNNER_OPTIONS
from .engines import Engine, EnginePool, docker_module, parse_engines, parse_slots
from .sandbox_groups import SharedByGroup

__all__ = ["SANDBOX_LABEL", "DockerSandbox", "DockerSandboxProvider"]

logger = logging.getLogger("pytest_benchflow.sandbox")

#: Every sandbox container and snapshot image carries this label (with the run's ``benchflow.run``).
SANDBOX_LABEL = "benchflow.sandbox"
#: The variable every process of one exec inherits: how a timed-out command's whole tree is found,
#: the daemons it started with their own session included.
EXEC_TOKEN = "BENCHFLOW_EXEC"
# The container's first process: waits forever, reaps orphans (a killed tree leaves no zombie holding a
# pid), and ignores what it can (the kernel never delivers SIGKILL to a namespace's init from inside).
_INIT = "trap '' HUP INT TERM QUIT; while :; do sleep 86400 & wait $!; done"
# Kills every process whose environment holds the token, again while any is found (a fork bomb forks
# while it is killed); exit 1 when some remain after the rounds.
_KILL_TREE = (
    't="$1=$2"; n=0; while [ $n -lt 100 ]; do found=; '
    'for f in $(grep -lzxF "$t" /proc/[0-9]*/environ 2>/dev/null); do '
    'p=${f#/proc/}; kill -9 "${p%/environ}" 2>/dev/null && found=1; done; '
    '[ -z "$found" ] && exit 0; n=$((n+1)); done; exit 1'
)
# After a timeout's kill, output still in flight is read this long at most.
_DRAIN = 5.0
# How long killing a timed-out tree may take before the sandbox is restarted instead (every process ends).
_KILL_TIMEOUT = 20
# Every Docker call made while cleaning up gives up after this long (the session sweep retries).
_CLEANUP_TIMEOUT = 30
_RECV = 256 * 1024
_NETWORKS = ("none", "bridge")
_SWEPT_OPTIONS = ("benchflow_docker_hosts", "benchflow_docker_slots", "benchflow_pull", "benchflow_cap_drop")


def _docker() -> Any:
    return docker_module()


def _safe_label(value: str) -> str:
    """A label value without control characters and of bounded length (a task id is the bench's data)."""
    cleaned = "".join(c if c.isprintable() else "?" for c in value)
    return cleaned[:256]


def _reason(e: BaseException) -> str:
    explanation = getattr(e, "explanation", None)
    return first_line(str(explanation or e))


@dataclass(frozen=True)
class _Slot:
    """One engine slot held for a group of sandboxes, released when the last of them closes."""

    engine: Engine
    stack: ExitStack


class DockerSandboxProvider(SandboxProvider):
    """Opens sandboxes on the session's engines, each holding a slot there (``--benchflow-docker-slots``,
    shared with container tasks of the same run), so sandboxes spread over engines and are bounded as tasks are."""

    name = "docker"

    def __init__(
        self,
        run_id: str,
        engines: list[str] | None = None,
        slots: int | None = None,
        pull: str = "missing",
        cap_drop: tuple[str, ...] = DEFAULT_CAP_DROP,
    ) -> None:
        if pull not in PULL_POLICIES:
            raise RunnerError(
                f"--benchflow-pull {pull!r}: choose {', '.join(PULL_POLICIES[:-1])} or {PULL_POLICIES[-1]}"
            )
        self.run_id = run_id
        self.pull = pull
        self.cap_drop = cap_drop
        self.pool = EnginePool(engines or parse_engines(""), run_id, slots)
        self._lock = threading.Lock()
        self._slots: SharedByGroup[_Slot] = SharedByGroup(lambda slot: slot.stack.close())
        self._open: dict[str, DockerSandbox] = {}
        self._images: set[tuple[int, str]] = set()

    @classmethod
    def options(cls) -> list[Setting]:
        """The Docker runner's settings this provider reads (declared once, by whichever registers first)."""
        return [o for o in RUNNER_OPTIONS if o.name in _SWEPT_OPTIONS]

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> DockerSandboxProvider:
        slots = values.get("benchflow_docker_slots", "")
        cap_drop = tuple(w.upper().removeprefix("CAP_") for w in values.get("benchflow_cap_drop", "").split())
        return cls(
            run_id,
            engines=parse_engines(values.get("benchflow_docker_hosts", "")),
            slots=parse_slots(slots),
            pull=values.get("benchflow_pull") or "missing",
            cap_drop=() if cap_drop == ("NONE",) else (cap_drop or DEFAULT_CAP_DROP),
        )

    # --- opening -----------------------------------------------------------------------------------------

    def open(self, spec: SandboxSpec) -> DockerSandbox:
        _check_spec(spec)
        group = spec.group or secrets.token_hex(8)
        slot = self._hold(group)
        try:
            sandbox = self._start(slot.engine, replace(spec, group=group))
        except BaseException:
            self._release(group)
            raise
        return sandbox

    def _hold(self, group: str) -> _Slot:
        """The group's slot: the one it holds, else a free one of a remaining engine (waiting while all are busy)."""
        return self._slots.hold(group, self._take_slot)

    def _take_slot(self) -> _Slot:
        stack = ExitStack()
        try:
            engine = stack.enter_context(self.pool.slot())
        except BenchflowError as e:
            raise SandboxError(str(e)) from None
        return _Slot(engine, stack)

    def _release(self, group: str) -> None:
        self._slots.release(group)

    def _start(self, engine: Engine, spec: SandboxSpec, image_to_remove: str | None = None) -> DockerSandbox:
        api = engine.client().api
        labels = {
            RUN_LABEL: self.run_id,
            SANDBOX_LABEL: "1",
            **{_safe_label(k): _safe_label(v) for k, v in spec.labels.items()},
        }
        config = _container_config(api, spec, labels, self.cap_drop)
        try:
            created = self._create(engine, spec.image, config)
        except SandboxError:
            if image_to_remove:
                _remove_image(engine, image_to_remove)
            raise
        sandbox = DockerSandbox(self, engine, created["Id"], spec, image_to_remove)
        with self._lock:
            self._open[sandbox.id] = sandbox  # from here a sweep of this process finds it
        try:
            api.start(sandbox.id)
        except Exception as e:
            with self._lock:
                del self._open[sandbox.id]  # the caller releases the slot
            _remove_container(engine, sandbox.id)
            if image_to_remove:
                _remove_image(engine, image_to_remove)
            raise SandboxError(f"cannot start a sandbox of {spec.image!r} on {engine.shown}: {_reason(e)}") from None
        return sandbox

    def _create(self, engine: Engine, image: str, config: dict[str, Any]) -> dict[str, Any]:
        errors, api = _docker().errors, engine.client().api
        key = (engine.index, image)
        if self.pull == "always" and key not in self._images:
            self._pull(engine, image)
        try:
            created: dict[str, Any] = api.create_container(image, **config)
        except errors.ImageNotFound:
            if self.pull == "never":
                raise SandboxError(
                    f"image {image!r} is not present on {engine.shown} and --benchflow-pull=never"
                ) from None
            self._pull(engine, image)
            created = api.create_container(image, **config)
        except (errors.DockerException, requests.exceptions.RequestException) as e:
            raise SandboxError(f"cannot create a sandbox of {image!r} on {engine.shown}: {_reason(e)}") from None
        self._images.add(key)
        return created

    def _pull(self, engine: Engine, image: str) -> None:
        try:
            engine.client().images.pull(image)
        except Exception as e:
            raise SandboxError(f"cannot pull image {image!r} on {engine.shown}: {_reason(e)}") from None
        self._images.add((engine.index, image))

    def _forget(self, sandbox: DockerSandbox) -> None:
        with self._lock:
            known = self._open.pop(sandbox.id, None) is not None
        if known:
            self._release(sandbox.spec.group)

    # --- ending ------------------------------------------------------------------------------------------

    def close_all(self) -> None:
        with self._lock:
            left = list(self._open.values())
        for sandbox in left:
            sandbox.close()

    def sweep(self) -> None:
        """Remove every sandbox container and snapshot image labelled with this run, on every remaining engine.
        Quiet when this run opened no sandbox on this machine (no engine is asked)."""
        if not self.pool.directory.exists():
            return  # no process of the run took a slot here: there is nothing to sweep, and no engine to wake
        labels = [f"{RUN_LABEL}={self.run_id}", SANDBOX_LABEL]
        for engine in self.pool.remaining():
            try:
                api = engine.client(_CLEANUP_TIMEOUT).api
                found = api.containers(all=True, quiet=True, filters={"label": labels})
                images = api.images(quiet=True, filters={"label": labels})
            except Exception as e:
                logger.info("no sandbox sweep for run %s on %s: %s", self.run_id, engine.shown, _reason(e))
                continue
            for container in found:
                _remove_container(engine, container["Id"])
            for image in images:
                _remove_image(engine, image)
        self.pool.close()
        self.pool.remove_directory()


def _check_spec(spec: SandboxSpec) -> None:
    """A one-line ``SandboxError`` naming the field a bench got wrong."""
    if not isinstance(spec.image, str) or not spec.image.strip():
        raise SandboxSpecError(f"sandbox image {spec.image!r}: give an image name, e.g. 'python:3.12-slim'")
    if spec.network not in _NETWORKS:
        raise SandboxSpecError(f"sandbox network {spec.network!r}: choose 'none' (the default) or 'bridge'")
    for name in ("cpus", "memory_mb", "pids", "max_file_mb"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not in_range(value, 0, above=True):
            raise SandboxSpecError(f"sandbox {name}={value!r}: expected a positive number")


def _container_config(api: Any, spec: SandboxSpec, labels: dict[str, str], cap_drop: tuple[str, ...]) -> dict[str, Any]:
    ulimits = [_docker().types.Ulimit(name="fsize", soft=spec.max_file_mb << 20, hard=spec.max_file_mb << 20)]
    host_config = api.create_host_config(
        network_mode=spec.network,
        privileged=False,
        security_opt=["no-new-privileges"],
        cap_drop=list(cap_drop) or None,
        mem_limit=f"{int(spec.memory_mb)}m",
        memswap_limit=f"{int(spec.memory_mb)}m",  # no swap beyond the memory limit
        nano_cpus=int(spec.cpus * 1e9),
        pids_limit=int(spec.pids),
        ulimits=ulimits,
    )
    return {
        "entrypoint": ["sh", "-c", _INIT],
        "command": [],
        "environment": dict(spec.env),
        "working_dir": spec.workdir,
        "labels": labels,
        "host_config": host_config,
        "network_disabled": spec.network == "none",
    }


@dataclass
class _Reading:
    """One exec's output as it arrives: the two streams, bounded."""

    stdout: HeadTail
    stderr: HeadTail

    def feed(self, kind: int, data: memoryview) -> None:
        (self.stderr if kind == 2 else self.stdout).write(data)


class DockerSandbox(Sandbox):
    """One sandbox container; every method is safe to call from any thread."""

    def __init__(
        self,
        provider: DockerSandboxProvider,
        engine: Engine,
        container_id: str,
        spec: SandboxSpec,
        image_to_remove: str | None = None,
    ) -> None:
        self.provider = provider
        self.engine_handle = engine
        self.engine = engine.shown
        self.id = container_id
        self.spec = spec
        self._image_to_remove = image_to_remove
        self._closed = False
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DockerSandbox({self.spec.image!r}, {self.id[:12]} on {self.engine})"

    def _api(self) -> Any:
        if self._closed:
            raise SandboxError(f"sandbox {self.id[:12]} of {self.spec.image!r} is closed")
        return self.engine_handle.client().api

    def _gone(self, e: BaseException, doing: str) -> SandboxError:
        state = "closed" if self._closed else "gone"
        return SandboxError(f"sandbox {self.id[:12]} of {self.spec.image!r} ({state}): cannot {doing}: {_reason(e)}")

    # --- commands ----------------------------------------------------------------------------------------

    def exec(
        self,
        command: str | list[str],
        *,
        timeout: float | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdin: str | bytes | None = None,
        output_cap: int = DEFAULT_EXEC_OUTPUT_CAP,
    ) -> ExecResult:
        if timeout is not None and not in_range(timeout, 0, above=True):
            raise SandboxError(f"exec timeout={timeout!r}: expected a positive number of seconds (or None)")
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        token = secrets.token_hex(8)
        api = self._api()
        data = stdin.encode() if isinstance(stdin, str) else stdin
        try:
            created = api.exec_create(
                self.id,
                argv,
                stdout=True,
                stderr=True,
                stdin=data is not None,
                environment={**(env or {}), EXEC_TOKEN: token},
                workdir=workdir or self.spec.workdir,
                user=user or "",
            )
            sock = api.exec_start(created["Id"], socket=True)
        except Exception as e:
            raise self._gone(e, f"run {first_line(str(command))[:80]!r}") from None
        reading = _Reading(HeadTail(output_cap), HeadTail(output_cap))
        with closing(sock):
            raw: socket.socket = getattr(sock, "_sock", sock)
            if data is not None:
                _send_stdin(raw, data)
            deadline = None if timeout is None else time.monotonic() + timeout
            timed_out = _read_frames(raw, reading, deadline, lambda: self._kill_tree(token, user))
        if self._closed:
            raise SandboxError(f"sandbox {self.id[:12]} of {self.spec.image!r} was closed while {command!r} ran")
        try:
            code = api.exec_inspect(created["Id"])["ExitCode"]
        except Exception as e:
            raise self._gone(e, "read a command's exit code") from None
        return ExecResult(
            exit_code=124 if timed_out else (code if code is not None else -1),
            stdout=reading.stdout.value().decode(errors="replace"),
            stderr=reading.stderr.value().decode(errors="replace"),
            timed_out=timed_out,
            truncated=reading.stdout.truncated or reading.stderr.truncated,
        )

    def _kill_tree(self, token: str, user: str | None) -> None:
        """Kill every process of one exec (its token in their environment), as its own user; when that cannot
        be done (a fork bomb took every pid), restart the container: every process ends, its files stay."""
        try:
            api = self.engine_handle.client(_KILL_TIMEOUT).api
            created = api.exec_create(self.id, ["sh", "-c", _KILL_TREE, "kill", EXEC_TOKEN, token], user=user or "")
            api.exec_start(created["Id"])
            if api.exec_inspect(created["Id"])["ExitCode"] == 0:
                return
        except Exception as e:
            logger.info("killing a timed-out command in %s failed (%s); restarting it", self, _reason(e))
        try:
            self.engine_handle.client(_KILL_TIMEOUT).api.restart(self.id, timeout=0)
        except Exception as e:  # the exec's own reading then reports the sandbox gone
            logger.warning("could not stop a timed-out command in %s: %s", self, _reason(e))

    # --- files -------------------------------------------------------------------------------------------

    def write_file(self, path: str, data: str | bytes) -> None:
        content = data.encode() if isinstance(data, str) else data
        directory, name = posixpath.split(posixpath.normpath(posixpath.join(self.spec.workdir, path)))
        if not name:
            raise SandboxError(f"write_file({path!r}): not a file path")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(content))
        self._put(directory, archive.getvalue(), f"write {path!r}")

    def _put(self, directory: str, archive: Any, doing: str) -> None:
        api = self._api()
        try:
            if api.put_archive(self.id, directory, archive):
                return
        except _docker().errors.NotFound:
            pass  # the directory is missing: made below, then tried once more
        except Exception as e:
            raise self._gone(e, doing) from None
        made = self.exec(["mkdir", "-p", "--", directory], timeout=60)
        if not made.ok:
            raise SandboxError(f"cannot {doing}: mkdir -p {directory} failed: {first_line(made.stderr)}")
        if hasattr(archive, "seek"):
            archive.seek(0)
        try:
            api.put_archive(self.id, directory, archive)
        except Exception as e:
            raise self._gone(e, doing) from None

    def read_file(self, path: str, max_bytes: int = DEFAULT_READ_CAP) -> bytes:
        with self._archive(path, f"read {path!r}") as response:
            if response is None:
                raise SandboxError(f"read_file({path!r}): no such file in the sandbox")
            response.raw.decode_content = True  # the engine may send the archive gzipped
            with tarfile.open(fileobj=response.raw, mode="r|") as tar:
                member = tar.next()
                if member is None or not member.isfile():
                    kind = "nothing" if member is None else "not a regular file"
                    raise SandboxError(f"read_file({path!r}): {kind}")
                source = tar.extractfile(member)
                assert source is not None
                # Only what is asked for is read: closing the response stops the engine sending the rest.
                return source.read(max(0, max_bytes))

    def _archive(self, path: str, doing: str) -> Any:
        api = self._api()
        url = api._url("/containers/{0}/archive", self.id)
        try:
            response = api.get(url, params={"path": posixpath.join(self.spec.workdir, path)}, stream=True)
        except Exception as e:
            raise self._gone(e, doing) from None
        return _ArchiveResponse(response, doing, self)

    def upload(self, local_dir: str | Path, remote_dir: str) -> None:
        source = Path(local_dir)
        if not source.is_dir():
            raise SandboxError(f"upload({str(local_dir)!r}): not a directory on this machine")
        remote = posixpath.normpath(posixpath.join(self.spec.workdir, remote_dir))
        with tempfile.TemporaryFile() as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for child in sorted(source.iterdir()):
                    tar.add(child, arcname=child.name)  # links stay links: nothing outside local_dir is read
            archive.seek(0)
            self._put(remote, archive, f"upload {source} to {remote}")

    def download(self, remote_dir: str, local_dir: str | Path) -> None:
        what = f"sandbox archive of {remote_dir}"
        with self._archive(remote_dir, f"download {remote_dir!r}") as response:
            if response is None:
                raise SandboxError(f"download({remote_dir!r}): no such directory in the sandbox")
            with tempfile.TemporaryFile() as archive:
                spool(response.iter_content(1024 * 1024), archive, what)
                dest = Path(local_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                extract_archive(archive, dest, what)
        check_links(Path(local_dir), what)

    # --- life --------------------------------------------------------------------------------------------

    def snapshot(self) -> DockerSandbox:
        api = self._api()
        repository = f"benchflow-sandbox-snapshot/{self.provider.run_id.lower()}"
        tag = secrets.token_hex(6)
        labels = {RUN_LABEL: self.provider.run_id, SANDBOX_LABEL: "1"}
        try:
            # Paused while committed: the file system is taken as one moment, not while it changes.
            image = api.commit(self.id, repository=repository, tag=tag, conf={"Labels": labels}, pause=True)
        except Exception as e:
            raise self._gone(e, "take a snapshot") from None
        image_id = str(image["Id"])
        self.provider._hold(self.spec.group)
        try:
            return self.provider._start(
                self.engine_handle, replace(self.spec, image=image_id), image_to_remove=f"{repository}:{tag}"
            )
        except BaseException:
            self.provider._release(self.spec.group)
            raise

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if not self.provider.pool.is_lost(self.engine_handle):
                _remove_container(self.engine_handle, self.id)
                if self._image_to_remove:
                    _remove_image(self.engine_handle, self._image_to_remove)
        finally:
            self.provider._forget(self)


class _ArchiveResponse:
    """A streamed archive request: None inside ``with`` when the path does not exist; closed on leaving."""

    def __init__(self, response: Any, doing: str, sandbox: DockerSandbox) -> None:
        self.response = response
        self.doing = doing
        self.sandbox = sandbox

    def __enter__(self) -> Any:
        status = self.response.status_code
        if status == 404:
            return None
        if status >= 400:
            reason = first_line(self.response.text)
            self.response.close()
            raise SandboxError(f"cannot {self.doing} in the sandbox: HTTP {status}: {reason}")
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def _send_stdin(raw: socket.socket, data: bytes) -> None:
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)  # end of input: the command reading it sees EOF
    except OSError:
        pass  # the command exited without reading it all


class _Frames:
    """The exec's multiplexed stream (8-byte headers: stream, 0, 0, 0, size), fed into ``reading`` as it arrives."""

    def __init__(self, raw: socket.socket, reading: _Reading) -> None:
        self.raw = raw
        self.reading = reading
        self.buffer = bytearray()  # a frame's start kept across receives (and across a timeout)

    def step(self) -> bool:
        """Receive once and feed every whole frame; False at the end of the stream."""
        chunk = self.raw.recv(_RECV)
        if not chunk:
            return False
        buffer = self.buffer
        buffer += chunk
        view, pos = memoryview(buffer), 0
        while len(buffer) - pos >= 8:
            size = int.from_bytes(view[pos + 4 : pos + 8], "big")
            if len(buffer) - pos - 8 < size:
                break
            self.reading.feed(view[pos], view[pos + 8 : pos + 8 + size])
            pos += 8 + size
        view.release()
        del buffer[:pos]
        return True


def _read_frames(raw: socket.socket, reading: _Reading, deadline: float | None, kill: Callable[[], None]) -> bool:
    """Read to the end of the stream; at ``deadline`` start ``kill`` in another thread and go on reading what
    is left for a while. Returns whether the deadline passed.

    Reading never pauses while the tree is killed: the engine finishes an exec only once its output is
    delivered, and the killing exec's end would queue behind the unread output of the killed one.
    """
    frames = _Frames(raw, reading)
    killer: threading.Thread | None = None
    try:
        while True:
            if deadline is not None:
                raw.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                if not frames.step():
                    return killer is not None
            except TimeoutError:
                pass
            except OSError:
                return killer is not None  # the container was removed (closed from another thread)
            if deadline is not None and time.monotonic() >= deadline:
                if killer is not None:
                    return True  # still no end after the kill: a process outside the tree holds the stream
                killer = threading.Thread(target=kill, name="benchflow-sandbox-kill", daemon=True)
                killer.start()
                deadline = time.monotonic() + _DRAIN + _KILL_TIMEOUT
    finally:
        if killer is not None:
            killer.join(_KILL_TIMEOUT)


def _remove_container(engine: Engine, container_id: str) -> None:
    """Remove a container (killing it), bounded in time; a failure is logged, never raised."""
    try:
        engine.client(_CLEANUP_TIMEOUT).api.remove_container(container_id, force=True)
    except Exception as e:  # cleanup must not turn a result into a crash: the session sweep retries
        if not isinstance(e, _docker().errors.NotFound):
            logger.warning("could not remove sandbox %s on %s: %s", container_id[:12], engine.shown, _reason(e))


def _remove_image(engine: Engine, image: str) -> None:
    try:
        engine.client(_CLEANUP_TIMEOUT).api.remove_image(image, force=True, noprune=False)
    except Exception as e:
        if not isinstance(e, _docker().errors.NotFound):
            logger.warning("could not remove snapshot image %s on %s: %s", image, engine.shown, _reason(e))
