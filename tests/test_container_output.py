"""Saving a container's output streams: lines in bounded pieces, secrets masked across pieces, a capped file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_benchflow.redaction import redact
from pytest_benchflow.runners.logs import LINE_PIECE, CappedLog, MaskedStream, lines


def test_a_stream_without_newlines_comes_in_pieces() -> None:
    # 100 MB in the small frames Docker's log stream sends: bounded pieces, nothing lost.
    frame = b"y" * 16384
    pieces = list(lines([frame] * 6400 + [b"\nlast"]))
    assert sum(map(len, pieces)) == 16384 * 6400 + 5
    assert max(map(len, pieces)) == LINE_PIECE
    assert len(pieces) == 16384 * 6400 // LINE_PIECE + 2 and pieces[-2:] == [b"\n", b"last"]


def test_lines_keep_their_ends() -> None:
    assert list(lines([b"a\nb", b"c\n", b"", b"d"])) == [b"a\n", b"bc\n", b"d"]
    assert list(lines([b"abcdef\n"], longest=4)) == [b"abcd", b"ef\n"]


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_secret_split_between_pieces_is_masked(cut: int) -> None:
    secret = "tok-0123456789-secret"
    stream = f"before {secret} after, é and {secret}".encode()
    mask = MaskedStream(lambda text: redact(text, [secret]), len(secret))
    out = "".join(mask.feed(piece) for piece in (stream[:cut], stream[cut:])) + mask.flush()
    assert out == "before *** after, é and ***"


def test_the_capped_log_keeps_head_and_tail_and_says_what_was_cut(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    log = CappedLog(path, 100)
    for i in range(1000):
        log.write(f"line {i:04}\n")
    log.close()
    text = path.read_text()
    assert text.startswith("line 0000\nline 0001\n")
    assert text.endswith("line 0998\nline 0999\n")
    assert "[pytest-benchflow: 9900 bytes of output cut here; the first 50 and the last 50 bytes are kept" in text
    # Under the cap nothing is said.
    small = tmp_path / "small.log"
    log = CappedLog(small, 100)
    log.write("short\n")
    log.close()
    assert small.read_text() == "short\n"


def test_a_cut_never_splits_a_character(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    log = CappedLog(path, 11)
    log.write("ééééééééééééééé")
    log.close()
    head, _, tail = path.read_bytes().partition(b"\n[")
    head.decode()
    tail.partition(b"]\n")[2].decode()


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    os.symlink(outside, tmp_path / "out.log")
    with pytest.raises(OSError):
        CappedLog(tmp_path / "out.log", 100)
    assert outside.read_text() == "keep"
