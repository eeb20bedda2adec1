"""Policies and their pipeline parts: filters, scorers, selectors, and validity on random scenarios."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.accounting import account, validate
from suanli.model.load import parse_scenario
from suanli.scheduling import policies
from suanli.scheduling.ledger import Ledger
from suanli.scheduling.pipeline import (
    DEFAULT_FILTERS,
    EnergyPricer,
    Filter,
    PriceBook,
    ShapeCache,
    TierBook,
    options,
    pool_options,
    run_hours,
)
from suanli.scheduling.policies.suanli import Suanli
from suanli.scheduling.state import PendingJob, StateView
from suanli.sim.engine import simulate

BASE = {
    "name": "three-sites",
    "horizon_h": 24,
    "gpu_types": {"a800": {"power_kw": 0.4, "speed": 1.0}, "h100": {"power_kw": 0.7, "speed": 2.0}},
    "cities": {"east": {"lat": 31.2, "lon": 121.5}, "mid": {"lat": 34.7, "lon": 113.6},
               "west": {"lat": 35.7, "lon": 107.6}},
    "links": [{"a": "east", "b": "mid", "gbps": 100, "latency_ms": 8, "cny_per_gb": 0.0},
              {"a": "mid", "b": "west", "gbps": 10, "latency_ms": 10, "cny_per_gb": 0.02}],
    "sites": [
        {"id": "east-1", "city": "east", "gpus": {"a800": {"count": 8, "cny_per_gpu_h": 9.0}},
         "grid": {"carbon_kg_per_kwh": 0.57, "cny_per_kwh": 0.7}},
        {"id": "mid-1", "city": "mid", "gpus": {"h100": {"count": 4, "cny_per_gpu_h": 16.0}},
         "grid": {"carbon_kg_per_kwh": 0.59, "cny_per_kwh": 0.6}},
        {"id": "west-1", "city": "west", "gpus": {"a800": {"count": 16, "cny_per_gpu_h": 6.0}},
         "grid": {"carbon_kg_per_kwh": 0.45, "cny_per_kwh": [0.4] * 12 + [0.1] * 12},
         "renewables": {"kw": 0.0, "cny_per_kwh": 0.1}, "backup": "east-1"},
    ],
    "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 1000, "dr_cny_per_kwh": 10},
}


def scenario(jobs, events=(), **over):
    raw = copy.deepcopy(BASE) | over
    raw["jobs"] = jobs
    raw["events"] = list(events)
    return parse_scenario(raw, "test.yaml")


def view_of(scn, now=0.0, down=()):
    return StateView(now=now, scenario=scn, ledger=Ledger(scn), down=frozenset(down))


def job(**kw):
    return {"id": "j", "submit_h": 0, "gpus": 2, "work_h": 4, "origin": "east"} | kw


# ----------------------------------------------------------------------------- filters
def test_filters_name_the_rule_and_value_that_rejects_each_site():
    scn = scenario([job(max_rtt_ms=20, gpu_types=["a800"], gpus=12)])
    opts, rejected, dynamic = options(view_of(scn), PendingJob(scn.jobs[0], 4, 0), DEFAULT_FILTERS)
    assert opts == []
    assert rejected["east-1"] == "pool_size: a800 pool has 8 < 12 GPUs"
    assert rejected["mid-1"] == "gpu_type: h100 not in a800"
    assert rejected["west-1"] == "max_rtt_ms: rtt 36 ms > 20 ms"
    assert not dynamic


def test_a_down_site_is_left_out_for_now_only():
    scn = scenario([job(max_rtt_ms=0)])
    opts, rejected, dynamic = options(view_of(scn, down={"east-1"}), PendingJob(scn.jobs[0], 4, 0), DEFAULT_FILTERS)
    assert opts == [] and rejected["east-1"] == "outage: site is down" and dynamic


def test_options_carry_duration_data_arrival_and_transfer_price():
    scn = scenario([job(data_gb=450)])          # 450 GB over 10 Gbit/s: 0.1 h; 0.02 CNY/GB: 9 CNY
    opts, _, _ = options(view_of(scn, now=1.0), PendingJob(scn.jobs[0], 4, 1.0), DEFAULT_FILTERS)
    by_site = {o.site: o for o in opts}
    assert by_site["west-1"].ready_h == pytest.approx(1.1)
    assert by_site["west-1"].transfer_cny == pytest.approx(9.0)
    assert by_site["mid-1"].duration_h == pytest.approx(2.0)          # h100 speed 2
    assert by_site["east-1"].transfer_cny == 0.0 and by_site["east-1"].ready_h == 1.0


# ----------------------------------------------------------------------------- scorers
def test_run_hours_splits_a_run_over_slots():
    hours, idx = run_hours(np.array([0.5, 2.0]), 1.75, 0)
    assert hours.tolist() == [[0.5, 1.0, 0.25], [1.0, 0.75, 0.0]]
    assert idx.tolist() == [[0, 1, 2], [2, 3, 4]]


def test_energy_pricer_charges_grid_price_with_carbon_then_uses_free_renewables():
    scn = scenario([job()])
    view = view_of(scn)
    pj = PendingJob(scn.jobs[0], 4, 0.0)
    o = next(o for o in options(view, pj, DEFAULT_FILTERS)[0] if o.site == "west-1")
    pricer = EnergyPricer(view, view.scratch(), PriceBook(), last=30)
    # 2 GPUs * 0.4 kW * pue 1 = 0.8 kWh per hour; 4 h from slot 0 at 0.4 + 0.1 * 0.45 = 0.445 CNY/kWh,
    # or from slot 12 at 0.1 + 0.045 = 0.145 CNY/kWh
    assert pricer.cost(pj, o, [0.0, 12.0]).tolist() == pytest.approx([3.2 * 0.445, 3.2 * 0.145])
    sunny = scenario([job()], sites=[BASE["sites"][0], BASE["sites"][1],
                                     BASE["sites"][2] | {"renewables": {"kw": 1.0, "cny_per_kwh": 0.1}}])
    view = view_of(sunny)
    pricer = EnergyPricer(view, view.scratch(), PriceBook(), last=30)
    assert pricer.cost(PendingJob(sunny.jobs[0], 4, 0.0), o, [0.0]).tolist() == pytest.approx([3.2 * 0.1])


# ----------------------------------------------------------------------------- policies
def run_policy(name, scn):
    result = simulate(scn, policies.make(name))
    violations, outcomes = validate(scn, result.segments)
    assert violations == []
    return result, account(scn, result.segments, outcomes=outcomes).metrics


def test_cheapest_takes_the_lowest_bill_among_pools_free_now():
    _, m = run_policy("cheapest", scenario([job(gpus=2, work_h=4)]))
    # west a800: 4 h * 2 * 6 = 48 CNY, no data to move
    assert m["gpu_cost_cny"] == pytest.approx(48.0)


def test_greenest_goes_where_the_grid_is_cleanest_now():
    result, _ = run_policy("greenest", scenario([job()]))
    assert result.segments[0].site == "west-1"


def test_wait_awhile_stays_near_and_waits_for_the_cleanest_hours_within_the_deadline():
    dirty_then_clean = copy.deepcopy(BASE["sites"])
    dirty_then_clean[0]["grid"]["carbon_kg_per_kwh"] = [0.8] * 6 + [0.3] * 18
    result, _ = run_policy("wait-awhile", scenario([job(deadline_h=20)], sites=dirty_then_clean))
    seg = result.segments[0]
    assert seg.site == "east-1" and seg.start_h == 6.0


def test_suanli_shifts_to_cheap_hours_when_the_deadline_allows_and_not_past_it():
    result, m = run_policy("suanli", scenario([job(origin="west", deadline_h=20)]))
    assert result.segments[0].site == "west-1" and result.segments[0].start_h == 12.0
    result, m = run_policy("suanli", scenario([job(origin="west", deadline_h=5)]))
    assert result.segments[0].start_h == 0.0 and m["late_gpu_h"] == 0


def test_suanli_sends_cut_work_to_the_failed_sites_backup_when_it_costs_about_the_same():
    # mid-1 rents a800 1 % cheaper than east-1, the backup; the rest (6 h) goes to the backup anyway
    sites = copy.deepcopy(BASE["sites"])
    sites[1]["gpus"]["a800"] = {"count": 8, "cny_per_gpu_h": 8.9}
    jobs = [job(origin="west", work_h=8, checkpoint_h=1, gpu_types=["a800"], deadline_h=9)]
    outage = [{"type": "outage", "site": "west-1", "start_h": 2, "end_h": 20}]
    result, _ = run_policy("suanli", scenario(jobs, outage, sites=sites))
    assert [(s.site, s.start_h) for s in result.segments] == [("west-1", 0.0), ("east-1", 2.0)]
    del sites[2]["backup"]                              # no backup for west-1: the cheaper mid-1 wins
    result, _ = run_policy("suanli", scenario(jobs, outage, sites=sites))
    assert [s.site for s in result.segments] == ["west-1", "mid-1"]


# ----------------------------------------------------------------------------- property: always valid
@st.composite
def random_scenario(draw):
    n_jobs = draw(st.integers(1, 25))
    jobs = []
    for i in range(n_jobs):
        submit = draw(st.floats(0, 20, allow_nan=False).map(lambda x: round(x, 3)))
        work = draw(st.floats(0.05, 10).map(lambda x: round(x, 3)))
        j = {"id": f"j{i}", "submit_h": submit, "gpus": draw(st.sampled_from([1, 2, 4, 8, 16])), "work_h": work,
             "origin": draw(st.sampled_from(["east", "mid", "west"])),
             "data_gb": draw(st.sampled_from([0, 10, 900]))}
        if draw(st.booleans()):
            j["deadline_h"] = round(submit + work * draw(st.floats(0.3, 4)) + 0.01, 3)
        if draw(st.booleans()):
            j["checkpoint_h"] = draw(st.sampled_from([0.25, 0.5, 1.0]))
        if draw(st.integers(0, 4)) == 0:
            j["max_rtt_ms"] = draw(st.sampled_from([0, 16, 40]))
        if draw(st.integers(0, 3)) == 0:
            j["gpu_types"] = [draw(st.sampled_from(["a800", "h100"]))]
        jobs.append(j)
    events = []
    for _ in range(draw(st.integers(0, 3))):
        a = draw(st.floats(0, 20).map(lambda x: round(x, 2)))
        site = draw(st.sampled_from(["east-1", "mid-1", "west-1"]))
        if draw(st.booleans()):
            events.append({"type": "outage", "site": site, "start_h": a, "end_h": a + draw(st.floats(0.5, 6))})
        else:
            events.append({"type": "grid_cap", "site": site, "start_h": a, "end_h": a + 3, "max_grid_kw": 1.0,
                           "notice_h": draw(st.sampled_from([0, 4, 24]))})
    sites = copy.deepcopy(BASE["sites"])
    sites[2]["renewables"] = {"kw": [draw(st.floats(0, 6)) for _ in range(24)], "cny_per_kwh": 0.1}
    sites[2]["battery"] = {"capacity_kwh": 8, "power_kw": 2, "efficiency": 0.9, "initial_soc": 0.5}
    return scenario(jobs, events, sites=sites)


@pytest.mark.parametrize("name", ["suanli", "cheapest", "greenest", "wait-awhile", "fifo"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scn=random_scenario())
def test_every_policy_returns_a_valid_schedule_that_accounts_for_every_job(name, scn):
    result, m = run_policy(name, scn)
    finished = m["jobs_finished"]
    assert finished + m["jobs_unfinished"] == len(scn.jobs)
    assert m["jobs_unfinished"] == len(set(result.rejected) | set(result.unplaced)) + sum(
        1 for j in scn.jobs if j.id not in result.rejected and j.id not in result.unplaced
        and not any(s.job_id == j.id for s in result.segments))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scn=random_scenario())
def test_suanli_skips_only_windows_that_cannot_win(scn):
    """The bound that spares pricing a pool's later starts never changes a choice."""
    def runs(policy):
        return [(s.job_id, s.site, s.gpu_type, s.start_h, s.end_h) for s in simulate(scn, policy).segments]
    assert runs(Suanli()) == runs(Suanli(refine_bound=False))


# ----------------------------------------------------------------------------- the vector pricing
def sunny_battery_scenario(jobs=()):
    sites = copy.deepcopy(BASE["sites"])
    sites[2]["renewables"] = {"kw": [0.0] * 6 + [3.0] * 10 + [0.5] * 8, "cny_per_kwh": 0.1}
    sites[2]["battery"] = {"capacity_kwh": 8, "power_kw": 2, "efficiency": 0.9, "initial_soc": 0.5}
    sites[2]["gpus"]["h100"] = {"count": 4, "cny_per_gpu_h": 12.0}
    return scenario(list(jobs) or [job()], sites=sites)


def test_cost_each_and_cost_many_give_what_cost_one_and_cost_give():
    scn = sunny_battery_scenario()
    view = view_of(scn, now=2.3)
    view.ledger.add("west-1", "a800", 10, 2.5, 9.0)               # some load already committed
    pj = PendingJob(scn.jobs[0], 4, 2.3)
    opts, _, _ = pool_options(view, pj, DEFAULT_FILTERS)
    pricer = EnergyPricer(view, view.scratch(), PriceBook(), last=4)
    rng = np.random.default_rng(7)
    starts = np.round(2.3 + rng.uniform(0, 30, len(opts)), 3)
    each = pricer.cost_each(opts.site_pos, 2 * opts.power_kw * opts.pue, starts, opts.duration_h)
    assert each.tolist() == [pricer.cost_one(pj, o, s) for o, s in zip(opts, starts.tolist(), strict=True)]
    runs = [(o, [float(s) + k for k in range(n)]) for o, s, n in zip(opts, starts, (1, 3, 7, 2), strict=False)]
    many = pricer.cost_many(pj, runs)
    for (o, hours), got in zip(runs, many, strict=True):
        assert got.tolist() == [pricer.cost_one(pj, o, h) for h in hours] == pricer.cost(pj, o, hours).tolist()


def test_tier_book_rows_match_fresh_tiers_as_time_moves_and_load_changes():
    scn = sunny_battery_scenario()
    ledger = Ledger(scn)
    book = TierBook()
    k = list(scn.sites).index("west-1")
    committed = []
    for now, add in ((0.5, None), (3.0, (2, 4.0, 11.0)), (7.9, None), (8.0, (4, 8.0, 20.0)), (15.2, None)):
        if add:
            ledger.add("west-1", "a800", *add)
            committed.append(add)
        view = StateView(now=now, scenario=scn, ledger=ledger)
        book.ensure(view, view.scratch(), np.array([k]), np.array([math.floor(now) + 30]))
        fresh = Ledger(scn)                 # the same load, tiers computed once from scratch
        for n, a, b in committed:
            fresh.add("west-1", "a800", n, a, b)
        first = math.floor(now)
        t = fresh.tiers("west-1", first, first + 30, [])
        row = book.rows[:, k, first - book.base: first - book.base + 30]
        assert row[TierBook.CURTAILED].tolist() == t.curtailed.tolist()
        assert row[TierBook.CHARGE].tolist() == t.charge.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_suanli_rank_keeps_the_best_of_every_candidate_it_weighs(seed):
    rng = np.random.default_rng(seed)
    jobs = [job(id=f"j{i}", submit_h=float(rng.uniform(0, 6)), gpus=int(rng.choice([1, 2, 4])),
                work_h=float(rng.uniform(0.5, 6)), origin=str(rng.choice(["east", "mid", "west"])),
                deadline_h=float(rng.uniform(8, 30)), data_gb=float(rng.choice([0, 100])))
            for i in range(12)]
    scn = sunny_battery_scenario(jobs)
    policy = policies.make("suanli")
    result = simulate(scn, policy)
    view = StateView(now=6.0, scenario=scn, ledger=Ledger(scn))
    for s in result.segments[:4]:
        view.ledger.add(s.site, s.gpu_type, s.gpus, s.start_h, s.end_h)
    pj = PendingJob(scn.jobs[0], scn.jobs[0].work_h, 6.0)
    opts, _, _ = pool_options(view, pj, DEFAULT_FILTERS)
    r = policy.rank(view, view.scratch(), pj, opts)
    every = sorted(policy.choose(view, view.scratch(), pj, opts), key=policy.key)
    assert r.weighed == len(every) and r.top == every[: policy.keep]
    # beyond the kept five: the best of each other pool, in the same order, and why a pool has none
    firsts = {}
    for c in every:
        firsts.setdefault((c.site, c.gpu_type), c)
    kept = {(c.site, c.gpu_type) for c in r.top}
    assert r.others == [c for k, c in firsts.items() if k not in kept]
    pools = {(s, g) for s, g in zip(opts.site, opts.gpu_type, strict=True)}
    assert set(r.unscored) == {f"{s}/{g}" for s, g in pools - set(firsts)}


def test_pool_options_leave_out_down_sites_and_charge_no_transfer_where_the_data_is():
    scn = scenario([job(data_gb=450)])
    view = view_of(scn, now=1.0, down={"mid-1"})
    pj = PendingJob(scn.jobs[0], 4, 1.0, hosted=frozenset({"west-1"}))
    opts, rejected, dynamic = pool_options(view, pj, DEFAULT_FILTERS)
    assert dynamic and rejected == {"mid-1": "outage: site is down"}
    assert [o.site for o in opts] == ["east-1", "west-1"]
    assert opts[1].transfer_cny == 0.0 and opts[1].ready_h == 1.0       # already at west-1
    assert options(view, pj, DEFAULT_FILTERS)[0] == list(opts)


def test_a_filter_that_names_no_fields_is_asked_again_for_each_job_shape():
    class OnlyBigGangsWest(Filter):
        name = "custom"

        def site_reason(self, view, pj, site):
            return "small gang" if site == "west-1" and pj.job.gpus < 4 else None

    scn = scenario([job()])
    view = view_of(scn)
    cache = ShapeCache(view, (*DEFAULT_FILTERS, OnlyBigGangsWest()))
    filters = cache.static
    small = pool_options(view, PendingJob(scn.jobs[0], 4, 0.0), filters, cache)[0]
    big_job = scn.jobs[0].model_copy(update={"gpus": 4})
    big = pool_options(view, PendingJob(big_job, 4, 0.0), filters, cache)[0]
    assert "west-1" not in small.site and "west-1" in big.site
