"""Extracting container archives: what is refused, and that nothing lands outside the task directory."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pytest_benchflow.errors import UnsafeArchive
from pytest_benchflow.runners.archive import extract_archive, make_task_dir, spool


def archive(*members: tuple[str, str, bytes | str]) -> io.BytesIO:
    """A tar like Docker's get_archive of /app/results: members under ``results/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "link": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = str(payload)
            tar.addfile(info)
    buffer.seek(0)
    return buffer


def test_regular_tree_and_inner_symlink(tmp_path: Path) -> None:
    dest = tmp_path / "task" / "results"
    count = extract_archive(
        archive(
            ("dir", "results", ""),
            ("file", "results/a.json", "{}"),
            ("dir", "results/sub", ""),
            ("file", "results/sub/b.txt", "b"),
            ("sym", "results/link", "sub/b.txt"),
        ),
        dest,
        "results",
    )
    assert count == 2 and (dest / "sub" / "b.txt").read_text() == "b" and (dest / "link").read_text() == "b"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("file", "results/../../escape.txt", "x"), "points outside the task directory"),
        (("file", "/etc/evil", "x"), "points outside the task directory"),
        (("sym", "results/etc", "/etc"), "symlink 'results/etc' -> '/etc' points outside"),
        (("sym", "results/up", "../../.."), "points outside the task directory"),
        (("link", "results/hard", "/etc/passwd"), "is a hard link"),
        (("chr", "results/null", ""), "is a device or FIFO"),
        (("fifo", "results/pipe", ""), "is a device or FIFO"),
    ],
)
def test_refused_members(tmp_path: Path, member: tuple[str, str, str], message: str) -> None:
    dest = tmp_path / "task" / "results"
    with pytest.raises(UnsafeArchive, match=message):
        extract_archive(archive(member), dest, "results")
    task = tmp_path / "task"
    assert all(p == task or task in p.parents for p in tmp_path.rglob("*"))


def test_write_through_a_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "task"
    (dest).mkdir()
    (dest / "sneaky").symlink_to(outside)
    with pytest.raises(UnsafeArchive, match=r"outside|through a link"):
        extract_archive(archive(("file", "results/sneaky/x.txt", "x")), dest, "results")
    assert list(outside.iterdir()) == []


def test_member_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_MAX_ARCHIVE_MEMBERS", "5")
    members = [("file", f"results/f{i}", "x") for i in range(6)]
    with pytest.raises(UnsafeArchive, match="more than 5 entries"):
        extract_archive(archive(*members), tmp_path / "d", "results")


def test_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHFLOW_MAX_ARCHIVE_BYTES", "1000")
    with pytest.raises(UnsafeArchive, match="larger than the 1000 byte cap"):
        spool(iter([b"x" * 600, b"y" * 600]), io.BytesIO(), "results archive")


def outside_is_untouched(tmp_path: Path, dest: Path) -> None:
    for path in tmp_path.rglob("*"):
        assert path == dest.parent or dest.parent in path.parents or path == dest, f"{path} written outside"


@pytest.mark.parametrize(
    "members",
    [
        # Lexically inside, physically the parent: "up" -> "here/.." where "here" -> "."
        [("sym", "results/here", "."), ("sym", "results/up", "here/.."), ("file", "results/up/evil.txt", "x")],
        [("sym", "results/here", "."), ("sym", "results/up", "here/..")],
        # A chain whose last link leaves.
        [("dir", "results/a", ""), ("sym", "results/a/b", ".."), ("sym", "results/c", "a/b/..")],
        # A file member after a link of the same name.
        [("sym", "results/d", "."), ("file", "results/d/x", "x"), ("sym", "results/e", "d/../..")],
    ],
)
def test_links_that_leave_physically_are_refused(tmp_path: Path, members: list[tuple[str, str, str]]) -> None:
    dest = tmp_path / "run" / "results"
    with pytest.raises(UnsafeArchive):
        extract_archive(archive(*members), dest, "results")
    outside_is_untouched(tmp_path, dest)
    for path in dest.rglob("*"):
        assert os.path.realpath(path).startswith(str(dest.resolve())), path


def test_no_file_is_opened_through_a_link_of_the_same_archive(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("host file")
    dest = tmp_path / "run" / "results"
    dest.mkdir(parents=True)
    members = [("sym", "results/f", str(victim)), ("file", "results/f", "overwritten")]
    with pytest.raises(UnsafeArchive):
        extract_archive(archive(*members), dest, "results")
    assert victim.read_text() == "host file"


def test_a_planted_symlink_is_never_a_task_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "results").symlink_to(outside)
    with pytest.raises(UnsafeArchive, match="is a symlink; refusing"):
        make_task_dir(run, "results", "task")
    with pytest.raises(UnsafeArchive, match=r"not a plain directory|is a symlink"):
        extract_archive(archive(("file", "results/x", "x")), run / "results", "results")
    assert list(outside.iterdir()) == []


def test_sparse_or_oversized_members_count_against_the_byte_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCHFLOW_MAX_ARCHIVE_BYTES", "1000")
    with pytest.raises(UnsafeArchive, match="unpacks to more than 1000 bytes"):
        extract_archive(
            archive(("file", "results/a", "x" * 600), ("file", "results/b", "y" * 600)), tmp_path / "d", "r"
        )


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "1e400"])
def test_bad_cap_values_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BENCHFLOW_MAX_ARCHIVE_MEMBERS", value)
    with pytest.raises(ValueError, match="BENCHFLOW_MAX_ARCHIVE_MEMBERS="):
        extract_archive(archive(("file", "results/a", "x")), tmp_path / "d", "r")
