"""``python -m pytest_benchflow``: the ``pytest-benchflow`` command (report, compare, list)."""

from __future__ import annotations

import sys

from .results.cli import main

if __name__ == "__main__":
    sys.exit(main())
