"""Numeric settings (environment variables, options, ini values): one parser and one range check."""

from __future__ import annotations

import math
import os
from typing import TypeVar

__all__ = ["MAX_SECONDS", "env_number", "in_range", "parse_number", "shown_value"]

N = TypeVar("N", int, float)

#: Longest wait a seconds setting may ask for: a socket's or a lock's timeout overflows past ~10^9 s.
MAX_SECONDS = 10**8


def parse_number(raw: str, kind: type[N]) -> N | None:
    """``raw`` as a ``kind`` (``nan`` and ``inf`` included: see :func:`in_range`), None when it is not one."""
    try:
        return kind(raw.strip())
    except ValueError:
        return None


def in_range(value: float, minimum: float = 0.0, *, above: bool = False, maximum: float | None = None) -> bool:
    """``value`` is finite, at least ``minimum`` (more than it, with ``above``) and at most ``maximum``."""
    # An int is finite however long (math.isfinite would overflow converting 400 digits to a float).
    finite = isinstance(value, int) or math.isfinite(value)
    low = value > minimum if above else value >= minimum
    return finite and low and (maximum is None or value <= maximum)


def env_number(name: str, default: N, *, minimum: float = 0.0, maximum: float | None = None) -> N:
    """The value of environment variable ``name`` as the type of ``default`` (unset or empty: ``default``).

    Raises:
        ValueError: the value is not a finite number of that type, or is below ``minimum`` or above ``maximum``.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = type(default)
    value = parse_number(raw, kind)
    if value is None or not in_range(value, minimum, maximum=maximum):
        noun = "an integer" if kind is int else "a finite number"
        most = f" and <= {maximum:g}" if maximum is not None else ""
        raise ValueError(f"environment variable {name}={raw[:40]!r} must be {noun} >= {minimum:g}{most}")
    return value


def shown_value(raw: object, limit: int = 40) -> str:
    """A setting's value as an error quotes it: a 400-digit number is cut, not printed whole."""
    text = str(raw)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
