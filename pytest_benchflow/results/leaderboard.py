"""Several agents of one run side by side: a leaderboard per bench and a pairwise matrix of paired differences.

Each pair of agents is compared on what both answered: the samples both have (task, sample id, epoch), else
the task runs both have (resolved or not; an error counts as unresolved). The difference is clustered by task
(its 95% interval), the test is McNemar's exact one on the discordant pairs (binary scores; the paired z-test
for fractional ones), and the p-values of one bench's pairs are Holm-corrected: a pair is marked significant
when its corrected p is below ``ALPHA``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

from ..stats import clustered_mean, mcnemar_exact, normal_p, percent
from .reader import RunData
from .records import BenchStats, bench_key
from .writer import cost

__all__ = [
    "ALPHA",
    "AgentRow",
    "Leaderboard",
    "PairComparison",
    "format_leaderboards",
    "holm",
    "leaderboards",
]

#: The family-wise level of a bench's pairwise matrix (Holm's correction across its pairs).
ALPHA = 0.05
#: Disagreements kept per pair (summary.json and the report): the rest are in samples.jsonl.
MAX_DISAGREEMENTS = 500


@dataclass
class AgentRow:
    """One agent on one bench."""

    agent: str
    tasks: int
    resolved: int
    errors: int
    resolution_rate: float | None
    resolution_rate_ci95: tuple[float, float]
    sample_mean: float | None = None
    sample_ci95: tuple[float, float] | None = None
    samples: int = 0
    tokens: int | None = None
    cost: float | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class PairComparison:
    """Agents ``a`` and ``b`` on what both answered: ``difference`` is a's score minus b's."""

    a: str
    b: str
    #: ``samples`` (paired on task, sample id and epoch) or ``tasks`` (on task and epoch).
    level: str
    paired: int
    difference: float
    ci95: tuple[float, float]
    #: How many of the pairs a scored higher on, and b.
    a_better: int
    b_better: int
    test: str
    p_value: float
    #: ``p_value`` Holm-corrected across the bench's pairs; significant when below ``ALPHA``.
    p_holm: float = 1.0
    significant: bool = False
    #: (task id, sample id or "", epoch, a's score, b's score) of each pair the two scored differently.
    disagreements: list[tuple[str, str, int, float, float]] = field(default_factory=list)


@dataclass
class Leaderboard:
    """A bench's agents ranked (mean sample score, else resolution rate), and every pair of them compared."""

    bench: str
    agents: list[AgentRow]
    pairs: list[PairComparison]
    alpha: float = ALPHA

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for pair in data["pairs"]:
            pair["disagreements"] = pair["disagreements"][:MAX_DISAGREEMENTS]
        cleaned: dict[str, Any] = _no_nan(data)
        return cleaned

    def pair(self, a: str, b: str) -> PairComparison | None:
        """The comparison of ``a`` with ``b``, oriented so that its difference is a's minus b's."""
        for p in self.pairs:
            if (p.a, p.b) == (a, b):
                return p
            if (p.b, p.a) == (a, b):
                flipped = [(t, s, e, y, x) for t, s, e, x, y in p.disagreements]
                low, high = p.ci95
                return PairComparison(
                    a, b, p.level, p.paired, -p.difference, (-high, -low), p.b_better, p.a_better,
                    p.test, p.p_value, p.p_holm, p.significant, flipped,
                )  # fmt: skip
        return None


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _row(agent: str, stats: BenchStats, price: tuple[float, float] | None) -> AgentRow:
    usage = stats.usage or {}
    tokens = usage.get("total_tokens") or (usage.get("input_tokens", 0) + usage.get("output_tokens", 0)) or None
    return AgentRow(
        agent=agent,
        tasks=stats.tasks,
        resolved=stats.resolved,
        errors=stats.errors,
        resolution_rate=stats.resolution_rate,
        resolution_rate_ci95=stats.resolution_rate_ci95,
        sample_mean=stats.samples.mean if stats.samples else None,
        sample_ci95=(max(0.0, stats.samples.ci95[0]), min(1.0, stats.samples.ci95[1])) if stats.samples else None,
        samples=stats.samples.samples if stats.samples else 0,
        tokens=tokens,
        cost=round(cost(usage, price), 6) if price and usage else None,
        error_kinds=stats.error_kinds,
    )


Scores = dict[tuple[str, str, int], float]


def _scores(run: RunData, bench: str) -> tuple[dict[str, Scores], dict[str, Scores]]:
    """Per agent: its sample scores keyed (task, sample id, epoch), and its task runs (1 resolved, else 0)."""
    samples: dict[str, Scores] = {}
    tasks: dict[str, Scores] = {}
    for s in run.samples:
        if s.bench == bench and s.agent:
            samples.setdefault(s.agent, {})[(s.task_id, s.sample_id, s.epoch)] = s.score
    for r in run.records:
        if r.bench == bench and r.agent:
            tasks.setdefault(r.agent, {})[(r.task_id, "", r.epoch)] = 1.0 if r.outcome == "passed" else 0.0
    return samples, tasks


def _compare(a: str, b: str, level: str, sa: Scores, sb: Scores) -> PairComparison:
    keys = [k for k in sa if k in sb]
    clusters: dict[str, list[float]] = {}
    for key in keys:
        clusters.setdefault(key[0], []).append(sa[key] - sb[key])
    disagreements = sorted(
        ((k[0], k[1], k[2], sa[k], sb[k]) for k in keys if sa[k] != sb[k]), key=lambda d: (d[0], d[1], d[2])
    )
    a_better = sum(1 for d in disagreements if d[3] > d[4])
    b_better = len(disagreements) - a_better
    diff = clustered_mean(list(clusters.values()))
    if diff is None:
        return PairComparison(a, b, level, 0, math.nan, (math.nan, math.nan), 0, 0, "none", 1.0)
    binary = all(sa[k] in (0.0, 1.0) and sb[k] in (0.0, 1.0) for k in keys)
    if binary:
        test, p = "mcnemar-exact", mcnemar_exact(a_better, b_better)
    else:
        per_sample = clustered_mean([[d] for c in clusters.values() for d in c])
        assert per_sample is not None
        test, p = "paired-z", normal_p(per_sample.mean, per_sample.stderr)
    return PairComparison(a, b, level, len(keys), diff.mean, diff.ci95, a_better, b_better, test, p,
                          disagreements=disagreements)  # fmt: skip


def leaderboards(run: RunData, alpha: float = ALPHA) -> list[Leaderboard]:
    """The leaderboard of every bench that several agents ran (none for a run of one agent)."""
    price_data = run.metadata.get("price")
    price = (
        (float(price_data["input_per_million"]), float(price_data["output_per_million"]))
        if isinstance(price_data, dict)
        else None
    )
    summaries = run.benches()
    found = []
    for bench in dict.fromkeys(r.bench for r in run.records if r.agent):
        samples, tasks = _scores(run, bench)
        names = list(dict.fromkeys(r.agent for r in run.records if r.bench == bench and r.agent))
        rows = [_row(name, summaries[bench_key(bench, name)].stats, price) for name in names]
        rows.sort(key=lambda r: -(r.sample_mean if r.sample_mean is not None else r.resolution_rate or 0.0))
        ranked = [r.agent for r in rows]
        pairs = []
        for a, b in combinations(ranked, 2):
            if a in samples and b in samples and any(k in samples[b] for k in samples[a]):
                pairs.append(_compare(a, b, "samples", samples[a], samples[b]))
            else:
                pairs.append(_compare(a, b, "tasks", tasks.get(a, {}), tasks.get(b, {})))
        for pair, adjusted in zip(pairs, holm([p.p_value for p in pairs]), strict=True):
            pair.p_holm = adjusted
            pair.significant = pair.paired > 0 and adjusted < alpha and pair.difference != 0
        found.append(Leaderboard(bench, rows, pairs, alpha))
    return found


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.1f}pp"


def format_leaderboards(boards: list[Leaderboard]) -> list[str]:
    """Terminal lines: each bench's ranked agents, then each pair's paired difference and test."""
    lines: list[str] = []
    for board in boards:
        lines.append(f"{board.bench}: leaderboard of {len(board.agents)} agents")
        width = max(len(r.agent) for r in board.agents)
        for rank, r in enumerate(board.agents, 1):
            rate = "n/a" if r.resolution_rate is None else (
                f"{percent(r.resolution_rate)} [{percent(r.resolution_rate_ci95[0])}–"
                f"{percent(r.resolution_rate_ci95[1])}]"
            )  # fmt: skip
            score = ""
            if r.sample_mean is not None and r.sample_ci95 is not None:
                score = (
                    f", mean score {percent(r.sample_mean)} [{percent(r.sample_ci95[0])}–{percent(r.sample_ci95[1])}]"
                )
            extra = f", {r.tokens:,} tokens" if r.tokens else ""
            extra += f", ${r.cost:.4f}" if r.cost is not None else ""
            kinds = ", ".join(f"{n} {k}" for k, n in r.error_kinds.items())
            errors = f", {r.errors} errors ({kinds})" if r.errors else ", 0 errors"
            lines.append(f"  {rank}. {r.agent:<{width}}  resolved {r.resolved}/{r.tasks} {rate}{score}{extra}{errors}")
        lines.append(f"  pairs (paired over common {board.pairs[0].level if board.pairs else 'samples'}; "
                     f"Holm-corrected, * significant at {board.alpha:g}):")  # fmt: skip
        for p in board.pairs:
            mark = "*" if p.significant else " "
            lines.append(
                f"  {mark} {p.a} vs {p.b}: {_signed(p.difference)} (95% CI {_signed(p.ci95[0])} to "
                f"{_signed(p.ci95[1])}) over {p.paired:,} {p.level}; {p.a_better} vs {p.b_better} disagreements; "
                f"{p.test} p={p.p_value:.3g}, Holm p={p.p_holm:.3g}"
            )
    return lines
