"""The controller's side of reporting: results files as tasks finish, summary and terminal table at the end."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import ResultsFormatError
from ..results.records import BenchStats, EpochStats, agent_label, bench_key
from ..results.writer import ResultsWriter, RunSummary
from ..stats import ClusteredMean, percent
from .items import NODE_PREFIX
from .session import BenchflowRun, take_record

if TYPE_CHECKING:
    from ..results.compare import BenchComparison, DataCheck
    from ..results.leaderboard import Leaderboard
    from ..results.reader import RunData
    from .gate import AgentGate, BaselineChoice

__all__ = ["ERROR_KIND_ATTRIBUTE", "JunitErrorKinds", "ResultsReporter", "check_baseline_data"]

#: The report attribute that carries an errored task's kind from the process that ran it to the one writing JUnit.
ERROR_KIND_ATTRIBUTE = "benchflow_error_kind"

# What the pytest side says instead of comparing runs of different data (it has no flag to compare anyway).
_COMPARE_ANYWAY = (
    "compare with a run of the same data (pytest-benchflow compare --allow-data-change BASE NEW compares anyway)"
)


def check_baseline_data(run: BenchflowRun, baseline: str | None) -> RunData | None:
    """A usage error, before any agent or task starts, when ``baseline`` evaluated other data than this session's
    benches (their fingerprints differ): that comparison would say nothing about the agent. The baseline read, for
    the check of its agents once the session's are known; None when none was given or it cannot be read (left to
    the comparison at the end, which says why)."""
    if not baseline:
        return None
    from ..results.compare import check_pairs, run_keys, split_key
    from ..results.reader import load_run

    try:
        base = load_run(Path(baseline))
    except ResultsFormatError:
        return None
    # The data is the bench's whatever the agent: each bench against each of the baseline's agents of it.
    pairs = [(name, key) for name in run.benches for key in run_keys(base) if split_key(key)[0] == name]
    data = check_pairs(base.bench_info, {name: ctx.info() for name, ctx in run.benches.items()}, pairs)
    if data.changed:
        raise pytest.UsageError(f"--benchflow-baseline: {data.refusal(_COMPARE_ANYWAY)}")
    return base


class ResultsReporter:
    """Registered only where reports arrive and are written: the xdist controller or the only process."""

    def __init__(
        self,
        run: BenchflowRun,
        writer: ResultsWriter,
        html: str | None = None,
        baseline: str | None = None,
        max_cost: float | None = None,
        gate: AgentGate | None = None,
        baseline_choice: BaselineChoice | None = None,
    ) -> None:
        self.run = run
        self.gate = gate
        #: Which baseline agent the session's agents are compared with, when the agent sets differ.
        self.baseline_choice = baseline_choice
        #: With several agents: each bench's leaderboard, once the summary is written.
        self.boards: list[Leaderboard] = []
        self.writer = writer
        self.html = html
        self.baseline = baseline
        self.max_cost = max_cost
        self.summary: RunSummary | None = None
        self.comparison: str | None = None
        self.notes: list[str] = []
        #: Why the session failed although its tests may have passed (a baseline gate), None otherwise.
        self.failure: str | None = None
        #: With a cost limit: the tasks collected, and those with a record (the others are recorded as
        #: not started, ``budget``, when the limit stops the run).
        self.collected: list[str] = []
        self.recorded: set[str] = set()
        #: Why no new task started (the cost limit), None while tasks may start.
        self.over_budget: str | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.max_cost:
            self.collected = [item.nodeid for item in session.items]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.max_cost and not self.collected:  # every worker collects the same items
            self.collected = list(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        taken = take_record(report)
        if taken is None and self._crashed(report):
            taken = self.run.crash_record(report.nodeid, str(report.longrepr)), []
        if taken is not None:
            record, samples = taken
            self.writer.add(record, samples)
            if self.max_cost:
                self.recorded.add(record.nodeid)
            if self.max_cost and record.usage:
                self._stop_when_over_budget()

    def _stop_when_over_budget(self) -> None:
        spent = self.writer.spent()
        if self.max_cost is None or spent < self.max_cost:
            return
        reason = f"cost limit ${self.max_cost:g} reached (${spent:.4f} spent): no new task started"
        if reason not in self.notes:
            self.notes.append(reason)
        self.over_budget = self.over_budget or reason
        # Tasks already running finish; pytest (or xdist's controller) starts no other.
        for name in ("session", "dsession"):
            stopper = self.run.config.pluginmanager.get_plugin(name)
            if stopper is not None and not stopper.shouldstop:
                stopper.shouldstop = reason

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        # A task whose xdist worker died never finished: it is an error, here as in results.jsonl and summary.json.
        return ("error", "E", "ERROR") if self._crashed(report) else None

    def _crashed(self, report: pytest.TestReport) -> bool:
        return report.failed and report.nodeid in self.run.crashed

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self.run
        if self.over_budget:
            self._record_not_started(self.over_budget)
        summary = self.writer.finish(
            exit_status=int(exitstatus),
            interrupted=int(exitstatus) == int(pytest.ExitCode.INTERRUPTED),
            # With several agents, each agent's tasks of a bench are counted apart: bench[agent].
            bench_info={bench_key(n, a): ctx.info() for n, ctx in run.benches.items() for a in run.agents or [""]},
            breakdown=self._breakdown,
        )
        if summary is None:
            self.notes.append("the session stopped before any task finished: no results written")
            return
        self.summary = summary
        if self.html or self.baseline or run.agents:
            self._after_summary(session)

    def _record_not_started(self, reason: str) -> None:
        """An error record (``budget``) for each collected task the cost limit kept from starting: the run
        accounts for every task, and a resumed run starts them."""
        for nodeid in self.collected:
            if nodeid.startswith(NODE_PREFIX) and nodeid not in self.recorded:
                self.writer.add(self.run.crash_record(nodeid, f"not started: {reason}", "budget"))

    def _breakdown(self, name: str, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
        rows, problem = self.run.benches[name.partition("[")[0]].breakdown(records)
        if problem:
            self.notes.append(problem)
        return rows

    def _after_summary(self, session: pytest.Session) -> None:
        # Imported here: only a session with --benchflow-html or --benchflow-baseline pays for them.
        from ..results.compare import format_comparison
        from ..results.reader import load_run

        current = load_run(self.run.run_dir)
        self.notes += current.warnings
        if self.run.agents:
            self._leaderboards(session, current)
        base, comparisons, data = None, None, None
        if self.baseline:
            try:
                base = load_run(Path(self.baseline))
            except ResultsFormatError as e:
                raise pytest.UsageError(f"--benchflow-baseline: {e}") from None
            self.notes += base.warnings
            compared = self._compare(base, current)
            if isinstance(compared, str):
                self.comparison = compared
                self._refuse(session, compared)
                self._write_html(current, None, None, None)
                return
            comparisons, data = compared
            self.comparison = format_comparison(comparisons, base, current, data)
            regressed = [c for c in comparisons if c.regression]
            if regressed and session.exitstatus == pytest.ExitCode.OK:
                self._fail_on(session, regressed, base.path)
                current.metadata.update(exit_status=int(session.exitstatus), exit_reason=self.failure)
        self._write_html(current, comparisons, base, data)

    def _compare(self, base: RunData, current: RunData) -> tuple[list[BenchComparison], DataCheck] | str:
        """The comparison with the baseline and its data check, or why there is none (a usage error).

        All was checked at start; only a baseline that changed since (the output directory's newest run) fails
        here, and a session that compared nothing never passes."""
        from ..results.compare import NOTHING_COMPARED, BaselineChoiceError, check_run_data, compare_runs
        from .gate import BASELINE_AGENT_FLAG, BaselineChoice

        c = self.baseline_choice or BaselineChoice()
        try:
            data = check_run_data(base, current, base_agent=c.agent, new_name=c.named, flag=BASELINE_AGENT_FLAG)
            comparisons = compare_runs(base, current, base_agent=c.agent, new_name=c.named, flag=BASELINE_AGENT_FLAG)
        except BaselineChoiceError as e:
            return f"--benchflow-baseline: {e}"
        if data.changed:
            return f"--benchflow-baseline: {data.refusal(_COMPARE_ANYWAY)}"
        if not comparisons:
            return f"--benchflow-baseline {base.path}: {NOTHING_COMPARED}"
        return comparisons, data

    def _write_html(
        self, current: RunData, comparisons: list[BenchComparison] | None, base: RunData | None, data: DataCheck | None
    ) -> None:
        from ..results.html import render_html

        if self.html:
            path = Path(self.html)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_html(current, comparisons, base, data=data, boards=self.boards), encoding="utf-8")
            self.notes.append(f"HTML report: {path}")

    def _refuse(self, session: pytest.Session, reason: str) -> None:
        """Fail the session because its baseline could not be compared (as a usage error: the baseline is wrong)."""
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        self.failure = reason
        self.writer.fail(int(session.exitstatus), reason)

    def _leaderboards(self, session: pytest.Session, current: Any) -> None:
        """Rank the agents of each bench, compare them pairwise into summary.json; apply --benchflow-gate-agent."""
        from ..results.leaderboard import leaderboards
        from .gate import gate_failure

        self.boards = leaderboards(current)
        self.writer.add_to_summary("leaderboards", {b.bench: b.to_json() for b in self.boards})
        failure = gate_failure(self.gate, self.boards) if self.gate is not None else None
        if failure and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self.failure = failure
            self.writer.fail(int(session.exitstatus), failure)
            current.metadata.update(exit_status=int(session.exitstatus), exit_reason=failure)
            session.config.pluginmanager.register(_FailureLine(failure, 0), "benchflow-gate-line")

    def _fail_on(self, session: pytest.Session, regressed: list[BenchComparison], base: Path) -> None:
        """Fail a session whose tasks may all have passed, and say why last and in the run's files."""
        from ..results.compare import deciding_level

        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        benches = ", ".join(f"{c.label} (at {deciding_level(c)})" for c in regressed)
        self.failure = f"{benches} regressed against the baseline {base}"
        if len(regressed) == 1:
            self.failure = (
                f"{regressed[0].label} regressed against the baseline {base} (at {deciding_level(regressed[0])})"
            )
        self.writer.fail(int(session.exitstatus), self.failure)
        session.config.pluginmanager.register(_FailureLine(self.failure, len(regressed)), "benchflow-failure-line")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        cache_note = self.run.cache.note() if self.run.cache is not None else None
        if cache_note and cache_note not in self.notes:
            self.notes.append(cache_note)
        if self.summary is None:
            for note in self.notes:
                tr.line(f"benchflow: {note}")
            return
        tr.section("benchflow summary")
        label = agent_label(self.writer.metadata.get("agent"))
        if label:
            tr.line(f"agent: {label}")
        for name, described in (self.writer.metadata.get("agents") or {}).items():
            tr.line(f"agent {name}: {agent_label(described)}")
        if self.summary.interrupted:
            tr.line("run interrupted: the results below cover the tasks that finished", yellow=True)
        for name, bench in self.summary.benches.items():
            b = bench.stats
            tr.line(f"{name} ({self.run.split}): {outcome_line(b)}")
            if b.infra_errors:
                tr.line("  " + without_infra_line(b))
            if b.samples is not None:
                tr.line("  " + sample_line(b.samples))
            if b.epochs is not None:
                tr.line("  " + epochs_line(b.epochs))
            for metric, stats in b.metrics.items():
                tr.line(
                    f"  {metric}: {stats.mean:.4g} ± {stats.stderr:.2g} "
                    f"(macro mean over {_count(stats.count, 'task')}, ± one standard error)"
                )
            if b.usage:
                reruns = f"; {_count(b.reruns, 'rerun')} included (each attempt's usage once)" if b.reruns else ""
                tr.line("  " + _usage_line(b.usage, self.writer.price) + reruns)
            if b.engines and len(b.engines) > 1:
                tr.line("  " + engines_line(b.engines))
            if bench.info.breakdown:
                _table(tr, bench.info.breakdown)
        if self.boards:
            from ..results.leaderboard import format_leaderboards

            tr.section("benchflow leaderboard")
            for line in format_leaderboards(self.boards):
                tr.line(line, bold=line.lstrip().startswith("*"))
        tr.line(f"results: {self.run.run_dir} (results.jsonl, summary.json)")
        for note in self.notes:
            tr.line(note)
        if self.comparison:
            tr.section("benchflow comparison with baseline")
            for line in self.comparison.splitlines():
                tr.line(line, red="REGRESSION" in line)


class JunitErrorKinds:
    """Gives an errored task's JUnit ``<error>`` its kind as ``type`` (pytest's junitxml writes none), in the
    process that writes JUnit, after junitxml has added the element."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kind = report.__dict__.get(ERROR_KIND_ATTRIBUTE)
        if kind is None:
            return
        try:
            from _pytest.junitxml import xml_key
        except ImportError:  # a pytest without it: the property still says the kind
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is None:
            return
        for node in xml.node_reporter(report).nodes:
            if node.tag == "error":
                node.set("type", kind)


class _FailureLine:
    """Says last why a session failed whose tests passed: after pytest's short summary, and in its
    closing line ("10 passed, 1 regressed vs baseline"), which otherwise reads as a success."""

    def __init__(self, reason: str, regressed: int) -> None:
        self.reason = reason
        self.regressed = regressed

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None]:
        try:
            return (yield)
        finally:
            if self.regressed:
                terminalreporter.stats.setdefault("regressed vs baseline", []).extend(["benchflow"] * self.regressed)
            terminalreporter.line(f"session failed: {self.reason}", red=True, bold=True)


def outcome_line(b: BenchStats) -> str:
    """Tasks (× epochs), outcomes and the resolution rate with its interval (none without tasks)."""
    tasks = _count(b.tasks, "task")
    if b.epochs_per_task > 1:
        tasks = f"{_count(b.task_ids, 'task')} × {b.epochs_per_task} epochs"
        if b.tasks != b.task_ids * b.epochs_per_task:
            tasks = f"{_count(b.task_ids, 'task')} × up to {b.epochs_per_task} epochs ({b.tasks} runs)"
    kinds = f" ({kinds_text(b.error_kinds)})" if b.error_kinds else ""
    strict = " (strict: every error unresolved)" if b.infra_errors else ""
    errors = _count(b.errors, "error") + kinds
    line = f"{tasks}, {b.resolved} resolved, {b.failed} failed, {errors}; resolution rate{strict} "
    if b.resolution_rate is None:
        return line + "n/a"
    return line + _rate(b.resolution_rate, b.resolution_rate_ci95, b.epochs_per_task)


def without_infra_line(b: BenchStats) -> str:
    """The resolution rate over the task runs without an infrastructure error, labelled as such."""
    left_out = f"{_count(b.infra_errors, 'task run')} with infrastructure errors (infra, budget, interrupted) left out"
    rate = b.resolution_rate_without_infra
    shown = "n/a" if rate is None else _rate(rate, b.resolution_rate_without_infra_ci95, b.epochs_per_task)
    return f"resolution rate without infrastructure errors {shown}: {left_out}"


def kinds_text(kinds: dict[str, int]) -> str:
    """Errors per kind: ``2 infra, 1 bench``."""
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items())


def _rate(rate: float, ci95: tuple[float, float], epochs_per_task: int) -> str:
    low, high = ci95
    how = ", clustered by task" if epochs_per_task > 1 else ""
    return f"{percent(rate)} (95% CI {percent(low)}–{percent(high)}{how})"


def sample_line(s: ClusteredMean) -> str:
    """The bench's mean sample score with its interval, saying how the interval was made."""
    low, high = s.ci95
    how = (
        f"clustered by {_count(s.clusters, 'task')}"
        if s.method == "clustered"
        else "one task: samples taken as independent"
    )
    return (
        f"samples: mean score {percent(s.mean)} (95% CI {percent(max(0.0, low))}–{percent(min(1.0, high))}, "
        f"{s.samples:,} samples, {how})"
    )


def epochs_line(e: EpochStats) -> str:
    """Per-epoch rates, pass@k and pass^k, and how many tasks were flaky."""
    rates = ", ".join(percent(r) for r in e.per_epoch)
    at = ", ".join(f"pass@{k} {percent(v)}" for k, v in e.pass_at_k.items())
    hat = ", ".join(f"pass^{k} {percent(v)}" for k, v in e.pass_hat_k.items())
    flaky = f"{_count(len(e.flaky), 'flaky task')}" + (
        f" ({', '.join(e.flaky[:5])}{', …' if len(e.flaky) > 5 else ''})" if e.flaky else ""
    )
    return f"{e.epochs} epochs: resolution rate per epoch {rates} (mean {percent(e.mean)}); {at}; {hat}; {flaky}"


def engines_line(engines: dict[str, dict[str, float]]) -> str:
    """Tasks and time per engine, when a bench ran on several."""
    parts = [
        f"{url} {_count(int(row['tasks']), 'task')}"
        + (f" ({_count(int(row['errors']), 'error')})" if row["errors"] else "")
        + f", {row['seconds']:.1f} s"
        for url, row in engines.items()
    ]
    return "engines: " + "; ".join(parts)


def _usage_line(usage: dict[str, Any], price: tuple[float, float] | None) -> str:
    if not usage.get("total_tokens"):
        line = f"usage: {_count(usage.get('requests', 0), 'request')} (the agent reported no token counts)"
    else:
        line = (
            f"usage: {usage.get('input_tokens', 0):,} input + {usage.get('output_tokens', 0):,} output tokens, "
            f"{_count(usage.get('requests', 0), 'request')}"
        )
    if price and "cost" in usage:
        line += f"; cost ${usage['cost']:.4f} (at ${price[0]:g} / ${price[1]:g} per million input / output tokens)"
    if "cache_hits" in usage:
        # Requests count only what the agent was asked: the cache's share is said beside them.
        hits, misses = usage.get("cache_hits", 0), usage.get("cache_misses", 0)
        line += f"; cache: {_count(hits, 'hit')}, {misses} {'miss' if misses == 1 else 'misses'}"
    return line


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _table(tr: Any, rows: dict[str, dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    # BaseBench.summarize: a row named "overall" pools the others.
    rows = {("overall (micro)" if key == "overall" else key): row for key, row in rows.items()}
    width = max(len(str(k)) for k in rows)
    tr.line("  " + " " * width + "".join(f"{c:>12}" for c in columns))
    for key, row in rows.items():
        cells = "".join(
            f"{row.get(c, ''):>12.4f}" if isinstance(row.get(c), float) else f"{row.get(c, ''):>12}" for c in columns
        )
        tr.line(f"  {key:<{width}}{cells}")
