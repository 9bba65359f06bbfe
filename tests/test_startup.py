"""Start-up as a new user meets it: usage errors with and without xdist, references from the current
directory, bench methods returning the wrong thing, splits, and node ids."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import TOY, in_process_bench

MMLU = ["--benchflow=mmlu_pro", "--agent=example_bench.mmlu_pro.agents:LongestOptionAgent", "-p", "no:cacheprovider"]


def assert_usage_error_and_nothing_written(result: pytest.RunResult, where: Path, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (where / "j.xml").exists()
    assert not (where / ".benchflow").exists() or not any((where / ".benchflow").iterdir())


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_data_file_that_is_missing_is_one_usage_error(pytester: pytest.Pytester, xdist: list[str]) -> None:
    result = pytester.runpytest_subprocess(
        *MMLU, "--benchflow-arg=DATA_FILE=/nonexistent.json", "--benchflow-arg=NUM_SHOTS=0", "--junitxml=j.xml", *xdist
    )
    assert_usage_error_and_nothing_written(
        result,
        pytester.path,
        "mmlu_pro: *get_all_tasks('test') reported: MMLU-Pro data file not found: /nonexistent.json",
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_hugging_face_data_without_datasets_is_one_usage_error(pytester: pytest.Pytester, xdist: list[str]) -> None:
    # As if `datasets` were not installed (the current directory comes first on the path of every process).
    pytester.makepyfile(datasets="raise ImportError('No module named datasets')")
    result = pytester.runpytest_subprocess(
        *MMLU,
        "--benchflow-arg=DATA_FILE=hf:TIGER-Lab/MMLU-Pro",
        "--benchflow-arg=FEWSHOT_FILE=hf:TIGER-Lab/MMLU-Pro",
        "--junitxml=j.xml",
        *xdist,
    )
    assert_usage_error_and_nothing_written(result, pytester.path, "mmlu_pro: *needs the datasets library: pip install*")


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_node_id_naming_no_task_is_one_usage_error(toy: pytest.Pytester, xdist: list[str]) -> None:
    result = toy.runpytest_subprocess(*TOY, "benchflow:ToyBench::nope", "--junitxml=j.xml", *xdist)
    assert_usage_error_and_nothing_written(result, toy.path, "benchflow:ToyBench::nope: no such task in ToyBench*")


BENCH_USING_A_SIBLING = """
from helpers import TASKS
from pytest_benchflow import BaseBench, BenchArgs


def evaluate(env):
    pass


class SiblingBench(BaseBench):
    def get_args(self, task_id):
        return BenchArgs(None)

    def get_all_tasks(self, split):
        return {"task_ids": TASKS, "error_message": None}

    def get_entrypoint(self):
        return evaluate

    def get_result(self, task_id):
        return {"is_resolved": True, "metrics": {}}
"""


def pytest_command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``pytest`` command as a user types it: unlike ``python -m pytest`` it does not put the current
    directory on the path (nor does a PYTHONPATH here)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(Path(sys.executable).with_name("pytest")), "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_references_on_the_command_line_resolve_from_the_current_directory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        my_agents="from pytest_benchflow import BaseAgent\n\nclass MyAgent(BaseAgent):\n"
        "    def call_api(self, inputs):\n        return 'x'\n",
        my_bench=BENCH_USING_A_SIBLING.replace("from helpers import TASKS", "TASKS = ['here']"),
    )
    done = pytest_command(pytester.path, "--benchflow=my_bench:SiblingBench", "--agent", "my_agents:MyAgent", "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_a_bench_file_given_by_path_imports_its_sibling_modules(pytester: pytest.Pytester) -> None:
    benches = pytester.mkdir("benches")
    (benches / "helpers.py").write_text("TASKS = ['one', 'two']\n")
    (benches / "sibling_bench.py").write_text(BENCH_USING_A_SIBLING)
    (pytester.path / "agents_here.py").write_text(
        "from pytest_benchflow import BaseAgent\n\nclass Echo(BaseAgent):\n    def call_api(self, inputs):\n"
        "        return 'x'\n"
    )
    done = pytest_command(
        pytester.path, "--benchflow=benches/sibling_bench.py:SiblingBench", "--agent=agents_here:Echo"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_a_module_missing_from_the_current_directory_is_still_named(pytester: pytest.Pytester) -> None:
    done = pytest_command(pytester.path, "--benchflow=mmlu_pro", "--agent=nowhere_agents:MyAgent")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--agent 'nowhere_agents:MyAgent': cannot import nowhere_agents: ModuleNotFoundError" in done.stderr


ROOT = Path(__file__).resolve().parent.parent


def test_every_install_line_in_the_docs_works_from_a_clone() -> None:
    """pytest-benchflow is not published: each ``pip install`` the docs show names the clone (with extras it has)."""
    project = (ROOT / "pyproject.toml").read_text()
    # (tomllib is Python 3.11+: the extras' names are the keys of one short table.)
    table = project.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) =", table, re.M))
    assert "mmlu-pro" in extras
    docs = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("example_bench/*/README.md")]
    lines = [(doc.name, m) for doc in docs for m in re.findall(r"pip install ([^`\n#]+)", doc.read_text())]
    assert lines
    for doc, command in lines:
        targets = [t.strip("'\"") for t in command.split() if not t.startswith("-")]
        for target in targets:
            path, _, extra = target.partition("[")
            assert path in (".", "./"), f"{doc}: pip install {command}: {target} is not the clone"
            assert not extra or set(extra.rstrip("]").split(",")) <= extras, f"{doc}: {target}: no such extra"
    readme = (ROOT / "README.md").read_text()
    # The two opening commands stay as they are.
    assert "python3 dev.py demo   #" in readme and "python3 dev.py test   #" in readme


# One bench per mistake: each overrides one method of a bench that works (``Fine``).
MISTAKES = (
    in_process_bench(
        "Fine",
        "def evaluate(env):\n    Path(env['BENCHFLOW_RESULTS_DIR'], 'done').write_text('1')",
        "return {'is_resolved': True, 'metrics': {'score': 1.0}}",
        tasks=("a", "b"),
    )
    + """
class ArgsNone(Fine):
    def get_args(self, task_id):
        return None


class ArgsDict(Fine):
    def get_args(self, task_id):
        return {"required": ["X"]}


class ArgsNoneForTasks(Fine):
    def get_args(self, task_id):
        return BenchArgs(None) if task_id is None else None


class ArgsRaise(Fine):
    def get_args(self, task_id):
        raise KeyError("HOME_DIR")


class EntranceText(Fine):
    def get_entrypoint(self):
        return "evaluate"


class ImageNumber(Fine):
    def get_image_name(self):
        return 3


class ResultsDirRaise(Fine):
    def get_image_name(self):
        return "me/bench:1"

    def get_results_dir_in_container(self):
        raise NotImplementedError("no results directory")


class ResultNone(Fine):
    def get_result(self, task_id):
        return None


class SummarizeRaise(Fine):
    def summarize(self, tasks):
        raise ZeroDivisionError("division by zero")


class SummarizeList(Fine):
    def summarize(self, tasks):
        return [1, 2]
"""
)


@pytest.fixture
def mistakes(pytester: pytest.Pytester, echo_agent: str) -> Callable[..., pytest.RunResult]:
    pytester.makepyfile(mistakes=MISTAKES)

    def run(bench: str, *args: str) -> pytest.RunResult:
        return pytester.runpytest(f"--benchflow=mistakes.py:{bench}", f"--agent-url={echo_agent}", *args)

    return run


@pytest.mark.parametrize(
    ("bench", "args", "message"),
    [
        ("ArgsNone", [], "ArgsNone: ArgsNone.get_args(None) returned NoneType; it must return a BenchArgs *"),
        ("ArgsDict", [], "ArgsDict: ArgsDict.get_args(None) returned dict; it must return a BenchArgs *"),
        ("ArgsRaise", [], "ArgsRaise: ArgsRaise.get_args(None) raised KeyError: 'HOME_DIR'"),
        ("EntranceText", [], "EntranceText: EntranceText.get_entrypoint() returned str 'evaluate'; it must return a*"),
        (
            "ImageNumber",
            ["--benchflow-runner=docker"],
            "ImageNumber: ImageNumber.get_image_name() returned int 3; it must return a non-empty str, or None*",
        ),
        (
            "ResultsDirRaise",
            ["--benchflow-runner=docker"],
            "ResultsDirRaise: *get_results_dir_in_container() raised NotImplementedError: no results directory",
        ),
        (
            "Fine",
            ["--benchflow-runner=docker"],
            "Fine has no container for the docker runner (get_image_name, *); run it with --benchflow-runner local",
        ),
    ],
)
def test_a_bench_method_returning_the_wrong_thing_is_a_usage_error_naming_it(
    mistakes: Callable[..., pytest.RunResult], bench: str, args: list[str], message: str
) -> None:
    result = mistakes(bench, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_per_task_methods_returning_the_wrong_thing_are_task_errors_naming_them(
    mistakes: Callable[..., pytest.RunResult],
) -> None:
    result = mistakes("ArgsNoneForTasks")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*ArgsNoneForTasks.get_args('a') returned NoneType; it must return a BenchArgs*"])
    result = mistakes("ResultNone")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*task 'a': get_result returned NoneType, expected a BenchmarkResult or a dict*"])


@pytest.mark.parametrize(
    ("bench", "note"),
    [
        ("SummarizeRaise", "SummarizeRaise.summarize raised ZeroDivisionError: division by zero; *no breakdown"),
        ("SummarizeList", "SummarizeList.summarize returned list; it must return a dict of rows *"),
    ],
)
def test_a_summarize_that_breaks_loses_only_the_breakdown(
    mistakes: Callable[..., pytest.RunResult], pytester: pytest.Pytester, bench: str, note: str
) -> None:
    result = mistakes(bench)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"*{bench}: {note}"])
    (run_dir,) = (pytester.path / ".benchflow").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["benches"][bench]["breakdown"] is None


def test_an_unknown_split_of_a_bench_that_declares_its_splits_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*MMLU, "--benchflow-split", "tset", "--junitxml=j.xml")
    assert_usage_error_and_nothing_written(
        result, pytester.path, "--benchflow-split 'tset': mmlu_pro has no such split (its splits: test, validation)"
    )


def test_a_bench_that_declares_no_splits_takes_any(mistakes: Callable[..., pytest.RunResult]) -> None:
    # BenchFlow 0.1.x benches have no `splits`: the split is theirs to interpret.
    mistakes("Fine", "--benchflow-split=dev").assert_outcomes(passed=2)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_an_errored_task_shows_its_reason_in_the_short_summary(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    result = toy.runpytest_subprocess(*TOY, "--junitxml=j.xml", *xdist)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    summary = result.stdout.str().split("short test summary info")[1]
    assert (
        "ERROR benchflow:ToyBench::boom - task 'boom': the evaluation raised RuntimeError: evaluation crashed on boom"
        in (summary)
    )
    assert "TaskBroken" not in summary
    assert (
        "failed on setup with &quot;task 'boom': the evaluation raised RuntimeError" in (toy.path / "j.xml").read_text()
    )


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_an_argument_every_task_needs_is_checked_once_before_any_task(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    from example_bench.mmlu_pro.data import DEMO_TEST

    questions = pytester.path / "questions.json"
    questions.write_text(DEMO_TEST.read_text())
    result = pytester.runpytest_subprocess(*MMLU, f"--benchflow-arg=DATA_FILE={questions}", "--junitxml=j.xml", *xdist)
    assert_usage_error_and_nothing_written(
        result, pytester.path, "mmlu_pro: *: FEWSHOT_FILE is required with DATA_FILE (or set NUM_SHOTS=0)"
    )
    assert result.stdout.str().count("FEWSHOT_FILE") + result.stderr.str().count("FEWSHOT_FILE") == 1


@pytest.mark.parametrize("config_file", [False, True], ids=["no-config-file", "project-config-file"])
def test_an_output_directory_outside_the_current_one_changes_no_node_id(
    toy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, config_file: bool
) -> None:
    project = toy.mkdir("project")
    (project / "toy_bench.py").write_text((toy.path / "toy_bench.py").read_text())
    if config_file:
        (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\nbenchflow_limit = "2"\n')
    toy.mkdir("out")
    monkeypatch.chdir(project)
    monkeypatch.setenv("COLUMNS", "200")
    # The space form: pytest reads "../out" before it knows the option takes a value.
    result = toy.runpytest(*TOY, "--benchflow-output", "../out", "-rA")
    result.stdout.fnmatch_lines([f"rootdir: {project}", "FAILED benchflow:ToyBench::bad - *"])
    assert "../benchflow:" not in result.stdout.str()
    # The project's configuration file counts (here: only the first two tasks).
    result.assert_outcomes(passed=1, failed=1, errors=0 if config_file else 1)
    assert len(list((toy.path / "out").iterdir())) == 1


@pytest.mark.parametrize(
    ("nodeid", "epochs", "hint"),
    [
        ("good[epoch2]", [], "; this session runs each task once: add --benchflow-epochs 2 to run good[epoch2]"),
        (
            "good[epoch3]",
            ["--benchflow-epochs=2"],
            "; this session runs 2 epochs: add --benchflow-epochs 3 to run good[epoch3]",
        ),
        (
            "good",
            ["--benchflow-epochs=2"],
            "; with --benchflow-epochs each epoch is an item: good[epoch1] … good[epoch2]",
        ),
    ],
)
def test_a_node_id_naming_an_epoch_the_session_does_not_run_says_how_to(
    toy: pytest.Pytester, nodeid: str, epochs: list[str], hint: str
) -> None:
    result = toy.runpytest(*TOY, f"benchflow:ToyBench::{nodeid}", *epochs)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = result.stderr.str().strip().splitlines()[-1]
    assert line.startswith(f"ERROR: benchflow:ToyBench::{nodeid}: no such task in ToyBench (3 tasks; ")
    assert line.endswith(hint)
