"""The meter's split among a site's runs (service/bills.py `split`, pure), checked by hand and
against the roll-ups' own integration (service/meters.py `integrate`)."""

from __future__ import annotations

import random

import pytest

from suanli.service.bills import Run, split
from suanli.service.meters import HOUR_US, US, integrate

S = US                                    # one second in µs


def test_two_runs_share_each_piece_by_power_and_the_clamp_shares_all_of_it():
    """Readings at 0 s (IT 8 kW, facility 10, grid 6), 600 s (IT 1, facility 1.5, grid 2: more
    than the facility, the battery charging) and 1200 s; run 1 draws 0.4 kW over [0, 900 s),
    run 2 1.2 kW over [300, 1200 s). Carbon 0.5 kg/kWh, tariff 1 CNY/kWh, renewables 0.1 CNY/kWh.
    - [0, 300):    D = max(8, 0.4) = 8:    run 1 takes 0.05 of it
    - [300, 600):  D = max(8, 1.6) = 8:    run 1 0.05, run 2 0.15
    - [600, 900):  D = max(1, 1.6) = 1.6:  run 1 0.25, run 2 0.75 (all of the facility)
    - [900, 1200): D = max(1, 1.2) = 1.2:  run 2 1.0
    Each piece is 1/12 h. Run 1: facility (0.05·10 + 0.05·10 + 0.25·1.5)/12 = 1.375/12 kWh,
    grid (0.05·6 + 0.05·6 + 0.25·2)/12 = 1.1/12, non-grid (0.05·4 + 0.05·4 + 0)/12 = 0.4/12."""
    points = [(0, 8.0, 10.0, 4.0, 6.0), (600 * S, 1.0, 1.5, 0.0, 2.0), (1200 * S, 1.0, 1.5, 0.0, 2.0)]
    runs = [Run(1, 0, 900 * S, 0.4), Run(2, 300 * S, 1200 * S, 1.2)]
    got = split(points, runs, {1, 2}, carbon=lambda _: 0.5, tariff=lambda _: 1.0, renewable_cny=0.1, origin_us=0)
    (one,), (two,) = got.takes[1].values(), got.takes[2].values()
    assert one.facility_kwh == pytest.approx(1.375 / 12, rel=1e-12)
    assert one.grid_kwh == pytest.approx(1.1 / 12, rel=1e-12)
    assert one.nongrid_kwh == pytest.approx(0.4 / 12, rel=1e-12)
    assert one.carbon_kg == pytest.approx(0.5 * 1.1 / 12, rel=1e-12)
    assert one.energy_cny == pytest.approx((1.1 + 0.1 * 0.4) / 12, rel=1e-12)
    assert two.facility_kwh == pytest.approx((0.15 * 10 + 0.75 * 1.5 + 1.0 * 1.5) / 12, rel=1e-12)
    assert got.covered_us == {1: 900 * S, 2: 900 * S}


def test_a_gap_in_the_readings_leaves_the_run_uncovered():
    """A reading's power holds 20 minutes at most: readings at 0 and 1800 s leave [1200, 1800) bare,
    so a run over [600, 2400) is covered 1200 s of its 1800."""
    points = [(0, 5.0, 6.0, 0.0, 6.0), (1800 * S, 5.0, 6.0, 0.0, 6.0)]
    got = split(points, [Run(7, 600 * S, 2400 * S, 1.0)], {7}, carbon=lambda _: 0.0, tariff=lambda _: 0.0,
                renewable_cny=0.0, origin_us=0)
    assert got.covered_us[7] == 1200 * S


def test_runs_drawing_more_than_the_meter_take_all_of_it_hour_by_hour_as_the_roll_ups_integrate_it():
    """Random readings (jittered instants, some gaps), random runs whose total power always exceeds
    the metered IT power, slots offset from the UTC hours: every hour, what the runs take equals the
    roll-up's facility energy and carbon (no kWh lost, none counted twice)."""
    rng = random.Random(16)
    origin = 1_700_000_000 * S + 1234 * S         # an epoch that is not on the hour
    t, points = origin, []
    while t < origin + 5 * HOUR_US:
        it = rng.uniform(0.0, 2.0)
        points.append((t, it, it * rng.uniform(1.0, 1.6), rng.uniform(0, 3), rng.uniform(-1.0, 4.0)))
        t += rng.choice([30, 60, 90, 900, 1500]) * S + rng.randrange(S)
    # a floor run over everything (2 kW: more than any IT reading), and short ones on top
    runs = [Run(0, origin - HOUR_US, origin + 6 * HOUR_US, 2.0)]
    for k in range(1, 30):
        a = origin + rng.randrange(5 * HOUR_US)
        runs.append(Run(k, a, a + rng.randrange(1, HOUR_US), rng.choice([0.4, 0.7, 2.8])))
    carbon = [0.3, 0.9, 0.5, 0.7, 0.2, 0.6, 0.4]

    def factor(slot: int) -> float:
        return carbon[slot % len(carbon)]
    got = split(points, runs, {r.key for r in runs}, carbon=factor, tariff=lambda _: 1.0, renewable_cny=0.0,
                origin_us=origin)
    hours = integrate(points, carbon=factor, origin_us=origin)
    assert len(hours) >= 5
    for h, e in hours.items():
        took = [t for takes in got.takes.values() for hour, t in takes.items() if hour == h]
        assert sum(t.facility_kwh for t in took) == pytest.approx(e.facility_kwh, rel=1e-9, abs=1e-12)
        assert sum(t.carbon_kg for t in took) == pytest.approx(e.carbon_kg, rel=1e-9, abs=1e-12)
        assert sum(t.grid_kwh for t in took) == pytest.approx(e.grid_kwh, rel=1e-9, abs=1e-12)
