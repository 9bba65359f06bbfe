"""Data from outside (agent answers and ``/info``, container files): walked without recursion, shown printably."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "TOO_DEEP", "bounded_info", "excerpt", "map_strings", "printable"]

#: Containers nested deeper than this are replaced by :data:`TOO_DEEP`: far beyond any real record, far within
#: what ``json.dumps`` can write back (Python's recursion limit is 1000).
MAX_DEPTH = 64
TOO_DEEP = "(cut: nested too deeply)"
# What an agent's /info may keep (summary.json, terminal): a name, a model and its settings fit easily.
_INFO_DEPTH = 8
_INFO_STRING = 500
_INFO_BYTES = 16 * 1024
# How much of an agent's text an error message quotes.
_EXCERPT = 200


def map_strings(value: Any, fn: Callable[[str], str], max_depth: int = MAX_DEPTH) -> Any:
    """A copy of the JSON-like ``value`` with ``fn`` applied to every string, dictionary keys included.

    Tuples become lists; a container nested deeper than ``max_depth`` becomes :data:`TOO_DEEP`. The walk
    keeps its own stack, so no depth of input (a reference cycle included) can exhaust Python's.
    """
    root, source = _shell(value, fn, 0, max_depth)
    stack = [(source, root, 0)] if source is not None else []
    while stack:
        src, dst, depth = stack.pop()
        for key, item in src.items() if isinstance(src, dict) else enumerate(src):
            copy, child = _shell(item, fn, depth + 1, max_depth)
            if isinstance(dst, dict):
                dst[fn(key) if isinstance(key, str) else key] = copy
            else:
                dst.append(copy)
            if child is not None:
                stack.append((child, copy, depth + 1))
    return root


def _shell(value: Any, fn: Callable[[str], str], depth: int, max_depth: int) -> tuple[Any, Any]:
    """The copy of ``value`` (an empty container to fill, for a container) and the container to walk, or None."""
    if isinstance(value, str):
        return fn(value), None
    if isinstance(value, (dict, list, tuple)):
        if depth > max_depth:
            return TOO_DEEP, None
        return ({} if isinstance(value, dict) else []), value
    return value, None


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every character a terminal would act on (escape codes, controls, line breaks) shown as
    ``?``, cut to ``limit`` characters with ``…`` when longer."""
    cut = limit is not None and len(text) > limit
    text = text[:limit] if cut else text
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text + "…" if cut else text


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """A one-line excerpt of ``text`` short enough for an error message, printable: it quotes what an agent
    sent, and a terminal would act on its escape codes (OSC 52 writes the clipboard)."""
    flat = " ".join(text.split())
    return printable(flat, limit - 1 if len(flat) > limit else None)


def bounded_info(info: dict[str, Any]) -> dict[str, Any]:
    """An agent's ``GET /info`` object as the run keeps and shows it: printable strings of at most 500
    characters, 8 levels deep, 16 KiB in all; over that, only its name and model with a note saying so."""
    clean: dict[str, Any] = map_strings(info, lambda s: printable(s, _INFO_STRING), _INFO_DEPTH)
    if len(json.dumps(clean)) <= _INFO_BYTES:
        return clean
    kept = {k: clean[k] for k in ("name", "model") if isinstance(clean.get(k), str)}
    return {**kept, "cut": f"/info is over {_INFO_BYTES} bytes: only its name and model are kept"}
