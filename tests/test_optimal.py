"""The offline `optimal` policy: hand cases whose optimum is known, valid schedules, never worse
than fifo (or any online policy) on random small scenarios, never below the lower bound."""

from __future__ import annotations

import pytest

from suanli.accounting import account, validate
from suanli.errors import UserError
from suanli.scheduling import policies
from suanli.scheduling.bound import lower_bound
from suanli.scheduling.policies.optimal import Optimal
from suanli.sim.engine import simulate
from test_bound import pool_site, random_scenario, scenario


def run(scn, policy):
    result = simulate(scn, policy)
    violations, outcomes = validate(scn, result.segments)
    assert violations == [], violations[:3]
    return result, account(scn, result.segments, outcomes=outcomes).metrics


def optimal(**options):
    p = policies.make("optimal")
    for k, v in options.items():
        setattr(p, k, v)
    return p


def test_registered_and_offline():
    p = policies.make("optimal")
    assert isinstance(p, Optimal) and p.offline is True and "optimal" in policies.names()


def test_sequencing_by_deadline_known_optimum():
    # one 4-GPU pool at 4 CNY/GPU-h, no energy prices; two 4-GPU jobs of 2 h submitted at 0.
    # fifo runs A first and B (deadline 2) is 2 h late on 4 GPUs: 8 * 50 = 400 on top of 64.
    # The optimum runs B first: 64.
    jobs = [{"id": "A", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "west", "deadline_h": 4},
            {"id": "B", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "west", "deadline_h": 2}]
    scn = scenario([pool_site()], jobs)
    _, fifo = run(scn, policies.make("fifo"))
    assert fifo["objective_cny"] == pytest.approx(464.0)
    pol = optimal()
    result, m = run(scn, pol)
    assert m["objective_cny"] == pytest.approx(64.0)
    assert {(s.job_id, s.start_h) for s in result.segments} == {("B", 0.0), ("A", 2.0)}
    assert pol.status == "Optimal" and pol.gap == pytest.approx(0.0, abs=1e-4)
    assert lower_bound(scn).value == pytest.approx(64.0, rel=1e-5)


def test_waits_for_the_cheap_tariff_known_optimum():
    # 2 a800 (1 kW) for 2 h; tariff 1.0 but 0.1 in hours 6 and 7; deadline 12.
    # fifo starts at 0: 16 + 2.0; the optimum starts at 6: 16 + 0.2.
    site = pool_site(grid={"cny_per_kwh": [1.0] * 6 + [0.1] * 2 + [1.0] * 16})
    scn = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 2, "origin": "west",
                             "deadline_h": 12}], horizon_h=12)
    assert run(scn, policies.make("fifo"))[1]["objective_cny"] == pytest.approx(18.0)
    result, m = run(scn, optimal())
    assert m["objective_cny"] == pytest.approx(16.2)
    assert result.segments[0].start_h == pytest.approx(6.0)
    assert lower_bound(scn).value == pytest.approx(16.2, rel=1e-5)


def test_avoids_the_outage_by_running_at_the_backup_known_optimum():
    # tests/data/tiny-outage.yaml as a dict: a-1 fails over [2.5, 4); the whole job fits at b-1
    # from 0.002 (9 GB over 10 Gbit/s): 2 x 6 h x 5 + transfer 0.9 + 6 kWh x 0.5 + carbon 0.3 = 64.2
    raw_sites = [
        {"id": "a-1", "city": "beijing", "gpus": {"a800": {"count": 4, "cny_per_gpu_h": 10.0}},
         "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.5}, "backup": "b-1"},
        {"id": "b-1", "city": "ulanqab", "gpus": {"a800": {"count": 4, "cny_per_gpu_h": 5.0}},
         "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.5}},
    ]
    scn = scenario(raw_sites, [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 6, "checkpoint_h": 1,
                                "origin": "beijing", "data_gb": 9, "deadline_h": 7}],
                   [{"type": "outage", "site": "a-1", "start_h": 2.5, "end_h": 4}],
                   horizon_h=12, gpu_types={"a800": {"power_kw": 0.5, "speed": 1.0}},
                   cities={"beijing": {"lat": 39.9, "lon": 116.4}, "ulanqab": {"lat": 41.03, "lon": 113.13}},
                   links=[{"a": "beijing", "b": "ulanqab", "gbps": 10, "latency_ms": 5, "cny_per_gb": 0.1}],
                   objective={"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                              "dr_cny_per_kwh": 10})
    assert run(scn, policies.make("fifo"))[1]["objective_cny"] == pytest.approx(94.475)
    result, m = run(scn, optimal())
    assert m["objective_cny"] == pytest.approx(64.2)
    assert [(s.site, s.start_h) for s in result.segments] == [("b-1", pytest.approx(0.002))]


def test_a_placement_voided_by_an_outage_is_deferred_then_placed_as_planned():
    # j1 holds all 4 GPUs over [0, 2); j2 (1 h) must wait, and [2, 3) meets the outage [2.5, 4):
    # the plan puts j2 at 4 (deadline 5). It is placed at 0, voided at 2.5 when the site goes
    # down, deferred, and placed again at 4. fifo instead starts j2 at 2 and loses it at 2.5.
    jobs = [{"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "west", "deadline_h": 2},
            {"id": "j2", "submit_h": 0, "gpus": 4, "work_h": 1, "origin": "west", "deadline_h": 5}]
    scn = scenario([pool_site()], jobs, [{"type": "outage", "site": "w1", "start_h": 2.5, "end_h": 4}])
    _, fifo = run(scn, policies.make("fifo"))
    assert fifo["objective_cny"] == pytest.approx(32 + 8 + 16)
    result, m = run(scn, optimal())
    assert m["objective_cny"] == pytest.approx(48.0)
    assert [(s.job_id, s.start_h, s.end_h) for s in result.segments] == [("j1", 0.0, 2.0), ("j2", 4.0, 5.0)]


def test_submitted_while_its_site_is_down_it_waits_for_the_recovery():
    scn = scenario([pool_site()], [{"id": "j1", "submit_h": 1, "gpus": 2, "work_h": 1, "origin": "west"}],
                   [{"type": "outage", "site": "w1", "start_h": 0.5, "end_h": 2}])
    result, m = run(scn, optimal())
    assert [(s.start_h, s.end_h) for s in result.segments] == [(2.0, 3.0)]
    assert m["objective_cny"] == pytest.approx(8.0)


def test_leaves_a_job_unfinished_when_that_is_cheaper_and_rejects_what_no_pool_can_host():
    jobs = [{"id": "dear", "submit_h": 0, "gpus": 4, "work_h": 10, "origin": "west"},     # 160 > 100
            {"id": "big", "submit_h": 0, "gpus": 16, "work_h": 1, "origin": "west"}]      # no pool
    scn = scenario([pool_site()], jobs, objective={"unfinished_cny": 100})
    result, m = run(scn, optimal())
    assert m["jobs_unfinished"] == 2 and m["objective_cny"] == pytest.approx(200.0)
    assert set(result.rejected) == {"dear", "big"}


def test_refuses_scenarios_too_big_for_the_model():
    jobs = [{"id": f"j{i}", "submit_h": 0, "gpus": 1, "work_h": 1, "origin": "west"} for i in range(5)]
    scn = scenario([pool_site()], jobs)
    with pytest.raises(UserError, match="too many"):
        simulate(scn, optimal(max_jobs=4))
    with pytest.raises(UserError, match="start variables"):
        simulate(scn, optimal(max_runs=10))


def test_decide_before_prepare_is_an_error():
    from suanli.scheduling.state import PendingJob

    scn = scenario([pool_site()], [{"id": "j1", "submit_h": 0, "gpus": 1, "work_h": 1, "origin": "west"}])
    with pytest.raises(RuntimeError, match="prepare"):
        Optimal().decide(None, [PendingJob(scn.jobs[0], 1.0, 0.0)])


@pytest.mark.parametrize("seed", range(25))
def test_random_small_scenarios_valid_never_worse_than_online_policies_never_below_the_bound(seed):
    scn = random_scenario(1000 + seed)
    pol = optimal(time_limit_s=20.0)
    _, m = run(scn, pol)
    assert pol.status in ("Optimal", "Time limit reached") and pol.source
    for name in policies.names():
        if name == "optimal":
            continue
        other = simulate(scn, policies.make(name))
        if validate(scn, other.segments)[0]:
            continue                                  # another policy's bug is not this test's subject
        value = account(scn, other.segments).metrics["objective_cny"]
        assert m["objective_cny"] <= value + 1e-6 * max(1.0, value), name
    b = lower_bound(scn)
    assert b.value <= m["objective_cny"] + 1e-6 * max(1.0, m["objective_cny"])
    if m["jobs_unfinished"] == 0 and m["late_gpu_h"] == 0:
        assert b.deadline_value is not None
        assert b.deadline_value <= m["objective_cny"] + 1e-6 * max(1.0, m["objective_cny"])
