"""``RaySandboxProvider``: sandboxes held by Ray actors on the nodes of a Ray cluster that have Docker.

A bench (on the head, or anywhere its runner put it) opens a sandbox; the provider starts an actor on a
node advertising the custom resource ``docker`` (one unit: a container slot, shared with the Ray
runner's container tasks), and the actor opens the container on that node's own engine through the
Docker provider, with all its safety (limits, no network, no host mount, the run's labels). Every call
(``exec``, the file calls, ``snapshot``, ``close``) is an actor call: archives travel through Ray's
object store and are extracted here with the same safe extraction as a task's results.

One actor serves one group of sandboxes (a task's: ``SandboxSpec.group``), so a task's sandboxes and
their snapshots share one node and one slot, as they share an engine with the Docker provider.
"""

from __future__ import annotations

import io
import logging
import secrets
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..configuration import Setting
from ..errors import UnsafeArchive, first_line
from ..sandbox import (
    DEFAULT_EXEC_OUTPUT_CAP,
    DEFAULT_READ_CAP,
    ExecResult,
    Sandbox,
    SandboxError,
    SandboxProvider,
    SandboxSpec,
)
from .archive import check_links, extract_archive, max_archive_bytes, spool
from .docker import DEFAULT_CAP_DROP
from .ray import DOCKER_RESOURCE, _ray, connect_ray, node_name, sweep_nodes
from .ray import OPTIONS as RAY_OPTIONS
from .sandbox_groups import SharedByGroup

__all__ = ["RaySandbox", "RaySandboxProvider"]

logger = logging.getLogger("pytest_benchflow.sandbox")

# Settings read: where the cluster is, and the Docker provider's image and capability policies.
_READ = ("benchflow_ray_address", "benchflow_ray_runtime_env", "benchflow_pull", "benchflow_cap_drop")
# How long closing the sandboxes of every actor may take at the end (then the actors are killed anyway).
_CLEANUP_TIMEOUT = 60.0
# Calls a sandbox's actor serves at once: an agent's exec while the task's end closes the sandbox.
_ACTOR_CONCURRENCY = 16


class _SandboxHost:
    """The actor: one group's sandboxes on its node's Docker engine (the node's own DOCKER_HOST)."""

    def __init__(self, run_id: str, pull: str, cap_drop: tuple[str, ...]) -> None:
        from .docker_sandbox import DockerSandbox, DockerSandboxProvider

        ray = _ray()
        # The node's "docker" resource bounds the sandboxes here, not the provider's slot count.
        self.provider = DockerSandboxProvider(run_id, slots=10_000, pull=pull, cap_drop=cap_drop)
        self.boxes: dict[str, DockerSandbox] = {}
        self.node = node_name(ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())
        self.lock = threading.Lock()

    def where(self) -> str:
        return self.node

    def _box(self, box_id: str) -> Any:
        with self.lock:
            box = self.boxes.get(box_id)
        if box is None:
            raise SandboxError(f"sandbox {box_id[:12]} on {self.node} is closed")
        return box

    def _keep(self, box: Any) -> str:
        with self.lock:
            self.boxes[box.id] = box
        return str(box.id)

    def open(self, spec: SandboxSpec) -> str:
        return self._keep(self.provider.open(spec))

    def exec(self, box_id: str, command: str | list[str], options: dict[str, Any]) -> ExecResult:
        result: ExecResult = self._box(box_id).exec(command, **options)
        return result

    def write_file(self, box_id: str, path: str, data: str | bytes) -> None:
        self._box(box_id).write_file(path, data)

    def read_file(self, box_id: str, path: str, max_bytes: int) -> bytes:
        data: bytes = self._box(box_id).read_file(path, max_bytes)
        return data

    def upload(self, box_id: str, archive: bytes, remote_dir: str) -> None:
        box = self._box(box_id)
        # The archive was made on the driver (links kept as links); the Docker provider puts it as its upload does.
        box._put(remote_dir, io.BytesIO(archive), f"upload to {remote_dir}")

    def download(self, box_id: str, remote_dir: str) -> bytes | None:
        """The engine's archive of ``remote_dir``, unopened (extracted on the driver), bounded; None if missing."""
        box = self._box(box_id)
        with box._archive(remote_dir, f"download {remote_dir!r}") as response:
            if response is None:
                return None
            with tempfile.TemporaryFile() as archive:
                try:
                    spool(response.iter_content(1024 * 1024), archive, f"sandbox archive of {remote_dir}")
                except UnsafeArchive as e:
                    raise SandboxError(str(e)) from None
                return archive.read()

    def snapshot(self, box_id: str) -> str:
        return self._keep(self._box(box_id).snapshot())

    def close(self, box_id: str) -> int:
        """Close one sandbox; how many this actor still holds (0: the actor may go)."""
        with self.lock:
            box = self.boxes.pop(box_id, None)
        if box is not None:
            box.close()
        with self.lock:
            return len(self.boxes)

    def close_all(self) -> None:
        with self.lock:
            self.boxes.clear()
        self.provider.close_all()
        self.provider.pool.close()


class _Group:
    """The driver's view of one actor: its handle and its node."""

    def __init__(self, actor: Any, node: str) -> None:
        self.actor = actor
        self.node = node


class RaySandboxProvider(SandboxProvider):
    """Sandboxes as Ray actors on nodes with Docker (``--benchflow-sandbox ray``; see the module's documentation)."""

    name = "ray"

    def __init__(
        self,
        run_id: str,
        address: str = "",
        runtime_env: Mapping[str, Any] | None = None,
        pull: str = "missing",
        cap_drop: tuple[str, ...] = DEFAULT_CAP_DROP,
    ) -> None:
        self.run_id = run_id
        self.address = address
        self.runtime_env = dict(runtime_env or {})
        self.pull = pull
        self.cap_drop = cap_drop
        self._lock = threading.Lock()
        self._groups: SharedByGroup[_Group] = SharedByGroup(lambda group: _kill(group.actor))
        self._open: dict[int, RaySandbox] = {}
        self._connected = False
        self._owns_ray = False

    @classmethod
    def options(cls) -> list[Setting]:
        """The Ray runner's address settings and the Docker provider's image settings (declared once by either)."""
        return [o for o in RAY_OPTIONS if o.name in _READ]

    @classmethod
    def from_options(cls, values: Mapping[str, str], run_id: str) -> RaySandboxProvider:
        from .docker_sandbox import DockerSandboxProvider
        from .ray import _json_setting

        # The Docker provider's parsing of the shared settings: one meaning for pull and cap_drop.
        docker = DockerSandboxProvider.from_options(
            {k: v for k, v in values.items() if k != "benchflow_docker_hosts"}, run_id
        )
        docker.pool.close()
        return cls(
            run_id,
            address=values.get("benchflow_ray_address", ""),
            runtime_env=_json_setting("benchflow_ray_runtime_env", values.get("benchflow_ray_runtime_env", "")),
            pull=docker.pull,
            cap_drop=docker.cap_drop,
        )

    def _connect(self) -> None:
        with self._lock:
            if self._connected:
                return
            already = _ray().is_initialized()  # the Ray runner's connection: it disconnects, not this provider
            try:
                connect_ray(self.address, self.runtime_env)
            except Exception as e:
                raise SandboxError(str(e)) from None
            self._connected, self._owns_ray = True, not already
        if not self._docker_nodes():
            raise SandboxError(
                "no node of the Ray cluster has a Docker engine for sandboxes: a node with one advertises it, "
                f"e.g. ray start --resources='{{\"{DOCKER_RESOURCE}\": 4}}' (4 containers at once)"
            )

    def _docker_nodes(self) -> list[dict[str, Any]]:
        return [n for n in _ray().nodes() if n.get("Alive") and n.get("Resources", {}).get(DOCKER_RESOURCE, 0) > 0]

    # --- opening -----------------------------------------------------------------------------------------

    def open(self, spec: SandboxSpec) -> RaySandbox:
        self._connect()
        group_name = spec.group or secrets.token_hex(8)
        group = self._hold(group_name)
        try:
            box_id = call(group, group.actor.open.remote(replace(spec, group=group_name)), "open a sandbox")
        except BaseException:
            self._release(group_name)
            raise
        return self._keep(RaySandbox(self, group_name, group, box_id, spec))

    def _keep(self, box: RaySandbox) -> RaySandbox:
        with self._lock:
            self._open[id(box)] = box
        return box

    def _hold(self, name: str) -> _Group:
        """The group's actor: the one it has, else a new one on a node with a free Docker slot (Ray waits for one)."""
        return self._groups.hold(name, self._start_actor)

    def _start_actor(self) -> _Group:
        host = (
            _ray()
            .remote(_SandboxHost)
            .options(
                num_cpus=0,
                resources={DOCKER_RESOURCE: 1},
                max_concurrency=_ACTOR_CONCURRENCY,
                max_restarts=0,
                max_task_retries=0,
            )
        )
        actor = host.remote(self.run_id, self.pull, self.cap_drop)
        group = _Group(actor, "a Ray node")
        try:
            group.node = call(group, actor.where.remote(), "start a sandbox actor")
        except BaseException:
            _kill(actor)
            raise
        return group

    def _release(self, name: str) -> None:
        self._groups.release(name)

    def _forget(self, box: RaySandbox) -> None:
        with self._lock:
            known = self._open.pop(id(box), None) is not None
        if known:
            self._release(box.group_name)

    # --- ending ------------------------------------------------------------------------------------------

    def close_all(self) -> None:
        """Close every open sandbox (each actor removes its containers), kill the actors, and disconnect
        from a Ray this provider started."""
        if not self._connected:
            return
        groups = self._groups.take_all()
        with self._lock:
            boxes = list(self._open.values())
            self._open.clear()
        for box in boxes:  # no call reaches a killed actor (nor, after a disconnect, starts a new Ray)
            box._closed = True
        ray = _ray()
        refs = [g.actor.close_all.remote() for g in groups]
        try:
            ray.get(refs, timeout=_CLEANUP_TIMEOUT)
        except Exception as e:  # an actor or its node is gone: the sweep removes what it left
            logger.warning("closing the Ray sandboxes of run %s: %s", self.run_id, first_line(str(e)))
        for group in groups:
            _kill(group.actor)
        if self._owns_ray:
            ray.shutdown()
            self._connected = self._owns_ray = False

    def sweep(self) -> None:
        """Remove this run's containers on every node with Docker (an actor killed before closing its own).
        Quiet when this process opened no sandbox (nothing connects)."""
        if not self._connected:
            return
        sweep_nodes(self.run_id)


def call(group: _Group, ref: Any, doing: str) -> Any:
    """The actor call's answer; its ``SandboxError`` as ours, a lost actor or node as a ``SandboxError`` naming it."""
    ray = _ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, SandboxError):
            raise SandboxError(str(cause)) from None
        raise SandboxError(f"cannot {doing} on {group.node}: {first_line(str(cause or e))}") from None
    except ray.exceptions.RayError as e:
        raise SandboxError(f"cannot {doing}: lost {group.node} ({type(e).__name__})") from None


def _kill(actor: Any) -> None:
    try:
        _ray().kill(actor, no_restart=True)
    except Exception as e:  # already dead, or the cluster is gone
        logger.info("could not kill a sandbox actor: %s", e)


class RaySandbox(Sandbox):
    """One sandbox, held by an actor on a node; every method is an actor call (safe from any thread)."""

    def __init__(self, provider: RaySandboxProvider, group_name: str, group: _Group, box_id: str, spec: SandboxSpec):
        self.provider = provider
        self.group_name = group_name
        self.group = group
        self.id = box_id
        self.spec = spec
        self.engine = group.node
        self._closed = False
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RaySandbox({self.spec.image!r}, {self.id[:12]} on {self.engine})"

    def _call(self, method: str, doing: str, *args: Any) -> Any:
        if self._closed:
            raise SandboxError(f"sandbox {self.id[:12]} of {self.spec.image!r} is closed")
        try:
            ref = getattr(self.group.actor, method).remote(self.id, *args)
        except Exception as e:  # the actor is dead: Ray refuses the call at once
            lost = f"lost {self.group.node} ({first_line(str(e))})"
            raise SandboxError(f"sandbox {self.id[:12]}: cannot {doing}: {lost}") from None
        return call(self.group, ref, doing)

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
        options: dict[str, Any] = {"timeout": timeout, "workdir": workdir, "env": dict(env or {}), "user": user}
        options.update(stdin=stdin, output_cap=output_cap)
        result: ExecResult = self._call("exec", f"run {first_line(str(command))[:80]!r}", command, options)
        return result

    def write_file(self, path: str, data: str | bytes) -> None:
        self._call("write_file", f"write {path!r}", path, data)

    def read_file(self, path: str, max_bytes: int = DEFAULT_READ_CAP) -> bytes:
        data: bytes = self._call("read_file", f"read {path!r}", path, max_bytes)
        return data

    def upload(self, local_dir: str | Path, remote_dir: str) -> None:
        source = Path(local_dir)
        if not source.is_dir():
            raise SandboxError(f"upload({str(local_dir)!r}): not a directory on this machine")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for child in sorted(source.iterdir()):
                tar.add(child, arcname=child.name)  # links stay links: nothing outside local_dir is read
        if buffer.tell() > max_archive_bytes():
            raise SandboxError(
                f"upload({str(local_dir)!r}): larger than the {max_archive_bytes()} byte cap "
                "(BENCHFLOW_MAX_ARCHIVE_BYTES)"
            )
        self._call("upload", f"upload {source}", buffer.getvalue(), remote_dir)

    def download(self, remote_dir: str, local_dir: str | Path) -> None:
        what = f"sandbox archive of {remote_dir} from {self.engine}"
        data = self._call("download", f"download {remote_dir!r}", remote_dir)
        if data is None:
            raise SandboxError(f"download({remote_dir!r}): no such directory in the sandbox")
        with tempfile.TemporaryFile() as archive:
            spool([data], archive, what)
            dest = Path(local_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            extract_archive(archive, dest, what)
        check_links(Path(local_dir), what)

    def snapshot(self) -> RaySandbox:
        provider = self.provider
        group = provider._hold(self.group_name)  # the snapshot lives in the same actor, on the same node
        try:
            box_id = self._call("snapshot", "take a snapshot")
        except BaseException:
            provider._release(self.group_name)
            raise
        return provider._keep(RaySandbox(provider, self.group_name, group, box_id, self.spec))

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            call(self.group, self.group.actor.close.remote(self.id), "close a sandbox")
        except SandboxError as e:  # the actor or its node is gone: the session's sweep removes the container
            logger.info("closing %r: %s", self, e)
        finally:
            self.provider._forget(self)
