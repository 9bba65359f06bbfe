"""The summary's statistics: intervals that respect clusters and keep a width at the edges."""

from __future__ import annotations

import random

import pytest

from pytest_benchflow.plugin.reporter import outcome_line
from pytest_benchflow.results.records import BenchStats
from pytest_benchflow.stats import clustered_rate, difference_interval, wilson_interval


def test_one_outcome_per_task_is_wilsons_interval() -> None:
    rate = clustered_rate([[True], [False], [True], [True]])
    assert (rate.low, rate.high) == wilson_interval(3, 4) and rate.effective_n == 4


def test_epochs_that_always_agree_count_as_one_outcome_per_task() -> None:
    rate = clustered_rate([[True, True, True], [False, False, False], [True, True, True]])
    assert (rate.low, rate.high) == pytest.approx(wilson_interval(2, 3)) and rate.effective_n == 3


def test_epochs_that_vary_as_much_within_tasks_as_between_count_as_independent() -> None:
    rate = clustered_rate([[True, False]] * 10)
    assert rate.effective_n == 20 and (rate.low, rate.high) == pytest.approx(wilson_interval(10, 20))


def test_clustered_interval_covers_the_true_rate_where_the_independent_one_does_not() -> None:
    # Tasks that are nearly always or nearly never solved: epochs of one task tell little more
    # than one epoch. 1,000 simulated runs of 30 tasks x 4 epochs; the true rate is 0.5.
    rng = random.Random(7)
    clustered = independent = 0
    for _ in range(1000):
        runs = [[rng.random() < p for _ in range(4)] for p in (rng.choice((0.05, 0.95)) for _ in range(30))]
        rate = clustered_rate(runs)
        clustered += rate.low <= 0.5 <= rate.high
        low, high = wilson_interval(sum(map(sum, runs)), 120)
        independent += low <= 0.5 <= high
    assert clustered / 1000 >= 0.93 and independent / 1000 < 0.8


def test_no_outcomes_give_no_rate() -> None:
    rate = clustered_rate([])
    assert rate.rate is None and (rate.low, rate.high) == (0.0, 1.0)


def test_difference_from_none_to_all_keeps_a_width() -> None:
    d, low, high = difference_interval(clustered_rate([[False], [False]]), clustered_rate([[True], [True]]))
    assert d == 1.0 and high == 1.0 and 0.0 < low < 0.2  # Wald's interval here is [1, 1]
    d, low, high = difference_interval(clustered_rate([[True]] * 5), clustered_rate([[True]] * 5))
    assert d == 0.0 and low < -0.3 and high > 0.3


def test_a_bench_without_tasks_shows_no_interval() -> None:
    assert outcome_line(BenchStats()) == "0 tasks, 0 resolved, 0 failed, 0 errors; resolution rate n/a"
