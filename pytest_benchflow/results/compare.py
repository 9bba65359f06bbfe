"""Comparing two runs: rate and metric differences with intervals, per-task flips, a paired significance test."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..stats import mcnemar_exact, mean_difference, percent, proportion_difference, two_proportion_p
from .reader import RunData
from .records import TaskRecord

__all__ = ["BenchComparison", "MetricChange", "compare_runs", "format_comparison"]


@dataclass
class MetricChange:
    metric: str
    base: float
    new: float
    difference: float
    ci95: tuple[float, float]


@dataclass
class BenchComparison:
    """One benchmark in both runs. ``regression`` is the verdict a CI gate acts on."""

    bench: str
    base_rate: float | None
    new_rate: float | None
    difference: float
    ci95: tuple[float, float]
    paired_tasks: int
    regressed: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    test: str = ""
    p_value: float = 1.0
    regression: bool = False
    metrics: list[MetricChange] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def _resolved(records: list[TaskRecord], bench: str) -> dict[str, bool]:
    return {r.task_id: r.outcome == "passed" for r in records if r.bench == bench}


def compare_runs(base: RunData, new: RunData, *, alpha: float = 0.05, max_drop: float = 0.0) -> list[BenchComparison]:
    """Compare every benchmark present in both runs.

    A benchmark regressed when its resolution rate fell by more than ``max_drop`` and the
    fall is significant at ``alpha``: by McNemar's exact test on the tasks both runs have
    (paired), or by a two-proportion z-test when they share none. Errors count as unresolved.
    """
    base_benches, new_benches = base.benches(), new.benches()
    comparisons = []
    for name in [b for b in new_benches if b in base_benches]:
        b, n = base_benches[name].stats, new_benches[name].stats
        diff, low, high = proportion_difference(b.resolved, b.tasks, n.resolved, n.tasks)
        before, after = _resolved(base.records, name), _resolved(new.records, name)
        shared = [t for t in after if t in before]
        regressed = [t for t in shared if before[t] and not after[t]]
        fixed = [t for t in shared if not before[t] and after[t]]
        if shared:
            test, p = "mcnemar-exact", mcnemar_exact(len(regressed), len(fixed))
        else:
            test, p = "two-proportion-z", two_proportion_p(b.resolved, b.tasks, n.resolved, n.tasks)
        drop = -diff if not math.isnan(diff) else 0.0
        metrics = []
        for metric, s_new in n.metrics.items():
            s_base = b.metrics.get(metric)
            if s_base:
                d, lo, hi = mean_difference(s_base.mean, s_base.stderr, s_new.mean, s_new.stderr)
                metrics.append(MetricChange(metric, s_base.mean, s_new.mean, d, (lo, hi)))
        comparisons.append(
            BenchComparison(
                bench=name,
                base_rate=b.resolution_rate,
                new_rate=n.resolution_rate,
                difference=diff,
                ci95=(low, high),
                paired_tasks=len(shared),
                regressed=regressed,
                fixed=fixed,
                test=test,
                p_value=p,
                regression=drop > max_drop and p < alpha,
                metrics=metrics,
            )
        )
    return comparisons


def _signed(x: float, scale: float = 100, unit: str = "pp") -> str:
    return "n/a" if math.isnan(x) else f"{x * scale:+.1f}{unit}"


def format_comparison(comparisons: list[BenchComparison], base: RunData, new: RunData) -> str:
    """A terminal table: per benchmark, the rates, their difference with its interval, flips and the verdict."""
    lines = [f"base {base.metadata.get('run_id')} ({base.path})", f"new  {new.metadata.get('run_id')} ({new.path})", ""]
    if not comparisons:
        return "\n".join([*lines, "no benchmark appears in both runs"])
    for c in comparisons:
        verdict = "REGRESSION" if c.regression else "no significant regression"
        lines.append(
            f"{c.bench}: resolution rate {percent(c.base_rate)} -> {percent(c.new_rate)} "
            f"({_signed(c.difference)}, 95% CI {_signed(c.ci95[0])} to {_signed(c.ci95[1])}); "
            f"{c.test} p={c.p_value:.3g}: {verdict}"
        )
        lines.append(
            f"  {c.paired_tasks} tasks in both runs: {len(c.regressed)} resolved -> unresolved, "
            f"{len(c.fixed)} unresolved -> resolved"
        )
        for task in c.regressed[:10]:
            lines.append(f"    - {task}")
        if len(c.regressed) > 10:
            lines.append(f"    ... and {len(c.regressed) - 10} more")
        if c.metrics:
            width = max(len(m.metric) for m in c.metrics)
            lines.append(f"  {'metric':<{width}}  {'base':>10}  {'new':>10}  {'change':>10}  95% CI")
            for m in c.metrics:
                lines.append(
                    f"  {m.metric:<{width}}  {m.base:>10.4g}  {m.new:>10.4g}  {m.difference:>+10.4g}  "
                    f"[{m.ci95[0]:+.4g}, {m.ci95[1]:+.4g}]"
                )
    return "\n".join(lines)
