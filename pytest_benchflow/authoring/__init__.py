"""Writing a benchmark: `pytest-benchflow new`, `build` and `check` (see README, "Writing a benchmark")."""
