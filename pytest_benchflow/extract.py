"""Safe extraction of a container's results archive into a task directory."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import TaskError

__all__ = ["MAX_ARCHIVE_BYTES", "MAX_ARCHIVE_MEMBERS", "UnsafeArchive", "extract_archive", "spool"]

#: Largest results/logs archive accepted from one container (``BENCHFLOW_MAX_ARCHIVE_BYTES``).
MAX_ARCHIVE_BYTES = 1024**3
#: Most files accepted from one container directory (``BENCHFLOW_MAX_ARCHIVE_MEMBERS``).
MAX_ARCHIVE_MEMBERS = 100_000


class UnsafeArchive(TaskError):
    """A container's archive tried to write outside its directory, or was too large."""


def _limit(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def spool(chunks: Iterable[bytes], into: IO[bytes], what: str) -> None:
    """Copy an archive stream into a file, refusing more than the size cap."""
    cap = _limit("BENCHFLOW_MAX_ARCHIVE_BYTES", MAX_ARCHIVE_BYTES)
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise UnsafeArchive(f"{what} is larger than the {cap} byte cap (BENCHFLOW_MAX_ARCHIVE_BYTES)")
        into.write(chunk)
    into.seek(0)


def _relative(name: str, what: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeArchive(f"{what}: member {name!r} points outside the task directory")
    # Docker's archive of /a/b holds b/...; the directory's own entry maps to the root.
    parts = path.parts[1:]
    return PurePosixPath(*parts) if parts else None


def extract_archive(archive: IO[bytes], dest: Path, what: str) -> int:
    """Extract a tar archive of one container directory into ``dest``; returns the file count.

    Refused, with :class:`UnsafeArchive` and nothing written outside ``dest``: absolute
    or ``..`` paths, links pointing outside ``dest``, hard links, devices and FIFOs,
    more than the member cap, more bytes than the size cap.
    """
    root = dest.resolve()
    root.mkdir(parents=True, exist_ok=True)
    cap = _limit("BENCHFLOW_MAX_ARCHIVE_MEMBERS", MAX_ARCHIVE_MEMBERS)
    files = 0
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for count, member in enumerate(tar, 1):
            if count > cap:
                raise UnsafeArchive(f"{what} holds more than {cap} entries (BENCHFLOW_MAX_ARCHIVE_MEMBERS)")
            rel = _relative(member.name, what)
            if rel is None:
                continue
            target = root / rel
            if not target.parent.resolve().is_relative_to(root):
                raise UnsafeArchive(
                    f"{what}: member {member.name!r} is written through a link outside the task directory"
                )
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                files += 1
            elif member.issym():
                link = PurePosixPath(member.linkname)
                resolved = os.path.normpath(target.parent / link) if not link.is_absolute() else str(link)
                if link.is_absolute() or not Path(resolved).is_relative_to(root):
                    raise UnsafeArchive(
                        f"{what}: symlink {member.name!r} -> {member.linkname!r} points outside the task directory"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, target)
            else:
                kind = "hard link" if member.islnk() else "device or FIFO"
                raise UnsafeArchive(f"{what}: member {member.name!r} is a {kind}, which results may not contain")
    return files
