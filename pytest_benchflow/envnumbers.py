"""Numeric settings read from environment variables: one parser, one error message."""

from __future__ import annotations

import math
import os
from typing import TypeVar

__all__ = ["env_number"]

N = TypeVar("N", int, float)


def env_number(name: str, default: N, *, minimum: float = 0.0) -> N:
    """The value of environment variable ``name`` as the type of ``default`` (unset or empty: ``default``).

    Raises:
        ValueError: the value is not a finite number of that type, or is below ``minimum``.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        noun = "an integer" if kind is int else "a finite number"
        raise ValueError(f"environment variable {name}={raw!r} must be {noun} >= {minimum:g}")
    return value
