"""Which argument values are secret, and how they are kept out of everything we print or write."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .runfiles import open_for_writing

__all__ = [
    "MASK",
    "SECRET_WORDS",
    "RedactingFilter",
    "is_secret_name",
    "public_url",
    "redact",
    "redact_data",
    "redact_files",
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


_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://)[^/@\s]+@")


def redact(text: str, secret_values: Iterable[str]) -> str:
    """``text`` with every secret value, and the credentials of any URL, replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    for value in sorted(set(secret_values), key=len, reverse=True):
        if len(value) >= _MIN_REDACTED_LENGTH and value in text:
            text = text.replace(value, MASK)
    return text


def redact_data(value: Any, secret_values: Iterable[str]) -> Any:
    """:func:`redact` applied to every string (keys included) of a JSON-like value."""
    if isinstance(value, str):
        return redact(value, secret_values)
    if isinstance(value, dict):
        return {redact_data(k, secret_values): redact_data(v, secret_values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v, secret_values) for v in value]
    return value


#: Files larger than this are left as they are by :func:`redact_files` (logs of that size are not read by people).
_MAX_REDACTED_FILE = 64 * 1024 * 1024


def redact_files(directory: Path, secret_values: Iterable[str]) -> None:
    """Rewrite every regular file below ``directory`` that contains a secret value, with it masked.

    Links are neither followed nor rewritten; files over 64 MiB are skipped.
    """
    needles = [v.encode() for v in sorted(set(secret_values), key=len, reverse=True) if len(v) >= _MIN_REDACTED_LENGTH]
    if not needles:
        return
    for root, _, files in os.walk(directory):
        for name in files:
            path = Path(root, name)
            if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_REDACTED_FILE:
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                for n in needles:
                    data = data.replace(n, MASK.encode())
                with open_for_writing(path, "wb", root=directory) as out:  # never through a link planted since
                    out.write(data)


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
