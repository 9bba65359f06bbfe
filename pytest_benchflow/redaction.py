"""Which argument values are secret, and how they are kept out of everything we print or write."""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

from .untrusted import map_strings

__all__ = [
    "MASK",
    "SECRET_WORDS",
    "RedactingFilter",
    "is_secret_name",
    "public_url",
    "redact",
    "redact_data",
    "redact_files",
    "secret_forms",
    "url_secrets",
]

#: An argument whose name contains one of these words (any case) is secret.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MASK = "***"
# Replacing very short values would garble every report while protecting nothing real.
_MIN_REDACTED_LENGTH = 4


def is_secret_name(name: str, declared: Iterable[str] = ()) -> bool:
    """True when ``name`` holds a secret: by its wording, or because the bench declared it."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS) or name in set(declared)


# Linear in the text: no scheme before "://" (``\b[a-zA-Z][\w+.-]*://`` rescanned "a-a-a-…" from each
# word boundary, quadratic: an agent's answer of 80 KB took 10 s to mask, of 1 MB half an hour).
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")


def secret_forms(value: str) -> set[str]:
    """``value`` as each of our writers may spell it: raw, JSON-escaped (``\\u`` escapes or not, and escaped
    twice, as an answer body quoted in a transcript line is), URL-encoded, HTML-escaped, and as Python's
    ``repr`` and ``ascii`` show it (a traceback's ``KeyError: 'it\\'s'``).

    Forms shorter than 4 characters are left out (see :data:`MASK`).
    """
    forms = {value}
    for _ in range(2):
        forms |= {json.dumps(f, ensure_ascii=a)[1:-1] for f in forms for a in (True, False)}
    # surrogateescape: a value from the command line may hold bytes that are no UTF-8 (as lone surrogates).
    url_forms = {quote(value, safe="", errors="surrogateescape"), quote_plus(value, safe="", errors="surrogateescape")}
    forms |= url_forms | {html.escape(value), html.escape(value, quote=False)}
    forms |= {repr(value)[1:-1], ascii(value)[1:-1]}
    return {f for f in forms if len(f) >= _MIN_REDACTED_LENGTH}


@functools.lru_cache(maxsize=32)
def _needles(values: frozenset[str]) -> tuple[str, ...]:
    """Every form of every value, longest first: at one position the longest match wins."""
    forms = {f for v in values if len(v) >= _MIN_REDACTED_LENGTH for f in secret_forms(v)}
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


@functools.lru_cache(maxsize=32)
def _text_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    needles = _needles(values)
    return re.compile("|".join(map(re.escape, needles))) if needles else None


@functools.lru_cache(maxsize=32)
def _bytes_pattern(values: frozenset[str]) -> tuple[re.Pattern[bytes], int] | None:
    """The pattern over UTF-8 bytes, and the length of its longest needle (how much a chunk must keep)."""
    needles = [n.encode("utf-8", "surrogateescape") for n in _needles(values)]
    return (re.compile(b"|".join(map(re.escape, needles))), max(map(len, needles))) if needles else None


def redact(text: str, secret_values: Iterable[str]) -> str:
    """``text`` with every secret value (in each of its :func:`secret_forms`), and the credentials of any URL,
    replaced by ``***``."""
    text = _URL_CREDENTIALS.sub("://***@", text)
    values = frozenset(secret_values)
    # Substring search first: most texts hold no secret, and it is far faster than the regex.
    if not any(needle in text for needle in _needles(values)):
        return text
    pattern = _text_pattern(values)
    return pattern.sub(MASK, text) if pattern is not None else text


def redact_data(value: Any, secret_values: Iterable[str]) -> Any:
    """:func:`redact` applied to every string (keys included) of a JSON-like value.

    The walk is iterative and stops at :data:`~pytest_benchflow.untrusted.MAX_DEPTH` levels (deeper
    containers are replaced by a note): no nesting an agent or a bench sends can crash the session.
    """
    values = frozenset(secret_values)
    return map_strings(value, lambda text: redact(text, values))


#: How much of a file :func:`redact_files` reads at a time: memory stays constant whatever the file's size.
_CHUNK = 1024 * 1024


def redact_files(directory: Path, secret_values: Iterable[str], *, chunk_size: int = _CHUNK) -> None:
    """Rewrite, in place, every regular file below ``directory`` that contains a secret value, with it masked.

    Files of any size are masked, in one streaming pass of ``chunk_size`` bytes at a time (a value that
    spans two chunks included). Links are neither followed nor rewritten.
    """
    found = _bytes_pattern(frozenset(secret_values))
    if found is None:
        return
    pattern, longest = found
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                fd = os.open(Path(root, name), os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # a link (O_NOFOLLOW), or gone: nothing of ours to mask
            with open(fd, "r+b", buffering=0) as file:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    _redact_stream(file, pattern, longest, chunk_size)


def _redact_stream(file: IO[bytes], pattern: re.Pattern[bytes], longest: int, chunk_size: int) -> None:
    """Mask every match of ``pattern`` in ``file``, in place.

    The mask is shorter than any needle, so what is written never overtakes what was read. The last
    ``longest - 1`` bytes of each chunk wait for the next one: a match starting before them fits in the
    chunk, so the result is exactly that of one ``pattern.sub`` over the whole file.
    """
    read_at = write_at = 0
    carry, changed = b"", False
    while True:
        file.seek(read_at)
        data = file.read(chunk_size)
        read_at += len(data)
        buffer = carry + data
        safe = len(buffer) if not data else max(0, len(buffer) - (longest - 1))
        parts, done = [], 0
        for match in pattern.finditer(buffer):
            if match.start() >= safe:
                break
            parts += [buffer[done : match.start()], MASK.encode()]
            done = match.end()
        keep = max(safe, done)
        parts.append(buffer[done:keep])
        carry = buffer[keep:]
        changed = changed or done > 0
        if changed:  # until the first match, the file already holds exactly these bytes
            file.seek(write_at)
            file.write(b"".join(parts))
        write_at += sum(map(len, parts))
        if not data:
            break
    if changed:
        file.truncate(write_at)


def url_secrets(url: str) -> list[str]:
    """The password of ``url`` (and the ``user:password`` pair), to redact wherever the URL may show."""
    parts = urlsplit(url)
    if not parts.password:
        return []
    return [parts.password, unquote(parts.password), f"{parts.username}:{parts.password}"]


class RedactingFilter(logging.Filter):
    """Masks secret values in log records (message, arguments and traceback) before any handler formats them."""

    def __init__(self, secret_values: Iterable[str]) -> None:
        super().__init__()
        self.secret_values = secret_values  # a live collection: values added later are masked too

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secret_values)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secret_values)
        return True


def public_url(url: str) -> str:
    """``url`` without user name, password or query string (which often carries tokens)."""
    parts = urlsplit(url)
    if not parts.netloc and url.startswith(f"{parts.scheme}://"):
        # unix:///var/run/docker.sock: no host, nothing to hide (urlunsplit would drop the slashes).
        return f"{parts.scheme}://{parts.path}"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
