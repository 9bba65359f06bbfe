"""Secret values never leave the process in clear: one test per boundary a string crosses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import in_process_bench
from pytest_benchflow.redaction import redact_data

SECRET = "sk-test-4f1c9e2b7a"
LEAKY_BENCH = in_process_bench(
    "Leaky",
    """
    log = logging.getLogger("leaky")


    def evaluate(env):
        key, url = env["LEAKY_API_KEY"], env["INTELLIGENCE_URL"]
        log.warning("calling %s with key %s", url, key)
        try:
            raise RuntimeError("auth failed for " + key)
        except RuntimeError:
            log.exception("handled")
        Client(url).get_response("q")
        Path(env["BENCHFLOW_LOG_DIR"], "trace.txt").write_text(f"key={key} url={url}\\n")
        Path(env["BENCHFLOW_RESULTS_DIR"], "r.json").write_text(json.dumps({"key": key, "url": url}))
    """,
    """
    data = json.loads(Path(self.results_dir, "r.json").read_text())
    return {
        "is_resolved": False,
        "metrics": {"echo": "used " + data["key"], "score": 0.5},
        "other": {"request": {"headers": {"Authorization": "Bearer " + data["key"]}}, data["key"]: 1},
        "log": "called " + data["url"],
    }
    """,
    args='{"required": ["LEAKY_API_KEY"]}',
)


@pytest.fixture
def leaky(pytester: pytest.Pytester, echo_agent: str) -> tuple[pytest.Pytester, str]:
    pytester.makepyfile(leaky=LEAKY_BENCH)
    url = echo_agent.replace("http://", "http://alice:pw-Zq81xx@")
    return pytester, url


def texts(root: Path) -> dict[str, str]:
    return {str(p): p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and ".py" not in p.suffix}


def test_no_boundary_lets_a_secret_through(leaky: tuple[pytest.Pytester, str]) -> None:
    pytester, url = leaky
    result = pytester.runpytest_subprocess(
        "--benchflow=leaky.py:Leaky",
        f"--agent-url={url}",
        f"--benchflow-arg=LEAKY_API_KEY={SECRET}",
        "--log-cli-level=INFO",
        "--log-file=pytest.log",
        "--junitxml=j.xml",
        "--benchflow-html=report.html",
        "-rA",
    )
    result.assert_outcomes(failed=1)
    shown = result.stdout.str() + result.stderr.str()
    assert "calling http://alice:***@127.0.0.1" in shown or "calling http://***@127.0.0.1" in shown  # live logging ran
    files = texts(pytester.path)
    assert any(name.endswith("trace.txt") for name in files) and any(name.endswith("pytest.log") for name in files)
    for where, text in [("terminal", shown), *files.items()]:
        if where.endswith("r.json"):
            continue  # the bench's own results: get_result must read what it wrote
        assert SECRET not in text, where
        assert "pw-Zq81xx" not in text, where
    (record,) = [
        json.loads(line) for line in next(pytester.path.glob(".benchflow/*/results.jsonl")).read_text().splitlines()
    ]
    assert record["metrics"]["echo"] == "used ***"
    assert record["other"] == {"request": {"headers": {"Authorization": "Bearer ***"}}, "***": 1}
    assert "key=*** url=http://" in next(pytester.path.glob(".benchflow/*/Leaky/logs/t/trace.txt")).read_text()


def test_secrets_under_xdist(leaky: tuple[pytest.Pytester, str]) -> None:
    pytester, url = leaky
    result = pytester.runpytest_subprocess(
        "--benchflow=leaky.py:Leaky", f"--agent-url={url}", f"--benchflow-arg=LEAKY_API_KEY={SECRET}", "-n", "2", "-rA"
    )
    result.assert_outcomes(failed=1)
    for where, text in [("terminal", result.stdout.str()), *texts(pytester.path / ".benchflow").items()]:
        if not where.endswith("r.json"):
            assert SECRET not in text and "pw-Zq81xx" not in text, where


def test_redact_data_masks_keys_values_and_nested_lists() -> None:
    data = {"a": [SECRET, {"k": f"x{SECRET}y"}], SECRET: 1.5, "n": None}
    assert redact_data(data, [SECRET]) == {"a": ["***", {"k": "x***y"}], "***": 1.5, "n": None}


def test_non_finite_metrics_become_null_with_a_note(pytester: pytest.Pytester, echo_agent: str) -> None:
    pytester.makepyfile(
        nan_bench=LEAKY_BENCH.replace('"score": 0.5', '"score": float("nan"), "big": float("inf")').replace(
            '{"required": ["LEAKY_API_KEY"]}', '{"optional": {"LEAKY_API_KEY": "not-secret-value"}}'
        )
    )
    result = pytester.runpytest("--benchflow=nan_bench.py:Leaky", f"--agent-url={echo_agent}")
    result.assert_outcomes(failed=1)
    run_dir = next(pytester.path.glob(".benchflow/*"))
    line = (run_dir / "results.jsonl").read_text()
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert record["metrics"]["score"] is None and record["metrics"]["big"] is None
    assert record["notes"] == ["metrics.score was nan, stored as null", "metrics.big was inf, stored as null"]
    json.loads((run_dir / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"constant {c}"))
