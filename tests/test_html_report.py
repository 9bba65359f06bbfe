"""The HTML report in a real headless Chromium: chart and table render with the run's numbers."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_benchflow.results import BenchInfo, ResultsWriter, TaskRecord, load_run
from pytest_benchflow.results.html import render_html
from pytest_benchflow.results.records import SampleRecord
from pytest_benchflow.stats import wilson_interval

DOCS = Path(__file__).resolve().parents[1] / "docs"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("BENCHFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail("BENCHFLOW_REQUIRE_BROWSER=1 but no Chromium is installed (apt-get install chromium)")
    pytest.skip("no Chromium installed")


def browse(page: Path, *, fragment: str = "", screenshot: Path | None = None) -> str:
    """The DOM after scripts ran (or a screenshot), from headless Chromium with no network use."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--window-size=1200,1500",
        ]
        command += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        result = subprocess.run([*command, page.as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Elements(HTMLParser):
    """Collects the attributes and text of elements with a given class."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(dom: str, css_class: str) -> list[dict[str, str | None]]:
    parser = Elements()
    parser.feed(dom)
    return [a for _, a in parser.found if css_class in (a.get("class") or "").split()]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A real MMLU-Pro demo run (baseline agent, one broken category) and its report written by the plugin."""
    work = tmp_path_factory.mktemp("demo")
    (work / "conftest.py").write_text(
        "def pytest_benchflow_task_environment(bench, task_id, env):\n"
        "    if task_id == 'law':\n        env['INTELLIGENCE_URL'] = 'http://127.0.0.1:9'\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--benchflow=mmlu_pro",
            "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
            "--benchflow-html=report.html",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "BENCHFLOW_RETRIES": "0"},
        check=False,
    )
    (summary,) = work.glob(".benchflow/*/summary.json")
    return work / "report.html", json.loads(summary.read_text())


def test_chart_and_table_render_with_the_right_numbers(
    demo_report: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    page, summary = demo_report
    text = page.read_text()
    # Nothing is fetched when it is viewed: no external scripts, styles, fonts or images.
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    dom = browse(page)
    bench = summary["benches"]["mmlu_pro"]
    bars = {row["data-label"]: row for row in elements(dom, "row")}
    expected = {k: v for k, v in bench["breakdown"].items() if v["total"]}
    assert set(bars) == set(expected) and "overall" in bars
    for label, row in expected.items():
        low, high = wilson_interval(row["correct"], row["total"])
        assert float(bars[label]["data-value"] or 0) == pytest.approx(row["correct"] / row["total"], abs=1e-4)
        assert (float(bars[label]["data-low"] or 0), float(bars[label]["data-high"] or 0)) == pytest.approx(
            (low, high), abs=1e-4
        )
    rows = elements(dom, "task")
    assert len(rows) == 14 and "showing 14 of 14 tasks" in dom
    assert {r["data-outcome"] for r in rows} == {"passed", "failed", "error"}
    assert f"{100 * bench['resolution_rate']:.1f}%" in dom


def test_filter_sort_and_details_in_the_browser(demo_report: tuple[Path, dict[str, Any]]) -> None:
    page, summary = demo_report
    failed = sum(1 for t in summary["tasks"] if t["outcome"] == "failed")
    dom = browse(page, fragment="#outcome=failed")
    assert {r["data-outcome"] for r in elements(dom, "task")} == {"failed"} and f"showing {failed} of 14" in dom
    opened = browse(page, fragment="#outcome=error&open=1")
    assert "cannot connect to the agent at http://127.0.0.1:9/response" in opened  # the error's reason, one click away
    by_duration = browse(page, fragment="#sort=duration&order=desc")
    durations = [t["duration"] for t in sorted(summary["tasks"], key=lambda t: -t["duration"])]
    first = elements(by_duration, "task")[0]
    assert summary["tasks"][int(first["data-index"] or 0)]["duration"] == durations[0]


def test_screenshot(demo_report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, _ = demo_report
    shots = {"report.png": "", "report-samples.png": "#q=biology&open=1&sample=1"}
    for name, fragment in shots.items():
        browse(page, fragment=fragment, screenshot=tmp_path / name)
        assert (tmp_path / name).stat().st_size > 10_000
        if os.environ.get("BENCHFLOW_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(tmp_path / name, DOCS / name)


def test_twelve_thousand_tasks_render(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path, {"run_id": "big"})
    for i in range(12032):
        outcome = ("passed", "failed", "error")[i % 3]
        writer.add(
            TaskRecord(
                bench="mmlu_pro",
                task_id=f"law/{i}",
                outcome=outcome,
                metrics={"correct": int(outcome == "passed")},
                duration=0.01,
                reason=None if outcome == "passed" else outcome,
                details="x" * 200,
            )
        )
    writer.finish(exit_status=1, interrupted=False, bench_info={"mmlu_pro": BenchInfo()}, breakdown=lambda n, r: None)
    page = tmp_path / "big.html"
    page.write_text(render_html(load_run(tmp_path)))
    dom = browse(page, fragment="#outcome=error")
    assert "showing 4010 of 12032 tasks" in dom and len(elements(dom, "task")) == 4010


HOSTILE = "<!--<script>document.title='pwned'</script>"


def hostile_run(tmp_path: Path) -> Path:
    writer = ResultsWriter(tmp_path / "run", {"run_id": "r"})
    for task_id, outcome in ((HOSTILE, "failed"), ("</script><script>document.title='pwned2'</script>", "error")):
        writer.add(
            TaskRecord(
                bench="b<i>",
                task_id=task_id,
                outcome=outcome,
                metrics={"x<b>": "<img src=x onerror=\"document.title='pwned3'\">"},
                duration=1.0,
                reason="<b>bold</b>",
                details="<script>document.title='pwned4'</script>",
            ),
            [SampleRecord("b<i>", task_id, HOSTILE, 0.0, metadata={"answer": HOSTILE})],
        )
    writer.finish(exit_status=1, interrupted=False, bench_info={"b<i>": BenchInfo()}, breakdown=lambda n, r: None)
    page = tmp_path / "report.html"
    page.write_text(render_html(load_run(tmp_path / "run")))
    return page


def test_embedded_data_cannot_break_out_of_its_script(tmp_path: Path) -> None:
    text = hostile_run(tmp_path).read_text()
    data = text.split('id="task-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)[0]["task_id"] == HOSTILE
    samples = text.split('id="sample-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in samples and json.loads(samples)["samples"][0][1] == HOSTILE


def test_hostile_fields_render_as_text_in_the_browser(tmp_path: Path) -> None:
    dom = browse(hostile_run(tmp_path), fragment="#open=1")
    assert "pwned" not in dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "&lt;!--&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom or "&lt;!--&lt;script&gt;" in dom
    assert "<b>bold</b>" not in dom and "&lt;b&gt;bold&lt;/b&gt;" in dom
    assert len(elements(dom, "task")) == 2


def test_every_field_the_script_inserts_is_escaped(tmp_path: Path) -> None:
    # Readers refuse unknown outcomes, so the page's own data is tampered with: the script must not trust it.
    page = hostile_run(tmp_path)
    text = page.read_text()
    odd = json.dumps("<img src=x onerror=\"document.title='pwned5'\">").replace("<", "\\u003c")
    assert '"outcome": "failed"' in text
    page.write_text(text.replace('"outcome": "failed"', f'"outcome": {odd}', 1))
    dom = browse(page)
    assert "pwned" not in dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "<img" not in dom.split('id="task-table"', 1)[1]


@pytest.fixture(scope="module")
def quiz_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quiz run (samples and transcripts) with two wrong answers in task t1, and its report."""
    from quiz import QUIZ, QUIZ_ARGS

    work = tmp_path_factory.mktemp("quiz")
    (work / "quiz_bench.py").write_text(QUIZ)
    env = {**os.environ, "QUIZ_WRONG": "t1q1,t1q3", "PYTHONPATH": str(work)}
    subprocess.run(
        [sys.executable, "-m", "pytest", *QUIZ_ARGS, "--benchflow-html=report.html", "-p", "no:cacheprovider"],
        cwd=work,
        capture_output=True,
        env=env,
        check=False,
    )
    return work / "report.html"


def test_a_task_drills_down_to_its_samples_and_their_transcripts(quiz_report: Path) -> None:
    dom = browse(quiz_report, fragment="#q=t1&open=1")
    samples = elements(dom, "sample")
    assert [s["data-sample"] for s in samples] == [f"t1q{i}" for i in range(5)]
    assert {s["data-sample"] for s in samples if "wrong" in (s["class"] or "")} == {"t1q1", "t1q3"}
    wrong = browse(quiz_report, fragment="#q=t1&open=1&samples=wrong&sample=1")
    assert [s["data-sample"] for s in elements(wrong, "sample")] == ["t1q1", "t1q3"]
    assert "2 of 5 samples" in wrong
    # The first wrong sample's exchange: what was asked, what came back, what the bench made of it.
    exchange = wrong.split('<dl class="exchange">', 1)[1].split("</dl>", 1)[0]
    assert "[question]\nt1q1" in exchange and '<dd class="response">wrong</dd>' in exchange
    assert "[answer]\nwrong" in exchange


def test_transcripts_beyond_the_budget_are_left_out_with_a_note(quiz_report: Path, tmp_path: Path) -> None:
    run = load_run(next(quiz_report.parent.glob(".benchflow/2*")))
    full = render_html(run)
    small = render_html(run, transcript_budget=300)
    data = json.loads(small.split('id="sample-data">', 1)[1].split("</script>", 1)[0])
    assert 0 < len(data["transcripts"]) < 20 and len(data["samples"]) == 20
    # The failed task's transcripts go in first: they are the ones read.
    embedded = {s[1] for s in data["samples"] if s[4]}
    assert embedded <= {f"t1q{i}" for i in range(5)} and embedded
    assert "transcripts embedded up to 0.0003 million characters" in small
    assert "transcripts embedded up to" not in full


def test_a_tampered_log_dir_does_not_read_outside_the_run(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "transcript.jsonl"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"sample_id": "s", "request": "PRIVATE-FILE-CONTENT"}) + "\n")
    writer = ResultsWriter(tmp_path / "run", {"run_id": "r"})
    writer.add(TaskRecord(bench="b", task_id="t", outcome="passed", log_dir="../outside"))
    writer.finish(exit_status=0, interrupted=False, bench_info={"b": BenchInfo()}, breakdown=lambda n, r: None)
    assert "PRIVATE-FILE-CONTENT" not in render_html(load_run(tmp_path / "run"))


def test_long_argument_values_wrap_inside_the_page(tmp_path: Path) -> None:
    long_value = "/data/" + "very_long_directory_name_without_breaks" * 12 + "/mmlu_pro_test.parquet"
    writer = ResultsWriter(tmp_path, {"run_id": "long"})
    writer.add(TaskRecord(bench="mmlu_pro", task_id="law", outcome="passed"))
    info = BenchInfo(args={"DATA_FILE": long_value, "NUM_SHOTS": 0})
    writer.finish(exit_status=0, interrupted=False, bench_info={"mmlu_pro": info}, breakdown=lambda n, r: None)
    page = tmp_path / "report.html"
    # The browser says whether anything sticks out of the window: a page that scrolls sideways
    # hides the rest of every row.
    probe = (
        "<script>addEventListener('load', () => { document.body.dataset.overflow = "
        "String(document.documentElement.scrollWidth - document.documentElement.clientWidth); });</script>"
    )
    page.write_text(render_html(load_run(tmp_path)).replace("</body>", probe + "</body>"))
    dom = browse(page)
    assert long_value in html.unescape(dom)
    (overflow,) = re.findall(r'data-overflow="(-?\d+)"', dom)
    assert int(overflow) <= 0
