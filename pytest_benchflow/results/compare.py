"""Comparing two runs: rates, metrics and sample scores with intervals, flips, paired significance tests."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import INFRASTRUCTURE_KINDS, ConfigurationError
from ..stats import (
    RateInterval,
    clustered_mean,
    difference_interval,
    mcnemar_exact,
    mean_difference,
    normal_p,
    percent,
    two_proportion_p,
)
from ..untrusted import printable
from .reader import RunData
from .records import BenchInfo, BenchStats, SampleRecord, TaskRecord, bench_key

__all__ = [
    "ALLOW_DATA_CHANGE",
    "NOTHING_COMPARED",
    "BaselineChoiceError",
    "BenchComparison",
    "DataCheck",
    "MetricChange",
    "Pairing",
    "SampleComparison",
    "check_data",
    "check_pairs",
    "check_run_data",
    "compare_runs",
    "deciding_level",
    "format_comparison",
    "pair_benches",
    "run_keys",
    "split_key",
    "verdict",
]


#: The flag of ``pytest-benchflow compare`` and ``report`` that compares runs of different data anyway.
ALLOW_DATA_CHANGE = "--allow-data-change"
#: What a comparison of two runs that share no bench says (the gate and the command refuse it: nothing compared).
NOTHING_COMPARED = "no benchmark appears in both runs: nothing compared"


def _fingerprint_text(fingerprint: Mapping[str, str]) -> str:
    # Read from summary.json, which may come from anywhere: printable, and short (BenchInfo checked the length).
    label = fingerprint.get("label")
    return printable(str(fingerprint.get("digest"))) + (f" ({printable(label)})" if label else "")


@dataclass
class DataCheck:
    """Whether two runs evaluated the same data, bench by bench (their ``data_fingerprint``)."""

    #: (bench, base fingerprint, new fingerprint) of each bench whose digests differ.
    changed: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    #: Benches compared without knowing it: one of the runs kept no fingerprint for them.
    notes: list[str] = field(default_factory=list)

    def differences(self) -> list[str]:
        return [
            f"{bench}'s data differs between the runs (base {_fingerprint_text(b)}, new {_fingerprint_text(n)})"
            for bench, b, n in self.changed
        ]

    def refusal(self, instead: str = f"compare runs of the same data, or pass {ALLOW_DATA_CHANGE}") -> str:
        """One line: the first bench whose data differs, both digests, and what to do."""
        more = f" (and {len(self.changed) - 1} more benches)" if len(self.changed) > 1 else ""
        return f"{self.differences()[0]}{more}; not compared: {instead}"

    def header(self) -> list[str]:
        """The lines a comparison starts with: the data that changed (compared anyway), then the notes."""
        changed = [f"DATA CHANGED: {d}; compared anyway ({ALLOW_DATA_CHANGE})" for d in self.differences()]
        return changed + [f"note: {n}" for n in self.notes]

    def to_json(self) -> dict[str, Any]:
        return {
            "data_changed": [{"bench": b, "base": dict(old), "new": dict(new)} for b, old, new in self.changed],
            "data_notes": self.notes,
        }


def check_data(base: Mapping[str, BenchInfo], new: Mapping[str, BenchInfo], benches: Iterable[str]) -> DataCheck:
    """Compare the data fingerprints of ``benches`` in two runs' bench infos (each under one key in both)."""
    return check_pairs(base, new, [(bench, bench) for bench in benches])


def check_pairs(
    base: Mapping[str, BenchInfo], new: Mapping[str, BenchInfo], pairs: Iterable[tuple[str, str]]
) -> DataCheck:
    """Compare the data fingerprints of each (new key, base key) pair of two runs' bench infos, each bench once
    (its first pair).

    A bench whose fingerprint one run lacks (a run from before fingerprints, one cut off before its summary,
    a bench that declared none then) is compared with a note; one that neither run has is not mentioned.
    """
    check, seen = DataCheck(), set()
    for new_key, base_key in pairs:
        # The data is the bench's, whatever the agent (every agent's key holds the same fingerprint): once a bench.
        bench = split_key(new_key)[0]
        if bench in seen:
            continue
        seen.add(bench)
        before, after = _fingerprint(base, base_key), _fingerprint(new, new_key)
        if before is not None and after is not None:
            if before.get("digest") != after.get("digest"):
                check.changed.append((bench, before, after))
        elif before is not None or after is not None:
            lacking = "base" if before is None else "new"
            check.notes.append(
                f"the {lacking} run kept no data fingerprint for {bench} (a run from before fingerprints, or one cut "
                "off before its summary): compared without knowing whether both evaluated the same data"
            )
    return check


def _fingerprint(infos: Mapping[str, BenchInfo], bench: str) -> dict[str, str] | None:
    info = infos.get(bench)
    return info.data_fingerprint if info is not None else None


class BaselineChoiceError(ConfigurationError):
    """The runs' agents do not say which baseline agent to compare with (or the choice names none of them)."""


def split_key(key: str) -> tuple[str, str]:
    """A summary key's bench and agent (``""`` in a run of one agent): ``mmlu_pro[a]`` is (``mmlu_pro``, ``a``)."""
    bench, _, rest = key.partition("[")
    return (bench, rest[:-1]) if rest.endswith("]") else (key, "")


def pair_label(new_key: str, base_key: str) -> str:
    """How output names a comparison: the bench, or ``mmlu_pro[a] vs baseline mmlu_pro`` when the keys differ."""
    return new_key if new_key == base_key else f"{new_key} vs baseline {base_key}"


def run_keys(run: RunData) -> list[str]:
    """A run's summary keys (``bench`` or ``bench[agent]``) in the order its summary and records name them."""
    return list(dict.fromkeys([*run.bench_info, *(bench_key(r.bench, r.agent) for r in run.records)]))


@dataclass
class Pairing:
    """Which key of the baseline each key of the new run is compared with."""

    #: (new key, base key), in the new run's order.
    pairs: list[tuple[str, str]] = field(default_factory=list)
    #: New keys of a bench the baseline has but no counterpart there (an agent the baseline did not evaluate).
    unpaired: list[str] = field(default_factory=list)


def pair_benches(
    base_keys: Iterable[str],
    new_keys: Iterable[str],
    *,
    base_agent: str | None = None,
    new_name: str | None = None,
    flag: str = "--baseline-agent",
) -> Pairing:
    """Pair the new run's benches with the baseline's, across runs of one agent and of several.

    The same key pairs with itself (same bench, same agent or both runs of one agent). Each agent of a run of
    several is compared with a baseline of one agent. A run of one agent is compared with the baseline agent
    ``base_agent`` (``flag`` chose it) or, without it, with the one named ``new_name`` (the name the user gave
    the new run's agent). With ``base_agent``, every agent of the new run is compared with that baseline agent.

    Raises:
        BaselineChoiceError: a baseline of several agents and nothing says which one, or ``base_agent`` names
            none of the baseline's agents (one line listing them, naming ``flag``).
    """
    by_bench: dict[str, dict[str, str]] = {}
    for key in base_keys:
        bench, agent = split_key(key)
        by_bench.setdefault(bench, {})[agent] = key
    pairing = Pairing()
    for key in new_keys:
        bench, agent = split_key(key)
        agents = by_bench.get(bench)
        if agents is None:
            continue  # a bench the baseline did not run: nothing to compare it with
        base = _base_key(bench, agent, agents, base_agent, new_name, flag)
        if base is None:
            pairing.unpaired.append(key)
        else:
            pairing.pairs.append((key, base))
    return pairing


def _base_key(
    bench: str, agent: str, agents: dict[str, str], base_agent: str | None, new_name: str | None, flag: str
) -> str | None:
    """The baseline key ``bench[agent]`` of the new run is compared with; None: no counterpart (noted)."""
    several = "" not in agents
    # The baseline's summary may come from anywhere: its names printable, and not too many of them.
    listed = printable(", ".join(sorted(agents)), 300)
    if base_agent is not None:
        if not several:
            raise BaselineChoiceError(f"{flag} {base_agent}: the baseline evaluated one agent; leave {flag} out")
        if base_agent not in agents:
            raise BaselineChoiceError(
                f"{flag} {base_agent!r}: the baseline has no such agent on {bench} (its agents: {listed})"
            )
        return agents[base_agent]
    if agent in agents:
        return agents[agent]
    if not several:
        return agents[""]  # each agent of this run against the baseline's only one
    if agent:
        return None  # an agent the baseline did not evaluate, while it has others: noted, not compared
    if new_name in agents:
        return agents[new_name]
    named = f" (none is named {new_name!r}, this run's agent)" if new_name else ""
    raise BaselineChoiceError(
        f"the baseline evaluated several agents on {bench} ({listed}) and this run one{named}: "
        f"choose the one to compare with by {flag} NAME"
    )


def check_run_data(
    base: RunData, new: RunData, *, base_agent: str | None = None, new_name: str | None = None, flag: str = ""
) -> DataCheck:
    """:func:`check_pairs` over the benches a comparison compares (see :func:`pair_benches`), with a note for each
    agent of the new run that the baseline did not evaluate.

    Raises:
        BaselineChoiceError: as :func:`pair_benches`.
    """
    pairing = pair_benches(
        run_keys(base), run_keys(new), base_agent=base_agent, new_name=new_name, flag=flag or "--baseline-agent"
    )
    check = check_pairs(base.bench_info, new.bench_info, pairing.pairs)
    check.notes += [
        f"{key} not compared: the baseline did not evaluate agent {split_key(key)[1]}" for key in pairing.unpaired
    ]
    return check


@dataclass
class MetricChange:
    metric: str
    base: float
    new: float
    difference: float
    ci95: tuple[float, float]


@dataclass
class SampleComparison:
    """A bench's samples paired on (sample id, epoch): the paired difference and its tests.

    ``p_value`` (the gate's) is McNemar's exact test over samples (binary scores) or the paired
    z-test over samples (fractional ones): did the agent do worse on these samples. ``ci95`` and
    ``clustered_p`` take samples as clustered in tasks: would the change carry over to other tasks.
    """

    paired: int
    clusters: int
    base_mean: float
    new_mean: float
    difference: float
    ci95: tuple[float, float]
    #: Samples whose score fell / rose.
    worse: int
    better: int
    test: str
    p_value: float
    clustered_p: float
    regression: bool = False
    #: (task id, sample id, epoch, base score, new score) of every sample whose score changed.
    flipped: list[tuple[str, str, int, float, float]] = field(default_factory=list)


@dataclass
class BenchComparison:
    """One benchmark in both runs. ``regression`` is the verdict a CI gate acts on."""

    #: The bench's key in the new run (``bench``, or ``bench[agent]`` for one agent of several).
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
    #: The paired sample-level comparison, when both runs have samples of this bench.
    samples: SampleComparison | None = None
    #: Whether the task-level test alone found a regression (``regression`` also counts samples).
    task_regression: bool = False
    #: What both rates and the paired test count: ``strict`` (every error unresolved) or, when either run had
    #: infrastructure errors (infra, budget, interrupted), ``without infrastructure errors`` in either run.
    basis: str = "strict"
    #: Task runs left out of that basis, in the base and the new run.
    left_out: tuple[int, int] = (0, 0)
    #: The bench's key in the baseline: ``bench`` unless the runs evaluated different agent sets (see pair_benches).
    base_bench: str = ""

    @property
    def label(self) -> str:
        """What output calls this comparison: ``mmlu_pro``, or ``mmlu_pro[a] vs baseline mmlu_pro``."""
        return pair_label(self.bench, self.base_bench or self.bench)

    @property
    def decided_by(self) -> list[str]:
        """The levels whose test found the regression: ``tasks``, ``samples``, both or neither."""
        return [
            level for level, found in (("tasks", self.task_regression), ("samples", self.sample_regression)) if found
        ]

    @property
    def sample_regression(self) -> bool:
        return self.samples is not None and self.samples.regression

    def to_json(self) -> dict[str, Any]:
        data = {**asdict(self), "decided_by": self.decided_by}
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


#: The comparison's basis when either run had infrastructure errors.
_WITHOUT_INFRA = "without infrastructure errors"


def _resolved(records: list[TaskRecord], bench: str, without_infra: bool) -> dict[tuple[str, int], bool]:
    """Whether each (task, epoch) was resolved; ``without_infra``: runs with an infrastructure error left out.
    ``bench`` is a summary's key: ``bench[agent]`` for one agent of a session of several."""
    found: dict[tuple[str, int], bool] = {}
    for r in records:
        if bench_key(r.bench, r.agent) == bench:
            # The last record of a task's epoch counts (a resumed run reruns errors).
            found.pop((r.task_id, r.epoch), None)
            if not (without_infra and r.outcome == "error" and r.error_kind in INFRASTRUCTURE_KINDS):
                found[(r.task_id, r.epoch)] = r.outcome == "passed"
    return found


def _task_label(task: tuple[str, int], epochs: bool) -> str:
    return f"{task[0]} (epoch {task[1]})" if epochs else task[0]


def _scores(samples: list[SampleRecord], bench: str) -> dict[tuple[str, int], SampleRecord]:
    return {(s.sample_id, s.epoch): s for s in samples if bench_key(s.bench, s.agent) == bench}


def compare_samples(
    base: list[SampleRecord],
    new: list[SampleRecord],
    bench: str,
    *,
    alpha: float,
    max_drop: float,
    base_bench: str | None = None,
) -> SampleComparison | None:
    """Pair ``bench``'s samples (``base_bench``'s in the baseline) on (sample id, epoch); None when the runs
    share none."""
    before, after = _scores(base, base_bench or bench), _scores(new, bench)
    keys = [k for k in after if k in before]
    if not keys:
        return None
    clusters: dict[str, list[float]] = {}
    flipped = []
    for key in keys:
        b, n = before[key], after[key]
        clusters.setdefault(b.task_id, []).append(n.score - b.score)
        if n.score != b.score:
            flipped.append((b.task_id, b.sample_id, b.epoch, b.score, n.score))
    diff = clustered_mean(list(clusters.values()))
    per_sample = clustered_mean([[d] for c in clusters.values() for d in c])
    assert diff is not None and per_sample is not None
    worse = sum(1 for f in flipped if f[4] < f[3])
    better = len(flipped) - worse
    binary = all(before[k].score in (0.0, 1.0) and after[k].score in (0.0, 1.0) for k in keys)
    if binary:
        test, p = "mcnemar-exact", mcnemar_exact(worse, better)
    else:
        test, p = "paired-z", normal_p(per_sample.mean, per_sample.stderr)
    base_mean = sum(before[k].score for k in keys) / len(keys)
    return SampleComparison(
        paired=len(keys),
        clusters=diff.clusters,
        base_mean=base_mean,
        new_mean=base_mean + diff.mean,
        difference=diff.mean,
        ci95=diff.ci95,
        worse=worse,
        better=better,
        test=test,
        p_value=p,
        clustered_p=normal_p(diff.mean, diff.stderr),
        regression=-diff.mean > max_drop and p < alpha,
        flipped=sorted(flipped, key=lambda f: f[4] - f[3]),
    )


def compare_runs(
    base: RunData,
    new: RunData,
    *,
    alpha: float = 0.05,
    max_drop: float = 0.0,
    base_agent: str | None = None,
    new_name: str | None = None,
    flag: str = "",
) -> list[BenchComparison]:
    """Compare every benchmark present in both runs, paired by :func:`pair_benches` (``base_agent``,
    ``new_name`` and ``flag`` are its; it raises BaselineChoiceError) when the runs' agent sets differ.

    A benchmark regressed when its resolution rate fell by more than ``max_drop`` and the
    fall is significant at ``alpha``: by McNemar's exact test on the (task, epoch) runs both
    have (paired), or by a two-proportion z-test when they share none. Errors count as
    unresolved. When both runs have samples, it also regressed when the mean sample score
    fell by more than ``max_drop`` and the paired fall is significant at ``alpha`` by McNemar's
    exact test over samples (the paired z-test for fractional scores).
    """
    base_benches, new_benches = base.benches(), new.benches()
    pairing = pair_benches(
        base_benches, new_benches, base_agent=base_agent, new_name=new_name, flag=flag or "--baseline-agent"
    )
    comparisons = []
    for name, base_name in pairing.pairs:
        b, n = base_benches[base_name].stats, new_benches[name].stats
        # The same basis in both runs: if either had infrastructure errors, neither rate counts them.
        without_infra = bool(b.infra_errors or n.infra_errors)
        diff, low, high = difference_interval(_rate(b, without_infra), _rate(n, without_infra))
        before = _resolved(base.records, base_name, without_infra)
        after = _resolved(new.records, name, without_infra)
        shared = [t for t in after if t in before]
        epochs = any(e > 1 for _, e in [*before, *after])
        regressed = [_task_label(t, epochs) for t in shared if before[t] and not after[t]]
        fixed = [_task_label(t, epochs) for t in shared if not before[t] and after[t]]
        if shared:
            test, p = "mcnemar-exact", mcnemar_exact(len(regressed), len(fixed))
        else:
            b_tasks, n_tasks = (
                (b.tasks - b.infra_errors, n.tasks - n.infra_errors) if without_infra else (b.tasks, n.tasks)
            )
            test, p = "two-proportion-z", two_proportion_p(b.resolved, b_tasks, n.resolved, n_tasks)
        drop = -diff if not math.isnan(diff) else 0.0
        samples = compare_samples(base.samples, new.samples, name, alpha=alpha, max_drop=max_drop, base_bench=base_name)
        task_regression = drop > max_drop and p < alpha
        metrics = []
        for metric, s_new in n.metrics.items():
            s_base = b.metrics.get(metric)
            if s_base:
                d, lo, hi = mean_difference(s_base.mean, s_base.stderr, s_new.mean, s_new.stderr)
                metrics.append(MetricChange(metric, s_base.mean, s_new.mean, d, (lo, hi)))
        comparisons.append(
            BenchComparison(
                bench=name,
                base_rate=b.resolution_rate_without_infra if without_infra else b.resolution_rate,
                new_rate=n.resolution_rate_without_infra if without_infra else n.resolution_rate,
                difference=diff,
                ci95=(low, high),
                paired_tasks=len(shared),
                regressed=regressed,
                fixed=fixed,
                test=test,
                p_value=p,
                regression=task_regression or (samples is not None and samples.regression),
                metrics=metrics,
                samples=samples,
                task_regression=task_regression,
                basis=_WITHOUT_INFRA if without_infra else "strict",
                left_out=(b.infra_errors, n.infra_errors) if without_infra else (0, 0),
                base_bench=base_name,
            )
        )
    return comparisons


def _rate(stats: BenchStats, without_infra: bool) -> RateInterval:
    # The summary's interval: Wilson's, with a task's epochs clustered.
    if without_infra:
        tasks = float(stats.tasks - stats.infra_errors)
        return RateInterval(stats.resolution_rate_without_infra, *stats.resolution_rate_without_infra_ci95, tasks)
    return RateInterval(stats.resolution_rate, *stats.resolution_rate_ci95, effective_n=float(stats.tasks))


def _basis_line(c: BenchComparison) -> str:
    """Which basis both rates and the paired test used, in words nobody takes for the other."""
    if c.basis == "strict":
        return "  compared strictly in both runs: every error counts as unresolved"
    return (
        f"  compared {_WITHOUT_INFRA} in both runs (infra, budget, interrupted left out: "
        f"{c.left_out[0]} task runs of the base, {c.left_out[1]} of the new run)"
    )


def deciding_level(c: BenchComparison) -> str:
    """Where the regression was found: ``task level``, ``sample level`` or ``task and sample level``."""
    return " and ".join(level.removesuffix("s") for level in c.decided_by) + " level"


def verdict(c: BenchComparison) -> str:
    """The gate's verdict on a bench, naming the level whose test decided it."""
    if not c.regression:
        return "no significant regression"
    unchanged = "" if c.task_regression else "; no significant change at task level"
    return f"REGRESSION (at {deciding_level(c)}{unchanged})"


def _sample_lines(s: SampleComparison) -> list[str]:
    verdict = "REGRESSION" if s.regression else "no significant regression"
    lines = [
        f"  samples: {s.paired:,} in both runs (in {s.clusters:,} tasks): mean score {percent(s.base_mean)} -> "
        f"{percent(s.new_mean)} ({_signed(s.difference)}, 95% CI {_signed(s.ci95[0])} to {_signed(s.ci95[1])}, "
        f"clustered by task); {s.worse:,} worse, {s.better:,} better; {s.test} p={s.p_value:.3g}, "
        f"clustered p={s.clustered_p:.3g}: {verdict}"
    ]
    worse = [f for f in s.flipped if f[4] < f[3]]
    for task, sample, epoch, before, after in worse[:10]:
        where = f"{task} / {sample}" + (f" (epoch {epoch})" if epoch > 1 else "")
        lines.append(f"    - {where}: {before:g} -> {after:g}")
    if len(worse) > 10:
        lines.append(f"    ... and {len(worse) - 10} more")
    return lines


def _signed(x: float, scale: float = 100, unit: str = "pp") -> str:
    return "n/a" if math.isnan(x) else f"{x * scale:+.1f}{unit}"


def format_comparison(
    comparisons: list[BenchComparison], base: RunData, new: RunData, data: DataCheck | None = None
) -> str:
    """A terminal table: per benchmark, the rates, their difference with its interval, flips and the verdict.

    With ``data``, it starts with the benches whose data changed (compared anyway) and the notes about data.
    """
    lines = [
        *(data.header() if data is not None else []),
        f"base {base.metadata.get('run_id')} ({base.path})",
        f"new  {new.metadata.get('run_id')} ({new.path})",
        "",
    ]
    if not comparisons:
        return "\n".join([*lines, NOTHING_COMPARED])
    for c in comparisons:
        rate = "resolution rate" if c.basis == "strict" else f"resolution rate {_WITHOUT_INFRA}"
        lines.append(
            f"{c.label}: {rate} {percent(c.base_rate)} -> {percent(c.new_rate)} "
            f"({_signed(c.difference)}, 95% CI {_signed(c.ci95[0])} to {_signed(c.ci95[1])}): {verdict(c)}"
        )
        tasks = "REGRESSION" if c.task_regression else "no significant regression at task level"
        lines.append(
            f"  {c.paired_tasks} tasks in both runs: {len(c.regressed)} resolved -> unresolved, "
            f"{len(c.fixed)} unresolved -> resolved; {c.test} p={c.p_value:.3g}: {tasks}"
        )
        lines.append(_basis_line(c))
        for task in c.regressed[:10]:
            lines.append(f"    - {task}")
        if len(c.regressed) > 10:
            lines.append(f"    ... and {len(c.regressed) - 10} more")
        if c.samples is not None:
            lines += _sample_lines(c.samples)
        if c.metrics:
            width = max(len(m.metric) for m in c.metrics)
            lines.append(f"  {'metric':<{width}}  {'base':>10}  {'new':>10}  {'change':>10}  95% CI")
            for m in c.metrics:
                lines.append(
                    f"  {m.metric:<{width}}  {m.base:>10.4g}  {m.new:>10.4g}  {m.difference:>+10.4g}  "
                    f"[{m.ci95[0]:+.4g}, {m.ci95[1]:+.4g}]"
                )
    return "\n".join(lines)
