"""Live progress of running tasks on the terminal: done/total, rate and time left."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from ..environment import ProgressCallback

__all__ = ["MODES", "ProgressDisplay"]

#: auto: on a terminal, not in CI, not under xdist.
MODES = ("auto", "always", "never")


class ProgressDisplay:
    """Rewrites one terminal line with each running task's progress (at most 4 times a second)."""

    def __init__(self, config: pytest.Config, line_mode: bool) -> None:
        self.config = config
        self.line_mode = line_mode
        self._lock = threading.Lock()
        self._last = 0.0
        #: Tasks running, done and queued in this process (``--benchflow-concurrency``), empty without a pool.
        self._pool = ""

    @classmethod
    def create(cls, config: pytest.Config, mode: str) -> ProgressDisplay | None:
        """A display for ``mode`` (one of ``MODES``), or None where it would only clutter."""
        if mode == "never" or getattr(config.option, "numprocesses", None):
            return None
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return None
        tty = bool(getattr(reporter, "isatty", False))
        if mode == "auto" and (not tty or os.environ.get("CI")):
            return None
        return cls(config, line_mode=not tty)

    def callback(self, bench: str, task_id: str) -> ProgressCallback:
        started = time.monotonic()

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            with self._lock:
                if done < total and now - self._last < (2.0 if self.line_mode else 0.25):
                    return
                self._last = now
                elapsed = max(now - started, 1e-9)
                rate = done / elapsed
                left = (total - done) / rate if rate > 0 else float("inf")
                text = f"{bench} {task_id}: {done}/{total}, {rate:.1f}/s, ~{left:.0f}s left"
                self._write(f"[{self._pool}] {text}" if self._pool else text)

        return report

    def pool_status(self, status: str) -> None:
        """The pool's counts changed (a task started or finished): show them, as often as task progress."""
        now = time.monotonic()
        with self._lock:
            self._pool = status
            if now - self._last < (2.0 if self.line_mode else 0.25):
                return
            self._last = now
            self._write(f"tasks: {status}")

    def _write(self, text: str) -> None:
        reporter: Any = self.config.pluginmanager.get_plugin("terminalreporter")
        capture: Any = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            if self.line_mode:
                reporter.write_line(text)
            else:
                reporter.write("\r\x1b[K" + text + "\r", flush=True)
