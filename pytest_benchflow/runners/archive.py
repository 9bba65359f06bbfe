"""Safe extraction of a container's results archive into a task directory, and link checks of task directories."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from ..envnumbers import env_number
from ..errors import UnsafeArchive

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_MEMBERS",
    "check_links",
    "ensure_task_dir",
    "extract_archive",
    "make_task_dir",
    "spool",
]

#: Largest results/logs archive accepted from one container (``BENCHFLOW_MAX_ARCHIVE_BYTES``).
MAX_ARCHIVE_BYTES = 1024**3
#: Most files accepted from one container directory (``BENCHFLOW_MAX_ARCHIVE_MEMBERS``).
MAX_ARCHIVE_MEMBERS = 100_000

# Opening a directory never follows a symlink: a link planted by a container fails here (ELOOP or ENOTDIR).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def max_archive_bytes() -> int:
    return env_number("BENCHFLOW_MAX_ARCHIVE_BYTES", MAX_ARCHIVE_BYTES, minimum=1)


def spool(chunks: Iterable[bytes], into: IO[bytes], what: str) -> None:
    """Copy an archive stream into a file, refusing more than the size cap."""
    cap = max_archive_bytes()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise UnsafeArchive(f"{what} is larger than the {cap} byte cap (BENCHFLOW_MAX_ARCHIVE_BYTES)")
        into.write(chunk)
    into.seek(0)


def make_task_dir(base: Path, *parts: str) -> Path:
    """``base/parts…``, each level created if missing and refused if it is anything but a real directory.

    ``base`` is trusted (the run directory); below it a symlink, even one planted by an
    earlier task, is never accepted as a task, results or logs directory.

    Raises:
        UnsafeArchive: a level exists and is a symlink or not a directory.
    """
    return ensure_task_dir(base, *parts)[0]


def ensure_task_dir(base: Path, *parts: str) -> tuple[Path, bool]:
    """:func:`make_task_dir`, and whether its last level was created now (so it is empty)."""
    path = base
    for i, part in enumerate(parts):
        path = path / part
        # Levels above the last usually exist (looked at once), the last usually does not (made at once):
        # each costs one system call in the common case, which a task many times a second notices.
        last = i == len(parts) - 1
        try:
            if last or not _is_real_directory(path):
                os.mkdir(path)
                if last:
                    return path, True
        except FileExistsError:
            if not _is_real_directory(path):
                mode = os.lstat(path).st_mode
                kind = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
                raise UnsafeArchive(f"task directory {path} is {kind}; refusing to use it") from None
        except FileNotFoundError:
            base.mkdir(parents=True, exist_ok=True)
            return ensure_task_dir(base, *parts)
    return path, False


def _is_real_directory(path: Path) -> bool:
    """Whether ``path`` is a directory and not a link (False when it is missing)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


class _Tree:
    """Directory file descriptors below a root, opened without ever following a link."""

    def __init__(self, root: Path, what: str) -> None:
        self.what = what
        try:
            self.fds: dict[tuple[str, ...], int] = {(): os.open(root, _DIR_FLAGS)}
        except OSError as e:
            raise UnsafeArchive(f"{what}: {root} is not a plain directory ({e.strerror})") from None

    def directory(self, parts: tuple[str, ...], member: str) -> int:
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.directory(parts[:-1], member)
        try:
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
        except FileExistsError:
            pass
        try:
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError:
            raise UnsafeArchive(
                f"{self.what}: member {member!r} is written through a link or a file, not a directory"
            ) from None
        self.fds[parts] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _relative(name: str, what: str) -> tuple[str, ...]:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeArchive(f"{what}: member {name!r} points outside the task directory")
    # A container engine's archive of /a/b holds b/...; the directory's own entry maps to the root.
    return tuple(p for p in path.parts[1:] if p != ".")


def _baseline(member: tarfile.TarInfo, rel: tuple[str, ...], root: Path, what: str) -> None:
    # PEP 706's data filter as a second opinion on each member (names, link targets, special files).
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None or member.islnk() or not (member.isfile() or member.isdir() or member.issym()):
        return
    try:
        data_filter(member.replace(name="/".join(rel), deep=False), str(root))
    except tarfile.FilterError as e:
        raise UnsafeArchive(f"{what}: member {member.name!r} refused: {e}") from None


def extract_archive(archive: IO[bytes], dest: Path, what: str) -> int:
    """Extract a tar archive of one container directory into ``dest``; returns the file count.

    No file or directory is ever created or opened through a symlink: directories are
    opened with ``O_NOFOLLOW`` relative to their parent's descriptor, and symlinks are
    created only after every file is written, each one's resolved target checked against
    ``dest``. Refused, with :class:`UnsafeArchive` and nothing written outside ``dest``:
    absolute or ``..`` paths, links pointing outside, hard links, devices and FIFOs,
    more than the member cap, more bytes than the size cap.
    """
    root = make_task_dir(dest.parent, dest.name)
    members_cap = env_number("BENCHFLOW_MAX_ARCHIVE_MEMBERS", MAX_ARCHIVE_MEMBERS, minimum=1)
    bytes_cap = max_archive_bytes()
    files = written = 0
    links: list[tuple[tuple[str, ...], str]] = []
    tree = _Tree(root, what)
    try:
        with tarfile.open(fileobj=archive, mode="r|") as tar:
            for count, member in enumerate(tar, 1):
                if count > members_cap:
                    raise UnsafeArchive(f"{what} holds more than {members_cap} entries (BENCHFLOW_MAX_ARCHIVE_MEMBERS)")
                rel = _relative(member.name, what)
                if not rel:
                    continue
                if member.issym():
                    _check_link_text(rel, member, what)
                _baseline(member, rel, root, what)
                if member.isdir():
                    tree.directory(rel, member.name)
                elif member.isfile():
                    written += member.size
                    if written > bytes_cap:
                        raise UnsafeArchive(
                            f"{what} unpacks to more than {bytes_cap} bytes (BENCHFLOW_MAX_ARCHIVE_BYTES)"
                        )
                    _write_file(tree, rel, member, tar, what)
                    files += 1
                elif member.issym():
                    links.append((rel, member.linkname))
                else:
                    kind = "hard link" if member.islnk() else "device or FIFO"
                    raise UnsafeArchive(f"{what}: member {member.name!r} is a {kind}, which results may not contain")
        # Links last: no member of this archive can have been written through one.
        for rel, target in links:
            parent = tree.directory(rel[:-1], "/".join(rel))
            try:
                os.unlink(rel[-1], dir_fd=parent)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                pass
            try:
                os.symlink(target, rel[-1], dir_fd=parent)
            except FileExistsError:
                raise UnsafeArchive(
                    f"{what}: symlink {'/'.join(rel)!r} collides with a directory of the archive"
                ) from None
    finally:
        tree.close()
    check_links(root, what)
    return files


def _write_file(tree: _Tree, rel: tuple[str, ...], member: tarfile.TarInfo, tar: tarfile.TarFile, what: str) -> None:
    parent = tree.directory(rel[:-1], member.name)
    try:
        fd = os.open(rel[-1], _FILE_FLAGS, 0o644, dir_fd=parent)
    except OSError:
        raise UnsafeArchive(f"{what}: member {member.name!r} would be written through a link") from None
    source = tar.extractfile(member)
    assert source is not None
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(1024 * 1024):
            out.write(chunk)


def _check_link_text(rel: tuple[str, ...], member: tarfile.TarInfo, what: str) -> None:
    target = member.linkname
    resolved = posixpath.normpath(posixpath.join(*rel[:-1], target)) if rel[:-1] else posixpath.normpath(target)
    if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(f"{what}: symlink {member.name!r} -> {target!r} points outside the task directory")


def check_links(root: Path, what: str) -> None:
    """Remove every symlink below ``root`` whose fully resolved target leaves it; raise if there was one.

    ``get_result`` runs on the host and reads this directory: no link in it may lead elsewhere.
    """
    real_root = os.path.realpath(root)
    escaping: list[str] = []
    for directory, dirnames, filenames in os.walk(root):  # os.walk does not descend into linked directories
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if real != real_root and not real.startswith(real_root + os.sep):
                    escaping.append(os.path.relpath(path, root))
                    os.unlink(path)
    if escaping:
        raise UnsafeArchive(f"{what}: symlink {escaping[0]!r} resolves outside the task directory (removed)")
