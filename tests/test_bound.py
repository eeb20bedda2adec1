"""The lower bound (suanli.scheduling.bound): hand cases with known values, and the bound
never above the objective of any valid schedule (fifo's, optimal's, and random ones with
lateness, waste, outage cuts and unfinished jobs) on many random small scenarios."""

from __future__ import annotations

import copy
import random

import pytest

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.scheduling import policies
from suanli.scheduling.bound import lower_bound
from suanli.scheduling.state import Defer, Place, Reject
from suanli.sim.engine import simulate

BASE = {
    "name": "bound-test",
    "horizon_h": 8,
    "gpu_types": {"a800": {"power_kw": 0.5, "speed": 1.0}, "h100": {"power_kw": 1.0, "speed": 2.0}},
    "cities": {"east": {"lat": 31.2, "lon": 121.5}, "west": {"lat": 35.7, "lon": 107.6}},
    "links": [{"a": "east", "b": "west", "gbps": 8, "latency_ms": 10, "cny_per_gb": 0.5}],
    "sites": [],
    "jobs": [],
    "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 10000,
                  "dr_cny_per_kwh": 10},
}


def scenario(sites, jobs, events=(), **over):
    raw = copy.deepcopy(BASE) | over
    raw["sites"] = sites
    raw["jobs"] = jobs
    raw["events"] = list(events)
    return parse_scenario(raw, "x.yaml")


def objective(scn, segments):
    violations, outcomes = validate(scn, segments)
    assert violations == [], violations[:3]
    return account(scn, segments, outcomes=outcomes).metrics


# ----------------------------------------------------------------------------- random scenarios
def random_scenario(seed: int, *, jobs: int | None = None):
    """2-3 sites, 1-2 pools each, 3-7 jobs within 6-12 h, with random batteries, renewables,
    time-of-use tariffs, outages, grid caps, deadlines (some too tight to meet), checkpoints,
    data, latency bounds, and now and then a job no pool can host."""
    rnd = random.Random(seed)
    horizon = rnd.choice([6, 8, 12])
    cities = {"east": {"lat": 31.2, "lon": 121.5}, "west": {"lat": 35.7, "lon": 107.6},
              "north": {"lat": 41.0, "lon": 113.1}}
    links = [{"a": "east", "b": "west", "gbps": rnd.choice([2, 8, 40]), "latency_ms": 10, "cny_per_gb": 0.05},
             {"a": "west", "b": "north", "gbps": rnd.choice([2, 8]), "latency_ms": 6, "cny_per_gb": 0.02}]
    sites = []
    for k, city in enumerate(rnd.sample(list(cities), rnd.choice([2, 3]))):
        types = rnd.sample(["a800", "h100"], rnd.choice([1, 2]))
        site = {
            "id": f"s{k}", "city": city, "pue": rnd.choice([1.0, 1.2, 1.5]),
            "gpus": {g: {"count": rnd.choice([2, 4, 8]), "cny_per_gpu_h": rnd.choice([2.0, 5.0, 9.0])}
                     for g in types},
            "grid": {"carbon_kg_per_kwh": [round(rnd.uniform(0.2, 0.9), 2) for _ in range(24)],
                     "cny_per_kwh": [round(rnd.uniform(0.1, 1.2), 2) for _ in range(24)]},
            "renewables": {"kw": [round(rnd.choice([0, 0, 1, 3, 6]) * rnd.random(), 2) for _ in range(24)],
                           "cny_per_kwh": rnd.choice([0.0, 0.05, 0.3])},
        }
        if rnd.random() < 0.6:
            site["battery"] = {"capacity_kwh": rnd.choice([2, 5, 10]), "power_kw": rnd.choice([1, 2, 4]),
                               "efficiency": rnd.choice([0.8, 0.9, 1.0]), "initial_soc": rnd.choice([0, 0.5, 1])}
        sites.append(site)
    n = jobs if jobs is not None else rnd.randint(3, 7)
    job_list = []
    for i in range(n):
        submit = round(rnd.uniform(0, horizon * 0.6), 2)
        work = round(rnd.uniform(0.3, 5.0), 2)
        job = {"id": f"j{i}", "submit_h": submit, "gpus": rnd.choice([1, 2, 4]), "work_h": work,
               "origin": rnd.choice(list(cities)), "data_gb": rnd.choice([0, 0, 900, 3600])}
        if rnd.random() < 0.7:
            job["deadline_h"] = round(submit + work * rnd.uniform(0.6, 3.0) + 0.1, 2)
        if rnd.random() < 0.5:
            job["checkpoint_h"] = rnd.choice([0.5, 1.0])
        if rnd.random() < 0.3:
            job["gpu_types"] = [rnd.choice(["a800", "h100"])]
        if rnd.random() < 0.15:
            job["max_rtt_ms"] = rnd.choice([0, 20])
        if rnd.random() < 0.08:
            job["gpus"] = 16                         # bigger than every pool: can never run
        job_list.append(job)
    events = []
    for site in sites:
        if rnd.random() < 0.35:
            a = round(rnd.uniform(0.5, horizon * 0.7), 2)
            events.append({"type": "outage", "site": site["id"], "start_h": a,
                           "end_h": round(a + rnd.uniform(0.5, 3), 2)})
        if rnd.random() < 0.35:
            a = rnd.randint(0, horizon - 2)
            events.append({"type": "grid_cap", "site": site["id"], "start_h": a, "end_h": a + rnd.randint(1, 3),
                           "max_grid_kw": rnd.choice([0, 0.5, 2]), "notice_h": rnd.choice([0, 2])})
    raw = {"name": f"random-{seed}", "horizon_h": horizon, "gpu_types": BASE["gpu_types"],
           "job_classes": {"train": {"h100": 2.5}}, "cities": cities, "links": links, "sites": sites,
           "jobs": job_list, "events": events,
           "objective": {"carbon_cny_per_kg": rnd.choice([0.0, 0.1]), "late_cny_per_gpu_h": rnd.choice([5, 50]),
                         "unfinished_cny": rnd.choice([200, 5000]), "dr_cny_per_kwh": rnd.choice([1, 10])}}
    for job in job_list:
        if rnd.random() < 0.2:
            job["class"] = "train"
    return parse_scenario(copy.deepcopy(raw), "x.yaml")


class RandomPolicy:
    """A test double that makes valid but careless schedules: a random pool, a random delay
    past the earliest fit, now and then a job rejected. Exercises lateness, wasted energy at
    dear hours, outage cuts and unfinished jobs."""

    name = "random"

    def __init__(self, seed: int):
        self.rnd = random.Random(seed)

    def decide(self, view, jobs):
        out = []
        scratch = view.scratch()
        for pj in jobs:
            pools = [p for p in view.candidate_pools(pj) if p[0] not in view.down]
            if not view.candidate_pools(pj) or self.rnd.random() < 0.1:
                out.append(Reject(pj.job.id, "random"))
                continue
            if not pools:
                out.append(Defer(pj.job.id, "down"))
                continue
            site, g = self.rnd.choice(pools)
            dur = view.duration_h(pj, g)
            t0 = max(view.now, view.data_ready_h(pj, site)) + self.rnd.choice([0, 0, 0.5, 2.25, 5])
            start = scratch.calendar(site, g).earliest_fit(pj.job.gpus, dur, t0)
            scratch.reserve(site, g, start, start + dur, pj.job.gpus)
            out.append(Place(pj.job.id, site, g, start, start + dur))
        return out


def bounded(value, objective_cny):
    return value <= objective_cny + 1e-6 * max(1.0, abs(objective_cny))


@pytest.mark.parametrize("seed", range(40))
def test_bound_never_exceeds_fifo_or_random_schedules(seed):
    scn = random_scenario(seed)
    b = lower_bound(scn)
    assert b.plain.status == "optimal"
    schedules = {"fifo": simulate(scn, policies.make("fifo")).segments}
    for k in range(3):
        schedules[f"random{k}"] = simulate(scn, RandomPolicy(seed * 10 + k)).segments
    for name, segments in schedules.items():
        m = objective(scn, segments)
        assert bounded(b.value, m["objective_cny"]), (name, b.value, m["objective_cny"])
        if m["jobs_unfinished"] == 0 and m["deadline_misses"] == 0 and m["late_gpu_h"] == 0:
            # a schedule that meets every deadline is bounded by the tighter variant too
            assert b.deadline.value is not None, (name, b.deadline.status)
            assert bounded(b.deadline.value, m["objective_cny"]), (name, b.deadline.value, m["objective_cny"])
    if b.deadline.value is not None:
        assert b.deadline.value >= b.value - 1e-6 * max(1.0, abs(b.value))
    else:
        assert b.deadline.status == "infeasible"


# ----------------------------------------------------------------------------- hand cases
def pool_site(id="w1", city="west", gpus=None, **kw):
    return {"id": id, "city": city, "gpus": gpus or {"a800": {"count": 4, "cny_per_gpu_h": 4.0}}, **kw}


def test_one_job_no_energy_prices_bound_is_its_rental():
    # 2 GPUs x 4 h at 4 CNY/GPU-h = 32; nothing else costs
    scn = scenario([pool_site()], [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 4, "origin": "west"}])
    b = lower_bound(scn)
    assert b.value == pytest.approx(32.0, rel=1e-5)
    assert b.deadline_value == pytest.approx(32.0, rel=1e-5)
    assert b.plain.parts["gpu_cny"] == pytest.approx(32.0)


def test_bound_prefers_cheaper_speed_and_pays_transfer_once():
    # west: h100 (speed 2) at 10 -> 2 GPUs x 2 h x 10 = 40; a800 at 4 -> 2 x 4 x 4 = 32.
    # east a800 at 3: 24 + transfer 3600 GB * 0.5 = 1800 -> stays west on a800: 32.
    scn = scenario([pool_site(gpus={"h100": {"count": 4, "cny_per_gpu_h": 10.0},
                                    "a800": {"count": 4, "cny_per_gpu_h": 4.0}}),
                    pool_site("e1", "east", gpus={"a800": {"count": 4, "cny_per_gpu_h": 3.0}})],
                   [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 4, "origin": "west", "data_gb": 3600}])
    assert lower_bound(scn).value == pytest.approx(32.0, rel=1e-5)


def test_a_job_no_pool_can_host_costs_unfinished_and_breaks_the_deadline_variant():
    scn = scenario([pool_site()], [{"id": "big", "submit_h": 0, "gpus": 8, "work_h": 1, "origin": "west"}])
    b = lower_bound(scn)
    assert b.value == pytest.approx(10000.0, rel=1e-5)
    assert b.deadline.status == "infeasible" and b.deadline_value is None


def test_lateness_forced_by_release_is_priced():
    # released at 1 (submit), 4 h of work on 2 GPUs, deadline 3: even the fluid runs at most
    # 2 GPU-h per hour before 3, so >= 2 * (1 + 4 - 3) = 4 late GPU-h -> 4 * 50 = 200 + rental 32
    scn = scenario([pool_site()], [{"id": "j1", "submit_h": 1, "gpus": 2, "work_h": 4, "origin": "west",
                                    "deadline_h": 3}])
    b = lower_bound(scn)
    assert b.value == pytest.approx(32.0 + 200.0, rel=1e-5)
    assert b.plain.parts["late_gpu_h"] == pytest.approx(4.0, rel=1e-5)
    assert b.deadline.status == "infeasible"
    # the real best schedule runs it at once: finishes at 5, 2 late hours on 2 GPUs
    m = objective(scn, simulate(scn, policies.make("fifo")).segments)
    assert m["objective_cny"] == pytest.approx(232.0)


def test_unfinished_when_cheaper_than_running():
    # 4 GPUs x 10 h at 4 = 160 > unfinished 100: the bound leaves it (and any schedule may)
    scn = scenario([pool_site()], [{"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 10, "origin": "west"}],
                   objective={"unfinished_cny": 100})
    b = lower_bound(scn)
    assert b.value == pytest.approx(100.0, rel=1e-5)
    assert b.deadline_value == pytest.approx(160.0, rel=1e-5)   # must finish: pays the rental


def test_outage_capacity_and_the_energy_of_a_time_of_use_tariff():
    # one a800 pool, 2 GPUs (0.5 kW each, PUE 1): 1 kW while running; 3 h of work on 2 GPUs.
    # tariff 1.0 in slots 0-3, 0.2 in 4-7; outage [4, 6) -> cheap hours left: 6, 7 (2 h).
    # fluid optimum: 2 h in slots 6-7 at 0.2 + 1 h at 1.0 = 0.4 + 1.0 = 1.4 kWh-CNY; rental 24.
    site = pool_site(gpus={"a800": {"count": 2, "cny_per_gpu_h": 4.0}},
                     grid={"cny_per_kwh": [1, 1, 1, 1, 0.2, 0.2, 0.2, 0.2] * 3})
    scn = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 3, "origin": "west",
                             "deadline_h": 8}],
                   [{"type": "outage", "site": "w1", "start_h": 4, "end_h": 6}])
    b = lower_bound(scn)
    assert b.deadline_value == pytest.approx(24 + 1.4, rel=1e-5)
    assert b.value == pytest.approx(24 + 1.4, rel=1e-5)
    # without a price on lateness, the plain bound may run it after the deadline at 0.2
    free = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 3, "origin": "west", "deadline_h": 8}],
                    [{"type": "outage", "site": "w1", "start_h": 4, "end_h": 6}],
                    objective={"late_cny_per_gpu_h": 0, "unfinished_cny": 10000})
    assert lower_bound(free).value == pytest.approx(24 + 0.6, rel=1e-5)


def test_battery_is_dispatched_optimally_within_its_limits():
    # 2 h100 (2 kW IT, PUE 1) for 1 h (work 2 / speed 2); tariff 1 everywhere, renewables
    # 3 kW in slot 0 only (each day), battery 1 kWh / 1 kW / eff 0.5, empty. The fluid runs it
    # in slot 0 on renewables: energy 0, bound = rental 2 * 1 h * 10 = 20.
    site = pool_site(gpus={"h100": {"count": 2, "cny_per_gpu_h": 10.0}}, grid={"cny_per_kwh": 1.0},
                     renewables={"kw": [3] + [0] * 23},
                     battery={"capacity_kwh": 1, "power_kw": 1, "efficiency": 0.5, "initial_soc": 0})
    scn = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 2, "origin": "west"}])
    assert lower_bound(scn).value == pytest.approx(20.0, rel=1e-5)
    # j2 must run in slot 1 (2 kWh): the battery holds at most 0.5 kWh by then (1 kWh of
    # surplus charged at power 1, efficiency 0.5), so 1.5 kWh come from the grid
    scn2 = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 2, "work_h": 2, "origin": "west"},
                             {"id": "j2", "submit_h": 1, "gpus": 2, "work_h": 2, "origin": "west",
                              "deadline_h": 2}])
    b = lower_bound(scn2)
    assert b.deadline_value == pytest.approx(40.0 + 1.5, rel=1e-5)


def test_grid_cap_violation_is_priced():
    # 4 a800 = 2 kW for 2 h, must run in [0, 2) (deadline 2); cap 1.5 kW over [0, 2):
    # 0.5 kWh above the cap each slot at 10 -> 10; grid energy 4 kWh at 0.5 -> 2; rental 32
    site = pool_site(grid={"cny_per_kwh": 0.5})
    scn = scenario([site], [{"id": "j1", "submit_h": 0, "gpus": 4, "work_h": 2, "origin": "west",
                             "deadline_h": 2}],
                   [{"type": "grid_cap", "site": "w1", "start_h": 0, "end_h": 2, "max_grid_kw": 1.5}],
                   objective={"dr_cny_per_kwh": 10, "late_cny_per_gpu_h": 1000})
    b = lower_bound(scn)
    assert b.deadline_value == pytest.approx(32 + 2 + 10, rel=1e-5)
    assert b.deadline.parts["dr_violation_kwh"] == pytest.approx(1.0, rel=1e-4)


def test_work_beyond_the_modelled_slots_goes_to_the_tail_at_no_less_than_its_cheapest_energy():
    # a 30 h job released at 0 with horizon 8: H = 8 + 24 = 32 slots hold it, but a second one
    # released at 0 on the same 1-GPU pool must run after: part of it lands in the tail.
    site = pool_site(gpus={"a800": {"count": 1, "cny_per_gpu_h": 1.0}}, grid={"cny_per_kwh": [0.4, 0.8] * 12})
    jobs = [{"id": f"j{i}", "submit_h": 0, "gpus": 1, "work_h": 30, "origin": "west"} for i in range(2)]
    scn = scenario([site], jobs)
    b = lower_bound(scn)
    # rental 60; energy 60 h * 0.5 kWh at >= 0.4 -> >= 12; fifo runs both back to back
    m = objective(scn, simulate(scn, policies.make("fifo")).segments)
    assert 60 + 12 - 1e-3 <= b.value <= m["objective_cny"] + 1e-6
    assert b.plain.parts["tail_energy_cny"] > 0
