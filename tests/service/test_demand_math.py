"""The pure parts of demand response (service/demand.py): which runs to stop (the least power
that covers the excess, then the fewest runs; all when all fall short; exact against a brute
force) and the kWh above a cap from held readings, worked out by hand."""

from __future__ import annotations

import itertools
import random

import pytest

from suanli.service import demand, meters

S = meters.US


def _brute(runs, need):
    best = None
    for n in range(1, len(runs) + 1):
        for combo in itertools.combinations(runs, n):
            kw = round(sum(k for _, k in combo) * 1000)
            if kw >= round(need * 1000) and (best is None or (kw, n) < best[:2]):
                best = (kw, n, {i for i, _ in combo})
    return best


def test_the_least_power_that_covers_the_excess_is_chosen_then_the_fewest_runs():
    runs = [("big", 1.92), ("small", 0.96), ("mid", 1.4)]
    assert demand.choose(runs, 0.5) == ["small"]
    assert demand.choose(runs, 1.0) == ["mid"]                 # 1.4 < 1.92, and 0.96 falls short
    assert sorted(demand.choose(runs, 2.0)) == ["mid", "small"]     # 2.36 < 1.92 + 0.96
    assert demand.choose([("a", 1.0), ("b", 1.0), ("c", 2.0)], 2.0) == ["c"]   # 2 kW either way: one run
    assert sorted(demand.choose(runs, 99.0)) == ["big", "mid", "small"]       # all fall short: all
    assert demand.choose(runs, 0.0) == [] and demand.choose([], 3.0) == []


@pytest.mark.parametrize("seed", range(20))
def test_the_choice_is_exact_against_a_brute_force(seed):
    rng = random.Random(seed)
    runs = [(i, rng.choice([0.4, 0.7]) * rng.choice([1, 2, 4, 8]) * rng.choice([1.1, 1.3])) for i in range(9)]
    need = rng.uniform(0.1, sum(k for _, k in runs))
    got = set(demand.choose(runs, need))
    kw = round(sum(k for i, k in runs if i in got) * 1000)
    want = _brute(runs, need)
    assert (kw, len(got)) == want[:2]


def test_the_greedy_fallback_still_covers_the_excess(monkeypatch):
    monkeypatch.setattr(demand, "EXACT_STATES", 4)
    runs = [(i, 0.1 * (i + 1)) for i in range(30)]
    got = demand.choose(runs, 5.05)
    assert sum(k for i, k in runs if i in got) >= 5.05 - 1e-9


def test_kwh_above_the_cap_holds_each_reading_until_the_next_for_at_most_the_gap():
    # 12 kW at 0 s, 15 kW at 60 s, 9 kW at 120 s, 14 kW at 2,520 s (40 min later: held 20 min at most)
    points = [(60 * S, 15.0), (120 * S, 9.0), (2520 * S, 14.0)]
    got = demand.excess_kwh((0, 12.0), points, 10.0)
    assert got == pytest.approx(2.0 * 60 / 3600 + 5.0 * 60 / 3600 + 0.0)
    # the cap ended 30 s after the last reading: its hold counts to then
    assert demand.excess_kwh((0, 12.0), [], 10.0, until_us=30 * S) == pytest.approx(2.0 * 30 / 3600)
    assert demand.excess_kwh((0, 12.0), [], 10.0, until_us=3600 * S) == pytest.approx(2.0 * 1200 / 3600)
