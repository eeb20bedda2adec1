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


def _two_sites() -> dict:
    """The lax job of `_scenario` at east-1, and a second site, west-1, where a stream of small
    jobs arrives: they never touch east-1, so the lax job's held plan has no reason to move."""
    scn = _scenario()
    scn["cities"]["west"] = {"lat": 36.0, "lon": 104.0}
    scn["links"] = [{"a": "east", "b": "west", "gbps": 10, "latency_ms": 30, "cny_per_gb": 0.1}]
    scn["sites"].append({"id": "west-1", "city": "west", "gpus": {"a800": {"count": 8, "cny_per_gpu_h": 5.0}},
                         "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 0.2}})
    scn["jobs"] = [{**scn["jobs"][0], "max_rtt_ms": 5}] + [
        {"id": f"w{i}", "submit_h": 0.1 + 0.1 * i, "gpus": 1, "work_h": 0.5, "origin": "west", "max_rtt_ms": 5}
        for i in range(10)]
    return scn


def test_a_held_plan_nothing_touches_is_kept_without_pricing_it_again():
    lazy, eager = Suanli(), Suanli(lazy_replan=False)
    runs = {}
    for name, policy in (("lazy", lazy), ("eager", eager)):
        scn = parse_scenario(_two_sites(), "replan")
        res = simulate(scn, policy)
        assert validate(scn, res.segments)[0] == []
        runs[name] = {s.job_id: (s.site, s.start_h) for s in res.segments}
    assert lazy._offered == 11                         # offered again at each of the 10 arrivals, and at 2 h
    assert lazy._replanned == 1                        # priced again only at its planned start,
    assert runs["lazy"]["lax"] == ("east-1", 2.0)      # where it is committed, as planned
    assert eager._replanned == eager._offered          # eager: priced again every time it comes back


def _uncertain_two_sites(**more) -> dict:
    """`_two_sites` written for uncertainty: the lax job has a window (`max_wait_h`), and no
    forecast is given (perfect series)."""
    scn = _two_sites()
    scn["jobs"][0] = {**scn["jobs"][0], "max_wait_h": 12.0, **more}
    return scn


def _lax_answers(policy: Suanli, scn: dict) -> list[tuple[float, str, bool]]:
    """Each answer `policy` gave for the lax job: (when, Defer or Place, whether it was priced again
    rather than kept as it was)."""
    answers: list[tuple[float, str, bool]] = []
    decide = policy.decide

    def spy(view, jobs):
        before = policy._replanned
        out = decide(view, jobs)
        answers.extend((view.now, type(d).__name__, policy._replanned > before) for d in out if d.job_id == "lax")
        return out

    policy.decide = spy                        # type: ignore[method-assign]
    parsed = parse_scenario(scn, "replan")
    res = simulate(parsed, policy)
    assert validate(parsed, res.segments)[0] == []
    return answers


def test_in_a_scenario_written_for_uncertainty_held_plans_are_priced_again_every_hour():
    # the lax job waits for the cheap tariff at 2 h; nothing touches east-1, so in an older
    # scenario its plan is kept as it is until its planned start ...
    old = _lax_answers(Suanli(), _two_sites())
    assert [t for t, _, priced in old if priced] == [2.0]
    # ... but in one written for uncertainty it is priced again at 1 h, a new hour, forecasts or
    # not (as it would be with them). By then the west jobs keep the network busy enough that
    # the delay price outweighs the dearer hour: it starts at once
    new = _lax_answers(Suanli(), _uncertain_two_sites())
    assert [t for t, _, priced in new if priced] == [1.0]
    assert new[-1][:2] == (1.0, "Place")


def test_in_a_scenario_written_for_uncertainty_the_budget_grows_with_the_jobs():
    # a budget of nothing: an older scenario commits the lax job's plan the first time it comes
    # back (0.1 h); one written for uncertainty has REPLAN_PER_JOB more per job seen, so it holds on
    old = _lax_answers(Suanli(replan_budget=0), _two_sites())
    new = _lax_answers(Suanli(replan_budget=0), _uncertain_two_sites())
    assert [a[:2] for a in old[:2]] == [(0.0, "Defer"), (0.1, "Place")]
    assert [a[:2] for a in new[:2]] == [(0.0, "Defer"), (0.1, "Defer")]
