"""The event-driven simulator with the fifo policy, end to end."""

from __future__ import annotations

import copy
import random

import pytest

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.model.schedule import Segment
from suanli.scheduling import policies
from suanli.scheduling.ledger import Ledger
from suanli.scheduling.state import PendingJob, Place, StateView
from suanli.sim.engine import PolicyError, simulate

BASE = {
    "name": "two-sites",
    "horizon_h": 12,
    "gpu_types": {"a800": {"power_kw": 0.4, "speed": 1.0}, "h100": {"power_kw": 0.7, "speed": 2.0}},
    "cities": {"east": {"lat": 31.2, "lon": 121.5}, "west": {"lat": 35.7, "lon": 107.6}},
    "links": [{"a": "east", "b": "west", "gbps": 10, "latency_ms": 10, "cny_per_gb": 0.01}],
    "sites": [
        {"id": "east-1", "city": "east", "gpus": {"a800": {"count": 4, "cny_per_gpu_h": 8}}, "backup": "west-1"},
        {"id": "west-1", "city": "west", "gpus": {"a800": {"count": 4, "cny_per_gpu_h": 6}}},
    ],
    "jobs": [],
}


def scenario(jobs, events=(), **over):
    raw = copy.deepcopy(BASE) | over
    raw["jobs"] = jobs
    raw["events"] = list(events)
    return parse_scenario(raw, "test.yaml")


def run_fifo(scn):
    result = simulate(scn, policies.make("fifo"))
    violations, outcomes = validate(scn, result.segments)
    assert violations == []
    return result, outcomes


def test_outage_cuts_a_checkpointed_job_and_its_rest_runs_at_another_site():
    # 2 GPUs, 6 h of work, checkpoint every hour, data 9 GB: 9*8/10/3600 = 0.002 h to move west.
    job = {"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 6, "checkpoint_h": 1, "origin": "east", "data_gb": 9}
    scn = scenario([job], [{"type": "outage", "site": "east-1", "start_h": 2.5, "end_h": 4}])
    result, outcomes = run_fifo(scn)
    # cut at 2.5 keeps floor(2.5 / 1) * 1 = 2 h of work; the other 4 h run west from 2.5 + 0.002
    assert result.segments == [Segment("j1", "east-1", "a800", 2, 0.0, 2.5),
                               Segment("j1", "west-1", "a800", 2, 2.502, pytest.approx(6.502))]
    assert result.cuts == 1
    assert outcomes["j1"].finished and outcomes["j1"].completion_h == pytest.approx(6.502)
    m = account(scn, result.segments, outcomes=outcomes).metrics
    # GPU: 2.5 h * 2 * 8 + 4 h * 2 * 6 = 40 + 48; transfer paid only for the west site: 9 * 0.01
    assert m["gpu_cost_cny"] == pytest.approx(88.0)
    assert m["transfer_cost_cny"] == pytest.approx(0.09)


def test_without_checkpoints_the_cut_work_is_lost_and_redone():
    job = {"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 3, "origin": "east"}
    scn = scenario([job], [{"type": "outage", "site": "east-1", "start_h": 2, "end_h": 3}])
    result, outcomes = run_fifo(scn)
    assert [(s.site, s.start_h, s.end_h) for s in result.segments] == [("east-1", 0.0, 2.0), ("west-1", 2.0, 5.0)]
    assert outcomes["j1"].completion_h == 5.0


def test_placement_not_started_at_outage_is_placed_again():
    # j2 waits for east-1 (4 GPUs busy until 5 with j1); west-1 is busy too. Outage at 1 on east-1:
    # j1 is cut, j2's future placement is void, both are placed again.
    jobs = [
        {"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 5, "origin": "east"},
        {"id": "w", "submit_h": 0, "gpus": 4, "work_h": 8, "origin": "west"},
        {"id": "j2", "submit_h": 0.5, "gpus": 4, "work_h": 1, "origin": "east"},
    ]
    scn = scenario(jobs, [{"type": "outage", "site": "east-1", "start_h": 1, "end_h": 2}])
    result, outcomes = run_fifo(scn)
    assert all(o.finished for o in outcomes.values())
    j2 = [s for s in result.segments if s.job_id == "j2"]
    assert len(j2) == 1 and j2[0].start_h >= 2.0


def test_job_arriving_while_its_only_site_is_down_waits_for_recovery():
    job = {"id": "j1", "submit_h": 1, "gpus": 1, "work_h": 1, "origin": "east", "max_rtt_ms": 5}
    scn = scenario([job], [{"type": "outage", "site": "east-1", "start_h": 0, "end_h": 3}])
    result, outcomes = run_fifo(scn)
    assert result.segments == [Segment("j1", "east-1", "a800", 1, 3.0, 4.0)]


def test_unplaceable_job_is_rejected_and_counts_as_unfinished():
    job = {"id": "big", "submit_h": 0, "gpus": 16, "work_h": 1, "origin": "east"}
    scn = scenario([job])
    result, outcomes = run_fifo(scn)
    assert result.segments == [] and "big" in result.rejected
    assert account(scn, result.segments, outcomes=outcomes).metrics["jobs_unfinished"] == 1


def test_fifo_takes_the_earliest_start_then_the_nearest_site():
    jobs = [{"id": f"j{i}", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "east"} for i in range(3)]
    result, _ = run_fifo(scenario(jobs))
    placed = {s.job_id: (s.site, s.start_h) for s in result.segments}
    assert placed == {"j0": ("east-1", 0.0), "j1": ("west-1", 0.0), "j2": ("east-1", 2.0)}


def test_fifo_uses_the_faster_type_by_its_speed():
    raw_sites = copy.deepcopy(BASE["sites"])
    raw_sites[0]["gpus"]["h100"] = {"count": 2, "cny_per_gpu_h": 16}
    job = {"id": "j", "submit_h": 0, "gpus": 2, "work_h": 4, "gpu_types": ["h100"], "origin": "east"}
    result, _ = run_fifo(scenario([job], sites=raw_sites))
    assert result.segments == [Segment("j", "east-1", "h100", 2, 0.0, 2.0)]


def test_engine_refuses_an_impossible_decision_from_a_policy():
    class Greedy:
        name = "greedy"

        def decide(self, view: StateView, jobs: list[PendingJob]):
            return [Place(p.job.id, "east-1", "a800", view.now, view.now + view.duration_h(p, "a800")) for p in jobs]

    jobs = [{"id": f"j{i}", "submit_h": 0, "gpus": 4, "work_h": 1, "origin": "east"} for i in range(2)]
    with pytest.raises(PolicyError, match="GPUs free"):
        simulate(scenario(jobs), Greedy())


def test_policy_view_hides_future_events():
    seen = []

    class Spy:
        name = "spy"

        def decide(self, view, jobs):
            seen.append((view.now, len(view.scenario.events), view.down))
            return policies.make("fifo").decide(view, jobs)

    jobs = [{"id": "a", "submit_h": 0, "gpus": 1, "work_h": 1, "origin": "east"},
            {"id": "b", "submit_h": 3, "gpus": 1, "work_h": 1, "origin": "east"}]
    simulate(scenario(jobs, [{"type": "outage", "site": "east-1", "start_h": 2.5, "end_h": 4}]), Spy())
    assert seen == [(0.0, 0, frozenset()), (3.0, 0, frozenset({"east-1"}))]


def _random_scenario(rng: random.Random):
    cities = {f"c{i}": {"lat": 30 + i, "lon": 100 + i} for i in range(4)}
    links = [{"a": f"c{i}", "b": f"c{i + 1}", "gbps": rng.choice([10, 40, 100]), "latency_ms": rng.randint(1, 9),
              "cny_per_gb": rng.choice([0, 0.01])} for i in range(3)]
    sites = [{"id": f"s{i}", "city": f"c{i}", "gpus": {"a800": {"count": rng.choice([2, 4, 8]), "cny_per_gpu_h": 6},
                                                      "h100": {"count": rng.choice([0, 2, 8]), "cny_per_gpu_h": 15}},
              "battery": {"capacity_kwh": 5, "power_kw": 2, "efficiency": 0.9, "initial_soc": 0.5},
              "renewables": {"kw": [rng.uniform(0, 5) for _ in range(24)]}} for i in range(4)]
    jobs = []
    for j in range(rng.randint(5, 40)):
        job = {"id": f"j{j}", "submit_h": round(rng.uniform(0, 20), 3), "gpus": rng.choice([1, 1, 2, 4, 8]),
               "work_h": round(rng.uniform(0.1, 6), 3), "origin": f"c{rng.randrange(4)}",
               "data_gb": rng.choice([0, 5, 500])}
        if rng.random() < 0.5:
            job["checkpoint_h"] = rng.choice([0.25, 0.5, 1])
        if rng.random() < 0.3:
            job["max_rtt_ms"] = rng.choice([0, 10, 30])
        jobs.append(job)
    events = []
    for _ in range(rng.randint(0, 3)):
        a = round(rng.uniform(0, 20), 2)
        events.append({"type": "outage", "site": f"s{rng.randrange(4)}", "start_h": a,
                       "end_h": a + round(rng.uniform(0.5, 5), 2)})
    raw = {"name": "random", "horizon_h": 24, "gpu_types": BASE["gpu_types"], "cities": cities, "links": links,
           "sites": sites, "jobs": jobs, "events": events}
    return parse_scenario(raw, "random.yaml")


@pytest.mark.parametrize("seed", range(40))
def test_fifo_schedules_are_always_valid_on_random_scenarios(seed):
    scn = _random_scenario(random.Random(seed))
    result, outcomes = run_fifo(scn)
    placed = {s.job_id for s in result.segments}
    for job in scn.jobs:   # every job is finished unless fifo said why not
        assert outcomes[job.id].finished or job.id in result.rejected or job.id in result.unplaced, job.id
        assert job.id in placed or job.id in result.rejected or job.id in result.unplaced


def test_calendar_of_view_is_not_changed_by_policy_planning():
    scn = scenario([{"id": "j", "submit_h": 0, "gpus": 4, "work_h": 1, "origin": "east"}])
    ledger = Ledger(scn)
    cal = ledger.calendars[("east-1", "a800")]
    view = StateView(now=0.0, scenario=scn, ledger=ledger)
    pj = PendingJob(scn.jobs[0], 1.0, 0.0)
    decisions = policies.make("fifo").decide(view, [pj, PendingJob(scn.jobs[0].model_copy(update={"id": "k"}), 1, 0)])
    assert [d.site for d in decisions] == ["east-1", "west-1"]
    assert cal.used_at(0.5) == 0


def test_ledger_counts_versions_per_site_and_gpus_in_use_network_wide():
    scn = scenario([])
    ledger = Ledger(scn)
    east, west = ledger.site_index["east-1"], ledger.site_index["west-1"]
    ledger.add("east-1", "a800", 2, 1.0, 3.0)
    ledger.add("west-1", "a800", 3, 2.0, 5.0)
    assert ledger.version[east] == 1 and ledger.version[west] == 1
    # the busy share is what summing every pool's calendar at that instant gives
    for t in (0.0, 1.0, 2.5, 3.0, 4.9, 5.0):
        used = sum(c.used_at(t) for c in ledger.calendars.values())
        assert ledger.busy_share(t) == used / 8
    ledger.add("east-1", "a800", 2, 1.0, 3.0, sign=-1)             # released: counted as a change
    assert ledger.version[east] == 2 and ledger.busy_share(2.5) == 3 / 8
    ledger.prune(4.0)
    assert ledger.in_use.used_at(4.0) == 3 and ledger.in_use.times[0] == float("-inf")


def test_scratch_applies_reservations_only_when_read_again():
    scn = scenario([])
    ledger = Ledger(scn)
    scratch = StateView(now=0.0, scenario=scn, ledger=ledger).scratch()
    assert scratch.token("east-1") is None and not scratch.has_plans()
    scratch.reserve("east-1", "a800", 0.5, 2.0, 3)
    first = scratch.token("east-1")
    assert first is not None and scratch.has_plans()
    assert ledger.calendars[("east-1", "a800")].used_at(1.0) == 0        # the ledger is untouched
    assert scratch.calendar("east-1", "a800").used_at(1.0) == 3
    # 3 GPUs * 0.4 kW * PUE 1: half of slot 0, all of slot 1
    assert scratch.extra_load("east-1", 0, 3).tolist() == pytest.approx([0.6, 1.2, 0.0])
    scratch.reserve("east-1", "a800", 1.0, 2.0, 1)
    assert scratch.token("east-1") != first and scratch.calendar("east-1", "a800").used_at(1.5) == 4
