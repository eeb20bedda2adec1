"""Compiled loops (Numba) for the slot-by-slot walks that pricing repeats for every job.

Pricing a run walks its hourly slots in time order, filling the cheapest energy tier first
(`run_energy_cny`, and `run_prices`, which adds lateness and delay); deriving a site's free
energy replays the battery rule over its slots (`battery_advance`, `free_energy`). Each is a
short loop with a branch per slot: as NumPy array expressions they cost some dozens of calls on
tiny arrays per job, which dominated the policy's time; compiled, each is one call (about
2 µs for 20 runs, against about 60 µs in NumPy). `cache=True` keeps the machine code beside
this file, so only the first run on a machine compiles; each process still pays Numba's start
(about half a second, once).

Each function does what the plain Python it replaced did, in the same order of floating-point
operations, so results do not depend on the compiler.
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
def _with_terms(energy: np.ndarray, bill: np.ndarray, starts: np.ndarray, ends: np.ndarray, late_cny_per_h: float,
                deadline: float, delay_cny_per_h: float,
                soonest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`energy` with each run's lateness, delay and total (`run_prices`, `run_prices_expected`)."""
    n = len(starts)
    late = np.zeros(n)
    wait = np.empty(n)
    total = np.empty(n)
    for i in range(n):
        if deadline == deadline:            # not NaN
            late[i] = late_cny_per_h * max(0.0, ends[i] - deadline)
        wait[i] = delay_cny_per_h * (starts[i] - soonest)
        total[i] = bill[i] + energy[i] + late[i] + wait[i]
    return energy, late, wait, total


@njit(cache=True, nogil=True)
def run_prices(rows: np.ndarray, base: int, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray,
               ends: np.ndarray, bill: np.ndarray, late_cny_per_h: float, deadline: float, delay_cny_per_h: float,
               soonest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each run i: its energy (as `run_energy_cny`), its lateness (late_cny_per_h per hour
    its end passes `deadline`; NaN: no deadline), its delay (delay_cny_per_h per hour it starts
    after `soonest`) and its total, bill[i] + energy + lateness + delay."""
    energy = run_energy_cny(rows, base, site_pos, kw, starts, ends)
    return _with_terms(energy, bill, starts, ends, late_cny_per_h, deadline, delay_cny_per_h, soonest)


@njit(cache=True, nogil=True)
def _mean_min(ratios: np.ndarray, sums: np.ndarray, y: float) -> float:
    """E[min(r, y)] for r equally likely each of `ratios` (ascending; `sums` their prefix sums,
    from 0): the ratios below y count whole, the others as y."""
    lo, hi = 0, len(ratios)
    while lo < hi:                          # the number of ratios below y
        mid = (lo + hi) // 2
        if ratios[mid] < y:
            lo = mid + 1
        else:
            hi = mid
    return (sums[lo] + y * (len(ratios) - lo)) / len(ratios)


@njit(cache=True, nogil=True)
def run_energy_expected(rows: np.ndarray, base: int, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray,
                        ends: np.ndarray, unit: np.ndarray, ratios: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """The expected CNY of the energy each run i draws when its length is uncertain: as
    `run_energy_cny`, but each slot's cost (the full draw over the slot's part of the run,
    filling the tiers) is weighted by the share of that part the run is still going, on
    average: a run of true length unit[i] × r, r equally likely each of `ratios` (ascending;
    `sums` their prefix sums), cut at ends[i], runs E[min(unit·r, b − s)] − E[min(unit·r, a − s)]
    hours of the slot's part [a, b). Where the tiers are priced alike (a grid hour without
    renewables) this is the exact expectation; where a run's draw would spill into a dearer tier,
    an upper bound (a shorter stay in the slot draws less and stays in the cheaper tiers)."""
    out = np.empty(len(starts))
    for i in range(len(starts)):
        start, end, p, k, u = starts[i], ends[i], kw[i], site_pos[i], unit[i]
        first = math.floor(start)
        last = max(math.ceil(end), first + 1)
        total = 0.0
        for t in range(first, last):
            a, b = max(float(t), start), min(t + 1.0, end)
            x = (b - a) * p
            if x <= 0.0:
                continue
            stay = u * (_mean_min(ratios, sums, (b - start) / u) - _mean_min(ratios, sums, (a - start) / u))
            j = t - base
            c1 = min(x, rows[_CURTAILED, k, j])
            x -= c1
            c2 = min(x, rows[_CHARGE, k, j])
            x -= c2
            c3 = min(x, rows[_BELOW_CAP, k, j])
            cost = (c1 * rows[_RENEWABLE, k, j] + c2 * rows[_CHARGE_PRICE, k, j] + c3 * rows[_GRID, k, j]
                    + (x - c3) * rows[_OVER_CAP_PRICE, k, j])
            total += cost * (stay / (b - a))
        out[i] = total
    return out


@njit(cache=True, nogil=True)
def run_prices_expected(rows: np.ndarray, base: int, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray,
                        ends: np.ndarray, unit: np.ndarray, ratios: np.ndarray, sums: np.ndarray, bill: np.ndarray,
                        late_cny_per_h: float, deadline: float, delay_cny_per_h: float,
                        soonest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`run_prices` with the energy of `run_energy_expected` (lateness, delay and the bill as
    booked: the booking is what the run may hold)."""
    energy = run_energy_expected(rows, base, site_pos, kw, starts, ends, unit, ratios, sums)
    return _with_terms(energy, bill, starts, ends, late_cny_per_h, deadline, delay_cny_per_h, soonest)


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
def free_energy(load: np.ndarray, ren: np.ndarray, soc: float, cap: float, pw: float,
                eta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot of a window, given the committed load and the renewables in it and the
    battery's charge `soc` at its first slot (a battery of `cap` kWh; cap 0: none): the
    renewable surplus that would be curtailed, the surplus the battery would take, and the
    deficit the grid covers (kWh)."""
    n = len(load)
    curtailed = np.empty(n)
    charge = np.zeros(n)
    deficit = np.empty(n)
    for k in range(n):
        surplus = max(ren[k] - load[k], 0.0)
        deficit[k] = max(load[k] - ren[k], 0.0)
        if cap > 0.0:
            if deficit[k] <= 0.0:
                c = min(surplus, pw, (cap - soc) / eta)
                soc += eta * c
                charge[k] = c
            else:
                soc -= min(deficit[k], pw, soc)
        curtailed[k] = surplus - charge[k]
    return curtailed, charge, deficit


@njit(cache=True, nogil=True)
def fill_tier_rows(rows: np.ndarray, k: int, off: int, load: np.ndarray, ren: np.ndarray, soc: float, cap: float,
                   pw: float, eta: float, grid: np.ndarray, renewable_cny: float, charge_eta: float,
                   dr_cny: float) -> None:
    """Write site k's tiers for the slots of `load` into rows[:, k, off:]: the free energy per
    tier (as `free_energy`; no grid cap: BELOW_CAP is infinite) and each tier's CNY/kWh."""
    n = len(load)
    for i in range(n):
        surplus = max(ren[i] - load[i], 0.0)
        deficit = max(load[i] - ren[i], 0.0)
        charge = 0.0
        if cap > 0.0:
            if deficit <= 0.0:
                charge = min(surplus, pw, (cap - soc) / eta)
                soc += eta * charge
            else:
                soc -= min(deficit, pw, soc)
        j = off + i
        g = grid[i]
        rows[_CURTAILED, k, j] = surplus - charge
        rows[_CHARGE, k, j] = charge
        rows[_BELOW_CAP, k, j] = np.inf
        rows[_GRID, k, j] = g
        rows[_RENEWABLE, k, j] = renewable_cny
        rows[_CHARGE_PRICE, k, j] = renewable_cny + charge_eta * g
        rows[_OVER_CAP_PRICE, k, j] = g + dr_cny
