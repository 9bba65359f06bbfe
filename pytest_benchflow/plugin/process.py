"""What the plugin changes in the process it runs in: SIGTERM unwinds like Ctrl-C, printably; logging masks secrets."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from typing import Any

import pytest

from ..redaction import RedactingFilter

__all__ = ["interrupt_on_sigterm", "printable_interrupt", "redact_logging"]


def interrupt_on_sigterm() -> None:
    """SIGTERM (a CI cancel, xdist stopping a worker) raises KeyboardInterrupt, whatever the runner.

    So every task's ``finally`` cleans up, the summary and JUnit are written, and the agent is
    stopped. A handler someone else installed is left alone.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


def printable_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Drop the frames pytest cannot print from an interrupt's traceback.

    A signal can land on an instruction that has no line number (Python 3.11+ reports ``tb_lineno``
    as None there); pytest's terminal reporter then fails formatting the interrupt and the run ends as
    an internal error instead of "interrupted", with its summary and JUnit half written.
    """

    def printable(entry: Any) -> bool:
        try:
            entry.lineno  # noqa: B018 — the property pytest's formatting trips over
        except TypeError:
            return False
        return True

    excinfo.traceback = excinfo.traceback.filter(printable)


def redact_logging(config: pytest.Config, secret_values: Iterable[str]) -> None:
    """Mask secrets in live logging (``--log-cli-level``), ``--log-file`` and captured logs."""
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    redacting = RedactingFilter(secret_values)
    for name in ("log_cli_handler", "log_file_handler", "caplog_handler", "report_handler"):
        handler = getattr(logging_plugin, name, None)
        if isinstance(handler, logging.Handler):
            handler.addFilter(redacting)
