"""Compiled loops (Numba) for the two slot-by-slot walks pricing repeats for every job.

Pricing a run walks its hourly slots in time order, filling the cheapest energy tier first;
replaying the battery rule walks the slots of a site. Both are short loops with a branch per
slot: as NumPy array expressions they cost some dozens of calls on tiny arrays per job, which
dominated the policy's time. Compiled, each is one call. `cache=True` keeps the machine code
beside this file, so only the first run on a machine compiles.

Each function does exactly what the plain Python it replaced did, in the same order of
floating-point operations, so results do not change with the compiler.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# rows of a TierBook's (7 × sites × slots) array, as `TierBook` names them
_CURTAILED, _CHARGE, _BELOW_CAP, _GRID, _RENEWABLE, _CHARGE_PRICE, _OVER_CAP_PRICE = range(7)


@njit(cache=True, nogil=True)
def run_energy_cny(rows: np.ndarray, base: int, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray,
                   ends: np.ndarray) -> np.ndarray:
    """CNY of the energy each run i draws: kw[i] kW at site row site_pos[i] over
    [starts[i], ends[i]), slot by slot in time order from floor(start) to max(ceil(end),
    floor(start) + 1), each slot's kWh filling the tiers cheapest first (curtailed renewables,
    renewables that would charge the battery, grid below an announced cap, grid above it).
    `rows[:, k, t - base]` holds site k's tiers for slot t."""
    out = np.empty(len(starts))
    for i in range(len(starts)):
        start, end, p, k = starts[i], ends[i], kw[i], site_pos[i]
        first = math.floor(start)
        last = max(math.ceil(end), first + 1)
        total = 0.0
        for t in range(first, last):
            x = (min(t + 1.0, end) - max(float(t), start)) * p
            if x <= 0.0:
                continue
            j = t - base
            a = min(x, rows[_CURTAILED, k, j])
            x -= a
            b = min(x, rows[_CHARGE, k, j])
            x -= b
            c = min(x, rows[_BELOW_CAP, k, j])
            total += (a * rows[_RENEWABLE, k, j] + b * rows[_CHARGE_PRICE, k, j] + c * rows[_GRID, k, j]
                      + (x - c) * rows[_OVER_CAP_PRICE, k, j])
        out[i] = total
    return out


@njit(cache=True, nogil=True)
def battery_advance(ren: np.ndarray, load: np.ndarray, t: int, until: int, soc: float, cap: float, pw: float,
                    eta: float) -> float:
    """The battery's charge at the start of slot `until`, from `soc` at the start of slot `t`
    (MODEL.md §4: surplus charges it, up to its power and room; a deficit draws on it)."""
    while t < until:
        r, ld = ren[t], load[t]
        if r >= ld:
            soc += eta * min(r - ld, pw, (cap - soc) / eta)
        else:
            soc -= min(ld - r, pw, soc)
        t += 1
    return soc


@njit(cache=True, nogil=True)
def battery_charge(surplus: np.ndarray, deficit: np.ndarray, soc: float, cap: float, pw: float,
                   eta: float) -> np.ndarray:
    """kWh of each slot's renewable surplus the battery takes, from `soc` at the first slot."""
    n = len(surplus)
    out = np.zeros(n)
    for k in range(n):
        if deficit[k] <= 0.0:
            c = min(surplus[k], pw, (cap - soc) / eta)
            soc += eta * c
            out[k] = c
        else:
            soc -= min(deficit[k], pw, soc)
    return out
