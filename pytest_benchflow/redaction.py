"""Which argument values are secret, and how they are kept out of everything we print or write."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "SECRET_WORDS", "is_secret_name", "public_url", "redact"]

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


def public_url(url: str) -> str:
    """``url`` without user name, password or query string (which often carries tokens)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
