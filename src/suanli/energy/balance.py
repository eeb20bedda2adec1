"""The site energy balance of MODEL.md §4, one site, slot by slot.

All quantities are energies in kWh per 1-hour slot; battery power limits in kW are therefore
kWh per slot. Signs: every quantity is non-negative; `charge` flows into the battery (before
losses: the battery gains `efficiency * charge`), `discharge` flows out of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatterySpec:
    capacity_kwh: float = 0.0
    power_kw: float = 0.0
    efficiency: float = 1.0
    initial_soc: float = 0.0      # fraction of capacity at slot 0


@dataclass
class Balance:
    """Per-slot results (arrays of length T, kWh)."""

    load: np.ndarray        # L_t = pue * IT energy
    used: np.ndarray        # renewable energy serving the load directly
    charge: np.ndarray      # renewable surplus put into the battery
    curtailed: np.ndarray   # renewable surplus neither used nor stored
    discharge: np.ndarray   # battery energy serving the load
    grid: np.ndarray        # grid import
    soc: np.ndarray         # state of charge at the end of each slot


def balance(load: np.ndarray, renewable: np.ndarray, battery: BatterySpec | None) -> Balance:
    """Apply the §4 rule: renewables first, then the battery, then the grid."""
    load = np.asarray(load, dtype=float)
    renewable = np.asarray(renewable, dtype=float)
    used = np.minimum(load, renewable)
    surplus = np.maximum(renewable - load, 0.0)
    deficit = np.maximum(load - renewable, 0.0)
    T = len(load)
    if battery is None or battery.capacity_kwh <= 0:
        zero = np.zeros(T)
        return Balance(load, used, zero, surplus, zero.copy(), deficit, zero.copy())
    cap, pw, eta = battery.capacity_kwh, battery.power_kw, battery.efficiency
    soc = battery.initial_soc * cap
    charge = [0.0] * T
    discharge = [0.0] * T
    socs = [0.0] * T
    # The state of charge carries from slot to slot, so this loop is sequential by nature.
    for t, (s, d) in enumerate(zip(surplus.tolist(), deficit.tolist(), strict=True)):
        if d <= 0.0:                                   # R_t >= L_t
            c = min(s, pw, (cap - soc) / eta)
            soc += eta * c
            charge[t] = c
        else:
            x = min(d, pw, soc)
            soc -= x
            discharge[t] = x
        socs[t] = soc
    charge_a = np.asarray(charge)
    discharge_a = np.asarray(discharge)
    return Balance(load, used, charge_a, surplus - charge_a, discharge_a, deficit - discharge_a,
                   np.asarray(socs))
