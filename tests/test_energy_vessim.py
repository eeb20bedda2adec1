"""Cross-check of the site energy balance (MODEL.md §4) against vessim, a microgrid simulator
nobody here wrote (TU Berlin, MIT licence, PyPI `vessim`).

vessim runs the same hourly load (a Consumer), renewable power (a Producer), battery and grid
connection with its default dispatch policy, which serves the balance in list order: the
battery first, the grid connection last. Its grid export is our curtailment (MODEL.md §4 sells
nothing back). Its batteries are configured to MODEL.md's rule (docs/ENERGY.md says how):
- `ClcBattery` made linear (u_1 = u_2 = v_1 = 0, v_2 = capacity), charge efficiency eta_c = η,
  discharge eta_d = 1, C-rates ± power/capacity, no current cut-offs: charge = min(surplus,
  power, (capacity - soc) / η), soc += η * charge; discharge = min(deficit, power, soc);
- `SimpleBattery` with c_rate = power / capacity where η = 1 (it has no losses).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import vessim as vs

from conftest import build, make_job, make_site, seg
from suanli.accounting import account
from suanli.energy.balance import BatterySpec, balance

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOURS = 48
DAY = np.arange(HOURS) % 24
SOLAR = np.where((DAY >= 6) & (DAY < 19), 60.0 * np.sin(np.pi * (DAY - 6 + 0.5) / 13), 0.0)   # kW

PROFILES = {   # name: (load kWh per slot, renewable kWh per slot, battery)
    "surplus": (np.full(HOURS, 5.0), np.full(HOURS, 20.0), BatterySpec(200, 30, 0.9, 0.1)),
    "deficit": (np.full(HOURS, 30.0), np.full(HOURS, 4.0), BatterySpec(100, 12, 0.9, 0.9)),
    "battery saturating": (np.full(HOURS, 10.0), np.tile([60.0] * 6 + [0.0] * 18, HOURS // 24),
                           BatterySpec(80, 35, 0.85, 0.5)),
    "solar day, varying load": (20 + 10 * np.cos(np.arange(HOURS) / 3.0), SOLAR, BatterySpec(150, 40, 0.9, 0.5)),
    "lossless battery": (np.full(HOURS, 10.0), np.tile([40.0] * 5 + [0.0] * 7, HOURS // 12),
                         BatterySpec(50, 25, 1.0, 0.0)),
}


class Record(vs.Controller):
    """Keeps each tick's battery and grid setpoints (W) and the battery's stored energy (Wh)."""

    def __init__(self):
        self.battery_w: list[float] = []
        self.grid_w: list[float] = []
        self.stored_wh: list[float] = []

    def step(self, now, microgrid_states):
        state = microgrid_states["site"]["dispatch_states"]
        self.battery_w.append(state["battery"]["current_power"])
        self.grid_w.append(state["grid"]["current_power"])
        self.stored_wh.append(state["battery"]["charge_level"])


def vessim_battery(b: BatterySpec, lossless: bool):
    cap_wh, power_w = b.capacity_kwh * 1000, b.power_kw * 1000
    if lossless:
        return vs.SimpleBattery("battery", capacity=cap_wh, initial_soc=b.initial_soc, c_rate=power_w / cap_wh)
    return vs.ClcBattery("battery", number_of_cells=1, initial_soc=b.initial_soc, nom_voltage=1.0,
                         u_1=0.0, v_1=0.0, u_2=0.0, v_2=cap_wh, alpha_d=-power_w / cap_wh, alpha_c=power_w / cap_wh,
                         eta_d=1.0, eta_c=b.efficiency, discharging_current_cutoff=0.0, charging_current_cutoff=0.0)


def run_vessim(load_kwh: np.ndarray, renewable_kwh: np.ndarray, battery: BatterySpec, lossless: bool):
    """vessim's hourly dispatch, as kWh per slot: (charge, discharge, grid import, export, stored after)."""
    index = pd.to_timedelta(np.arange(len(load_kwh)) * 3600, unit="s")
    env = vs.Environment(sim_start=datetime(2026, 6, 1), step_size=3600)
    env.add_microgrid(
        name="site",
        actors=[vs.Consumer("load", vs.Trace(pd.Series(load_kwh * 1000, index=index))),
                vs.Producer("renewable", vs.Trace(pd.Series(renewable_kwh * 1000, index=index)))],
        dispatchables=[vessim_battery(battery, lossless), vs.GridConnection("grid")])
    rec = env.add_controller(Record())
    result = env.run(until=len(load_kwh) * 3600)
    b, g = np.array(rec.battery_w) / 1000, np.array(rec.grid_w) / 1000
    stored = np.append(rec.stored_wh[1:], result.states["site"]["dispatch_states"]["battery"]["charge_level"]) / 1000
    return np.maximum(b, 0), np.maximum(-b, 0), np.maximum(-g, 0), np.maximum(g, 0), stored


@pytest.mark.parametrize("name", list(PROFILES))
def test_site_balance_agrees_with_vessim_slot_by_slot(name):
    load, renewable, battery = PROFILES[name]
    lossless = battery.efficiency == 1.0
    charge, discharge, grid, export, stored = run_vessim(load, renewable, battery, lossless)
    ours = balance(load, renewable, battery)
    assert ours.grid == pytest.approx(grid, abs=1e-9)
    assert ours.curtailed == pytest.approx(export, abs=1e-9)
    assert ours.charge == pytest.approx(charge, abs=1e-9)
    assert ours.discharge == pytest.approx(discharge, abs=1e-9)
    assert ours.soc == pytest.approx(stored, abs=1e-9)


def test_the_profiles_exercise_what_they_are_named_for():
    def run(name):
        load, renewable, battery = PROFILES[name]
        return balance(load, renewable, battery), battery
    surplus, _ = run("surplus")
    assert surplus.grid.sum() == 0 and surplus.curtailed.sum() > 0
    deficit, b = run("deficit")
    assert deficit.curtailed.sum() == 0 and deficit.discharge.sum() == pytest.approx(b.initial_soc * b.capacity_kwh)
    assert deficit.grid.sum() > 0
    saturating, b = run("battery saturating")
    assert saturating.soc.max() == pytest.approx(b.capacity_kwh)                 # full, then
    assert np.any((saturating.charge > 0) & (saturating.curtailed > 0))          # surplus spills over
    assert np.isclose(saturating.charge, b.power_kw).any()                      # power-limited too
    assert np.any((saturating.discharge > 0) & (saturating.soc == 0))            # and empties
    assert saturating.grid.sum() > 0


def test_a_battery_that_does_not_match_section_4_disagrees():
    """The cross-check can fail: vessim's SimpleBattery has no losses, so with η < 1 it differs."""
    load, renewable, battery = PROFILES["battery saturating"]
    charge, _, _, export, _ = run_vessim(load, renewable, battery, lossless=True)
    ours = balance(load, renewable, battery)
    # with losses it takes more charge to fill the battery, so less is curtailed
    assert ours.charge.sum() - charge.sum() > 1.0
    assert export.sum() - ours.curtailed.sum() > 1.0


def test_accounting_metrics_of_a_schedule_agree_with_vessim():
    """Through `account`: the load comes from a schedule (IT energy * pue), as in a run."""
    renewable = [0, 0, 3, 9, 14, 9, 3, 0]
    scn = build(horizon_h=8, jobs=[make_job("j1", gpus=8, work_h=12), make_job("j2", gpus=4, work_h=4)],
                sites=[make_site(pue=1.2, renewables={"kw": renewable},
                                 battery={"capacity_kwh": 6, "power_kw": 2.5, "efficiency": 0.9, "initial_soc": 0.5})])
    acc = account(scn, [seg("j1", "w1", "h100", 8, 0.5, 6.5), seg("j2", "w1", "a800", 4, 2, 6)])
    load = acc.balances["w1"].load
    assert (load > renewable).any() and (load < renewable).any()        # deficits and surpluses both occur
    charge, discharge, grid, export, _ = run_vessim(load, np.array(renewable, float), BatterySpec(6, 2.5, 0.9, 0.5),
                                                    lossless=False)
    assert acc.metrics["grid_kwh"] == pytest.approx(grid.sum(), abs=1e-9)
    assert acc.metrics["curtailed_kwh"] == pytest.approx(export.sum(), abs=1e-9)
    assert acc.balances["w1"].charge == pytest.approx(charge, abs=1e-9)
    assert acc.balances["w1"].discharge == pytest.approx(discharge, abs=1e-9)
