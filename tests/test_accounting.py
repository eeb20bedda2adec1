"""Metrics of MODEL.md §4 and §6 on tiny scenarios, every number computed by hand.

Defaults (tests/conftest.py): h100 0.5 kW speed 2, a800 0.25 kW speed 1; site w1 (west) has
h100 x8 @10 CNY/GPU-h and a800 x8 @4; site e1 (east) a800 x4 @6; link east-west 8 Gbit/s,
10 ms, 0.5 CNY/GB; horizon 4 h; job j1: 2 GPUs, work_h 4, from west.
"""

from __future__ import annotations

import pytest

from conftest import build, make_job, make_site, seg
from suanli.accounting import METRIC_KEYS, account, nearest_rank, validate


def energy_site(**overrides):
    """w1 alone (e1 dropped), with energy fields overridden."""
    return [make_site(**overrides)]


# ----------------------------------------------------------------------------- battery (§4)
def test_battery_charges_from_renewable_surplus_and_stores_efficiency_times_charge():
    scn = build(sites=energy_site(renewables={"kw": 10, "cny_per_kwh": 0.1},
                                  battery={"capacity_kwh": 100, "power_kw": 50, "efficiency": 0.8,
                                           "initial_soc": 0}))
    # j1 on 2 h100 (1 kW IT) for work 4 / speed 2 = 2 h: L = [1, 1, 0, 0], R = 10 per slot.
    acc = account(scn, [seg("j1", "w1", "h100", 2, 0, 2)])
    bal = acc.balances["w1"]
    # slot 0: surplus 9, charge min(9, 50, 100/0.8) = 9, soc = 0.8*9 = 7.2
    # slot 1: surplus 9, charge 9, soc 14.4; slots 2, 3: surplus 10, charge 10, soc 22.4, 30.4
    assert list(bal.charge) == pytest.approx([9, 9, 10, 10])
    assert list(bal.soc) == pytest.approx([7.2, 14.4, 22.4, 30.4])
    assert list(bal.grid) == pytest.approx([0, 0, 0, 0])
    m = acc.metrics
    assert m["renewable_used_kwh"] == pytest.approx(2.0)
    assert m["curtailed_kwh"] == pytest.approx(0.0)
    assert m["grid_kwh"] == pytest.approx(0.0)
    # renewables cost: (used 2 + charge 38) * 0.1 = 4.0
    assert m["energy_cost_cny"] == pytest.approx(4.0)


def test_battery_charge_is_limited_by_power_kw_and_the_rest_is_curtailed():
    scn = build(sites=energy_site(renewables={"kw": 10},
                                  battery={"capacity_kwh": 100, "power_kw": 4, "efficiency": 0.8}))
    acc = account(scn, [seg("j1", "w1", "h100", 2, 0, 2)])
    bal = acc.balances["w1"]
    # surplus [9, 9, 10, 10]; charge min(surplus, 4) = 4; curtailed [5, 5, 6, 6] = 22
    assert list(bal.charge) == pytest.approx([4, 4, 4, 4])
    assert list(bal.soc) == pytest.approx([3.2, 6.4, 9.6, 12.8])
    assert acc.metrics["curtailed_kwh"] == pytest.approx(22.0)


def test_battery_discharge_is_limited_by_power_kw_and_not_divided_by_efficiency():
    scn = build(horizon_h=2, jobs=[make_job(gpus=8)],
                sites=energy_site(grid={"cny_per_kwh": 0.5, "carbon_kg_per_kwh": 0.6},
                                  battery={"capacity_kwh": 100, "power_kw": 3, "efficiency": 0.5,
                                           "initial_soc": 0.5}))
    # 8 h100 = 4 kW for work 4 / speed 2 = 2 h: L = [4, 4], R = 0, soc0 = 50.
    acc = account(scn, [seg("j1", "w1", "h100", 8, 0, 2)])
    bal = acc.balances["w1"]
    # each slot: discharge min(4, 3, soc) = 3, grid 1; soc 50 -> 47 -> 44 (soc -= discharge)
    assert list(bal.discharge) == pytest.approx([3, 3])
    assert list(bal.grid) == pytest.approx([1, 1])
    assert list(bal.soc) == pytest.approx([47, 44])
    assert acc.metrics["grid_kwh"] == pytest.approx(2.0)
    assert acc.metrics["energy_cost_cny"] == pytest.approx(1.0)    # 2 * 0.5
    assert acc.metrics["carbon_kg"] == pytest.approx(1.2)          # 2 * 0.6


def test_battery_discharge_is_limited_by_state_of_charge():
    scn = build(horizon_h=2, jobs=[make_job(gpus=8)],
                sites=energy_site(battery={"capacity_kwh": 10, "power_kw": 100, "initial_soc": 0.2}))
    acc = account(scn, [seg("j1", "w1", "h100", 8, 0, 2)])
    bal = acc.balances["w1"]
    # L = [4, 4], soc0 = 2: slot 0 discharge 2, grid 2; slot 1 discharge 0, grid 4
    assert list(bal.discharge) == pytest.approx([2, 0])
    assert list(bal.grid) == pytest.approx([2, 4])


def test_renewable_surplus_is_curtailed_once_the_battery_is_full():
    scn = build(horizon_h=2, sites=energy_site(
        renewables={"kw": 20, "cny_per_kwh": 0.1},
        battery={"capacity_kwh": 10, "power_kw": 100, "efficiency": 0.5, "initial_soc": 0.8}))
    acc = account(scn, [])
    bal = acc.balances["w1"]
    # no load; soc0 = 8. slot 0: charge min(20, 100, (10-8)/0.5 = 4) = 4, soc 10, curtailed 16.
    # slot 1: battery full, charge 0, curtailed 20.
    assert list(bal.charge) == pytest.approx([4, 0])
    assert list(bal.soc) == pytest.approx([10, 10])
    assert list(bal.curtailed) == pytest.approx([16, 20])
    assert acc.metrics["curtailed_kwh"] == pytest.approx(36.0)
    assert acc.metrics["renewable_used_kwh"] == pytest.approx(0.0)
    assert acc.metrics["energy_cost_cny"] == pytest.approx(0.4)     # (0 + 4) * 0.1


@pytest.mark.parametrize("battery", [None, {"capacity_kwh": 0, "power_kw": 100, "initial_soc": 1}],
                         ids=["no-battery", "zero-capacity"])
def test_no_battery_or_zero_capacity_curtails_surplus_and_imports_every_deficit(battery):
    extra = {} if battery is None else {"battery": battery}
    scn = build(horizon_h=2, jobs=[make_job(gpus=8)],
                sites=energy_site(renewables={"kw": [10, 0]}, grid={"cny_per_kwh": 1.0}, **extra))
    acc = account(scn, [seg("j1", "w1", "h100", 8, 0, 2)])
    bal = acc.balances["w1"]
    # L = [4, 4], R = [10, 0]: slot 0 used 4, curtailed 6; slot 1 grid 4
    assert list(bal.used) == pytest.approx([4, 0])
    assert list(bal.curtailed) == pytest.approx([6, 0])
    assert list(bal.grid) == pytest.approx([0, 4])
    assert list(bal.charge) == pytest.approx([0, 0])
    assert list(bal.discharge) == pytest.approx([0, 0])
    assert acc.metrics["energy_cost_cny"] == pytest.approx(4.0)


def test_renewables_cost_is_used_plus_charge_times_price_and_used_excludes_battery_flows():
    scn = build(horizon_h=2, jobs=[make_job(gpus=8, work_h=2)],
                sites=energy_site(renewables={"kw": [3, 0], "cny_per_kwh": 0.2}, grid={"cny_per_kwh": 1.0},
                                  battery={"capacity_kwh": 10, "power_kw": 10}))
    # 8 a800 = 2 kW for 2 h: L = [2, 2].
    # slot 0: R 3 -> used 2, charge 1 (soc 1); slot 1: R 0 -> discharge 1, grid 1.
    acc = account(scn, [seg("j1", "w1", "a800", 8, 0, 2)])
    m = acc.metrics
    assert m["renewable_used_kwh"] == pytest.approx(2.0)
    assert m["grid_kwh"] == pytest.approx(1.0)
    # grid 1 * 1.0 + (used 2 + charge 1) * 0.2 = 1.6
    assert m["energy_cost_cny"] == pytest.approx(1.6)


# ----------------------------------------------------------------------------- series, PUE, T
def test_tariff_and_carbon_apply_per_slot_with_cyclic_lists_for_a_fractional_segment():
    scn = build(jobs=[make_job(gpus=4, work_h=3.5)],
                sites=energy_site(pue=1.5, grid={"cny_per_kwh": [1.0, 2.0], "carbon_kg_per_kwh": [0.4, 0.2]}))
    # 4 h100 = 2 kW IT over [0.5, 2.25) (1.75 h * speed 2 = 3.5 work):
    # IT = [0.5*2, 1*2, 0.25*2, 0] = [1, 2, 0.5, 0]; L = 1.5 * IT = [1.5, 3, 0.75, 0]
    # tariff slots 0,1,2 = 1, 2, 1 (cyclic); carbon = 0.4, 0.2, 0.4
    acc = account(scn, [seg("j1", "w1", "h100", 4, 0.5, 2.25)])
    assert list(acc.balances["w1"].load) == pytest.approx([1.5, 3.0, 0.75, 0.0])
    m = acc.metrics
    assert m["energy_kwh"] == pytest.approx(5.25)
    assert m["grid_kwh"] == pytest.approx(5.25)
    assert m["energy_cost_cny"] == pytest.approx(8.25)     # 1.5*1 + 3*2 + 0.75*1
    assert m["carbon_kg"] == pytest.approx(1.5)            # 1.5*0.4 + 3*0.2 + 0.75*0.4
    assert list(acc.series["w1"].cny_per_kwh) == pytest.approx([1, 2, 1, 2])


def test_pue_multiplies_it_energy_before_renewables_and_grid():
    scn = build(sites=energy_site(pue=1.2, renewables={"kw": 0.5}, grid={"cny_per_kwh": 1.0}))
    # 2 a800 = 0.5 kW IT for 4 h: IT 2 kWh; L = 0.6 per slot (2.4 in all);
    # R = 0.5 per slot: used 0.5, grid 0.1 per slot -> grid 0.4
    acc = account(scn, [seg("j1", "w1", "a800", 2, 0, 4)])
    m = acc.metrics
    assert m["energy_kwh"] == pytest.approx(2.4)
    assert m["renewable_used_kwh"] == pytest.approx(2.0)
    assert m["grid_kwh"] == pytest.approx(0.4)
    assert m["energy_cost_cny"] == pytest.approx(0.4)


def test_slot_count_extends_past_the_horizon_and_accounts_series_slots_there_at_every_site():
    scn = build(sites=[make_site(grid={"cny_per_kwh": [1, 1, 1, 1, 3, 3]}),
                       make_site("e1", "east", gpus={"a800": {"count": 4}})])
    # horizon 4, last end 5.5 -> T = max(4, ceil(5.5)) = 6.
    # 2 h100 = 1 kW over [2, 5.5): L = [0, 0, 1, 1, 1, 0.5]; cost 1 + 1 + 3 + 1.5 = 6.5
    acc = account(scn, [seg("j1", "w1", "h100", 2, 2, 5.5)])
    assert acc.slots == 6
    assert len(acc.balances["e1"].load) == 6
    assert len(acc.series["e1"].renewable_kw) == 6
    assert list(acc.balances["w1"].load) == pytest.approx([0, 0, 1, 1, 1, 0.5])
    assert acc.metrics["energy_cost_cny"] == pytest.approx(6.5)


@pytest.mark.parametrize(("horizon", "end", "slots"), [(3.5, 2.0, 4), (4, 3.0, 4), (4, 4.000001, 5), (2, 7.25, 8)])
def test_slot_count_is_max_of_ceil_horizon_and_ceil_last_end(horizon, end, slots):
    scn = build(horizon_h=horizon)
    assert account(scn, [seg("j1", "w1", "a800", 2, 0, end)]).slots == slots


def test_slot_count_without_segments_is_ceil_horizon():
    assert account(build(horizon_h=3.5), []).slots == 4


# ----------------------------------------------------------------------------- costs
@pytest.mark.parametrize(("segments", "expected"), [
    # 10 GB * 0.5 CNY/GB = 5 per west site; e1 is in the origin city: 0
    ([("w1", 0, 1), ("w1", 2, 3)], 5.0),
    ([("w1", 0, 1), ("w1", 2, 3), ("w2", 3, 4)], 10.0),
    ([("w1", 0, 1), ("e1", 1, 2), ("w1", 2, 3)], 5.0),
    ([("e1", 0, 1)], 0.0),
], ids=["two-segments-one-site", "second-site-pays-again", "origin-city-free", "origin-city-only"])
def test_transfer_is_paid_once_per_job_and_site(segments, expected):
    scn = build(jobs=[make_job(origin="east", data_gb=10)],
                sites=[make_site(), make_site("w2"), make_site("e1", "east", gpus={"a800": {"count": 4}})])
    acc = account(scn, [seg("j1", s, "a800", 2, a, b) for s, a, b in segments])
    assert acc.metrics["transfer_cost_cny"] == pytest.approx(expected)


def test_transfer_is_paid_per_job_even_for_the_same_site():
    scn = build(jobs=[make_job(origin="east", data_gb=10), make_job("j2", origin="east", data_gb=4)])
    acc = account(scn, [seg("j1", "w1", "a800", 2, 0, 4), seg("j2", "w1", "a800", 2, 0, 4)])
    assert acc.metrics["transfer_cost_cny"] == pytest.approx(7.0)     # (10 + 4) * 0.5


def test_gpu_cost_includes_an_uncheckpointed_cut_segment():
    scn = build()
    # j1 runs 1 h on h100 without checkpoint (kept nothing), then all 4 h of work on a800.
    segments = [seg("j1", "w1", "h100", 2, 0, 1), seg("j1", "w1", "a800", 2, 1, 5)]
    violations, outcomes = validate(scn, segments)
    assert violations == []
    assert outcomes["j1"].finished and outcomes["j1"].completion_h == pytest.approx(5.0)
    acc = account(scn, segments)
    # 1 h * 2 GPUs * 10 + 4 h * 2 GPUs * 4 = 20 + 32
    assert acc.metrics["gpu_cost_cny"] == pytest.approx(52.0)
    assert acc.metrics["total_cost_cny"] == pytest.approx(52.0)


# ----------------------------------------------------------------------------- jobs
def test_late_gpu_hours_and_deadline_misses_count_finished_jobs_past_their_deadline():
    scn = build(horizon_h=8, objective={"late_cny_per_gpu_h": 50},
                sites=[make_site(gpus={"a800": {"count": 100, "cny_per_gpu_h": 4}})],
                jobs=[make_job("j1", deadline_h=3),                       # ends at 5: 2 h late
                      make_job("j2", work_h=2, deadline_h=2),             # ends exactly at 2
                      make_job("j3", work_h=2, deadline_h=2),             # ends 5e-7 h late: within 1e-6
                      make_job("j4", work_h=2, deadline_h=1)])            # unfinished: not a miss
    acc = account(scn, [seg("j1", "w1", "a800", 2, 1, 5), seg("j2", "w1", "a800", 2, 0, 2),
                        seg("j3", "w1", "a800", 2, 5e-7, 2 + 5e-7)])
    m = acc.metrics
    # late = 2 * (5 - 3) + 2 * 5e-7 = 4.000001
    assert m["late_gpu_h"] == pytest.approx(4.000001, abs=1e-9)
    assert m["deadline_misses"] == 1
    assert m["jobs_finished"] == 3 and m["jobs_unfinished"] == 1
    # objective: gpu cost (4+2+2) h * 2 GPUs * 4 = 64, plus 50 * 4.000001
    assert m["objective_cny"] == pytest.approx(64 + 50 * 4.000001)


def test_unfinished_jobs_add_their_penalty_to_the_objective():
    scn = build(objective={"unfinished_cny": 1000}, jobs=[make_job("j1"), make_job("j2")])
    # j1 runs 1 h of its 4 on a800 (too short: unfinished, not a violation); j2 never runs.
    acc = account(scn, [seg("j1", "w1", "a800", 2, 0, 1)])
    m = acc.metrics
    assert m["jobs_total"] == 2 and m["jobs_finished"] == 0 and m["jobs_unfinished"] == 2
    assert m["mean_jct_h"] == 0 and m["p95_jct_h"] == 0
    assert m["gpu_cost_cny"] == pytest.approx(8.0)                 # 1 h * 2 * 4
    assert m["objective_cny"] == pytest.approx(8.0 + 2 * 1000)


def test_nearest_rank_p95_of_twenty_values_is_the_nineteenth_smallest():
    values = [float(v) for v in range(20, 0, -1)]                  # 20 .. 1, unsorted
    assert nearest_rank(values, 95) == 19.0                        # ceil(0.95 * 20) = 19


def test_nearest_rank_of_twenty_one_values_is_the_twentieth_smallest():
    assert nearest_rank([float(v) for v in range(1, 22)], 95) == 20.0    # ceil(19.95) = 20


def test_nearest_rank_of_one_value_is_that_value_and_of_none_is_zero():
    assert nearest_rank([7.5], 95) == 7.5
    assert nearest_rank([], 95) == 0.0


def test_mean_and_p95_jct_over_finished_jobs_by_nearest_rank():
    jobs = [make_job(f"j{i:02d}", gpus=1, work_h=float(i)) for i in range(1, 21)]
    scn = build(horizon_h=20, jobs=jobs, sites=[make_site(gpus={"a800": {"count": 20}})])
    acc = account(scn, [seg(f"j{i:02d}", "w1", "a800", 1, 0, i) for i in range(1, 21)])
    # JCTs 1 .. 20: mean 10.5, p95 the 19th smallest = 19
    assert acc.metrics["jobs_finished"] == 20
    assert acc.metrics["mean_jct_h"] == pytest.approx(10.5)
    assert acc.metrics["p95_jct_h"] == pytest.approx(19.0)


def test_jct_is_completion_minus_submit():
    scn = build(jobs=[make_job(submit_h=1.5, work_h=2)])
    acc = account(scn, [seg("j1", "w1", "a800", 2, 2, 4)])
    assert acc.metrics["mean_jct_h"] == pytest.approx(2.5)         # 4 - 1.5
    assert acc.metrics["p95_jct_h"] == pytest.approx(2.5)


def test_gpu_utilization_counts_only_gpu_hours_inside_the_horizon():
    scn = build(jobs=[make_job(work_h=4), make_job("j2", work_h=1, origin="east")])
    # pools: w1 8 + 8, e1 4 = 20 GPUs * horizon 4 = 80 GPU-h available.
    # j1 2 GPUs over [2, 6): 2 h inside -> 4 GPU-h; j2 2 GPUs over [1, 2) on e1 -> 2 GPU-h
    acc = account(scn, [seg("j1", "w1", "a800", 2, 2, 6), seg("j2", "e1", "a800", 2, 1, 2)])
    assert acc.metrics["gpu_utilization"] == pytest.approx(6 / 80)


def test_gpu_utilization_does_not_subtract_outages():
    scn = build(events=[{"type": "outage", "site": "w1", "start_h": 0, "end_h": 4}])
    acc = account(scn, [seg("j1", "e1", "a800", 2, 0, 4)])
    assert acc.metrics["gpu_utilization"] == pytest.approx(8 / 80)     # 2 GPUs * 4 h / (20 * 4)


# ----------------------------------------------------------------------------- grid caps
def _capped(events, objective=None):
    scn = build(horizon_h=3, jobs=[make_job(gpus=8, work_h=6)], events=events,
                objective=objective or {}, sites=energy_site(grid={"cny_per_kwh": 0}) + [
                    make_site("e1", "east", gpus={"a800": {"count": 4}})])
    # 8 h100 = 4 kW for 3 h: grid import 4 kWh in slots 0, 1, 2
    return account(scn, [seg("j1", "w1", "h100", 8, 0, 3)])


def cap(start, end, kw, site="w1"):
    return {"type": "grid_cap", "site": site, "start_h": start, "end_h": end, "max_grid_kw": kw}


def test_grid_cap_violation_is_grid_import_above_the_cap_in_active_slots():
    acc = _capped([cap(0, 1, 1)], {"dr_cny_per_kwh": 10})
    assert acc.metrics["dr_violation_kwh"] == pytest.approx(3.0)          # slot 0: 4 - 1
    assert acc.metrics["objective_cny"] == pytest.approx(30.0 + 3 * 8 * 10)   # dr + gpu 3 h*8*10


def test_two_overlapping_grid_caps_each_add_their_own_violation():
    acc = _capped([cap(0, 2, 1), cap(1, 3, 2.5)])
    # slot 0: A 3; slot 1: A 3 + B 1.5; slot 2: B 1.5 -> 9
    assert acc.metrics["dr_violation_kwh"] == pytest.approx(9.0)


def test_grid_cap_is_active_over_slot_t_when_start_le_t_lt_end():
    # [0.5, 1.5): only slot 1 satisfies 0.5 <= t < 1.5
    assert _capped([cap(0.5, 1.5, 1)]).metrics["dr_violation_kwh"] == pytest.approx(3.0)


def test_grid_cap_on_another_site_or_above_the_import_adds_nothing():
    assert _capped([cap(0, 3, 0, site="e1"), cap(0, 3, 4)]).metrics["dr_violation_kwh"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- objective
def test_objective_is_total_cost_plus_carbon_late_unfinished_and_dr_prices():
    scn = build(
        objective={"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 1000,
                   "dr_cny_per_kwh": 10},
        sites=[make_site(pue=1.25, grid={"cny_per_kwh": 0.4, "carbon_kg_per_kwh": 0.8})],
        jobs=[make_job("j1", origin="east", data_gb=36, deadline_h=2), make_job("j2")],
        events=[cap(1, 2, 0.5)])
    # j1: 36 GB east->west takes 36*8/8/3600 = 0.01 h; 2 h100 (1 kW) over [1, 3) does work 4.
    segments = [seg("j1", "w1", "h100", 2, 1, 3)]
    assert validate(scn, segments)[0] == []
    m = account(scn, segments).metrics
    # L = 1.25 in slots 1, 2: grid 2.5; energy cost 2.5*0.4 = 1.0; carbon 2.5*0.8 = 2.0 kg
    # dr: slot 1: 1.25 - 0.5 = 0.75; gpu 2 h*2*10 = 40; transfer 36*0.5 = 18; total 59
    # late 2 * (3 - 2) = 2; j2 unfinished
    assert list(m) == list(METRIC_KEYS)
    assert m["gpu_cost_cny"] == pytest.approx(40.0)
    assert m["transfer_cost_cny"] == pytest.approx(18.0)
    assert m["energy_cost_cny"] == pytest.approx(1.0)
    assert m["total_cost_cny"] == pytest.approx(59.0)
    assert m["carbon_kg"] == pytest.approx(2.0)
    assert m["dr_violation_kwh"] == pytest.approx(0.75)
    assert m["late_gpu_h"] == pytest.approx(2.0)
    assert m["jobs_unfinished"] == 1
    # 59 + 0.1*2 + 50*2 + 1000*1 + 10*0.75 = 1166.7
    assert m["objective_cny"] == pytest.approx(1166.7)


# ----------------------------------------------------------------------------- true work, wait-excess (§3, §6)
def test_progress_is_held_to_actual_work_not_the_estimate():
    scn = build(jobs=[make_job(work_h=4, actual_work_h=6)])
    # a800 (speed 1): the estimate's 4 h leave the job unfinished; its true 6 h finish it
    short = validate(scn, [seg("j1", "w1", "a800", 2, 0, 4)])
    assert short[0] == [] and not short[1]["j1"].finished and short[1]["j1"].kept_work == 4.0
    ok = validate(scn, [seg("j1", "w1", "a800", 2, 0, 6)])
    assert ok[0] == [] and ok[1]["j1"].completion_h == 6.0
    over = validate(scn, [seg("j1", "w1", "a800", 2, 0, 7)])[0]
    assert [v.rule for v in over] == ["3.7"] and "actual_work_h=6" in over[0].message
    # a job that needs less than its estimate ends when its true work is done: 1.5 h on h100 (speed 2)
    early = build(jobs=[make_job(work_h=4, actual_work_h=3)])
    assert validate(early, [seg("j1", "w1", "h100", 2, 0, 1.5)])[1]["j1"].completion_h == 1.5
    assert [v.rule for v in validate(early, [seg("j1", "w1", "h100", 2, 0, 2)])[0]] == ["3.7"]


def test_wait_excess_is_gpus_times_first_start_past_submit_plus_max_wait():
    jobs = [make_job("j1", submit_h=1, max_wait_h=0.5, checkpoint_h=1),       # first start 3: 2 x 1.5
            make_job("j2", gpus=4, max_wait_h=2),                             # starts at 1: nothing
            make_job("j3", gpus=1, max_wait_h=0),                             # unfinished: nothing
            make_job("j4", gpus=1, submit_h=0)]                               # no max_wait_h: nothing
    scn = build(jobs=jobs, horizon_h=8, objective={"late_cny_per_gpu_h": 10, "wait_cny_per_gpu_h": 3})
    segments = [seg("j1", "w1", "a800", 2, 3, 4.5), seg("j1", "w1", "a800", 2, 5, 8),   # 1 h kept, then 3
                seg("j2", "w1", "h100", 4, 1, 3), seg("j3", "w1", "h100", 1, 0, 1),
                seg("j4", "w1", "h100", 1, 6, 8)]
    acc = account(scn, segments)
    assert acc.outcomes["j1"].first_start_h == 3 and acc.outcomes["j1"].finished
    assert not acc.outcomes["j3"].finished
    m = acc.metrics
    assert m["wait_excess_gpu_h"] == pytest.approx(2 * 1.5)
    # the objective: total cost + 3 CNY per GPU-hour of wait-excess (no lateness, nothing unfinished priced)
    assert m["objective_cny"] == pytest.approx(m["total_cost_cny"] + 3 * 3.0)
    assert list(m) == list(METRIC_KEYS) and list(m)[-1] == "wait_excess_gpu_h"
