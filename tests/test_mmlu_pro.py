"""MMLU-Pro: the official prompt and scoring, exact replay of published GPT-4o scores, data, agents, demo."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import INTERRUPTIBLE
from example_bench.mmlu_pro.data import DEMO_TEST, DataError, load_questions
from example_bench.mmlu_pro.scoring import build_prompt, extract_official, extract_strict, format_example, score
from pytest_benchflow import BaseAgent

# Published GPT-4o answers (Apache-2.0, TIGER-AI-Lab/MMLU-Pro); provenance in tests/data/mmlu_pro_gpt4o/README.md.
REPLAY_DATA = Path(__file__).resolve().parent / "data" / "mmlu_pro_gpt4o"
HISTORY = REPLAY_DATA / "history_result.json"
CS = REPLAY_DATA / "computer_science_result.json"
PUBLISHED = {"history": (267, 381), "computer_science": (321, 410)}


def test_format_example_matches_official() -> None:
    assert format_example("What is 2+2?", ["3", "4"]) == (
        "Question: What is 2+2?\nOptions: A. 3\nB. 4\nAnswer: Let's think step by step.\n\n"
    )
    assert format_example("Q", ["x"], "A: Let's think step by step. Because. The answer is (A).") == (
        "Question: Q\nOptions: A. x\nAnswer: Let's think step by step. Because. The answer is (A).\n\n"
    )


def test_prompt_header_and_shots() -> None:
    shot = {"question": "Q1", "options": ["a", "b"], "cot_content": "A: Let's think step by step. The answer is (B)."}
    assert build_prompt("law", [shot]) == (
        "The following are multiple choice questions (with answers) about law. Think step by step and then output "
        'the answer in the format of "The answer is (X)" at the end.\n\n'
        "Question: Q1\nOptions: A. a\nB. b\nAnswer: Let's think step by step. The answer is (B).\n\n"
    )


@pytest.mark.parametrize(
    ("text", "official", "strict"),
    [
        ("so the answer is (C).", "C", "C"),
        ("The answer is D", "D", "D"),
        ("Answer: E", None, "E"),
        ("I pick B because A is wrong", None, "A"),
        ("no idea", None, None),
    ],
)
def test_extraction_modes(text: str, official: str | None, strict: str | None) -> None:
    assert (extract_official(text), extract_strict(text)) == (official, strict)


def test_unparsed_answer_scored_by_seeded_guess_only_in_official_mode() -> None:
    record = {"answer": "B", "answer_index": 1, "options": list("abcdefghij")}
    random.seed(12345)
    guess = random.randint(0, 9)
    assert score(record, "no idea", "official") == (None, guess == 1)
    assert score(record, "no idea", "strict") == (None, False)


def test_official_scoring_reproduces_every_published_pred() -> None:
    for path in (HISTORY, CS):
        for record in json.loads(path.read_text()):
            assert extract_official(record["response"]) == record["pred"]


def replay_args(*extra: str) -> list[str]:
    return [
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:ReplayAgent",
        f"--benchflow-arg=DATA_FILE={HISTORY}{os.pathsep}{CS}",
        "--benchflow-arg=NUM_SHOTS=0",
        "-p",
        "no:randomly",
        *extra,
    ]


@pytest.fixture
def replay(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("REPLAY_FILE", f"{HISTORY}{os.pathsep}{CS}")
    return pytester


def summary_of(pytester: pytest.Pytester) -> dict[str, Any]:
    (path,) = pytester.path.glob(".benchflow/*/summary.json")
    return json.loads(path.read_text())


def test_replay_reproduces_published_scores(replay: pytest.Pytester) -> None:
    result = replay.runpytest(*replay_args("--benchflow-runner=local"))
    result.assert_outcomes(passed=2)
    breakdown = summary_of(replay)["benches"]["mmlu_pro"]["breakdown"]
    for category, (corr, total) in PUBLISHED.items():
        assert (breakdown[category]["correct"], breakdown[category]["total"]) == (corr, total)
    assert breakdown["overall"]["correct"] == 588
    results = next(replay.path.glob(".benchflow/*/mmlu_pro/results/history"))
    written = json.loads((results / "history_summary.json").read_text())
    assert (written["history"]["corr"], written["history"]["wrong"]) == (267.0, 114.0)
    published = {r["question_id"]: r["pred"] for r in json.loads(HISTORY.read_text())}
    assert {r["question_id"]: r["pred"] for r in json.loads((results / "history_result.json").read_text())} == published
    result.stdout.fnmatch_lines(["*history*267*381*0.7008*", "*overall*588*791*0.7434*"])


def test_strict_mode_reports_unparsed_as_wrong(replay: pytest.Pytester) -> None:
    replay.runpytest(*replay_args("--benchflow-arg=SCORING=strict", "-k", "history"))
    record = json.loads(next(replay.path.glob(".benchflow/*/results.jsonl")).read_text())
    unparsed_official = sum(1 for r in json.loads(HISTORY.read_text()) if r["pred"] is None)
    assert record["metrics"]["unparsed"] < unparsed_official  # the cascade recovers some answers
    assert record["metrics"]["total"] == 381


def test_question_unit_ids_and_micro_average(replay: pytest.Pytester) -> None:
    collected = replay.runpytest(*replay_args("--benchflow-arg=TASK_UNIT=question", "--collect-only", "-q"))
    ids = [line for line in collected.outlines if line.startswith("benchflow:")]
    assert len(ids) == 791 and "benchflow:mmlu_pro::history/4669" in ids
    result = replay.runpytest_subprocess(*replay_args("--benchflow-arg=TASK_UNIT=question", "-k", "history", "-n", "2"))
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + outcomes["failed"] == 381
    breakdown = summary_of(replay)["benches"]["mmlu_pro"]["breakdown"]
    assert (breakdown["history"]["correct"], breakdown["history"]["total"]) == (267, 381)


RECORDER = """
import json, threading, time
from pytest_benchflow import BaseAgent

class Recorder(BaseAgent):
    # Records every request and the peak number served at once; answers (A).
    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0

    def call_api(self, task_step_inputs):
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            with open("requests.jsonl", "a") as f:
                f.write(json.dumps(task_step_inputs) + "\\n")
        time.sleep(0.01)
        with self.lock:
            self.in_flight -= 1
            with open("peak.txt", "w") as f:
                f.write(str(self.peak))
        return "The answer is (A)."
"""


def test_agent_sees_prompt_and_question_but_never_the_label(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(recorder=RECORDER)
    result = pytester.runpytest(
        "--benchflow=mmlu_pro",
        "--agent=recorder.py:Recorder",
        f"--benchflow-arg=DATA_FILE={CS}",
        "--benchflow-arg=FEWSHOT_FILE=" + str(DEMO_TEST.with_name("demo_fewshot.json")),
        "--benchflow-arg=MAX_CONCURRENCY=3",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(failed=1)
    requests = [json.loads(line) for line in (pytester.path / "requests.jsonl").read_text().splitlines()]
    assert len(requests) == 410 and (pytester.path / "peak.txt").read_text() == "3"
    for request in requests:
        assert set(request) == {"prompt", "input_text", "question"}
        assert set(request["question"]) == {"question_id", "question", "options", "category", "src"}
    prompt = requests[0]["prompt"]
    assert prompt.startswith("The following are multiple choice questions (with answers) about computer science.")
    assert prompt.count("Question: ") == 1  # the demo few-shot set has one example for the category
    assert all(r["prompt"] == prompt for r in requests)


def test_data_formats_and_na_options(tmp_path: Path) -> None:
    records = [
        {
            "question_id": 1,
            "question": "q",
            "options": ["a", "b", "N/A", "N/A"],
            "answer": "B",
            "answer_index": 1,
            "cot_content": "",
            "category": "math",
            "src": "s",
        }
    ]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet")
    for name in ("d.json", "d.jsonl", "d.parquet"):
        (loaded,) = load_questions(str(tmp_path / name))
        assert loaded["options"] == ["a", "b"] and loaded["answer_index"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "MMLU-Pro data file not found"),
        ("{oops", "not valid JSON"),
        ('[{"question": "q"}]', "lacks question_id, options, answer, answer_index, category"),
    ],
)
def test_bad_data_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_questions(str(path))


def test_bad_data_file_is_a_clear_session_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "--benchflow=mmlu_pro",
        "--agent-url=http://127.0.0.1:1",
        "--benchflow-arg=DATA_FILE=/nope.json",
        "--collect-only",
    )
    result.stderr.fnmatch_lines(["ERROR: mmlu_pro: *reported: MMLU-Pro data file not found: /nope.json"])


def test_data_file_needs_fewshot_file(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent",
        f"--benchflow-arg=DATA_FILE={CS}",
    )
    # Once, before any task (tests/test_startup.py has it with xdist too).
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: mmlu_pro: *FEWSHOT_FILE is required with DATA_FILE (or set NUM_SHOTS=0)"])


def test_demo_runs_every_category_with_baseline(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent", "--junitxml=j.xml"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 14 and "errors" not in outcomes
    result.stdout.fnmatch_lines(["*biology*", "*psychology*", "*overall*42*"])
    assert (pytester.path / "j.xml").read_text().count("<testcase") == 14


def test_hugging_face_loading_through_datasets(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``hf:`` goes through the datasets library: here a local dataset directory, offline."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("REPLAY_FILE", str(HISTORY))
    records = json.loads(HISTORY.read_text())[:30]
    fields = ("question_id", "question", "options", "answer", "answer_index", "cot_content", "category", "src")
    dataset = tmp_path / "mmlu-pro"
    dataset.mkdir()
    (dataset / "test.jsonl").write_text("".join(json.dumps({k: r[k] for k in fields}) + "\n" for r in records))
    shot = dict(records[0], question_id=1, cot_content="A: Let's think step by step. The answer is (D).")
    (dataset / "validation.jsonl").write_text(json.dumps({k: shot[k] for k in fields}) + "\n")
    result = pytester.runpytest(
        "--benchflow=mmlu_pro",
        "--agent=example_bench.mmlu_pro.agents:ReplayAgent",
        f"--benchflow-arg=DATA_FILE=hf:{dataset}",
        f"--benchflow-arg=FEWSHOT_FILE=hf:{dataset}",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(failed=1)  # GPT-4o got 13 of these 30 right: below the 0.5 pass threshold
    random.seed(12345)
    expected = sum(
        r["pred"] == r["answer"]
        if r["pred"]
        else (random.seed(12345) or random.randint(0, len(r["options"]) - 1) == r["answer_index"])
        for r in records
    )
    (line,) = next(pytester.path.glob(".benchflow/*/results.jsonl")).read_text().splitlines()
    assert json.loads(line)["metrics"]["correct"] == expected and json.loads(line)["metrics"]["total"] == 30


# The authors' strict cascade, as their script writes it: the reference our linear version must match.
_REF_AGAIN = re.compile(r".*[aA]nswer:\s*([A-J])")
_REF_FINAL = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)


def reference_strict(text: str) -> str | None:
    text = text.replace("**", "")
    for pattern, group in ((re.compile(r"answer is \(?([ABCDEFGHIJ])\)?"), 1), (_REF_AGAIN, 1), (_REF_FINAL, 0)):
        match = pattern.search(text)
        if match:
            return match.group(group)
    return None


TOKENS = [
    "A",
    "B",
    "J",
    "K",
    "a",
    "answer:",
    "Answer:",
    "answer is",
    "(C)",
    " ",
    "  ",
    "\n",
    "\t",
    "**",
    "x",
    "word",
    "D.",
    "é",
    "_",
    "1",
]


def test_strict_extraction_matches_the_authors_regexes_on_varied_texts() -> None:
    rng = random.Random(20261128)
    texts = ["".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 60))) for _ in range(5000)]
    texts += [
        "Answer:\n\n  B",
        "first line\nAnswer: C then Answer: D\nAnswer: E",
        "no letters at all",
        "**Answer:** F",
        "The answer is **(G)**",
        "answer: a\nAnswer: H",
        "I think A or B... final: C.",
        "A" * 50,
    ]
    for text in texts:
        assert extract_strict(text) == reference_strict(text), repr(text)


def test_strict_extraction_on_long_degenerate_answers() -> None:
    # The regexes need seconds here (quadratic); the extraction must finish at once and agree.
    tail = "A " * 2000
    long_line = "x" * 100_000 + " B"
    assert extract_strict(tail) == "A"
    assert extract_strict(long_line) == "B"
    assert extract_strict("Answer: D" + " z" * 50_000) == "D"
    moderate = "word " * 400 + "Answer: E " + "q " * 400
    assert extract_strict(moderate) == reference_strict(moderate) == "E"


class FlakyReplay:
    """Replays the recorded answers, but refuses (HTTP 400) every request after the first ``budget``."""

    def __init__(self, budget: int) -> None:
        from example_bench.mmlu_pro.agents import ReplayAgent

        outer = self
        self.budget, self.asked = budget, 0
        replay = ReplayAgent(str(HISTORY))

        class Flaky(ReplayAgent):
            def __init__(self) -> None:
                self.responses = replay.responses

            def call_api(self, task_step_inputs: dict[str, Any]) -> str:
                outer.asked += 1
                if outer.asked > outer.budget:
                    from pytest_benchflow import AgentOverloaded

                    raise AgentOverloaded("quota exhausted", status=503, retry_after=0)
                return super().call_api(task_step_inputs)

        self.server = Flaky().serve()


def test_a_category_keeps_the_answers_it_got_and_asks_only_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from example_bench.mmlu_pro.evaluate import evaluate

    monkeypatch.setenv("BENCHFLOW_RETRIES", "0")
    flaky = FlakyReplay(budget=100)
    env = {
        "TEST_START_ID": "history",
        "DATA_FILE": str(HISTORY),
        "NUM_SHOTS": "0",
        "MAX_CONCURRENCY": "4",
        "INTELLIGENCE_URL": flaky.server.url,
        "BENCHFLOW_RESULTS_DIR": str(tmp_path),
    }
    try:
        with pytest.raises(RuntimeError, match=r"^100 of 381 questions answered; then: agent at .* answered HTTP 503"):
            evaluate(env)
        kept = json.loads((tmp_path / "history_result.json").read_text())
        assert len(kept) == 100 and len((tmp_path / "history_answers.jsonl").read_text().splitlines()) == 100
        assert not (tmp_path / "history_summary.json").exists()
        refused_in_flight = flaky.asked - 100
        assert 1 <= refused_in_flight <= 4  # no request is started after the first refusal
        flaky.budget = 10_000  # the quota is back: the same task asks only what is missing
        summary = evaluate(env)
    finally:
        flaky.server.stop()
    assert flaky.asked - 100 - refused_in_flight == 281
    assert summary["total"]["corr"] == PUBLISHED["history"][0]


class FirstAnswerThenHold(BaseAgent):
    """Answers the first question at once and holds every other one until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.asked = 0

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        with self.lock:
            self.asked += 1
            first = self.asked == 1
        if not first:
            self.release.wait(30)
        return "The answer is (A)."


def test_ctrl_c_during_a_category_ends_quietly_and_keeps_the_finished_answers(pytester: pytest.Pytester) -> None:
    # The session takes a moment to unwind (as a loaded machine does), so the held answers
    # arrive while it does: after the task's answers log was closed.
    pytester.makeconftest("import time\ndef pytest_sessionfinish():\n    time.sleep(1.5)\n")
    agent = FirstAnswerThenHold()
    server = agent.serve()
    output = pytester.path / "output.txt"
    command = [sys.executable, "-m", "pytest", "--benchflow=mmlu_pro", f"--agent-url={server.url}"]
    command += ["--benchflow-runner=local", "-k", "biology", "-p", "no:cacheprovider", "-p", "no:randomly"]
    try:
        with open(output, "w") as out:
            proc = pytester.popen(command, **{**INTERRUPTIBLE, "stdout": out, "stderr": subprocess.STDOUT})
            deadline = time.monotonic() + 60
            while not list(pytester.path.glob(".benchflow/*/mmlu_pro/results/*/*_answers.jsonl")):
                assert time.monotonic() < deadline and proc.poll() is None, output.read_text()
                time.sleep(0.05)
            (log,) = pytester.path.glob(".benchflow/*/mmlu_pro/results/*/*_answers.jsonl")
            while not log.read_text():
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            agent.release.set()  # the held answers now reach the client's threads
            code = proc.wait(timeout=60)
    finally:
        agent.release.set()
        server.stop()
    text = output.read_text()
    assert code == 2, text
    for noise in ("Traceback", "ValueError", "UnhandledThreadException", "closed file"):
        assert noise not in text, text
    # The first answer finished before the interrupt; the held ones may land before it on a slow machine.
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    assert 1 <= len(kept) <= 3 and all(k["response"] == "The answer is (A)." for k in kept)
