"""The package exports exactly its public API."""

import pytest_benchflow
import pytest_benchflow.schemas


def test_public_names_are_exported() -> None:
    for name in ("BenchClient", "BaseBench", "BaseAgent", "BenchArgs", "BenchmarkResult"):
        assert name in pytest_benchflow.__all__
        assert getattr(pytest_benchflow, name) is not None


def test_all_matches_module_namespace() -> None:
    public = {n for n in dir(pytest_benchflow) if not n.startswith("_")} - {"pytest_plugins"}
    modules = {n for n in public if type(getattr(pytest_benchflow, n)).__name__ == "module"}
    assert set(pytest_benchflow.__all__) == public - modules


def test_schemas_module_is_the_same_objects() -> None:
    assert pytest_benchflow.schemas.BenchArgs is pytest_benchflow.BenchArgs
    assert pytest_benchflow.schemas.BenchmarkResult is pytest_benchflow.BenchmarkResult
