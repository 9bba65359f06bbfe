"""A Harbor task's environment image: tagged with a digest of ``environment/``, built once per engine.

An unchanged task is never rebuilt: the tag names its content, and an engine that has the tag is used as
it is. The build's output goes to the task's log directory; a build that fails or runs past
``build_timeout_sec`` is an error with the output's last lines.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import TaskError
from ..runners.engines import Engine, remove_failed_build_layers

__all__ = ["IMAGE_REPOSITORY", "BuildError", "ensure_image", "environment_digest", "image_tag"]

#: Images built from task environments are named ``benchflow-harbor/<task>:<digest>``.
IMAGE_REPOSITORY = "benchflow-harbor"
_TAIL_LINES = 12
_locks: dict[tuple[int, str], threading.Lock] = {}
_locks_lock = threading.Lock()


class BuildError(TaskError):
    """A task's environment image could not be built (the bench's fault, not the agent's)."""


def environment_digest(directory: Path) -> str:
    """SHA-256 over every file below ``directory``: its relative path, whether it is executable, its bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(directory).as_posix()
        executable = path.is_file() and bool(path.stat().st_mode & 0o111)
        content = str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
        digest.update(json.dumps([relative, executable, len(content)]).encode())
        digest.update(content)
    return digest.hexdigest()


def image_tag(task_id: str, directory: Path) -> str:
    """``benchflow-harbor/<task>:<first 16 hex digits of the digest>``; the name is the task id made a valid
    repository name (lower case, ``[a-z0-9._-]`` separated by ``/``-free runs)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", task_id.lower()).strip("-._")[:100] or "task"
    return f"{IMAGE_REPOSITORY}/{name}:{environment_digest(directory)[:16]}"


def _lock(engine: Engine, tag: str) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault((engine.index, tag), threading.Lock())


def ensure_image(engine: Engine, tag: str, context: Path, timeout: float, log_file: Path) -> dict[str, Any]:
    """The image ``tag`` on ``engine`` (its inspection), built from ``context`` first if the engine lacks it.

    One build per engine and tag at a time in this process; its output is appended to ``log_file``.

    Raises:
        BuildError: the build failed or took more than ``timeout`` seconds (with the output's last lines).
    """
    with _lock(engine, tag):
        api = engine.client().api
        found = _inspect(api, tag)
        if found is not None:
            return found
        _build(engine, tag, context, timeout, log_file)
        built = _inspect(api, tag)
        if built is None:
            raise BuildError(f"the build of {tag} on {engine.shown} ended without the image")
        return built


def _inspect(api: Any, tag: str) -> dict[str, Any] | None:
    from docker.errors import ImageNotFound

    try:
        found: dict[str, Any] = api.inspect_image(tag)
        return found
    except ImageNotFound:
        return None


def _build(engine: Engine, tag: str, context: Path, timeout: float, log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    # Each read waits at most the whole limit: a step printing nothing cannot hold the build past it twice over.
    api = engine.client(max(1, int(timeout) + 1)).api
    with open(log_file, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"building {tag} from {context} on {engine.shown}\n")
        try:
            stream = api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True, pull=False)
            for chunk in stream:
                text = _chunk_text(chunk)
                if text:
                    log.write(text)
                    log.flush()
                    lines.extend(text.splitlines())
                    del lines[:-_TAIL_LINES]
                if "error" in chunk or "errorDetail" in chunk:
                    remove_failed_build_layers(api, lines)
                    raise BuildError(_failure(tag, "failed", lines))
                if time.monotonic() > deadline:
                    stream.close()  # closing the connection cancels the build on the engine
                    raise BuildError(_failure(tag, f"took more than build_timeout_sec ({timeout:g} s)", lines))
        except BuildError:
            raise
        except Exception as e:
            timed_out = time.monotonic() > deadline
            why = f"took more than build_timeout_sec ({timeout:g} s)" if timed_out else f"failed: {e}"
            raise BuildError(_failure(tag, why, lines)) from None


def _chunk_text(chunk: dict[str, Any]) -> str:
    for key in ("stream", "error", "status"):
        value = chunk.get(key)
        if isinstance(value, str) and value:
            return value if value.endswith("\n") else value + "\n"
    return ""


def _failure(tag: str, why: str, lines: list[str]) -> str:
    tail = " | ".join(line.strip() for line in lines if line.strip())
    return f"building {tag} {why}; the last lines: {tail}" if tail else f"building {tag} {why}"
