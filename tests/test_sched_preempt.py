"""Preemption: suanli stops a running job (keeping its whole checkpoints) when a job that would
otherwise be late gains more than the stop costs; the simulator cuts the run and places the
rest in the same answer. Hand-made cases, with the numbers worked out in each docstring."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.scheduling.policies.suanli import Suanli
from suanli.scheduling.state import Place, Preempt
from suanli.sim.engine import PolicyError, simulate
from test_policies import random_scenario


def _scenario(lax: dict, *urgent: dict) -> dict:
    """One 16-GPU a800 pool at 5 CNY/GPU-h, no energy prices: rental and lateness (50 CNY per
    late GPU-hour) are all that cost."""
    return {
        "name": "preempt", "horizon_h": 24,
        "gpu_types": {"a800": {"power_kw": 0.4, "speed": 1.0}},
        "cities": {"east": {"lat": 31.2, "lon": 121.5}},
        "links": [],
        "sites": [{"id": "big-1", "city": "east", "gpus": {"a800": {"count": 16, "cny_per_gpu_h": 5.0}}}],
        "jobs": [{"id": "lax", "submit_h": 0.0, "gpus": 16, "origin": "east", **lax},
                 *({"gpus": 16, "origin": "east", **u} for u in urgent)],
        "objective": {"carbon_cny_per_kg": 0.0, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                      "dr_cny_per_kwh": 0},
    }


def _run(doc: dict, policy: Suanli | None = None, preempt: bool = True):
    scn = parse_scenario(doc, "preempt")
    res = simulate(scn, policy or Suanli(), preempt=preempt)
    assert validate(scn, res.segments)[0] == []
    runs: dict[str, list[tuple[float, float]]] = {}
    for s in res.segments:
        runs.setdefault(s.job_id, []).append((round(s.start_h, 6), round(s.end_h, 6)))
    return res, account(scn, res.segments).metrics, runs


URGENT = {"id": "urgent", "submit_h": 2.5, "work_h": 1.0, "deadline_h": 4.0}


def test_a_lax_job_is_stopped_for_an_urgent_gang_and_keeps_its_checkpoints():
    """lax runs [0, 10). urgent (16 GPUs, 1 h, due at 4) arrives at 2.5: waiting for lax would
    make it 7 h late (5,600 CNY). Stopped at 2.5, lax keeps its 2 whole checkpoints (1 h each)
    and runs its last 8 h after urgent: 0.5 h done again, 40 CNY."""
    res, metrics, runs = _run(_scenario({"work_h": 10.0, "checkpoint_h": 1.0}, URGENT))
    assert res.preemptions == 1
    assert runs["urgent"] == [(2.5, 3.5)]
    assert runs["lax"] == [(0.0, 2.5), (3.5, 11.5)]
    assert metrics["late_gpu_h"] == 0.0 and metrics["jobs_finished"] == 2
    assert metrics["objective_cny"] == pytest.approx((2.5 + 1.0 + 8.0) * 16 * 5.0)
    kinds = [d.kind for d in res.explanations["lax"]]
    assert kinds[-2:] == ["preempt", "place"]
    assert "urgent" in res.explanations["lax"][-2].explain.note


def test_without_preemption_the_urgent_gang_waits():
    doc = _scenario({"work_h": 10.0, "checkpoint_h": 1.0}, URGENT)
    for policy, preempt in ((Suanli(preempt=False), True), (Suanli(), False)):   # the policy's or the caller's no
        res, metrics, runs = _run(doc, policy, preempt)
        assert res.preemptions == 0
        assert runs["lax"] == [(0.0, 10.0)] and runs["urgent"] == [(10.0, 11.0)]
        assert metrics["late_gpu_h"] == pytest.approx(7.0 * 16)


def test_no_stop_when_the_work_lost_costs_more_than_the_lateness_saved():
    """lax (3 h, no checkpoints) would lose 2.5 h of work (16 GPUs x 2.5 h x 5 = 200 CNY) to save
    urgent 0.1 h of lateness (80 CNY): it runs on."""
    urgent = {**URGENT, "deadline_h": 3.9}
    res, metrics, runs = _run(_scenario({"work_h": 3.0}, urgent))
    assert res.preemptions == 0
    assert runs["lax"] == [(0.0, 3.0)] and runs["urgent"] == [(3.0, 4.0)]


def test_without_checkpoints_a_stop_starts_the_job_again_when_that_still_pays():
    """Same, but urgent due at 3.6 h waits 0.4 h late otherwise (320 CNY): stopping lax costs
    its 2.5 h (200 CNY), so it is stopped and starts again from nothing."""
    urgent = {**URGENT, "deadline_h": 3.6}
    res, metrics, runs = _run(_scenario({"work_h": 3.0}, urgent))
    assert res.preemptions == 1
    assert runs["lax"] == [(0.0, 2.5), (3.5, 6.5)] and runs["urgent"] == [(2.5, 3.5)]


def _chain(n: int) -> list[dict]:
    """n urgent gangs, one every 2.5 h from 2.5 h, each due 1.5 h after it arrives."""
    return [{"id": f"urgent-{k}", "submit_h": 2.5 * k, "work_h": 1.0, "deadline_h": 2.5 * k + 1.5}
            for k in range(1, n + 1)]


def test_a_job_is_stopped_at_most_as_often_as_allowed():
    """Each urgent gang stops lax while lax has had fewer than 3 segments (the default): three
    stops, then the fourth gang waits for lax to finish."""
    res, metrics, runs = _run(_scenario({"work_h": 10.0, "checkpoint_h": 1.0}, *_chain(4)))
    assert res.preemptions == 3
    assert [s for s, _ in runs["lax"]] == [0.0, 3.5, 6.0, 8.5]
    assert runs["urgent-4"][0][0] == pytest.approx(runs["lax"][-1][1])     # after lax's last segment
    assert metrics["late_gpu_h"] > 0.0


def test_with_one_segment_allowed_a_job_is_never_stopped_twice():
    res, metrics, runs = _run(_scenario({"work_h": 10.0, "checkpoint_h": 1.0}, *_chain(2)),
                              Suanli(preempt_max_segments=1))
    assert res.preemptions == 1
    assert runs["lax"] == [(0.0, 2.5), (3.5, 11.5)]
    assert runs["urgent-2"] == [(11.5, 12.5)]


def test_the_simulator_refuses_a_stop_of_a_job_that_is_not_running():
    doc = _scenario({"work_h": 10.0}, URGENT)

    class StopsTheWaiting:
        name = "bad"

        def decide(self, view, jobs):
            out = []
            for pj in jobs:
                if pj.job.id == "urgent":
                    out.append(Preempt("urgent", "why not"))
                out.append(Place(pj.job.id, "big-1", "a800", view.now, view.now + view.duration_h(pj, "a800")))
            return out

    with pytest.raises(PolicyError, match="preempted twice, or both offered and preempted"):
        simulate(parse_scenario(doc, "preempt"), StopsTheWaiting())


def test_the_simulator_wants_an_answer_for_the_rest_of_a_stopped_job():
    doc = _scenario({"work_h": 10.0}, URGENT)

    class ForgetsTheRest:
        name = "bad"

        def decide(self, view, jobs):
            out = [Place(pj.job.id, "big-1", "a800", view.now, view.now + view.duration_h(pj, "a800"))
                   for pj in jobs]
            if view.now == 2.5:
                out.insert(0, Preempt("lax", "make room"))
            return out

    with pytest.raises(PolicyError, match=r"no decision for jobs \['lax'\]"):
        simulate(parse_scenario(doc, "preempt"), ForgetsTheRest())

    short = _scenario({"work_h": 1.0}, URGENT)     # lax is done by 2.5
    with pytest.raises(PolicyError, match="'lax', which is not running now"):
        simulate(parse_scenario(short, "preempt"), ForgetsTheRest())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scn=random_scenario())
def test_stops_keep_the_schedule_valid_and_no_job_is_cut_more_than_allowed(scn):
    """Random small networks (about one in five stops a run): the schedule stays valid, and a
    job is stopped only while it has had fewer than 3 segments (outage cuts count too)."""
    res = simulate(scn, Suanli())
    assert validate(scn, res.segments)[0] == []
    segments: dict[str, int] = {}
    for s in res.segments:
        segments[s.job_id] = segments.get(s.job_id, 0) + 1
    outages = sum(e.type == "outage" for e in scn.events)
    assert all(n <= 4 + outages for n in segments.values())
    assert res.preemptions <= sum(n - 1 for n in segments.values())
