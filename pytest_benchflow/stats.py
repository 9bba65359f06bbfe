"""Small statistics for summaries: rates with Wilson intervals, means with standard errors."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Z95",
    "ClusteredMean",
    "RateInterval",
    "clustered_mean",
    "clustered_rate",
    "difference_interval",
    "mcnemar_exact",
    "mean_and_stderr",
    "mean_difference",
    "normal_p",
    "pass_at_k",
    "pass_hat_k",
    "percent",
    "two_proportion_p",
    "wilson_interval",
]

#: The two-sided 95% quantile of the standard normal distribution.
Z95 = 1.959963984540054


def percent(x: float | None) -> str:
    """``x`` (a proportion) as a percentage with one decimal, ``n/a`` when unknown."""
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion; (0, 1) when ``n`` is 0.

    ``n`` may be an effective (fractional) sample size, ``successes`` then ``p · n``.
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class RateInterval:
    """A proportion with its 95% interval and the sample size the interval counts as independent."""

    rate: float | None
    low: float
    high: float
    #: ``n`` for independent outcomes; less when outcomes are clustered (Kish's effective sample size).
    effective_n: float


def clustered_rate(clusters: Sequence[Sequence[bool]]) -> RateInterval:
    """The proportion of true outcomes with a Wilson interval that respects their clusters.

    Epochs of one task are not independent draws: an agent that solves a task tends to solve it
    again. The interval is Wilson's at the effective sample size ``n / deff`` (Kish), where the
    design effect ``deff`` is the ratio of the clustered (sandwich, as in :func:`clustered_mean`)
    variance to the independent one. It is bounded by the two extremes: no narrower than ``n``
    independent outcomes, no wider than one outcome per cluster. Where the outcomes do not vary
    (all true or all false) nothing tells how alike a cluster's outcomes are, and the cautious
    bound is taken: one outcome per cluster. With one outcome per cluster it is Wilson's interval.
    """
    groups = [list(c) for c in clusters if len(c)]
    n, c = sum(len(g) for g in groups), len(groups)
    if not n:
        return RateInterval(None, 0.0, 1.0, 0.0)
    successes = sum(sum(g) for g in groups)
    p = successes / n
    effective = float(n)
    if n > c:
        iid = p * (1 - p) / n
        clustered = clustered_mean([[float(x) for x in g] for g in groups])
        if iid == 0 or c < 2 or clustered is None:
            effective = float(c)
        elif clustered.stderr > 0:  # n / deff, deff = clustered variance / independent variance
            effective = min(float(n), max(float(c), n * iid / clustered.stderr**2))
    low, high = wilson_interval(successes if effective == n else p * effective, effective)
    return RateInterval(p, low, high, effective)


def difference_interval(before: RateInterval, after: RateInterval) -> tuple[float, float, float]:
    """(after − before, low, high): Newcombe's hybrid score interval of a difference of proportions.

    Built from each rate's Wilson interval (so epochs clustered in tasks stay clustered), it keeps
    a width where Wald's interval collapses: 0 of 2 → 2 of 2 has no variance in either run.
    """
    if before.rate is None or after.rate is None:
        return math.nan, math.nan, math.nan
    d = after.rate - before.rate
    low = d - math.sqrt((after.rate - after.low) ** 2 + (before.high - before.rate) ** 2)
    high = d + math.sqrt((after.high - after.rate) ** 2 + (before.rate - before.low) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def mean_and_stderr(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    xs = list(values)
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(var / len(xs))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Sum in log space: C(n, i) / 2**n underflows for the n of a 12,032-question benchmark.
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    return min(1.0, 2 * tail)


def mean_difference(m1: float, se1: float, m2: float, se2: float, z: float = Z95) -> tuple[float, float, float]:
    """(m2 - m1, low, high) with a normal 95% interval from the two standard errors."""
    half = z * math.sqrt(se1 * se1 + se2 * se2)
    return m2 - m1, m2 - m1 - half, m2 - m1 + half


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float:
    """Two-sided p-value of the pooled z-test that two independent proportions are equal."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(s2 / n2 - s1 / n1) / se
    return math.erfc(z / math.sqrt(2))


def normal_p(estimate: float, stderr: float) -> float:
    """Two-sided p-value that a normally distributed ``estimate`` with ``stderr`` is zero (1.0 when undefined)."""
    if not stderr or math.isnan(stderr) or math.isnan(estimate):
        return 1.0 if not estimate else 0.0
    return math.erfc(abs(estimate) / stderr / math.sqrt(2))


@dataclass
class ClusteredMean:
    """A mean over samples grouped in clusters (tasks), with a cluster-robust standard error."""

    mean: float
    stderr: float
    samples: int
    clusters: int
    #: "clustered" (the samples' clusters accounted for) or "iid" (one cluster: samples taken as independent).
    method: str

    @property
    def ci95(self) -> tuple[float, float]:
        return self.mean - Z95 * self.stderr, self.mean + Z95 * self.stderr


def clustered_mean(clusters: Sequence[Sequence[float]]) -> ClusteredMean | None:
    """The mean of every value with its clustered standard error (None without values).

    The cluster-robust (sandwich) estimator that Miller 2024, "Adding Error Bars to Evals",
    recommends: ``SE² = C/(C−1) · Σ_c (Σ_{i∈c} (x_i − mean))² / n²`` over ``C`` clusters and
    ``n`` values (``C/(C−1)`` is the usual small-sample correction).
    Samples of one task share its prompt, category or environment, so they are not
    independent; treating them as such understates the error. With one value per cluster it
    is the usual standard error (up to the n/(n−1) factor). With a single cluster nothing
    can be said about between-cluster variation: the independent-samples error is given,
    marked ``iid``.
    """
    groups = [list(c) for c in clusters if len(c)]
    n = sum(len(c) for c in groups)
    if not n:
        return None
    mean = sum(sum(c) for c in groups) / n
    if len(groups) < 2:
        values = groups[0]
        var = sum((x - mean) ** 2 for x in values) / (n - 1) if n > 1 else 0.0
        return ClusteredMean(mean, math.sqrt(var / n), n, 1, "iid")
    c = len(groups)
    spread = sum(sum(x - mean for x in group) ** 2 for group in groups)
    return ClusteredMean(mean, math.sqrt(c / (c - 1) * spread) / n, n, c, "clustered")


def _choose(n: int, k: int) -> float:
    return float(math.comb(n, k))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of a task tried ``n`` times with ``c`` successes: P(at least one of k draws passes).

    ``1 − C(n−c, k) / C(n, k)`` (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").
    """
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - _choose(n - c, k) / _choose(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k of a task tried ``n`` times with ``c`` successes: P(all of k draws pass).

    ``C(c, k) / C(n, k)`` (Yao et al. 2024, τ-bench).
    """
    if not 0 < k <= n:
        raise ValueError(f"pass^k needs 0 < k <= n, got k={k}, n={n}")
    return _choose(c, k) / _choose(n, k)
