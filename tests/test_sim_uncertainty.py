"""The simulator under uncertainty (MODEL.md §7): policies plan with estimates and forecasts,
the accounting holds them to the true work and the true series.

Scenario (tests/test_sim.py's BASE): east-1 (a800 x4 at 8 CNY/GPU-h) in east, west-1 (a800 x4
at 6) in west. Jobs from east with `max_rtt_ms: 0` can only run at east-1 (rtt 0 ms there,
20 ms to west-1), so they queue on one pool of 4 GPUs and every number is easy to check.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.accounting import account, validate
from suanli.model.schedule import Segment
from suanli.model.schema import Forecast, ForecastError
from suanli.scheduling import policies
from suanli.scheduling.state import Defer, Place
from suanli.sim.engine import simulate
from test_sim import _random_scenario, scenario


def east_job(id, work_h, submit_h=0.0, **more):
    return {"id": id, "submit_h": submit_h, "gpus": 4, "work_h": work_h, "origin": "east", "max_rtt_ms": 0, **more}


def run(scn, policy="fifo"):
    result = simulate(scn, policies.make(policy))
    violations, outcomes = validate(scn, result.segments)
    assert violations == []
    return result, outcomes, account(scn, result.segments, outcomes=outcomes).metrics


def test_an_overrun_voids_the_placement_behind_it_which_is_placed_again_after_it():
    # j1 is estimated at 2 h but needs 3: fifo places j1 [0, 2) and j2 right behind it, [2, 4).
    # At 2 j1 is still running: booked one more hour, [2, 3), which j2's placement needs, so j2's
    # placement is voided and offered again; the pool is free from 3 (j1 ends then): j2 [3, 5).
    scn = scenario([east_job("j1", 2, actual_work_h=3), east_job("j2", 2)])
    result, outcomes, m = run(scn)
    assert result.segments == [Segment("j1", "east-1", "a800", 4, 0.0, 3.0),
                               Segment("j2", "east-1", "a800", 4, 3.0, 5.0)]
    assert result.voided == 1
    assert outcomes["j1"].completion_h == 3.0 and outcomes["j2"].completion_h == 5.0
    assert m["gpu_cost_cny"] == pytest.approx((3 + 2) * 4 * 8)     # 160: the true 3 h are paid


def test_a_long_overrun_is_booked_hour_by_hour_until_it_ends():
    # estimated 1 h, needs 3.5 h: booked [0, 1), then [1, 2), [2, 3), [3, 3.5); j2 (submitted at
    # 0.5, estimated 1 h) is placed behind the booking each time and voided each time but the last
    scn = scenario([east_job("j1", 1, actual_work_h=3.5), east_job("j2", 1, submit_h=0.5)])
    result, outcomes, _ = run(scn)
    assert result.segments == [Segment("j1", "east-1", "a800", 4, 0.0, 3.5),
                               Segment("j2", "east-1", "a800", 4, 3.5, 4.5)]
    assert result.voided == 3          # j2 placed at 1, 2 and 3, voided at 1, 2 and 3


def test_an_early_finish_frees_the_gpus_from_then_on():
    # j1 estimated 3 h, needs 2: it ends at 2. j2 (submitted at 0) was placed behind the
    # estimate, [3, 5), and keeps its place; j3 (submitted at 2.5, 0.5 h) finds [2.5, 3) free,
    # which it would not without the early finish (it would wait until 5).
    scn = scenario([east_job("j1", 3, actual_work_h=2), east_job("j2", 2), east_job("j3", 0.5, submit_h=2.5)])
    result, outcomes, m = run(scn)
    assert result.segments == [Segment("j1", "east-1", "a800", 4, 0.0, 2.0),
                               Segment("j3", "east-1", "a800", 4, 2.5, 3.0),
                               Segment("j2", "east-1", "a800", 4, 3.0, 5.0)]
    assert m["gpu_cost_cny"] == pytest.approx((2 + 0.5 + 2) * 4 * 8)


def test_a_job_that_ends_early_is_not_in_the_way_of_an_outage():
    # j1 would end at 3 by its estimate but really ends at 1.5; an outage at 2 finds nothing to cut
    scn = scenario([east_job("j1", 3, actual_work_h=1.5)],
                   [{"type": "outage", "site": "east-1", "start_h": 2, "end_h": 4}])
    result, _, _ = run(scn)
    assert result.segments == [Segment("j1", "east-1", "a800", 4, 0.0, 1.5)] and result.cuts == 0


def test_an_overrun_cut_by_an_outage_keeps_its_checkpoints_and_the_rest_is_the_true_rest():
    # estimated 2 h, needs 5, checkpoints every hour. Booked [0, 2), then [2, 3); the outage at 2.5
    # cuts it: 2 h kept. The policy sees a rest of 1 h (one more lease: its estimate is used up),
    # and places it at west-1 (east-1 is down; no rtt bound for this job): it really needs 3 h there.
    job = {"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 2, "actual_work_h": 5, "checkpoint_h": 1,
           "origin": "east"}
    scn = scenario([job], [{"type": "outage", "site": "east-1", "start_h": 2.5, "end_h": 9}])
    seen = []

    class Watch:
        name = "watch"

        def __init__(self):
            self.fifo = policies.make("fifo")

        def decide(self, view, jobs):
            seen.extend((view.now, pj.remaining_work) for pj in jobs)
            return self.fifo.decide(view, jobs)

    result = simulate(scn, Watch())
    violations, outcomes = validate(scn, result.segments)
    assert violations == [] and outcomes["j1"].finished
    assert seen == [(0.0, 2.0), (2.5, 1.0)]
    assert result.segments == [Segment("j1", "east-1", "a800", 4, 0.0, 2.5),
                               Segment("j1", "west-1", "a800", 4, 2.5, 5.5)]


def test_wait_excess_is_priced_at_wait_cny_per_gpu_h_which_defaults_to_the_lateness_price():
    # the overrun case: j2 (max_wait_h 1) first starts at 3, 2 h past submit + 1: 4 GPUs x 2 h
    jobs = [east_job("j1", 2, actual_work_h=3), east_job("j2", 2, max_wait_h=1)]
    priced = (({"late_cny_per_gpu_h": 50}, 50), ({"late_cny_per_gpu_h": 50, "wait_cny_per_gpu_h": 7}, 7))
    for objective, price in priced:
        _, _, m = run(scenario(jobs, objective=objective))
        assert m["wait_excess_gpu_h"] == pytest.approx(8.0)
        assert m["objective_cny"] == pytest.approx(160 + price * 8.0)


def test_policies_see_the_estimate_never_the_true_work():
    scn = scenario([east_job("j1", 2, actual_work_h=3), east_job("j2", 2)])
    seen = []

    class Watch:
        name = "watch"

        def __init__(self):
            self.fifo = policies.make("fifo")

        def decide(self, view, jobs):
            assert all(j.actual_work_h is None for j in view.scenario.jobs)
            seen.extend((pj.job.id, pj.job.actual_work_h, pj.job.work_h, pj.remaining_work) for pj in jobs)
            return self.fifo.decide(view, jobs)

    simulate(scn, Watch())
    assert ("j1", None, 2.0, 2.0) in seen and all(s[1] is None for s in seen)


def test_the_offline_reference_plans_with_the_true_work():
    scn = scenario([east_job("j1", 2, actual_work_h=3), east_job("j2", 2)], objective={"unfinished_cny": 1000})
    result, outcomes, _ = run(scn, "optimal")
    assert result.voided == 0 and all(o.finished for o in outcomes.values())
    assert sorted(s.length_h for s in result.segments) == [2.0, 3.0]


def test_a_hold_in_the_way_of_an_overrun_is_released_and_offered_again():
    # a policy that holds j2's run right behind j1's estimate; j1 overruns into it at 2, which
    # voids the hold and offers j2 again; it waits, and is placed when j1 ends at 2.5
    scn = scenario([east_job("j1", 2, actual_work_h=2.5), east_job("j2", 1, submit_h=1)])
    offered = []

    class Holder:
        name = "holder"

        def decide(self, view, jobs):
            out = []
            for pj in jobs:
                offered.append((view.now, pj.job.id))
                if pj.job.id == "j1":
                    out.append(Place("j1", "east-1", "a800", 0.0, 2.0))
                elif view.now < 2:
                    out.append(Defer("j2", "hold", hold=("east-1", "a800", 2.0, 3.0)))
                elif view.now == 2:             # its hold was voided: wait for the pool to free up
                    out.append(Defer("j2", "busy"))
                else:
                    out.append(Place("j2", "east-1", "a800", view.now, view.now + 1))
            return out

    result = simulate(scn, Holder())
    assert offered == [(0.0, "j1"), (1.0, "j2"), (2.0, "j2"), (2.5, "j2")]
    assert result.voided == 1
    assert result.segments == [Segment("j1", "east-1", "a800", 4, 0.0, 2.5),
                               Segment("j2", "east-1", "a800", 4, 2.5, 3.5)]


@pytest.mark.parametrize("policy", ["fifo", "suanli", "cheapest", "greenest", "wait-awhile"])
@pytest.mark.parametrize("seed", range(12))
def test_schedules_stay_valid_when_estimates_are_wrong(seed, policy):
    # random scenarios (with outages) whose jobs need 0.3 to 3 times their estimate; every other
    # one with forecasts of renewables and carbon
    rng = random.Random(1000 + seed)
    scn = _random_scenario(random.Random(seed))
    jobs = [j.model_copy(update={"actual_work_h": round(j.work_h * rng.uniform(0.3, 3.0), 3)}) for j in scn.jobs]
    scn.jobs[:] = jobs
    if seed % 2:
        scn.forecast = Forecast(renewables=ForecastError(error=0.4, seed=seed), carbon=ForecastError(error=0.1))
    result = simulate(scn, policies.make(policy))
    violations, outcomes = validate(scn, result.segments)
    assert violations == []
    for job in scn.jobs:
        assert outcomes[job.id].finished or job.id in result.rejected or job.id in result.unplaced, job.id


def test_the_tiny_uncertain_scenario_worked_through_with_fifo():
    # tests/data/tiny-uncertain.yaml: j1 estimated 1 h on 2 x h100 really takes 1.5 h; j4 (4 x h100,
    # sh-1 only) placed behind the estimate at 1 is voided by the overrun and runs [1.5, 2);
    # j2 estimated 3 h on qy-1 ends early, 2.5 h after its data arrives at 0.51.
    from suanli.model.load import load_scenario
    scn = load_scenario("tests/data/tiny-uncertain.yaml")
    result, outcomes, m = run(scn)
    assert sorted(result.segments) == sorted([Segment("j1", "sh-1", "h100", 2, 0.0, 1.5),
                                              Segment("j4", "sh-1", "h100", 4, 1.5, 2.0),
                                              Segment("j2", "qy-1", "a800", 4, 0.51, pytest.approx(3.01)),
                                              Segment("j3", "qy-1", "a800", 1, 1.0, 2.0)])
    assert result.voided == 1
    # j4 first starts at 1.5, 1 h past submit 0 + max_wait_h 0.5: 4 GPU-h at 20 CNY; j2 starts in time
    assert m["wait_excess_gpu_h"] == pytest.approx(4.0)


def test_perfect_information_sees_the_true_work_and_no_forecast():
    plain = scenario([east_job("j1", 2)])
    assert plain.with_true_work() is plain
    scn = scenario([east_job("j1", 2, actual_work_h=3), east_job("j2", 2)],
                   forecast={"renewables": {"error": 0.3, "seed": 1}})
    truth = scn.with_true_work()
    assert [(j.work_h, j.actual_work_h) for j in truth.jobs] == [(3.0, None), (2.0, None)]
    assert truth.forecast is None and scn.jobs[0].work_h == 2.0          # the scenario is unchanged


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(factors=st.lists(st.floats(0.2, 4.0), min_size=6, max_size=6),
       checkpoint=st.sampled_from([None, 0.5, 1.0]), policy=st.sampled_from(["fifo", "suanli", "cheapest"]))
def test_property_every_job_finishes_on_its_true_work_whatever_the_estimates(factors, checkpoint, policy):
    # six jobs on two pools of 4, with an outage; each really needs `factor` times its estimate
    jobs = []
    for i, f in enumerate(factors):
        job = {"id": f"j{i}", "submit_h": 0.5 * i, "gpus": 1 + i % 4, "work_h": 1.0 + i % 3,
               "actual_work_h": round((1.0 + i % 3) * f, 4), "origin": "east" if i % 2 else "west",
               "max_wait_h": 1.0}
        if checkpoint:
            job["checkpoint_h"] = checkpoint
        jobs.append(job)
    scn = scenario(jobs, [{"type": "outage", "site": "east-1", "start_h": 2.25, "end_h": 3.5}],
                   forecast={"renewables": {"error": 0.3, "seed": 1}})
    result = simulate(scn, policies.make(policy))
    violations, outcomes = validate(scn, result.segments)
    assert violations == []
    assert all(o.finished for o in outcomes.values())


class _HoldUntil3:
    """Holds every job's run for [3, 4) (waking at 3) and places it when offered at 3; records
    when each job was offered."""
    name = "hold-until-3"

    def __init__(self):
        self.offered: list[float] = []

    def decide(self, view, jobs):
        out = []
        for pj in jobs:
            self.offered.append(view.now)
            if view.now < 3:
                out.append(Defer(pj.job.id, "later", hold=("east-1", "a800", 3.0, 3.0 + pj.remaining_work),
                                 retry_at=3.0))
            else:
                out.append(Place(pj.job.id, "east-1", "a800", 3.0, 3.0 + pj.remaining_work))
        return out


@pytest.mark.parametrize("field", ["max_wait_h", "actual_work_h", "forecast"])
def test_held_plans_come_back_every_hour_in_a_scenario_with_any_uncertainty_field(field):
    # forecasts or not: re-planning held plans must not hang on a forecast being there (a
    # perfect-information run would otherwise re-plan less than one with forecasts)
    more = {"max_wait_h": {"max_wait_h": 1.0}, "actual_work_h": {"actual_work_h": 1.0}}.get(field, {})
    scn = scenario([east_job("j", 1.0, submit_h=0.5, **more)])
    if field == "forecast":
        scn.forecast = Forecast(renewables=ForecastError(error=0.3, seed=1))
    policy = _HoldUntil3()
    result = simulate(scn, policy)
    assert policy.offered == [0.5, 1.0, 2.0, 3.0]
    assert result.segments == [Segment("j", "east-1", "a800", 4, 3.0, 4.0)]


def test_a_scenario_without_the_uncertainty_fields_has_no_hourly_event():
    # older scenarios keep their schedules exactly: the held plan comes back only at its wake-up
    scn = scenario([east_job("j", 1.0, submit_h=0.5)])
    policy = _HoldUntil3()
    result = simulate(scn, policy)
    assert policy.offered == [0.5, 3.0]
    assert result.segments == [Segment("j", "east-1", "a800", 4, 3.0, 4.0)]
