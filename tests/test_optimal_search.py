"""The offline `optimal` policy's search (docs/BOUNDS.md §5): the large-neighbourhood search path
keeps every guarantee, and the model does not count on a battery at a grid cap that MODEL.md
§4's greedy battery will have emptied."""

from __future__ import annotations

import numpy as np
import pytest

from suanli.accounting import account, resolve_series, validate
from suanli.model.schedule import Segment
from suanli.scheduling import policies
from suanli.scheduling.bound import ModelBuilder, add_energy, build_problem, lower_bound
from suanli.scheduling.policies.optimal import _candidate_runs, _count_runs
from suanli.sim.engine import simulate
from test_bound import pool_site, random_scenario, scenario


def run(scn, policy):
    result = simulate(scn, policy)
    violations, outcomes = validate(scn, result.segments)
    assert violations == [], violations[:3]
    return result, account(scn, result.segments, outcomes=outcomes).metrics


def capped_site():
    # 4 a800 = 2 kW; tariff 0.5 in slots 0-1, 1.0 after; battery 2 kWh / 2 kW, full; cap 1.5 kW on [0, 2)
    return pool_site(grid={"cny_per_kwh": [0.5, 0.5] + [1.0] * 22},
                     battery={"capacity_kwh": 2, "power_kw": 2, "efficiency": 1.0, "initial_soc": 1.0})


def test_no_battery_is_counted_against_a_grid_cap():
    # at 0 the greedy battery empties in slot 0 and slot 1 draws 2 kW against the 1.5 kW cap:
    # 1 CNY energy + 0.5 kWh * 10 DR; at 2 it covers slot 2, slot 3 draws 2 kWh at 1.0: 2 CNY.
    # A model that dispatched the battery against the cap would have picked 0 (1 CNY, no DR).
    job = {"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "west", "deadline_h": 4}
    kw = {"objective": {"dr_cny_per_kwh": 10, "late_cny_per_gpu_h": 1000, "carbon_cny_per_kg": 0.0,
                        "unfinished_cny": 10000}}
    scn = scenario([capped_site()], [job],
                   [{"type": "grid_cap", "site": "w1", "start_h": 0, "end_h": 2, "max_grid_kw": 1.5}], **kw)
    # (Starting at 0.25 is cheaper still: the battery covers slot 0's 1.5 kWh and 0.5 kWh of
    # slot 1, which then draws just the cap; 1.25 CNY.)
    result, m = run(scn, policies.make("optimal"))
    at_zero = account(scn, [Segment("j1", "w1", "a800", 4, 0.0, 2.0)]).metrics["objective_cny"]
    assert at_zero == pytest.approx(32.0 + 1.0 + 5.0)
    assert m["dr_violation_kwh"] == pytest.approx(0.0, abs=1e-9)
    assert m["objective_cny"] <= 32.0 + 2.0 + 1e-6
    assert [s.start_h for s in result.segments] in ([pytest.approx(0.25)], [pytest.approx(2.0)])


def test_the_cap_rows_take_the_discharge_columns():
    # `_build` takes a site's discharge columns to be the T after its charge columns (the order
    # add_energy makes them in): no cost, at most power_kw, +1 in the site's balance rows
    site = pool_site(battery={"capacity_kwh": 3, "power_kw": 2, "efficiency": 0.9, "initial_soc": 0.5})
    scn = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "west"}])
    T = 24
    b = ModelBuilder()
    energy = add_energy(b, build_problem(scn), resolve_series(scn, T), T)
    cost, lo, hi, _, _, _, start, index, value = b.arrays()
    dis = energy.charge[0] + T
    assert np.all(cost[dis] == 0.0) and np.all(lo[dis] == 0.0) and np.all(hi[dis] == 2.0)
    for t, c in enumerate(dis):
        rows = dict(zip(index[start[c]:start[c + 1]], value[start[c]:start[c + 1]], strict=True))
        assert rows[energy.balance[0][t]] == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_search_path_keeps_the_guarantees(seed):
    # bb_runs = 0: every model goes straight to the neighbourhood search
    scn = random_scenario(2000 + seed)
    pol = policies.make("optimal")
    pol.time_limit_s, pol.bb_runs = 8.0, 0
    _, m = run(scn, pol)
    assert pol.source and pol.timings and pol.status in ("Optimal", "Time limit reached")
    for name in policies.names():
        if name == "optimal":
            continue
        other = simulate(scn, policies.make(name))
        if validate(scn, other.segments)[0]:
            continue
        value = account(scn, other.segments).metrics["objective_cny"]
        assert m["objective_cny"] <= value + 1e-6 * max(1.0, value), name
    assert lower_bound(scn).value <= m["objective_cny"] + 1e-6 * max(1.0, m["objective_cny"])


@pytest.mark.parametrize("seed", range(4))
def test_run_count_estimate_is_close(seed):
    scn = random_scenario(3000 + seed)
    problem = build_problem(scn)
    for dt, w in ((0.5, 24.0), (1.0, 12.0)):
        listed = len(_candidate_runs(problem, {}, dt, w).job)
        assert 0.8 * listed - 10 <= _count_runs(problem, dt, w) <= 1.2 * listed + 10 * len(scn.jobs)


def test_a_big_gang_without_deadline_waits_past_its_window():
    # one cheap 4-GPU a800 pool and a dear h100 one; "long" (4 GPUs, 40 h, a800 only, no
    # deadline) and "urgent" (4 GPUs, 2 h, due 33 h after it arrives at 30). Every heuristic
    # starts "long" at 0, so "urgent" would go to the h100s: 4 x 1 h x 40 = 160 CNY against
    # 4 x 2 h x 4 = 32 on the a800s. The best plan lets "long" wait until 32, past the window
    # its arrival alone would give it (24 h): its long window reaches a window past the horizon.
    site = pool_site(gpus={"a800": {"count": 4, "cny_per_gpu_h": 4.0}, "h100": {"count": 4, "cny_per_gpu_h": 40.0}})
    jobs = [{"id": "long", "submit_h": 0, "gpus": 4, "work_h": 40, "origin": "west", "gpu_types": ["a800"]},
            {"id": "urgent", "submit_h": 30, "gpus": 4, "work_h": 2, "origin": "west", "deadline_h": 33}]
    scn = scenario([site], jobs, horizon_h=36)
    pol = policies.make("optimal")
    pol.time_limit_s = 10.0
    result, m = run(scn, pol)
    where = {s.job_id: (s.gpu_type, s.start_h) for s in result.segments}
    assert pol.long_jobs >= 1
    assert where["urgent"] == ("a800", pytest.approx(30.0))
    assert where["long"][1] >= 32.0 - 1e-6
    assert m["gpu_cost_cny"] == pytest.approx(4 * 40 * 4.0 + 4 * 2 * 4.0)
