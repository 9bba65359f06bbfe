"""MMLU-Pro, the reference benchmark of pytest-benchflow (registered as ``mmlu_pro``)."""

from __future__ import annotations

from .bench import MMLUProBench

__all__ = ["MMLUProBench"]
