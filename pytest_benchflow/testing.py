"""The runner conformance kit: check a runner against the contract every runner keeps.

A runner of your own (see :class:`~pytest_benchflow.runners.Runner`) calls it from its own tests::

    from pytest_benchflow.testing import check_runner

    def test_my_runner_conforms(tmp_path):
        report = check_runner(MyRunner.for_tests, tmp_path, image="registry.example/benchflow-conformance:1")
        report.assert_passed()

The kit starts a real agent on this machine's loopback, then runs real tasks of its own bench through
the runner's whole lifecycle (``start``, ``start_bench``, ``execute``, ``interrupt``, ``cleanup``,
``cleanup_run``) and checks, one :data:`CHECKS` name each:

- ``results``: what the task wrote to its results directory reaches ``spec.results_dir`` (a nested
  file too), and ``get_result`` reads it;
- ``logs``: what it wrote to its log directory reaches ``spec.log_dir``;
- ``progress``: its ``BENCHFLOW_PROGRESS`` report reaches ``spec.progress``;
- ``failure``: a task that breaks is a :class:`~pytest_benchflow.TaskError`;
- ``timeout``: a task that hangs past ``spec.timeout`` is a :class:`~pytest_benchflow.TaskTimeout`, and stops;
- ``interrupt``: ``interrupt()`` from another thread makes a hanging task's ``execute`` unwind, and the task stops;
- ``hostile_archive``: a link leading out of the results directory is refused
  (:class:`~pytest_benchflow.errors.UnsafeArchive`); skipped for an in-process runner, which copies nothing;
- ``secrets``: no file the runner writes (its saved output) holds the task's secret argument,
  even when the task printed it in two pieces;
- ``cleanup``: nothing of a finished task, nor of the run after ``cleanup_run``, is left (``leftovers``).

"Stops" means the agent hears nothing more from the task. A container runner runs the tasks in an
image built from :func:`conformance_image_files` (standard library Python only); an in-process
runner runs the same program in this process. Each check is reported as passed, failed (with the
reason) or skipped; one check failing does not stop the others.
"""

from __future__ import annotations

import inspect
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import _conformance_task as task_program
from .agent_server import AgentServer, BaseAgent
from .bench import BaseBench
from .client import BenchClient
from .environment import report_progress
from .errors import BenchflowError, TaskError, TaskTimeout, UnsafeArchive
from .runners.base import Runner, TaskSpec, collect_result, prepare_task
from .runners.labels import BENCH_LABEL, RUN_LABEL, TASK_LABEL
from .schemas import BenchArgs, BenchmarkResult, ResolvedArgs

__all__ = [
    "CHECKS",
    "CheckOutcome",
    "ConformanceBench",
    "ConformanceReport",
    "check_runner",
    "conformance_image_files",
]

#: The checks, in the order they run (``cleanup`` last: it ends the runner's lifecycle).
CHECKS = ("results", "logs", "progress", "failure", "timeout", "interrupt", "hostile_archive", "secrets", "cleanup")
#: Where the conformance image keeps the task's results and logs.
RESULTS_DIR, LOG_DIR = "/conformance/results", "/conformance/logs"
# How long the agent must hear nothing from a task for it to count as stopped (a running one asks every 0.1 s).
_QUIET = 3.0

Status = Literal["passed", "failed", "skipped"]
#: Builds the runner under test for a run id (``Runner.from_options`` with your settings, say).
RunnerFactory = Callable[[str], Runner]
#: What a run left where the runner starts tasks (container ids, pod names), for the ``cleanup`` check.
LeftoversProbe = Callable[[str], Iterable[str]]


def conformance_image_files(base_image: str = "python:3.12-slim") -> dict[str, str]:
    """The files of the image a container runner runs the kit's tasks in: ``Dockerfile`` and the task program.

    Build them with your platform's tools (``docker build``); ``base_image`` needs only ``python3``
    (a build argument ``BASE_IMAGE`` overrides it).
    """
    dockerfile = "\n".join(
        [
            f"ARG BASE_IMAGE={base_image}",
            "FROM ${BASE_IMAGE}",
            "COPY conformance_task.py /conformance/task.py",
            f"RUN mkdir -p {RESULTS_DIR} {LOG_DIR} && chmod 1777 {RESULTS_DIR} {LOG_DIR}",
            'ENTRYPOINT ["python3", "-u", "/conformance/task.py"]',
            "",
        ]
    )
    return {"Dockerfile": dockerfile, "conformance_task.py": inspect.getsource(task_program)}


@dataclass(frozen=True)
class CheckOutcome:
    """One check's outcome, and why when it did not pass."""

    name: str
    status: Status
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.status:<7} {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass
class ConformanceReport:
    """The outcome of every check run against one runner."""

    runner: str
    outcomes: list[CheckOutcome] = field(default_factory=list)

    def __getitem__(self, name: str) -> CheckOutcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(name)

    @property
    def failed(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def __str__(self) -> str:
        return "\n".join([f"runner conformance of {self.runner}:", *(f"  {o}" for o in self.outcomes)])

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with the whole report when a check failed."""
        if self.failed:
            raise AssertionError(f"{len(self.failed)} conformance check(s) failed\n{self}")


class ConformanceBench(BaseBench):
    """The kit's bench: the task program in-process, and in the conformance image when ``image`` is given."""

    def __init__(self, image: str | None = None) -> None:
        super().__init__()
        self.image = image

    def get_args(self, task_id: str | None) -> BenchArgs:
        return BenchArgs({"optional": {task_program.SECRET_ARG: None}})

    def get_image_name(self) -> str | None:
        return self.image

    def get_results_dir_in_container(self) -> str | None:
        return RESULTS_DIR if self.image else None

    def get_log_files_dir_in_container(self) -> str | None:
        return LOG_DIR if self.image else None

    def get_all_tasks(self, split: str) -> dict[str, Any]:
        return {"task_ids": [], "error_message": None}

    def get_entrypoint(self) -> Callable[[Mapping[str, str]], None]:
        return _in_process

    def get_result(self, task_id: str) -> BenchmarkResult:
        data = json.loads(Path(str(self.results_dir), "result.json").read_text(encoding="utf-8"))
        deep = Path(str(self.results_dir), "nested", "deep.txt").read_text(encoding="utf-8")
        trace = Path(str(self.log_files_dir), "trace.txt").read_text(encoding="utf-8")
        metrics: dict[str, bool | int | float | str] = {"nested_intact": deep == "deep"}
        return BenchmarkResult(is_resolved=data["answer"] == "PING", metrics=metrics, log={"text": trace})


class _Client(BenchClient):
    def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
        return raw_step_inputs

    def parse_response(self, raw_response: str) -> dict[str, Any]:
        return {"answer": raw_response}


def _in_process(env: Mapping[str, str]) -> None:
    # A BenchClient, so that the runner's timeout and interrupt reach the task's requests.
    client = _Client(env["INTELLIGENCE_URL"], retries=0, connect_timeout=10)
    task_program.run(
        env,
        lambda task, text: str(client.get_response({"task": task, "say": text})["answer"]),
        lambda done, total: report_progress(env, done, total),
    )


class _Agent(BaseAgent):
    """Upper-cases what it is told, and counts the requests of each task."""

    def __init__(self) -> None:
        self.heard: Counter[str] = Counter()
        self._lock = threading.Lock()

    def call_api(self, task_step_inputs: dict[str, Any]) -> str:
        with self._lock:
            self.heard[str(task_step_inputs.get("task"))] += 1
        return str(task_step_inputs.get("say", "")).upper()

    def count(self, task: str) -> int:
        with self._lock:
            return self.heard[task]


class _Failed(Exception):
    """A check found the runner breaking the contract."""


class _Skipped(Exception):
    """A check does not apply to this runner."""


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise _Failed(reason)


def _shown(error: BaseException | None) -> str:
    return "returned normally" if error is None else f"raised {type(error).__name__}: {error}"


class _Kit:
    """One runner under test: its run, its agent, and how a task of the kit is run through it."""

    def __init__(
        self,
        runner: Runner,
        run_id: str,
        directory: Path,
        agent: _Agent,
        agent_url: str,
        bench: ConformanceBench,
        leftovers: LeftoversProbe | None,
        timeout: float,
        patience: float,
    ) -> None:
        self.runner, self.run_id, self.run_dir = runner, run_id, directory / run_id
        self.agent, self.agent_url, self.bench = agent, agent_url, bench
        self.leftovers, self.timeout, self.patience = leftovers, timeout, patience
        self.progress: dict[str, list[tuple[int, int]]] = {}

    def spec(self, task_id: str, timeout: float | None = None, secret: str | None = None) -> TaskSpec:
        name = task_id.split()[0]
        args = ResolvedArgs({task_program.SECRET_ARG: secret} if secret else {}, [task_program.SECRET_ARG])
        calls = self.progress.setdefault(task_id, [])
        return TaskSpec(
            bench_name="ConformanceBench",
            task_id=task_id,
            agent_url=self.agent_url,
            args=args,
            results_dir=self.run_dir / "ConformanceBench" / "results" / name,
            log_dir=self.run_dir / "ConformanceBench" / "logs" / name,
            timeout=timeout,
            progress=lambda done, total: calls.append((done, total)),
            labels={RUN_LABEL: self.run_id, BENCH_LABEL: "ConformanceBench", TASK_LABEL: task_id},
            secret_values=[secret] if secret else [],
            transcripts=False,
            run_dir=self.run_dir,
        )

    def execute(self, spec: TaskSpec) -> tuple[BaseException | None, bool]:
        """Run ``spec``'s task as the plugin does, in a thread of its own; its error (None: it ended
        normally), and whether ``execute`` returned within the kit's patience."""
        env = prepare_task(spec)
        outcome: list[BaseException | None] = []

        def target() -> None:
            try:
                self.runner.execute(self.bench, spec, env)
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)
            finally:
                spec.close()

        thread = threading.Thread(target=target, name=f"conformance-{spec.task_id}", daemon=True)
        thread.start()
        thread.join(self.patience + (spec.timeout or 0))
        return (outcome[0] if outcome else None), not thread.is_alive()

    def run(self, task_id: str, **given: Any) -> tuple[TaskSpec, BaseException | None]:
        """Run a task that ends by itself: its spec and its error."""
        spec = self.spec(task_id, **given)
        error, ended = self.execute(spec)
        _expect(ended, f"execute of task {task_id!r} did not return within {self.patience:g} s")
        return spec, error

    def stopped(self, task_id: str) -> None:
        """Fail unless the task's requests to the agent have stopped (one already in flight may still land)."""
        before = self.agent.count(task_id)
        time.sleep(_QUIET)
        after = self.agent.count(task_id)
        _expect(after - before <= 1, f"the task kept running after execute returned ({after - before} more requests)")

    def left(self) -> list[str]:
        return [] if self.leftovers is None else list(self.leftovers(self.run_id))


def _check_results(kit: _Kit) -> str:
    spec, error = kit.run("results")
    _expect(error is None, f"execute {_shown(error)}")
    try:
        result = collect_result(kit.bench, spec)
    except BenchflowError as e:
        raise _Failed(f"the results did not arrive: {e}") from None
    _expect(result.is_resolved is True, f"result.json holds another answer than the agent's: {result}")
    _expect(result.metrics.get("nested_intact") is True, "a file in a subdirectory of the results arrived altered")
    return ""


def _check_logs(kit: _Kit) -> str:
    spec, error = kit.run("logs")
    _expect(error is None, f"execute {_shown(error)}")
    trace = spec.log_dir / "trace.txt"
    _expect(trace.is_file(), f"the task's log file is not in {spec.log_dir}")
    _expect(trace.read_text(encoding="utf-8") == "trace of logs", f"{trace} does not hold what the task wrote")
    return ""


def _check_progress(kit: _Kit) -> str:
    _, error = kit.run("progress")
    _expect(error is None, f"execute {_shown(error)}")
    _expect((1, 1) in kit.progress["progress"], f"spec.progress got {kit.progress['progress']}, not (1, 1)")
    return ""


def _check_failure(kit: _Kit) -> str:
    _, error = kit.run("fail")
    _expect(
        isinstance(error, TaskError) and not isinstance(error, TaskTimeout),
        f"a task that broke: execute {_shown(error)}; expected a TaskError",
    )
    return ""


def _check_timeout(kit: _Kit) -> str:
    task = "hang timeout"
    spec = kit.spec(task, timeout=kit.timeout)
    error, ended = kit.execute(spec)
    if not ended:
        kit.runner.interrupt()  # leave nothing running for the checks after this one
        raise _Failed(f"execute ran {kit.patience:g} s past the task's {kit.timeout:g} s timeout")
    _expect(isinstance(error, TaskTimeout), f"a task past its timeout: execute {_shown(error)}; expected TaskTimeout")
    _expect(kit.agent.count(task) > 0, "the task never reached the agent before its timeout (give a longer timeout)")
    kit.stopped(task)
    return ""


def _check_interrupt(kit: _Kit) -> str:
    task = "hang interrupt"
    spec = kit.spec(task)
    outcome: list[tuple[BaseException | None, bool]] = []
    thread = threading.Thread(target=lambda: outcome.append(kit.execute(spec)), daemon=True)
    thread.start()
    deadline = time.monotonic() + kit.patience
    while kit.agent.count(task) == 0 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    _expect(kit.agent.count(task) > 0, f"the hanging task never reached the agent ({_shown(_first(outcome))})")
    kit.runner.interrupt()
    thread.join(kit.patience)
    _expect(bool(outcome) and outcome[0][1], f"execute did not return within {kit.patience:g} s of interrupt()")
    error = outcome[0][0]
    _expect(isinstance(error, BenchflowError), f"an interrupted task: execute {_shown(error)}; expected a TaskError")
    kit.stopped(task)
    return ""


def _first(outcome: list[tuple[BaseException | None, bool]]) -> BaseException | None:
    return outcome[0][0] if outcome else None


def _check_hostile_archive(kit: _Kit) -> str:
    if type(kit.runner).in_process:
        raise _Skipped("an in-process runner copies nothing out of a container")
    spec, error = kit.run("hostile")
    _expect(isinstance(error, UnsafeArchive), f"results holding a link to /etc: execute {_shown(error)}")
    links = [p for p in spec.results_dir.rglob("*") if p.is_symlink()]
    _expect(not links, f"a link from the task is left in the results: {links}")
    return ""


def _check_secrets(kit: _Kit) -> str:
    secret = f"conformance-secret-{secrets.token_hex(8)}"
    spec, error = kit.run("secret", secret=secret)
    _expect(error is None, f"execute {_shown(error)}")
    seen = json.loads((spec.results_dir / "result.json").read_text(encoding="utf-8")).get("secret_seen")
    _expect(seen is True, "the task did not receive its secret argument")
    holding = [
        str(p.relative_to(kit.run_dir))
        for p in sorted(spec.log_dir.rglob("*"))
        if p.is_file() and not p.is_symlink() and secret.encode() in p.read_bytes()
    ]
    _expect(not holding, f"the secret is unmasked in {', '.join(holding)}")
    return ""


def _check_cleanup(kit: _Kit) -> str:
    _, error = kit.run("cleanup")
    _expect(error is None, f"execute {_shown(error)}")
    after_task = kit.left()
    _expect(not after_task, f"left after its task ended: {', '.join(after_task)}")
    kit.runner.cleanup()
    kit.runner.cleanup_run()
    after_run = kit.left()
    _expect(not after_run, f"left after cleanup_run: {', '.join(after_run)}")
    return "" if kit.leftovers is not None else "no leftovers probe given: only the lifecycle ran"


_CHECK_FUNCTIONS: dict[str, Callable[[_Kit], str]] = {
    "results": _check_results,
    "logs": _check_logs,
    "progress": _check_progress,
    "failure": _check_failure,
    "timeout": _check_timeout,
    "interrupt": _check_interrupt,
    "hostile_archive": _check_hostile_archive,
    "secrets": _check_secrets,
    "cleanup": _check_cleanup,
}


def _outcome(name: str, kit: _Kit) -> CheckOutcome:
    try:
        return CheckOutcome(name, "passed", _CHECK_FUNCTIONS[name](kit))
    except _Skipped as e:
        return CheckOutcome(name, "skipped", str(e))
    except _Failed as e:
        return CheckOutcome(name, "failed", str(e))
    except Exception as e:  # the runner (or the kit) broke in a way no check foresaw: reported, the rest still run
        return CheckOutcome(name, "failed", f"{type(e).__name__}: {e}")


def check_runner(
    make_runner: RunnerFactory,
    directory: Path,
    *,
    image: str | None = None,
    leftovers: LeftoversProbe | None = None,
    checks: Sequence[str] = CHECKS,
    timeout: float = 5.0,
    patience: float = 120.0,
) -> ConformanceReport:
    """Run the ``checks`` against the runner ``make_runner(run_id)`` builds; the report of each.

    Args:
        make_runner: builds the runner for a fresh run id.
        directory: where the run's task directories go (``tmp_path``).
        image: the conformance image (:func:`conformance_image_files`) for a container runner; None
            for an in-process one.
        leftovers: what the run ``run_id`` left where the runner starts tasks (container ids, say);
            the ``cleanup`` check expects none after each task and after ``cleanup_run``.
        checks: names from :data:`CHECKS` (in any order; they run in the order of ``CHECKS``).
        timeout: the ``timeout`` check's task timeout, in seconds (long enough for a task to start).
        patience: how long the kit waits for ``execute`` beyond a task's timeout before failing a check.

    Raises:
        ValueError: an unknown check name.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown conformance check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    run_id = f"conformance-{secrets.token_hex(6)}"
    runner = make_runner(run_id)
    report = ConformanceReport(type(runner).__name__)
    agent = _Agent()
    with AgentServer(agent).start() as server:
        bench = ConformanceBench(image)
        bench.args = ResolvedArgs({}, [task_program.SECRET_ARG])
        kit = _Kit(runner, run_id, Path(directory), agent, server.url, bench, leftovers, timeout, patience)
        try:
            runner.start(server.url)
            runner.start_bench(bench)
        except Exception as e:
            reason = f"the runner did not start: {type(e).__name__}: {e}"
            report.outcomes = [CheckOutcome(name, "failed", reason) for name in CHECKS if name in checks]
            _cleanup_quietly(runner)
            return report
        for name in CHECKS:
            if name in checks:
                report.outcomes.append(_outcome(name, kit))
        if "cleanup" not in checks:
            _cleanup_quietly(runner)
    return report


def _cleanup_quietly(runner: Runner) -> None:
    for step in (runner.cleanup, runner.cleanup_run):
        try:
            step()
        except Exception:  # the report already says what broke; the run's remains are the runner's to sweep
            pass
