"""The ledger: what is committed on the network, as a policy needs to see it.

Two views of the same placements:
- capacity calendars, one exact step function per pool (`PoolCalendar`), for feasibility;
- site load per hourly slot (kWh, PUE applied), as NumPy arrays, for pricing energy.

From the load and the site's series the ledger derives, per slot, how much more energy a
new job could take at each price tier (`EnergyTiers`): renewable surplus that would be
curtailed anyway, surplus that would otherwise charge the battery, grid import below an
announced grid cap, and grid import above it. The battery rule is MODEL.md §4's, replayed
from a checkpoint at the current slot, so a policy sees what the renewables and the battery
still have free after everything already committed.

The simulator (and later the live controller) owns the ledger and changes it; a policy only
reads it, through a `StateView`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suanli.energy.balance import BatterySpec
from suanli.model.scenario import Scenario
from suanli.model.schema import Event
from suanli.scheduling.calendar import PoolCalendar
from suanli.scheduling.kernels import battery_advance, free_energy


def slot_overlaps(start: float, end: float) -> tuple[int, list[float]]:
    """(first slot, hours of [start, end) inside each slot from it on, at least one slot), as
    plain floats: most runs span a few slots, where NumPy calls cost more than the loop."""
    first = math.floor(start)
    last = max(math.ceil(end), first + 1)
    return first, [max(min(t + 1.0, end) - max(float(t), start), 0.0) for t in range(first, last)]


def below_caps(first: int, caps: list[Event], deficit: np.ndarray) -> np.ndarray:
    """Per slot from `first`: what the grid may still give under the announced caps, given the
    `deficit` it already covers (inf where no cap is active)."""
    below = np.full(len(deficit), np.inf)
    if caps:
        t = np.arange(first, first + len(deficit))
        for cap_ev in caps:
            active = (t >= cap_ev.start_h) & (t < cap_ev.end_h)
            below = np.where(active, np.minimum(below, np.maximum(cap_ev.max_grid_kw - deficit, 0.0)), below)
    return below


@dataclass(frozen=True)
class EnergyTiers:
    """Per slot of a window [first, first + len): kWh a new load can take at each tier.

    Prices per kWh: `curtailed` at the renewables price; `charge` at the renewables price
    plus what the battery would have saved later (efficiency × grid price); `below_cap` at
    the grid price (tariff + carbon price × intensity); anything beyond at the grid price plus
    the demand-response price while a known grid cap is active.
    """

    first: int
    curtailed: np.ndarray
    charge: np.ndarray
    below_cap: np.ndarray       # inf where no cap is active


class Ledger:
    def __init__(self, scn: Scenario, slots: int | None = None):
        self.scn = scn
        self.calendars = {(sid, g): PoolCalendar(p.count) for sid, s in scn.sites.items() for g, p in s.gpus.items()}
        # GPUs in use on the whole network, as one step function: the sum of every pool's, so
        # "how busy is the network at t" is one lookup instead of one per pool
        self.total_gpus = sum(c.count for c in self.calendars.values())
        self.in_use = PoolCalendar(self.total_gpus)
        # per site (in the scenario's order), bumped on every change to its load: what a policy
        # derived from the load (energy tiers) stays valid while the site's number is unchanged
        self.site_index = {sid: k for k, sid in enumerate(scn.sites)}
        self.version = np.zeros(len(self.site_index), dtype=np.int64)
        self.sites = list(scn.sites)
        self.pue = {sid: s.pue for sid, s in scn.sites.items()}
        self.power = {g: t.power_kw for g, t in scn.gpu_types.items()}
        self.slots = 0
        self.load: dict[str, np.ndarray] = {}
        self.renewable: dict[str, np.ndarray] = {}
        self.carbon: dict[str, np.ndarray] = {}
        self.tariff: dict[str, np.ndarray] = {}
        self.battery: dict[str, BatterySpec | None] = {}
        for sid, s in scn.sites.items():
            b = s.battery
            self.battery[sid] = None if b is None or b.capacity_kwh <= 0 else BatterySpec(
                b.capacity_kwh, b.power_kw, b.efficiency, b.initial_soc)
        # battery state at the start of slot `_cp_slot` for each site, valid while no load changes before it
        self._cp_slot = dict.fromkeys(self.sites, 0)
        self._cp_soc = {sid: (b.initial_soc * b.capacity_kwh if b else 0.0) for sid, b in self.battery.items()}
        # the hour of the forecasts `renewable` and `carbon` hold (exact up to that slot), or None
        # when the scenario's series are known ahead (no forecast): see `reissue`
        self.issue: int | None = None
        self._grow(slots or max(1, math.ceil(scn.horizon_h)) + 48)

    # ------------------------------------------------------------------ series and load arrays
    def _grow(self, slots: int) -> None:
        if slots <= self.slots:
            return
        slots = max(slots, 2 * self.slots)
        for i, (sid, s) in enumerate(self.scn.sites.items()):
            self.renewable[sid] = self.scn.explicit(s.renewables.kw, f"sites[{i}].renewables.kw").array(slots)
            self.carbon[sid] = s.grid.carbon_kg_per_kwh.array(slots)
            self.tariff[sid] = s.grid.cny_per_kwh.array(slots)
            old = self.load.get(sid)
            load = np.zeros(slots)
            if old is not None:
                load[: len(old)] = old
            self.load[sid] = load
        self.slots = slots

    def reissue(self, hour: int) -> None:
        """The scenario's series now read the forecasts issued at `hour` (`scheduling.forecast`):
        read them again. What was derived from the old ones is stale: every site's version moves
        on, and a battery checkpoint past the old issue's exact slots goes back to hour 0."""
        exact = -1 if self.issue is None else self.issue      # slots <= exact were the truth
        self.issue = hour
        for i, (sid, s) in enumerate(self.scn.sites.items()):
            self.renewable[sid] = self.scn.explicit(s.renewables.kw, f"sites[{i}].renewables.kw").array(self.slots)
            self.carbon[sid] = s.grid.carbon_kg_per_kwh.array(self.slots)
            if self._cp_slot[sid] > exact + 1:
                b = self.battery[sid]
                self._cp_slot[sid] = 0
                self._cp_soc[sid] = b.initial_soc * b.capacity_kwh if b else 0.0
        self.version += 1

    def ensure(self, slot: int) -> None:
        """Make every array cover slots [0, slot)."""
        if slot > self.slots:
            self._grow(slot)

    # ------------------------------------------------------------------ changes
    def add(self, site: str, gpu_type: str, gpus: int, start: float, end: float, sign: int = 1) -> None:
        """Commit (sign=1) or release (sign=-1) a run of `gpus` GPUs over [start, end)."""
        self.calendars[(site, gpu_type)].add(start, end, sign * gpus)
        self.in_use.add(start, end, sign * gpus)
        self.version[self.site_index[site]] += 1
        first, hours = slot_overlaps(start, end)
        last = first + len(hours)
        self.ensure(last)
        kw = gpus * self.power[gpu_type] * self.pue[site]
        load = self.load[site]
        if len(hours) <= 8:                 # a short run: plain floats cost less than NumPy calls
            for t, h in enumerate(hours, first):
                load[t] += h * kw if sign > 0 else -(h * kw)
        else:
            load[first:last] += sign * (np.asarray(hours) * kw)
        if first < self._cp_slot[site]:       # the past changed (never in a forward simulation)
            self._cp_slot[site] = 0
            b = self.battery[site]
            self._cp_soc[site] = b.initial_soc * b.capacity_kwh if b else 0.0

    def prune(self, before: float) -> None:
        """Forget calendar breakpoints before `before` (the simulator's clock has passed them)."""
        for cal in self.calendars.values():
            cal.prune(before)
        self.in_use.prune(before)

    def busy_share(self, t: float) -> float:
        """Share of the network's GPUs in use at `t`."""
        return self.in_use.used_at(t) / self.total_gpus if self.total_gpus else 0.0

    # ------------------------------------------------------------------ energy
    def battery_at(self, site: str, first: int) -> tuple[float, float, float, float]:
        """The battery's charge at the start of slot `first` (replayed from the checkpoint, which
        moves there: `first` must not decrease between calls), its capacity, power and
        efficiency; (0, 0, 0, 1) for a site without one."""
        b = self.battery[site]
        if b is None:
            return 0.0, 0.0, 0.0, 1.0
        cap, pw, eta = float(b.capacity_kwh), float(b.power_kw), float(b.efficiency)
        t, soc = self._cp_slot[site], self._cp_soc[site]
        if t > first:
            t, soc = 0, b.initial_soc * cap
        self.ensure(first)
        soc = battery_advance(self.renewable[site], self.load[site], t, first, float(soc), cap, pw, eta)
        self._cp_slot[site], self._cp_soc[site] = first, soc
        return soc, cap, pw, eta

    def tiers(self, site: str, first: int, last: int, caps: list[Event],
              extra: np.ndarray | None = None) -> EnergyTiers:
        """Free energy per tier for slots [first, last) of `site`, after the committed load
        (plus `extra`, kWh per slot of the window: placements a policy is still planning).

        Replays the battery rule from the checkpoint up to `last`; `first` must not decrease
        between calls (time only moves forward), which keeps the replay short.
        """
        self.ensure(last)
        load = self.load[site]
        ren = self.renewable[site]
        window = load[first:last] if extra is None else load[first:last] + extra
        soc, cap, pw, eta = self.battery_at(site, first)
        curtailed, charge, deficit = free_energy(window, ren[first:last], soc, cap, pw, eta)
        return EnergyTiers(first, curtailed, charge, below_caps(first, caps, deficit))
