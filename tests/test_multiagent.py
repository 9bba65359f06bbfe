"""Several agents in one run (issue 28): an item per task per agent, a leaderboard and a pairwise matrix."""

from __future__ import annotations

import json
import os
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from test_html_report import browse, elements

from conftest import in_process_bench
from pytest_benchflow.results.leaderboard import holm, leaderboards
from pytest_benchflow.results.reader import load_run
from pytest_benchflow.results.records import SampleRecord, TaskRecord
from pytest_benchflow.stats import mcnemar_exact

REPLAY_DATA = Path(__file__).resolve().parent / "data" / "mmlu_pro_gpt4o"
REPLAY_FILES = os.pathsep.join(str(REPLAY_DATA / f) for f in ("history_result.json", "computer_science_result.json"))

# GPT-4o's published answers with 8% of the questions (by a hash of their id) answered with a wrong letter.
CORRUPTED = """
import json, os, zlib
from example_bench.mmlu_pro.agents import ReplayAgent

class Corrupted(ReplayAgent):
    def __init__(self):
        super().__init__()
        self.answers = {}
        for path in os.environ["REPLAY_FILE"].split(os.pathsep):
            with open(path) as f:
                self.answers.update({str(r["question_id"]): r["answer"] for r in json.load(f)})

    def call_api(self, inputs):
        qid = str(inputs["question"]["question_id"])
        if zlib.crc32(qid.encode()) % 100 < 8:
            return "The answer is (%s)." % ("B" if self.answers[qid] == "A" else "A")
        return super().call_api(inputs)
"""

THREE = [
    "--agent=gpt4o=example_bench.mmlu_pro.agents:ReplayAgent",
    "--agent=corrupted=ma_agents:Corrupted",
    "--agent=longest=example_bench.mmlu_pro.agents:LongestOptionAgent",
]


def mmlu_args(*extra: str) -> list[str]:
    return [
        "--benchflow=mmlu_pro",
        f"--benchflow-arg=DATA_FILE={REPLAY_FILES}",
        "--benchflow-arg=NUM_SHOTS=0",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        *extra,
    ]


def run_dirs(path: Path) -> list[Path]:
    return sorted(p.parent for p in path.glob(".benchflow/*/summary.json"))


def records_and_samples(run_dir: Path) -> tuple[set[Any], set[Any]]:
    """What must be the same however the session ran: each record's task, agent, outcome and metrics; each sample."""
    records = {
        (r["bench"], r["task_id"], r["agent"], r["nodeid"], r["outcome"], json.dumps(r["metrics"], sort_keys=True))
        for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())
    }
    samples = {
        (s["bench"], s["task_id"], s["agent"], s["sample_id"], s["score"])
        for s in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())
    }
    return records, samples


@pytest.fixture(scope="module")
def three_agents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One session of three replay agents of known, different accuracy, then the same with -n 2 and with
    --benchflow-concurrency 4, each in its own directory."""
    import subprocess

    found: dict[str, Any] = {}
    root = Path(__file__).resolve().parents[1]
    for label, extra in (("plain", []), ("xdist", ["-n", "2"]), ("concurrent", ["--benchflow-concurrency=4"])):
        work = tmp_path_factory.mktemp(label)
        (work / "ma_agents.py").write_text(CORRUPTED)
        html = ["--benchflow-html=report.html"] if label == "plain" else []
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *mmlu_args(*THREE, *html, *extra)],
            cwd=work,
            capture_output=True,
            text=True,
            env={**os.environ, "REPLAY_FILE": REPLAY_FILES, "PYTHONPATH": f"{root}{os.pathsep}{work}"},
            check=False,
        )
        (run_dir,) = run_dirs(work)
        found[label] = {
            "work": work,
            "run": run_dir,
            "stdout": done.stdout,
            "stderr": done.stderr,
            "rc": done.returncode,
        }
    return found


def test_three_agents_leaderboard_and_matrix_marks_exactly_the_real_differences(three_agents: dict[str, Any]) -> None:
    plain = three_agents["plain"]
    assert plain["rc"] == 1, plain["stdout"][-3000:] + plain["stderr"][-3000:]  # longest-option fails both categories
    run_dir = plain["run"]
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {r["nodeid"] for r in records} == {
        f"benchflow:mmlu_pro::{t}[{a}]"
        for t in ("history", "computer_science")
        for a in ("gpt4o", "corrupted", "longest")
    }
    assert all(r["results_dir"].endswith(f"%@{r['agent']}") for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["agents"]) == {"gpt4o", "corrupted", "longest"} and summary["agent"] is None
    board = summary["leaderboards"]["mmlu_pro"]
    assert [r["agent"] for r in board["agents"]] == ["gpt4o", "corrupted", "longest"]
    assert board["agents"][0]["sample_mean"] == pytest.approx(588 / 791)  # the published GPT-4o score
    # The matrix, recomputed here from samples.jsonl alone: McNemar's exact test, Holm across the three pairs.
    scores: dict[str, dict[tuple[str, str], float]] = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        scores.setdefault(s["agent"], {})[(s["task_id"], s["sample_id"])] = s["score"]
    expected = {}
    pairs = list(combinations(["gpt4o", "corrupted", "longest"], 2))
    raw = []
    for a, b in pairs:
        a_better = sum(1 for k in scores[a] if scores[a][k] > scores[b][k])
        b_better = sum(1 for k in scores[a] if scores[a][k] < scores[b][k])
        raw.append(mcnemar_exact(a_better, b_better))
    m = len(raw)
    ordered = sorted(range(m), key=lambda i: raw[i])
    running = 0.0
    for rank, i in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * raw[i]))
        expected[pairs[i]] = running < 0.05
    written = {(p["a"], p["b"]): p["significant"] for p in board["pairs"]}
    assert written == expected == dict.fromkeys(pairs, True)
    gap = next(p for p in board["pairs"] if (p["a"], p["b"]) == ("gpt4o", "corrupted"))
    assert gap["b_better"] == 0 and gap["a_better"] == len(gap["disagreements"]) > 0  # corruption only hurts
    out = plain["stdout"]
    assert "benchflow leaderboard" in out and "* gpt4o vs corrupted" in out
    assert "1. gpt4o" in out and "3. longest" in out


def test_xdist_and_concurrency_give_the_same_records(three_agents: dict[str, Any]) -> None:
    plain = records_and_samples(three_agents["plain"]["run"])
    for label in ("xdist", "concurrent"):
        assert three_agents[label]["rc"] == 1, three_agents[label]["stdout"][-2000:]
        assert records_and_samples(three_agents[label]["run"]) == plain, label
    assert len(plain[0]) == 6 and len(plain[1]) == 3 * 791


def test_report_matrix_opens_the_samples_two_agents_disagree_on_in_a_browser(three_agents: dict[str, Any]) -> None:
    work, run_dir = three_agents["plain"]["work"], three_agents["plain"]["run"]
    page = work / "report.html"
    summary = json.loads((run_dir / "summary.json").read_text())
    pair = next(p for p in summary["leaderboards"]["mmlu_pro"]["pairs"] if (p["a"], p["b"]) == ("gpt4o", "corrupted"))
    dom = browse(page)
    cells = elements(dom, "pair")
    assert len(cells) == 6  # three pairs, each both ways
    assert all("significant" in (c["class"] or "") for c in cells)
    target = next(c["data-target"] for c in cells if (c["data-a"], c["data-b"]) == ("gpt4o", "corrupted"))
    assert target is not None
    # Nothing is open until a cell is chosen; opening one (by its link) shows that pair's disagreements only.
    assert all(d.get("hidden") is not None for d in elements(dom, "disagreements"))
    opened = browse(page, fragment="#" + target)
    shown = [d for d in elements(opened, "disagreements") if d.get("hidden") is None]
    assert [d["id"] for d in shown] == [target]
    section = opened[opened.index(f'id="{target}"') :]
    section = section[: section.index("</div>")]
    assert section.count('class="disagreement"') == len(pair["disagreements"]) == pair["a_better"]


def test_one_agent_keeps_todays_ids_and_records(pytester: pytest.Pytester, echo_agent: str) -> None:
    pytester.makepyfile(
        toy=in_process_bench(
            "Toy", "def evaluate(env):\n    pass", "return {'is_resolved': True, 'metrics': {}}", tasks=("a", "b")
        )
    )
    result = pytester.runpytest("--benchflow=toy.py:Toy", f"--agent-url=solo={echo_agent}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    (run_dir,) = run_dirs(pytester.path)
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["nodeid"] for r in records] == ["benchflow:Toy::a", "benchflow:Toy::b"]
    assert all("agent" not in r for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "leaderboards" not in summary and "agents" not in summary and set(summary["benches"]) == {"Toy"}


DYING_AGENT = """
import os, sys
from pytest_benchflow import BaseAgent

class Fragile(BaseAgent):
    def call_api(self, inputs):
        if inputs["question"] == "die":
            os._exit(1)
        return inputs["question"].upper()

Fragile().run_with_endpoint("127.0.0.1", int(sys.argv[1]))
"""

ASKS = """
def evaluate(env):
    from pytest_benchflow import BenchClient

    class C(BenchClient):
        def prepare_input(self, raw):
            return {"question": raw}

        def parse_response(self, raw):
            return {"answer": raw}

    answer = C(env["INTELLIGENCE_URL"]).get_response(env["TEST_START_ID"])
    Path(env["BENCHFLOW_RESULTS_DIR"], "answer.txt").write_text(answer["answer"])
"""


def test_an_agent_dying_mid_run_errors_its_own_items_only(
    pytester: pytest.Pytester, echo_agent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        toy=in_process_bench(
            "Toy",
            ASKS,
            "ok = Path(self.results_dir, 'answer.txt').read_text() == task_id.upper()\nreturn {'is_resolved': ok, 'metrics': {}}",
            tasks=("a", "die", "b"),
        ),
        fragile=DYING_AGENT,
    )
    monkeypatch.setenv("BENCHFLOW_RETRIES", "0")
    result = pytester.runpytest(
        "--benchflow=toy.py:Toy",
        f"--agent-url=echo={echo_agent}",
        f"--agent-cmd=fragile={sys.executable} fragile.py {{port}}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=4, errors=2)
    (run_dir,) = run_dirs(pytester.path)
    records = {r["nodeid"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    assert {n for n, r in records.items() if r["outcome"] == "error"} == {
        "benchflow:Toy::die[fragile]",
        "benchflow:Toy::b[fragile]",
    }
    assert {records[n]["error_kind"] for n in ("benchflow:Toy::die[fragile]", "benchflow:Toy::b[fragile]")} == {"agent"}
    board = json.loads((run_dir / "summary.json").read_text())["leaderboards"]["Toy"]
    assert {r["agent"]: r["error_kinds"] for r in board["agents"]} == {"echo": {}, "fragile": {"agent": 2}}


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        (["--agent-url=a=http://127.0.0.1:9", "--agent-url=a=http://127.0.0.1:8"], "two agents are named 'a'*"),
        (["--agent-url=a[1]=http://127.0.0.1:9"], "*agent name 'a?1?' cannot be part of a node id*"),
        (["--agent-url=epoch2=http://127.0.0.1:9"], "*agent name 'epoch2' cannot be part of a node id*"),
        (
            [f"--agent-url=a{i}=http://127.0.0.1:9" for i in range(51)],
            "51 agents given: at most 50 run in one session*",
        ),
    ],
)
def test_bad_agent_lists_are_one_line_usage_errors(pytester: pytest.Pytester, agents: list[str], message: str) -> None:
    pytester.makepyfile(
        toy=in_process_bench("Toy", "def evaluate(env):\n    pass", "return {'is_resolved': True, 'metrics': {}}")
    )
    result = pytester.runpytest("--benchflow=toy.py:Toy", *agents, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not list(pytester.path.glob(".benchflow/*/results.jsonl"))


def test_an_agent_down_at_start_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, echo_agent: str, free_url: str
) -> None:
    pytester.makepyfile(
        toy=in_process_bench("Toy", "def evaluate(env):\n    pass", "return {'is_resolved': True, 'metrics': {}}")
    )
    result = pytester.runpytest(
        "--benchflow=toy.py:Toy",
        f"--agent-url=up={echo_agent}",
        f"--agent-url=down={free_url}",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: agent down: agent at {free_url} does not answer*"])


def test_unnamed_agents_are_named_from_info_and_two_alike_must_be_named(
    pytester: pytest.Pytester, echo_agent: str
) -> None:
    pytester.makepyfile(
        toy=in_process_bench("Toy", "def evaluate(env):\n    pass", "return {'is_resolved': True, 'metrics': {}}"),
        ag="from conftest import EchoAgent\nclass Other(EchoAgent):\n    pass\nclass EchoAgent(EchoAgent):\n    pass\n",
    )
    named = pytester.runpytest("--benchflow=toy.py:Toy", f"--agent-url={echo_agent}", "--agent=ag:Other", "-v")
    named.assert_outcomes(passed=2)
    named.stdout.fnmatch_lines(["benchflow:Toy::t?EchoAgent? PASSED*", "benchflow:Toy::t?Other? PASSED*"])
    alike = pytester.runpytest("--benchflow=toy.py:Toy", f"--agent-url={echo_agent}", "--agent=ag:EchoAgent")
    assert alike.ret == pytest.ExitCode.USAGE_ERROR
    alike.stderr.fnmatch_lines(["ERROR: two agents are named 'EchoAgent'*"])


def test_gate_agent_fails_the_session_when_another_is_significantly_worse(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(ma_agents=CORRUPTED)
    monkeypatch.setenv("REPLAY_FILE", REPLAY_FILES)
    two = THREE[:2]
    ok = pytester.runpytest(*mmlu_args(*two, "-k", "history", "--benchflow-gate-agent=corrupted"))
    assert ok.ret == pytest.ExitCode.OK
    gated = pytester.runpytest(*mmlu_args(*two, "-k", "history", "--benchflow-gate-agent=gpt4o"))
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    gated.stdout.fnmatch_lines(["session failed: corrupted is significantly worse than gpt4o on mmlu_pro*"])
    better = pytester.runpytest(
        *mmlu_args(*two, "-k", "history", "--benchflow-gate-agent=corrupted", "--benchflow-gate-mode=better")
    )
    assert better.ret == pytest.ExitCode.TESTS_FAILED
    unknown = pytester.runpytest(*mmlu_args(*two, "--benchflow-gate-agent=nobody"))
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(
        ["ERROR: --benchflow-gate-agent 'nobody': no such agent (the session's: gpt4o, corrupted)"]
    )


def test_holm_and_a_pair_that_is_not_significant(tmp_path: Path) -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # a and b disagree on 3 of 40 questions (2 vs 1): no real difference; both beat c on 30.
    records, samples = [], []
    for agent, wrong in (("a", {0, 1}), ("b", {2}), ("c", set(range(30)))):
        records.append(TaskRecord(bench="q", task_id="t", outcome="passed", agent=agent))
        samples += [SampleRecord("q", "t", str(i), 0.0 if i in wrong else 1.0, agent=agent) for i in range(40)]
    from pytest_benchflow.results.reader import RunData

    (board,) = leaderboards(RunData(tmp_path, {}, records, {}, samples=samples))
    marks = {(p.a, p.b): p.significant for p in board.pairs}
    assert marks == {("b", "a"): False, ("b", "c"): True, ("a", "c"): True}
    assert load_run  # the reader builds the same RunData from a run directory


def test_collect_only_shows_the_items_of_agents_the_user_named(pytester: pytest.Pytester, free_url: str) -> None:
    pytester.makepyfile(
        toy=in_process_bench("Toy", "def evaluate(env):\n    pass", "return {'is_resolved': True, 'metrics': {}}")
    )
    # Nothing answers at free_url: collecting asks no agent, as a run's ids would be, named by the user.
    named = pytester.runpytest(
        "--benchflow=toy.py:Toy", f"--agent-url=a={free_url}", "--agent=b=conftest:EchoAgent", "--collect-only", "-q"
    )
    assert named.ret == pytest.ExitCode.OK
    named.stdout.fnmatch_lines(["benchflow:Toy::t[a]", "benchflow:Toy::t[b]", "2 tests collected*"])
    # An unnamed agent is named from its /info when it answers, which collecting never asks: plain ids, as before.
    unnamed = pytester.runpytest(
        "--benchflow=toy.py:Toy", f"--agent-url=a={free_url}", f"--agent-url={free_url}", "--collect-only", "-q"
    )
    assert unnamed.ret == pytest.ExitCode.OK
    unnamed.stdout.fnmatch_lines(["benchflow:Toy::t", "1 test collected*"])
