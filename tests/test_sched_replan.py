"""suanli's re-planning: held plans, the queue re-planned most urgent first, and its budget."""

from __future__ import annotations

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.scheduling.policies.suanli import Suanli
from suanli.scheduling.state import Defer
from suanli.sim.engine import simulate


def _scenario() -> dict:
    """One 8-GPU pool. A long job without a deadline arrives first and would rather wait for the
    cheap night tariff; a full-pool gang with a tight deadline arrives an hour later."""
    return {
        "name": "replan", "horizon_h": 24,
        "gpu_types": {"a800": {"power_kw": 0.4, "speed": 1.0}},
        "cities": {"east": {"lat": 31.2, "lon": 121.5}},
        "links": [],
        "sites": [{"id": "east-1", "city": "east",
                   "gpus": {"a800": {"count": 8, "cny_per_gpu_h": 5.0}},
                   "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": [3.0] * 2 + [0.1] * 22}}],
        "jobs": [
            {"id": "lax", "submit_h": 0.0, "gpus": 2, "work_h": 6.0, "origin": "east"},
            {"id": "gang", "submit_h": 1.0, "gpus": 8, "work_h": 3.0, "origin": "east", "deadline_h": 4.5},
        ],
        "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                      "dr_cny_per_kwh": 10},
    }


def _run(policy: Suanli) -> tuple[dict, dict[str, tuple[float, float]]]:
    scn = parse_scenario(_scenario(), "replan")
    res = simulate(scn, policy)
    assert validate(scn, res.segments)[0] == []
    return account(scn, res.segments).metrics, {s.job_id: (s.start_h, s.end_h) for s in res.segments}


def test_a_held_plan_gives_way_to_a_more_urgent_job():
    metrics, runs = _run(Suanli())
    assert metrics["late_gpu_h"] == 0.0
    assert runs["gang"][0] == 1.0              # starts at once: the lax job's plan was only held
    assert runs["lax"][0] >= runs["gang"][1]   # and is placed again after it


def test_without_holding_the_first_plan_is_committed_and_the_gang_is_late():
    metrics, runs = _run(Suanli(commit_within_h=None))
    assert runs["lax"][0] >= 2.0               # it waited for the cheap hours, committed
    assert metrics["late_gpu_h"] > 0.0


def test_once_the_budget_is_spent_every_plan_is_committed():
    policy = Suanli(replan_budget=0)
    scn = parse_scenario(_scenario(), "replan")
    simulate(scn, policy)
    assert policy._replanned == 1              # the lax job's plan came back once, then was committed
    assert not policy._holding


def test_a_budget_of_nothing_holds_at_most_the_first_call():
    scn = parse_scenario(_scenario(), "replan")
    calls: list[int] = []
    policy = Suanli(replan_budget=0, replan_cells=0)
    decide = policy.decide

    def counting(view, jobs):
        out = decide(view, jobs)
        calls.append(sum(isinstance(d, Defer) and d.hold is not None for d in out))
        return out

    policy.decide = counting                   # type: ignore[method-assign]
    simulate(scn, policy)
    assert calls[0] <= 1 and sum(calls[1:]) == 0


def test_re_planning_is_deterministic():
    assert _run(Suanli())[1] == _run(Suanli())[1]
