"""The files of a run: opened without following links, read only when regular, JSON lines that stay one line.

A run directory outlives its session (``--benchflow-resume`` writes into it again, ``benchflow
report`` reads it), so anything may have been planted in it since: a symlink where the harness
writes a file, a FIFO where it reads one. Every file the harness writes in a run or task
directory goes through :func:`open_for_writing`, and every file it reads back through
:func:`read_text`; lines are split on ``\\n`` only (:func:`split_lines`) and written by
:func:`json_line`, which keeps the characters ``str.splitlines`` also breaks on escaped.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "UnsafeRunFile",
    "escape_surrogates",
    "json_line",
    "open_for_writing",
    "read_text",
    "remove_planted",
    "split_lines",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for its other end (reading: none; writing: ENXIO).
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# Lone surrogates: json.dumps(ensure_ascii=False) leaves them raw, and UTF-8 cannot encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Line breaks of str.splitlines that JSON leaves raw (it escapes every other one, being a control character).
_RAW_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


class UnsafeRunFile(OSError):
    """A run file that is a link, sits below a link, or is not a regular file: never opened."""


def json_line(value: Any, *, allow_nan: bool = False, default: Any = None) -> str:
    """``value`` as one line of JSON (non-ASCII text kept readable), ending in ``\\n``.

    U+2028, U+2029 and U+0085 are written as ``\\u`` escapes: a reader splitting lines with
    ``str.splitlines`` (or an editor) would otherwise cut the line there. So are lone surrogates
    (an agent's ``"\\ud800"`` is valid JSON), which no UTF-8 file can hold raw.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=allow_nan, default=default).translate(_RAW_BREAKS)
    return escape_surrogates(text) + "\n"


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate as its JSON escape (they occur only inside JSON strings there)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _SURROGATE.search(text) else text


def split_lines(text: str) -> list[str]:
    """``text`` split at ``\\n`` only (a trailing ``\\r`` is JSON whitespace); no empty last line."""
    lines = text.split("\n")
    return lines[:-1] if lines and not lines[-1] else lines


def _refuse(path: Path, why: str) -> UnsafeRunFile:
    return UnsafeRunFile(errno.ELOOP, f"{path} {why}; refusing to use it", str(path))


def _check_regular(fd: int, path: Path) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refuse(path, "is not a regular file")


def _open_below(root: Path, path: Path, flags: int) -> int:
    """``os.open(path, flags)``, with every directory between ``root`` (trusted) and ``path`` opened
    without following a link."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ValueError(f"{path} is not below {root}") from None
    if not parts:
        raise ValueError(f"{path} names the directory {root} itself")
    directory = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=directory)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(path, f"is below {part!r}, which is a link or not a directory") from None
                raise
            os.close(directory)
            directory = inner
        return _open_here(Path(parts[-1]), flags, dir_fd=directory, shown=path)
    finally:
        os.close(directory)


def open_for_writing(path: Path, mode: Literal["a", "w", "ab", "wb"] = "a", *, root: Path | None = None) -> IO[Any]:
    """``path`` opened to append (``a``) or to overwrite (``w``), as text (UTF-8) or bytes (``b``).

    Never through a link: not at ``path``, nor at any directory from ``root`` (default: the
    directory ``path`` is in, which the caller has checked) down to it; and only a regular file,
    created if missing. Opening never blocks (a FIFO is refused, not waited on).

    Raises:
        UnsafeRunFile: a link, a FIFO or another non-regular file is in the way.
        OSError: the file cannot be created (permissions, a missing directory).
    """
    flags = _WRITE_FLAGS | (os.O_APPEND if mode.startswith("a") else 0)
    fd = _open_below(root, path, flags) if root is not None else _open_here(path, flags)
    _check_regular(fd, path)
    # No os.set_blocking: O_NONBLOCK only mattered for opening; a regular file's reads and writes ignore it.
    try:
        if mode.startswith("w"):
            os.ftruncate(fd, 0)  # only now: truncating on open would have emptied whatever was there first
        # Bytes are unbuffered: each write is one system call, and nothing waits in a buffer to be flushed.
        return os.fdopen(fd, mode, buffering=0) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def _open_here(path: Path, flags: int, *, dir_fd: int | None = None, shown: Path | None = None) -> int:
    """``os.open(path, flags)`` in a directory the caller trusts: never through a link at ``path`` itself."""
    try:
        return os.open(path, flags, 0o644, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(shown or path, "is a symbolic link") from None
        if e.errno == errno.ENXIO:  # a FIFO nobody reads
            raise _refuse(shown or path, "is not a regular file") from None
        raise


def read_text(path: Path, *, errors: str = "strict") -> str:
    """The UTF-8 text of the regular file ``path``, not read through a link at ``path``.

    Opening never blocks, so a FIFO or a device planted where a run file belongs is refused at
    once instead of hanging the reader.

    Raises:
        FileNotFoundError: there is none.
        UnsafeRunFile: ``path`` is a link, a FIFO or another non-regular file.
        OSError, UnicodeDecodeError: it cannot be read.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(path, "is a symbolic link") from None
        raise
    _check_regular(fd, path)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8", errors=errors)


def remove_planted(directory: Path) -> list[str]:
    """Remove every symlink, FIFO, socket or device below ``directory`` (never following a link); return their names.

    A task's directories are reused when a resumed run runs the task again: whatever an earlier
    attempt (or anyone since) left there that is not a plain file or directory must not be where
    the bench, which writes with a plain ``open``, writes next.
    """
    removed = []
    for root, dirnames, filenames in os.walk(directory):  # os.walk lists linked directories, never enters them
        for name in dirnames + filenames:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                os.unlink(path)
                removed.append(os.path.relpath(path, directory))
    return removed
