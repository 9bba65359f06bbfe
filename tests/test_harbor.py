"""Harbor / Terminal-Bench task directories on a real engine: example_bench/terminal with --agent oracle (all
pass), --agent nop (none pass) and a scripted tool-calling model through OpenAIChatAgent; the check that flags
broken and trivial tasks; the verifier's faults; task.toml's supported subset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tool_model import ToolModel, completion

from pytest_benchflow.harbor import (
    BuildError,
    HarborTaskError,
    HarborVerifierError,
    Trial,
    check_harbor,
    find_tasks,
    load_task,
    run_trial,
)
from pytest_benchflow.harbor.config import allowed_variables, substitute
from pytest_benchflow.runners.docker_sandbox import DockerSandboxProvider
from pytest_benchflow.sandbox import TaskSandboxes

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ROOT / "example_bench" / "terminal"
BASE = "benchflow/base:bookworm"


@pytest.fixture(scope="module")
def base() -> str:
    """The base image the example tasks build FROM (scripts/build-images.sh makes it)."""
    from images import _unavailable, engine

    client = engine()
    try:
        client.images.get(BASE)
    except Exception:
        _unavailable(f"{BASE} is not on the engine: scripts/build-images.sh makes it")
    return BASE


@pytest.fixture
def provider(base: str) -> Iterator[DockerSandboxProvider]:
    made = DockerSandboxProvider(f"harbor-test-{uuid.uuid4().hex[:8]}")
    yield made
    made.close_all()
    made.sweep()


def trial_of(task_dir: Path, tmp_path: Path, harness_agent: Any = "oracle", **settings: Any) -> Trial:
    return Trial(
        load_task(task_dir, task_dir.name), tmp_path / "logs", agent="", harness_agent=harness_agent, **settings
    )


def run(trial: Trial, provider: DockerSandboxProvider) -> Any:
    sandboxes = TaskSandboxes(provider, {}, uuid.uuid4().hex)
    try:
        return run_trial(trial, sandboxes)
    finally:
        sandboxes.close()


def make_task(
    root: Path, name: str, *, test_sh: str, solve_sh: str = "true\n", toml: str = "", dockerfile: str = ""
) -> Path:
    task = root / name
    (task / "environment").mkdir(parents=True)
    (task / "tests").mkdir()
    (task / "solution").mkdir()
    (task / "task.toml").write_text('schema_version = "1.1"\n[environment]\nnetwork_mode = "no-network"\n' + toml)
    (task / "instruction.md").write_text(f"Do {name}.\n")
    (task / "environment" / "Dockerfile").write_text(dockerfile or f"FROM {BASE}\nWORKDIR /app\n")
    (task / "tests" / "test.sh").write_text("#!/bin/bash\nmkdir -p /logs/verifier\n" + test_sh)
    (task / "solution" / "solve.sh").write_text("#!/bin/bash\n" + solve_sh)
    return task


# --- real sessions ------------------------------------------------------------------------------------------


def records(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    (run_dir,) = pytester.path.glob(".benchflow/2*")
    lines = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    return {r["task_id"]: r for r in lines}


def test_the_terminal_examples_pass_with_the_oracle_and_fail_with_nop(pytester: pytest.Pytester, base: str) -> None:
    tasks = sorted(find_tasks(TERMINAL))
    assert 8 <= len(tasks) <= 10
    oracle = pytester.runpytest_subprocess(f"--benchflow=harbor:{TERMINAL}", "--agent=oracle", timeout=900)
    oracle.assert_outcomes(passed=len(tasks))
    assert f"benchflow:harbor::{tasks[0]} PASSED" in oracle.stdout.str() or "passed" in oracle.stdout.str()
    found = records(pytester)
    assert sorted(found) == tasks and all(r["metrics"] == {"reward": 1.0} for r in found.values())
    shutil.rmtree(pytester.path / ".benchflow")
    nop = pytester.runpytest_subprocess(f"--benchflow=harbor:{TERMINAL}", "--agent=nop", "-rf", timeout=900)
    nop.assert_outcomes(failed=len(tasks))
    assert all(r["metrics"] == {"reward": 0.0} for r in records(pytester).values())


class TaskModel(ToolModel):
    """A scripted model that solves whichever example task its conversation is about: it looks for /tests and
    /solution first (they must not be there), then runs the task's solution as one bash call, then submits."""

    def __init__(self) -> None:
        super().__init__([])
        self.solutions = {
            load_task(p, t).instruction: (p / "solution" / "solve.sh").read_text()
            for t, p in find_tasks(TERMINAL).items()
        }

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages = body.get("messages", [])
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        with self.lock:
            self.requests.append(body)
        instruction = next(m["content"] for m in messages if m.get("role") == "user")
        script = [
            [("bash", {"command": "ls /tests /solution"})],
            [("bash", {"command": self.solutions[instruction]})],
            [("submit", {"answer": "done"})],
        ]
        return 200, completion(script[min(turn, 2)], turn)


def test_a_scripted_tool_calling_model_solves_the_terminal_examples_through_openai_chat_agent(
    pytester: pytest.Pytester, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TaskModel()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", model.url)
        monkeypatch.setenv("OPENAI_MODEL", "tool-model")
        monkeypatch.setenv("OPENAI_MAX_RETRY_SECONDS", "0")
        monkeypatch.delenv("INTELLIGENCE_URL", raising=False)
        result = pytester.runpytest_subprocess(
            f"--benchflow=harbor:{TERMINAL}", "--agent=pytest_benchflow.agents:OpenAIChatAgent", timeout=900
        )
    finally:
        model.stop()
    tasks = find_tasks(TERMINAL)
    result.assert_outcomes(passed=len(tasks))
    (run_dir,) = pytester.path.glob(".benchflow/2*")
    transcript = [json.loads(x) for x in (run_dir / "harbor/logs/fix-median/transcript.jsonl").read_text().splitlines()]
    steps = [line for line in transcript if "step" in line]
    # Neither the tests nor the solution were in the sandbox while the agent worked.
    assert steps[0]["tool_calls"][0]["exit_code"] != 0
    assert "No such file or directory" in steps[0]["tool_calls"][0]["output"]
    assert [line["tool_calls"][0]["name"] for line in steps] == ["bash", "bash", "submit"]
    assert transcript[-1]["verifier"] is True
    assert records(pytester)["fix-median"]["usage"]["requests"] == 3


def test_harness_agents_run_only_harbor_benchmarks(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--benchflow=mmlu_pro", "--agent=oracle")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--agent oracle runs only harbor:PATH benchmarks, not mmlu_pro*"])


def test_a_missing_harbor_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--benchflow=harbor:nowhere", "--agent=nop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--benchflow harbor:nowhere: nowhere is not a directory of Harbor tasks*"])


def test_a_verifier_fault_is_an_error_and_its_output_is_kept(pytester: pytest.Pytester, base: str) -> None:
    tasks = pytester.path / "tasks"
    make_task(tasks, "no-reward", test_sh="echo checking the answer; exit 3\n", toml="storage_mb = 10240\n")
    result = pytester.runpytest_subprocess(f"--benchflow=harbor:{tasks}", "--agent=nop", timeout=300)
    result.assert_outcomes(errors=1)
    # The field we ignore is named once, as a warning of the task.
    result.stdout.fnmatch_lines(
        ["*HarborFieldWarning: no-reward: task.toml fields not supported, ignored: environment.storage_mb*"]
    )
    record = records(pytester)["no-reward"]
    assert "wrote no /logs/verifier/reward.txt or reward.json (test.sh exit code 3)" in record["reason"]
    (run_dir,) = pytester.path.glob(".benchflow/2*")
    assert (run_dir / "harbor/logs/no-reward/verifier/stdout.txt").read_text() == "checking the answer\n"


# --- the author's check ------------------------------------------------------------------------------------


def test_check_flags_a_broken_and_a_trivial_task(tmp_path: Path, provider: DockerSandboxProvider) -> None:
    verdict = 'test "$(cat /app/out 2>/dev/null)" = yes && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n'
    make_task(tmp_path, "good", test_sh=verdict, solve_sh="echo yes > /app/out\n")
    make_task(tmp_path, "broken", test_sh=verdict, solve_sh="echo no > /app/out\n")
    make_task(tmp_path, "trivial", test_sh="echo 1 > /logs/verifier/reward.txt\n")
    findings = check_harbor(tmp_path, provider, log_dir=tmp_path / "logs")
    assert [(f.task_id, f.problem, f.agent) for f in findings] == [
        ("broken", "broken", "oracle"),
        ("trivial", "trivial", "nop"),
    ]
    assert "the solution does not pass" in findings[0].line()


def test_the_check_command_lists_each_harbor_task_as_held_or_not(
    tmp_path: Path, provider: DockerSandboxProvider
) -> None:
    verdict = 'test "$(cat /app/out 2>/dev/null)" = yes && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n'
    make_task(tmp_path, "good", test_sh=verdict, solve_sh="echo yes > /app/out\n")
    make_task(tmp_path, "trivial", test_sh="echo 1 > /logs/verifier/reward.txt\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest_benchflow", "check", f"harbor:{tmp_path}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("held") and "good" in line for line in lines), done.stdout
    assert any(line.startswith("not held") and "trivial" in line and "nop" in line for line in lines), done.stdout
    assert lines[-1] == f"harbor:{tmp_path}: 1 item(s) do not hold: trivial"


# --- one task's run -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test_sh", "message"),
    [
        ("echo lots > /logs/verifier/reward.txt\n", "reward.txt: reward is not a finite number: 'lots'"),
        ("echo nan > /logs/verifier/reward.txt\n", "is not a finite number"),
        ("echo '[1]' > /logs/verifier/reward.json\n", "must be an object of named numbers"),
        ('echo \'{"a": "x"}\' > /logs/verifier/rewards.json\n', "a is not a finite number"),
        ("true\n", "wrote no /logs/verifier/reward.txt"),
    ],
)
def test_a_verifier_without_a_usable_reward_is_a_verifier_error(
    tmp_path: Path, provider: DockerSandboxProvider, test_sh: str, message: str
) -> None:
    task = make_task(tmp_path, "t", test_sh=test_sh)
    with pytest.raises(HarborVerifierError) as caught:
        run(trial_of(task, tmp_path), provider)
    assert message in str(caught.value)
    assert HarborVerifierError.kind == "verifier"


def test_a_verifier_past_its_time_limit_is_a_verifier_error(tmp_path: Path, provider: DockerSandboxProvider) -> None:
    task = make_task(tmp_path, "slow", test_sh="sleep 60\n", toml="[verifier]\ntimeout_sec = 2\n")
    with pytest.raises(HarborVerifierError, match=r"ran past \[verifier\] timeout_sec \(2 s\)"):
        run(trial_of(task, tmp_path), provider)


def test_several_rewards_are_each_a_metric_and_the_threshold_decides(
    tmp_path: Path, provider: DockerSandboxProvider
) -> None:
    task = make_task(tmp_path, "multi", test_sh='echo \'{"reward": 0.5, "style": 1}\' > /logs/verifier/reward.json\n')
    outcome = run(trial_of(task, tmp_path), provider)
    assert outcome.rewards == {"reward": 0.5, "style": 1.0} and not outcome.resolved
    assert run(trial_of(task, tmp_path, threshold=0.5), provider).resolved


def test_the_sandbox_has_the_tasks_settings_and_env_sections_reach_their_phase(
    tmp_path: Path, provider: DockerSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = (
        '[verifier.env]\nWHO = "verifier"\nKEY = "${HARBOR_TEST_KEY}"\n'
        '[solution.env]\nWHO = "oracle"\n'
        '[environment.env]\nEVERYWHERE = "yes"\n'
    )
    test_sh = (
        'echo "key=$KEY"\n'
        # no network: only the loopback interface; the working directory is the image's WORKDIR
        'test "$(ls /sys/class/net)" = lo && test "$PWD" = /app && test "$WHO" = verifier '
        '&& test "$KEY" = sk-harbor-1234 && test "$EVERYWHERE" = yes && test "$(cat /app/who)" = oracle '
        "&& echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n"
    )
    task = make_task(tmp_path, "settings", test_sh=test_sh, solve_sh='echo "$WHO" > /app/who\n', toml=toml)
    monkeypatch.setenv("HARBOR_TEST_KEY", "sk-harbor-1234")
    outcome = run(
        trial_of(task, tmp_path, pass_env="HARBOR_TEST_KEY", environ={"HARBOR_TEST_KEY": "sk-harbor-1234"}), provider
    )
    assert outcome.resolved
    # The value read from the host is masked in what the run keeps.
    assert (tmp_path / "logs/verifier/stdout.txt").read_text() == "key=***\n"


def test_a_separate_verifier_runs_where_nothing_the_agent_started_runs(
    tmp_path: Path, provider: DockerSandboxProvider
) -> None:
    test_sh = (
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done | grep -q '^sleep 1234' && r=0 || r=1\n"
        "test -f /app/left && echo $r > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n"
    )
    solve = "touch /app/left; (setsid sleep 1234 >/dev/null 2>&1 &)\n"
    task = make_task(
        tmp_path, "sep", test_sh=test_sh, solve_sh=solve, toml='[verifier]\nenvironment_mode = "separate"\n'
    )
    assert run(trial_of(task, tmp_path), provider).resolved


def test_an_unchanged_environment_is_not_rebuilt_and_a_failed_build_is_an_error_with_its_last_lines(
    tmp_path: Path, provider: DockerSandboxProvider
) -> None:
    task = make_task(
        tmp_path,
        "cached",
        test_sh="echo 1 > /logs/verifier/reward.txt\n",
        dockerfile=f"FROM {BASE}\nRUN echo built-{uuid.uuid4().hex} > /built\n",
    )
    run(trial_of(task, tmp_path / "first"), provider)
    run(trial_of(task, tmp_path / "second"), provider)
    assert "building benchflow-harbor/cached:" in (tmp_path / "first/logs/build.log").read_text()
    assert not (tmp_path / "second/logs/build.log").exists()
    bad = make_task(tmp_path, "bad-build", test_sh="true\n", dockerfile=f"FROM {BASE}\nRUN echo the-reason; exit 7\n")
    with pytest.raises(BuildError, match=r"failed; the last lines: .*the-reason"):
        run(trial_of(bad, tmp_path / "bad"), provider)
    assert "the-reason" in (tmp_path / "bad/logs/build.log").read_text()


# --- task.toml ----------------------------------------------------------------------------------------------


def test_an_unknown_schema_version_is_an_error(tmp_path: Path) -> None:
    task = make_task(tmp_path, "v9", test_sh="true\n")
    (task / "task.toml").write_text('schema_version = "9.0"\n')
    with pytest.raises(HarborTaskError, match=r"v9/task.toml: schema_version '9.0' is not one this harness reads"):
        load_task(task, "v9")


def test_fields_we_do_not_support_are_named_and_refused_ones_are_errors(tmp_path: Path) -> None:
    task = make_task(tmp_path, "f", test_sh="true\n", toml="storage_mb = 10240\n[[steps]]\nname = 'x'\n")
    assert load_task(task, "f").ignored == ("environment.storage_mb", "steps")
    (task / "task.toml").write_text('[environment]\nnetwork_mode = "allowlist"\n')
    with pytest.raises(HarborTaskError, match="'allowlist' is not supported yet"):
        load_task(task, "f")
    (task / "task.toml").write_text("[environment]\ngpus = 1\n")
    with pytest.raises(HarborTaskError, match="asks for 1 GPUs"):
        load_task(task, "f")


def test_variables_are_read_from_the_environment_only_when_named() -> None:
    environ = {"API_KEY": "k-1", "OTHER": "o"}
    with pytest.raises(HarborTaskError, match="pass_env=API_KEY"):
        substitute({"A": "${API_KEY}"}, allowed_variables("", environ), "t")
    assert substitute({"A": "x-${API_KEY}"}, allowed_variables("API_KEY", environ), "t") == {"A": "x-k-1"}
    assert substitute({"A": "${UNSET:-d}"}, allowed_variables("UNSET", environ), "t") == {"A": "d"}
    with pytest.raises(HarborTaskError, match="not set"):
        substitute({"A": "${UNSET}"}, allowed_variables("UNSET", environ), "t")


def test_tasks_are_found_below_a_directory_by_their_relative_paths(tmp_path: Path) -> None:
    make_task(tmp_path / "group", "one", test_sh="true\n")
    make_task(tmp_path, "two", test_sh="true\n")
    assert list(find_tasks(tmp_path)) == ["group/one", "two"]
    assert list(find_tasks(tmp_path / "two")) == ["two"]


def test_the_docs_table_is_the_supported_subset() -> None:
    from pytest_benchflow.harbor import FIELDS

    docs = (ROOT / "docs" / "harbor.md").read_text()
    for name, (support, note) in FIELDS.items():
        assert f"| `{name}` | {support} | {note} |" in docs, name
