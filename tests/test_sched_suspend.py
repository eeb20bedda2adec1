"""Suspend and resume: suanli may plan a checkpointing job in pieces, run in the cheapest hours
(carbon and energy priced as the objective prices them) within its deadline and max_wait_h, each
piece but the last a whole number of checkpoints; the simulator books every piece, stops the run at
each piece's end and offers the rest again at the next one's start (MODEL.md §3.7, §7).

The hand-made cases use one pool of 1 kW GPUs at no rental, carbon at 1 CNY/kg and no tariff, so the
objective is the carbon: kg = GPU-hours x intensity of the hours run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.model.schedule import kept_work
from suanli.scheduling.policies.suanli import Suanli
from suanli.scheduling.state import Place
from suanli.sim.engine import PolicyError, simulate

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT.parent / "shared" / "tools" / "checker.py"
MINUTE = 1 / 60
DIRTY, CLEAN = 1.0, 0.1


def doc(jobs: list[dict], carbon: list[float], count: int = 8, **over) -> dict:
    raw = {
        "name": "suspend", "horizon_h": 24,
        "gpu_types": {"a800": {"power_kw": 1.0, "speed": 1.0}},
        "cities": {"east": {"lat": 31.2, "lon": 121.5}},
        "links": [],
        "sites": [{"id": "east-1", "city": "east", "gpus": {"a800": {"count": count, "cny_per_gpu_h": 0.0}},
                   "grid": {"carbon_kg_per_kwh": carbon + [DIRTY] * (48 - len(carbon)), "cny_per_kwh": 0.0}}],
        "jobs": [{"origin": "east", "gpus": 1, **j} for j in jobs],
        "objective": {"carbon_cny_per_kg": 1.0, "late_cny_per_gpu_h": 50, "unfinished_cny": 1000,
                      "dr_cny_per_kwh": 0, "wait_cny_per_gpu_h": 50},
    }
    raw.update(over)
    return raw


def run(raw: dict, policy: Suanli | None = None):
    scn = parse_scenario(raw, "suspend")
    res = simulate(scn, policy or Suanli())
    violations, outcomes = validate(scn, res.segments)
    assert violations == []
    runs: dict[str, list[tuple[float, float]]] = {}
    for s in res.segments:
        runs.setdefault(s.job_id, []).append((round(s.start_h, 6), round(s.end_h, 6)))
    return scn, res, account(scn, res.segments, outcomes=outcomes).metrics, runs


# dirty, clean, dirty, clean, dirty ...: no two clean hours touch
ALTERNATING = [DIRTY, CLEAN] * 12


def test_a_checkpointing_job_runs_in_the_clean_hours_when_that_pays():
    """2 h of work, window 2 h, so it must end by 0 + 2 + 2 = 4. One run costs at least
    1 h dirty + 1 h clean = 1.1 kg; in pieces it runs [1, 2) and [3, 4): 0.2 kg."""
    _, res, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE,
                                "max_wait_h": 2}], ALTERNATING))
    assert runs["j"] == [(1.0, 2.0), (3.0, 4.0)]
    assert m["carbon_kg"] == pytest.approx(0.2)
    assert m["jobs_finished"] == 1 and m["wait_excess_gpu_h"] == 0.0
    # the rest was offered again at the second piece's start, and placed there
    places = [d for d in res.explanations["j"] if d.kind == "place"]
    assert [d.at_h for d in places] == [1.0, 3.0]


def test_the_rest_offered_before_its_next_piece_keeps_its_plan():
    """Clean hours 1 and 10 only; j (2 h, window 9 h: ends by 11) runs [1, 2) and [10, 11). k
    arrives at 2.5: the simulator offers every held plan again then, j's rest among them (no
    deadline, its window spent), and it keeps [10, 11), 7.5 h on, rather than starting within
    the 6 h a job without a deadline may otherwise wait, in dirty hours."""
    carbon = [DIRTY] * 24
    carbon[1] = carbon[10] = CLEAN
    _, res, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE, "max_wait_h": 9},
                               {"id": "k", "submit_h": 2.5, "work_h": 0.5, "max_wait_h": 1}], carbon))
    assert runs["j"] == [(1.0, 2.0), (10.0, 11.0)]
    assert [d.at_h for d in res.explanations["j"] if d.kind == "place"] == [1.0, 10.0]


def test_without_suspend_or_without_checkpoints_it_runs_in_one_piece():
    job = {"id": "j", "submit_h": 0, "work_h": 2.0, "max_wait_h": 2}
    for policy, extra in ((Suanli(suspend=False), {"checkpoint_h": MINUTE}), (Suanli(), {})):
        _, _, m, runs = run(doc([{**job, **extra}], ALTERNATING), policy)
        assert len(runs["j"]) == 1
        assert m["carbon_kg"] == pytest.approx(1.1)


def test_no_split_when_the_clean_hours_already_touch():
    """Clean hours 2 and 3 together: one run [2, 4) is already the cheapest, so no pieces."""
    carbon = [DIRTY, DIRTY, CLEAN, CLEAN] + [DIRTY] * 20
    _, res, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE,
                                "max_wait_h": 2}], carbon))
    assert runs["j"] == [(2.0, 4.0)]
    assert m["carbon_kg"] == pytest.approx(0.2)


def test_no_split_when_no_hour_is_cheaper():
    _, _, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE,
                              "max_wait_h": 6}], [0.5] * 24))
    assert runs["j"] == [(0.0, 2.0)]


def test_the_deadline_bounds_the_pieces():
    """Window 10 h but deadline 3: only [0, 3) may be used; hour 1 is the only clean one there,
    so the pieces are [1, 2) then the first dirty hour that keeps the deadline."""
    _, _, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE,
                              "max_wait_h": 10, "deadline_h": 3.0}], ALTERNATING))
    assert runs["j"][-1][1] <= 3.0 + 1e-9
    assert m["late_gpu_h"] == 0.0
    assert m["carbon_kg"] == pytest.approx(1.1)


def test_pieces_off_the_hour_keep_whole_checkpoints():
    """Submitted at 0.3 with 10-minute checkpoints: the first piece may start at 0.3 or later,
    and each piece but the last is a whole number of checkpoints (nothing lost)."""
    c = 1 / 6
    carbon = [CLEAN, DIRTY, CLEAN, DIRTY, CLEAN] + [DIRTY] * 19
    scn, _, m, runs = run(doc([{"id": "j", "submit_h": 0.3, "work_h": 1.5, "checkpoint_h": c,
                                "max_wait_h": 3}], carbon))
    pieces = runs["j"]
    assert len(pieces) >= 2
    for a, b in pieces[:-1]:                 # (rounded to 1e-6 h by `run`)
        n = (b - a) / c
        assert abs(n - round(n)) * c < 2e-6
    assert sum(b - a for a, b in pieces) == pytest.approx(1.5)       # nothing run twice
    assert pieces[-1][1] <= 0.3 + 3 + 1.5 + 1e-9
    assert m["jobs_finished"] == 1


def test_long_checkpoints_give_pieces_of_whole_checkpoints():
    """Checkpoints every 0.4 h do not divide an hour: pieces are cut in blocks of 1.2 h from
    the ready time, and nothing is lost."""
    carbon = [CLEAN, CLEAN, DIRTY, DIRTY, CLEAN, CLEAN, DIRTY, DIRTY] + [DIRTY] * 16
    _, _, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.4, "checkpoint_h": 0.4,
                              "max_wait_h": 6}], carbon))
    pieces = runs["j"]
    assert len(pieces) == 2
    for a, b in pieces[:-1]:
        assert abs((b - a) / 0.4 - round((b - a) / 0.4)) * 0.4 < 2e-6
    assert sum(b - a for a, b in pieces) == pytest.approx(2.4)


class Fixed:
    """A policy that places each job as told (to test what the simulator does with pieces)."""

    name = "fixed"

    def __init__(self, plans: dict[str, list[tuple[float, float]]]):
        self.plans = plans

    def decide(self, view, jobs):
        out = []
        for pj in jobs:
            runs = [r for r in self.plans[pj.job.id] if r[0] >= view.now - 1e-9]
            (a, b), *more = runs
            out.append(Place(pj.job.id, "east-1", "a800", a, b, pieces=tuple(more)))
        return out


def test_work_lost_at_a_stop_off_a_checkpoint_is_run_again_and_paid_for():
    """Checkpoints every hour; a first piece of 1.5 h keeps 1 h (0.5 h lost, §3.7), so 2 h of
    work need a second piece of 1 h: 2.5 GPU-hours are run and paid for."""
    raw = doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": 1.0}], [0.5] * 24)
    raw["sites"][0]["gpus"]["a800"]["cny_per_gpu_h"] = 10.0
    scn = parse_scenario(raw, "suspend")
    res = simulate(scn, Fixed({"j": [(0.0, 1.5), (3.0, 4.0)]}))
    assert [(s.start_h, s.end_h) for s in res.segments] == [(0.0, 1.5), (3.0, 4.0)]
    violations, outcomes = validate(scn, res.segments)
    assert violations == []
    m = account(scn, res.segments, outcomes=outcomes).metrics
    assert m["jobs_finished"] == 1
    assert m["gpu_cost_cny"] == pytest.approx(25.0)
    assert m["carbon_kg"] == pytest.approx(2.5 * 0.5)


def test_pieces_that_do_not_cover_the_lost_work_are_refused():
    """The same 1.5 h first piece with a 0.5 h second: 1 h kept + 0.5 h < 2 h of work."""
    scn = parse_scenario(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": 1.0}], [0.5] * 24),
                         "suspend")
    with pytest.raises(PolicyError, match="keep"):
        simulate(scn, Fixed({"j": [(0.0, 1.5), (3.0, 3.5)]}))


def test_later_pieces_hold_their_gpus():
    """One GPU. j is planned [1, 2) and [3, 4); k (no checkpoints, 1 h, window 10 h) arrives at
    0.5 and must keep off both pieces, though hour 3 is as clean as hour 1."""
    _, _, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE, "max_wait_h": 2},
                             {"id": "k", "submit_h": 0.5, "work_h": 1.0, "max_wait_h": 10}],
                            ALTERNATING, count=1))
    assert runs["j"] == [(1.0, 2.0), (3.0, 4.0)]
    (a, b), = runs["k"]
    assert b <= 1.0 + 1e-9 or a >= 4.0 - 1e-9 or (a >= 2.0 - 1e-9 and b <= 3.0 + 1e-9)


def test_a_job_that_ends_early_gives_back_its_later_pieces():
    """Estimated 3 h, really 1 h: it ends inside its first piece; a second job that wants the
    one GPU in the hours held for the later pieces then gets them (after it arrives)."""
    _, res, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 3.0, "actual_work_h": 1.0,
                                "checkpoint_h": MINUTE, "max_wait_h": 4}], ALTERNATING, count=1))
    assert len(runs["j"]) == 1 and runs["j"][0][1] - runs["j"][0][0] == pytest.approx(1.0)
    assert m["jobs_finished"] == 1


def test_a_job_that_needs_more_overruns_its_last_piece():
    _, res, m, runs = run(doc([{"id": "j", "submit_h": 0, "work_h": 2.0, "actual_work_h": 2.5,
                                "checkpoint_h": MINUTE, "max_wait_h": 2}], ALTERNATING))
    assert runs["j"][0] == (1.0, 2.0)
    assert sum(b - a for a, b in runs["j"]) == pytest.approx(2.5)
    assert m["jobs_finished"] == 1 and res.overruns >= 1


def _outliving(count: int = 8) -> dict:
    """Class q is estimated 1 h; three jobs of it (no checkpoints, no wait) end first, at 0.25,
    0.25 and 4 h, so its learned lengths vary (ratios with the prior: 0.25 0.25 1 1 4). The probe
    j (q, 1-minute checkpoints, window 2 h) comes at 5 and really needs 3 h. Clean hours: 5, 8,
    10. j's plan is 1 h at 5 (the clean hour, ending at its window + estimate, 8); it has then
    done 1 h, so it can only be 4 h long: 3 h more, by 5 + 2 + 4 = 11."""
    carbon = [DIRTY] * 48
    for h in (5, 8, 10):
        carbon[h] = CLEAN
    teach = [{"id": f"t{i}", "submit_h": 0, "work_h": 1.0, "actual_work_h": a, "class": "q", "max_wait_h": 0}
             for i, a in enumerate((0.25, 0.25, 4.0))]
    j = {"id": "j", "submit_h": 5, "work_h": 1.0, "actual_work_h": 3.0, "class": "q", "checkpoint_h": MINUTE,
         "max_wait_h": 2}
    return doc(teach + [j], carbon, count=count, job_classes={"q": {"a800": 1.0}})


def test_a_job_that_outlives_its_plan_stops_at_its_end_and_its_rest_is_planned_again():
    """Without planned stops j overruns its hour at 5 through the dirty hours 6 and 7 (2.1 kg);
    with them it stops at 6 and its rest, booked for the 3 h its group's lengths say it still
    needs (not "1 h estimate less 1 h done"), is planned in pieces in the clean hours 8 and 10,
    the rest of its window's wait spent in pauses: it runs [5, 6) [6, 7) [8, 9) (1.2 kg) and
    ends at 9, its 3 h done."""
    _, res, m, runs = run(_outliving())
    assert runs["j"] == [(5.0, 6.0), (6.0, 7.0), (8.0, 9.0)]
    placed = [d for d in res.explanations["j"] if d.kind == "place"]
    assert [d.at_h for d in placed] == [5.0, 6.0, 8.0]        # at 8: the rest of the rest, at its piece
    rest = placed[1].explain.chosen
    assert (rest.start_h, rest.end_h) == pytest.approx((6.0, 7.0))
    assert [tuple(p) for p in rest.pieces] == [pytest.approx((8.0, 9.0)), pytest.approx((10.0, 11.0))]
    again = placed[2].explain.chosen                           # 2 h done: it can still only be 4 h long
    assert (again.start_h, again.end_h, *again.pieces) == (pytest.approx(8.0), pytest.approx(9.0),
                                                           pytest.approx((10.0, 11.0)))
    assert m["jobs_finished"] == 4

    _, old, m_old, runs_old = run(_outliving(), Suanli(plan_stops=False))
    assert runs_old["j"] == [(5.0, 8.0)]
    assert m_old["carbon_kg"] - m["carbon_kg"] == pytest.approx(2.1 - 1.2)


def test_planned_stops_need_learned_lengths_that_vary():
    """Exact estimates (every ratio 1) teach no distribution: no planned stop, the schedule is
    the same as without them (GAIA's exact rows keep their figures)."""
    carbon = [round(0.5 + 0.4 * math.sin(2 * math.pi * t / 24) * (1 if t % 5 else -0.5), 4) for t in range(96)]
    jobs = [{"id": f"j{i}", "submit_h": round(i * 1.7, 2), "work_h": round(0.5 + (i * 7 % 11) * 0.6, 2),
             "checkpoint_h": MINUTE, "max_wait_h": 6, "class": "q"} for i in range(30)]
    raw = doc(jobs, carbon, count=64, horizon_h=96, job_classes={"q": {"a800": 1.0}})
    scn = parse_scenario(raw, "exact")
    assert simulate(scn, Suanli()).segments == simulate(scn, Suanli(plan_stops=False)).segments


class Stopping:
    """A policy that places each job once, [start, end) with a planned stop, then its rest at once
    for as long as its estimate says (to test what the simulator does with `Place.stops`)."""

    name = "stopping"

    def __init__(self, first: tuple[float, float]):
        self.first = first

    def decide(self, view, jobs):
        out = []
        for pj in jobs:
            if not pj.segments_done:
                out.append(Place(pj.job.id, "east-1", "a800", *self.first, stops=True))
            else:
                out.append(Place(pj.job.id, "east-1", "a800", view.now, view.now + pj.remaining_work))
        return out


def test_a_planned_stop_may_come_before_the_estimate_and_the_rest_is_offered_at_once():
    """A 3 h job (10-minute checkpoints) placed [0, 1) with a planned stop: the simulator
    accepts a plan shorter than the estimate, stops it at 1 keeping its 1 h, and offers the rest
    (2 h left, the work done 1 h) at once."""
    scn = parse_scenario(doc([{"id": "j", "submit_h": 0, "work_h": 3.0, "checkpoint_h": 1 / 6}], [0.5] * 24),
                         "stops")
    seen = []

    class Recording(Stopping):
        def decide(self, view, jobs):
            seen.extend((view.now, pj.remaining_work, pj.done_work) for pj in jobs)
            return super().decide(view, jobs)

    res = simulate(scn, Recording((0.0, 1.0)))
    assert [(s.start_h, s.end_h) for s in res.segments] == [(0.0, 1.0), (1.0, 3.0)]
    assert seen == [(0.0, 3.0, 0.0), (1.0, pytest.approx(2.0), pytest.approx(1.0))]
    assert res.overruns == 0


def test_a_planned_stop_for_a_job_without_checkpoints_is_refused():
    scn = parse_scenario(doc([{"id": "j", "submit_h": 0, "work_h": 3.0}], [0.5] * 24), "stops")
    with pytest.raises(PolicyError, match="does not checkpoint"):
        simulate(scn, Stopping((0.0, 1.0)))


def test_a_run_shorter_than_the_estimate_without_a_planned_stop_is_refused():
    scn = parse_scenario(doc([{"id": "j", "submit_h": 0, "work_h": 3.0, "checkpoint_h": 1 / 6}], [0.5] * 24),
                         "stops")

    class Short(Stopping):
        def decide(self, view, jobs):
            return [Place(pj.job.id, "east-1", "a800", 0.0, 1.0) for pj in jobs]

    with pytest.raises(PolicyError, match="shorter"):
        simulate(scn, Short((0.0, 1.0)))


def test_scenarios_not_written_for_uncertainty_are_unchanged():
    """No `forecast:` block and no `max_wait_h`: suspend is off unless asked for (the bench
    scenarios keep their schedules); and without checkpoints asking changes nothing."""
    for path in ("tests/data/tiny.yaml", "tests/data/tiny-outage.yaml"):
        raw = yaml.safe_load((ROOT / path).read_text())
        scn = parse_scenario(raw, path)
        a = simulate(scn, Suanli()).segments
        b = simulate(scn, Suanli(suspend=False)).segments
        assert a == b
    raw = yaml.safe_load((ROOT / "tests/data/tiny-uncertain.yaml").read_text())
    for j in raw["jobs"]:
        j.pop("checkpoint_h", None)
    scn = parse_scenario(raw, "tiny-uncertain")
    assert simulate(scn, Suanli()).segments == simulate(scn, Suanli(suspend=False)).segments


@st.composite
def carbon_scenario(draw):
    hours = 36
    carbon = [draw(st.sampled_from([0.05, 0.2, 0.5, 0.9])) for _ in range(hours)]
    jobs = []
    for i in range(draw(st.integers(1, 12))):
        submit = round(draw(st.floats(0, 12)), 3)
        work = round(draw(st.floats(0.1, 6)), 3)
        j = {"id": f"j{i}", "submit_h": submit, "gpus": draw(st.sampled_from([1, 2, 4])), "work_h": work,
             "max_wait_h": draw(st.sampled_from([0, 1, 6, 24]))}
        if draw(st.booleans()):
            j["checkpoint_h"] = draw(st.sampled_from([MINUTE, 0.25, 0.4, 1.0]))
        if draw(st.booleans()):
            j["deadline_h"] = round(submit + work * draw(st.floats(1.0, 4)) + 0.01, 3)
        if draw(st.integers(0, 2)) == 0:
            j["actual_work_h"] = round(work * draw(st.floats(0.5, 1.6)), 3)
        jobs.append(j)
    # `roomy`: more GPUs than all jobs together, so nothing waits for GPUs and no run is preempted
    raw = doc(jobs, carbon, count=draw(st.sampled_from([4, 8, 64])))
    if draw(st.booleans()):
        raw["forecast"] = {"carbon": {"error": 0.3, "seed": draw(st.integers(0, 9))}}
    return parse_scenario(raw, "random")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scn=carbon_scenario())
def test_pieces_keep_to_the_deadline_and_the_window_on_checkpoint_boundaries(scn):
    """Always a valid schedule that finishes every job; where GPUs never run short (so no run
    is preempted: only suspend-resume splits a job) every split job stops on checkpoints and,
    with exact information, keeps to its deadline and to submit + max_wait_h + its run."""
    res = simulate(scn, Suanli())
    violations, outcomes = validate(scn, res.segments)
    assert violations == []
    m = account(scn, res.segments, outcomes=outcomes).metrics
    assert m["jobs_finished"] == len(scn.jobs)
    if scn.sites["east-1"].gpus["a800"].count < 64:
        return
    assert res.preemptions == 0
    by_job: dict[str, list] = {}
    for s in sorted(res.segments, key=lambda s: s.start_h):
        by_job.setdefault(s.job_id, []).append(s)
    for job in scn.jobs:
        segs = by_job[job.id]
        if len(segs) == 1:
            continue
        assert job.checkpoint_h, "only a checkpointing job is run in pieces"
        # each stop on a checkpoint: nothing lost (what is run is the true work, or the estimate's
        # plan and an overrun)
        for s in segs[:-1]:
            n = (s.end_h - s.start_h) / job.checkpoint_h
            assert abs(n - round(n)) < 1e-6, (job.id, s)
        kept = sum(kept_work(s.end_h - s.start_h, 1.0, job.checkpoint_h) for s in segs[:-1])
        assert kept + segs[-1].end_h - segs[-1].start_h == pytest.approx(job.true_work_h, abs=1e-6)
        if job.actual_work_h is None and scn.forecast is None:
            # exact information: within the deadline and within submit + max_wait_h + the run
            assert segs[0].start_h <= job.submit_h + job.max_wait_h + 1e-6
            assert segs[-1].end_h <= job.submit_h + job.max_wait_h + job.work_h + 1e-6
            if job.deadline_h is not None:
                assert segs[-1].end_h <= job.deadline_h + 1e-6
    if all(j.actual_work_h is None for j in scn.jobs) and scn.forecast is None:
        assert m["late_gpu_h"] == 0.0 and m["wait_excess_gpu_h"] == 0.0


def test_suspend_saves_carbon_on_a_varying_series():
    """A day-night carbon series and 40 jobs of 1-minute checkpoints (GAIA's windows: 6 h
    under 2 h of work, else 24 h): in pieces they emit less than in single runs."""
    carbon = [round(0.5 + 0.4 * math.sin(2 * math.pi * t / 24) * (1 if t % 5 else -0.5), 4) for t in range(96)]
    jobs = [{"id": f"j{i}", "submit_h": round(i * 1.7, 2), "work_h": round(0.5 + (i * 7 % 11) * 0.6, 2),
             "checkpoint_h": MINUTE, "max_wait_h": 6 if 0.5 + (i * 7 % 11) * 0.6 < 2 else 24} for i in range(40)]
    raw = doc(jobs, carbon, count=64, horizon_h=96)
    raw["sites"][0]["grid"]["carbon_kg_per_kwh"] = carbon
    _, _, one, _ = run(raw, Suanli(suspend=False))
    _, res, pieces, runs = run(raw)
    assert len(res.segments) > len(jobs)
    assert pieces["carbon_kg"] < one["carbon_kg"] * 0.99
    assert pieces["late_gpu_h"] == 0.0 and pieces["wait_excess_gpu_h"] == 0.0


@pytest.mark.skipif(not CHECKER.exists(), reason="no shared checker")
def test_the_checker_agrees_on_a_schedule_in_pieces(tmp_path):
    scn_path = tmp_path / "suspend.yaml"
    jobs = [{"id": "j", "submit_h": 0, "work_h": 2.0, "checkpoint_h": MINUTE, "max_wait_h": 2},
            {"id": "k", "submit_h": 0.4, "work_h": 3.3, "checkpoint_h": 0.25, "max_wait_h": 6, "gpus": 2}]
    scn_path.write_text(yaml.safe_dump(doc(jobs, ALTERNATING)))
    out = tmp_path / "out"
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "suanli", "sim", str(scn_path), "--out", str(out), "--quiet"],
                   check=True, env=env)
    rows = (out / "schedule.csv").read_text().strip().splitlines()[1:]
    assert len(rows) > 2                                     # both in pieces
    got = subprocess.run([sys.executable, str(CHECKER), str(scn_path), str(out)], capture_output=True, text=True)
    assert "valid=yes metrics=match" in got.stdout, got.stdout + got.stderr
