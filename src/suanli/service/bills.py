"""Bills from meters: a run's energy is its share of the site's metered facility energy
(docs/ENERGY.md "Bills from meters").

The rule (`split`, pure: no database, no clock). The site's timeline is cut where a reading's hold
starts or ends (meters.py: a reading's power holds until the next reading, at most MAX_GAP_S), at
UTC hours, at the network's slots (epoch + k h, where the carbon factor and the tariff change) and
where a run starts or ends. In each piece of dt hours the meter says IT power I, facility power F
and grid import G (kW, max(grid_kw, 0)); the runs on the site then draw p_r kW each (the run's GPU
energy over its length where the agent measured it with NVML, else its GPUs × the GPU type's
`power_kw`). With D = max(I, Σ p_r), run r takes the fraction f_r = p_r / D of the piece:
    facility_kwh = f_r × F × dt,  grid_kwh = f_r × G × dt,  carbon_kg = grid_kwh × factor(slot),
    non-grid kWh = f_r × max(F − G, 0) × dt (renewables, directly or through the battery),
    energy_cny = grid_kwh × tariff(slot) + non-grid kWh × renewables.cny_per_kwh.
So a run pays its GPUs' power times the PUE the meter measured in that piece; when the runs'
power exceeds the metered IT power (the GPUs draw less than their rating), they share all of the
facility's power in proportion to their power. What no run takes is the site's idle share: the
meter's roll-up of the hour less what its runs took, so a site's runs and its idle share add up
to its meter exactly, hour by hour.

Timing (`true_up`, the controller's loop and after each batch of readings). A run's ledger row is
priced from the network file's models when it ends (metering.py, `energy_basis` "modelled"). It is
re-priced from the meters, once, when they cover it: every instant of [start, end) inside some
reading's hold, and a reading stored at or after its end (so its last hold is final). The new
figures replace the row's in place while the row's month (UTC, of the run's end) is still the
current month; once that month has closed its invoice stays as it was, and the difference
(metered − modelled energy, grid, carbon, cost) is a line of its own (`kind` "true-up") in the
month the true-up is made. Each row is trued up once: in place under a compare-and-set on its
basis, or as the single true-up row its unique `adjusts` allows, in the same transaction as the
hours it took (`usage_hours`); a crash before the commit leaves nothing and the next pass redoes
it. A row the meters have not covered WINDOW_H after its run ended stays modelled for good.

Units: power kW, energy kWh, carbon kg CO2e, money CNY; times µs since 1970-01-01 UTC inside.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from suanli.model.scenario import Scenario
from suanli.service import meters
from suanli.service.metering import live_energy
from suanli.service.meters import HOUR_US, MAX_GAP_S, US, from_us, to_us
from suanli.service.models import Job as JobRow
from suanli.service.models import MeterHour, MeterReading, Usage, UsageHour

log = logging.getLogger("suanli.bills")

WINDOW_H = 72.0          # a row not covered by the meters this long after its run ended stays modelled
EVERY_S = 30.0           # the controller's loop trues up this often (and at once after readings arrive)
ENERGY = ("energy_kwh", "grid_kwh", "renewable_kwh", "carbon_kg", "energy_cny")


# ------------------------------------------------------------------------------ the split (pure)
@dataclass(frozen=True)
class Run:
    """A run on the site: [start_us, end_us) drawing `power_kw`."""

    key: int
    start_us: int
    end_us: int
    power_kw: float


@dataclass
class Take:
    """What a run took from one UTC hour of the meter: kWh, kg CO2e, CNY."""

    facility_kwh: float = 0.0
    grid_kwh: float = 0.0
    nongrid_kwh: float = 0.0
    carbon_kg: float = 0.0
    energy_cny: float = 0.0


@dataclass
class Split:
    """Per run of those asked for: its takes by hour start (µs), and the µs of its span some reading
    covered."""

    takes: dict[int, dict[int, Take]] = field(default_factory=dict)
    covered_us: dict[int, int] = field(default_factory=dict)


def split(points: Sequence[tuple[int, float, float, float, float]], runs: Sequence[Run], wanted: set[int], *,
          carbon: Callable[[int], float], tariff: Callable[[int], float], renewable_cny: float,
          origin_us: int, max_gap_s: float = MAX_GAP_S) -> Split:
    """Share the meter among `runs` (the rule in the module's docstring) and return the takes of
    the runs whose key is in `wanted`. `points`: (at_us, it_kw, facility_kw, renewable_kw, grid_kw),
    sorted, one per instant; `carbon(slot)` kg/kWh and `tariff(slot)` CNY/kWh of slot
    [origin_us + slot h, +1 h)."""
    gap = int(round(max_gap_s * US))
    out = Split(takes={k: {} for k in wanted}, covered_us=dict.fromkeys(wanted, 0))
    bounds = sorted({r.start_us for r in runs} | {r.end_us for r in runs})
    by_start = sorted(runs, key=lambda r: r.start_us)
    active: dict[int, Run] = {}
    nxt = 0                                    # the next run (by start) not yet active
    n = len(points)
    for i in range(n):
        t, it_kw, fac_kw, _ren, grid_kw = points[i]
        end = min(t + gap, points[i + 1][0]) if i + 1 < n else t + gap
        imp = max(grid_kw, 0.0)
        nongrid = max(fac_kw - imp, 0.0)
        a = t
        k = bisect_right(bounds, a)
        while a < end:
            hour = a - a % HOUR_US
            slot = (a - origin_us) // HOUR_US
            b = min(end, hour + HOUR_US, origin_us + (slot + 1) * HOUR_US)
            if k < len(bounds) and bounds[k] < b:
                b = bounds[k]
            # the runs on during [a, b): started at or before a, ending after a
            while nxt < len(by_start) and by_start[nxt].start_us <= a:
                active[by_start[nxt].key] = by_start[nxt]
                nxt += 1
            for key in [key for key, r in active.items() if r.end_us <= a]:
                del active[key]
            on = [r for r in active.values() if r.start_us <= a]
            total = sum(r.power_kw for r in on)
            denom = max(it_kw, total)
            dt_h = (b - a) / HOUR_US
            for r in on:
                if r.key not in wanted:
                    continue
                out.covered_us[r.key] += b - a
                if denom <= 0.0:
                    continue
                f = r.power_kw / denom
                got = out.takes[r.key].get(hour)
                if got is None:
                    got = out.takes[r.key][hour] = Take()
                g = f * imp * dt_h
                ng = f * nongrid * dt_h
                got.facility_kwh += f * fac_kw * dt_h
                got.grid_kwh += g
                got.nongrid_kwh += ng
                got.carbon_kg += g * carbon(slot)
                got.energy_cny += g * tariff(slot) + ng * renewable_cny
            a = b
            while k < len(bounds) and bounds[k] <= a:
                k += 1
    return out


# ---------------------------------------------------------------------------------- the ledger
def _us(epoch_us: int, hours: float) -> int:
    return epoch_us + int(round(hours * HOUR_US))


def _series(network: Scenario, site: str) -> tuple[Callable[[int], float], Callable[[int], float], float]:
    s = network.sites[site]
    cache: dict[tuple[int, int], float] = {}

    def at(which: int, series) -> Callable[[int], float]:
        def f(slot: int) -> float:
            key = (which, slot)
            if key not in cache:
                cache[key] = float(series.at(max(slot, 0)))
            return cache[key]
        return f
    return at(0, s.grid.carbon_kg_per_kwh), at(1, s.grid.cny_per_kwh), float(s.renewables.cny_per_kwh)


def power_kw(network: Scenario, gpus: int, gpu_type: str, length_h: float, gpu_kwh: float | None) -> float:
    """A run's power on the site: its measured GPU energy over its length where the agent measured
    it, else its GPUs × the GPU type's rated power (the network file)."""
    if gpu_kwh is not None and length_h > 0:
        return gpu_kwh / length_h
    return gpus * network.gpu_types[gpu_type].power_kw


def month_of(epoch: datetime, hours: float) -> str:
    return (epoch + timedelta(hours=hours)).strftime("%Y-%m")


def _pending(s: Session, since_h: float) -> list[Usage]:
    done = aliased(Usage)
    return list(s.scalars(
        select(Usage).where(Usage.kind == "run", Usage.energy_basis == "modelled", Usage.end_h > since_h,
                            ~exists().where(done.adjusts == Usage.id))
        .order_by(Usage.site, Usage.id)))


def true_up(s: Session, network: Scenario, epoch: datetime, now_h: float,
            retention_days: float = meters.RETENTION_DAYS) -> list[int]:
    """Re-price from the meters every modelled ledger row they now cover (module docstring), in
    `s`'s transaction (the caller commits). The ids of the rows trued up."""
    # raw readings must still be there for the whole span: the window never passes the retention
    window_h = min(WINDOW_H, retention_days * 24.0 - 2 * MAX_GAP_S / 3600.0)
    epoch_us = to_us(epoch)
    month = month_of(epoch, now_h)
    by_site: dict[str, list[Usage]] = {}
    for u in _pending(s, now_h - window_h):
        if u.site in network.sites:
            by_site.setdefault(u.site, []).append(u)
    done: list[int] = []
    for site, rows in by_site.items():
        last = s.scalar(select(func.max(MeterReading.at_us)).where(MeterReading.site == site))
        if last is None:
            continue
        rows = [u for u in rows if _us(epoch_us, u.end_h) <= last]    # its last hold is final
        if not rows:
            continue
        done.extend(_true_up_site(s, network, epoch_us, now_h, month, site, rows))
    return done


def _true_up_site(s: Session, network: Scenario, epoch_us: int, now_h: float, month: str, site: str,
                  rows: list[Usage]) -> list[int]:
    gap = int(round(MAX_GAP_S * US))
    lo_h, hi_h = min(u.start_h for u in rows), max(u.end_h for u in rows)
    lo, hi = _us(epoch_us, lo_h), _us(epoch_us, hi_h)
    points = [tuple(p) for p in s.execute(
        select(MeterReading.at_us, MeterReading.it_kw, MeterReading.facility_kw, MeterReading.renewable_kw,
               MeterReading.grid_kw)
        .where(MeterReading.site == site, MeterReading.at_us >= lo - gap, MeterReading.at_us < hi + gap)
        .order_by(MeterReading.at_us))]
    # every run on the site over the span: the ledger's, and those running now (up to now)
    runs = [Run(u.id, _us(epoch_us, u.start_h), _us(epoch_us, u.end_h),
                power_kw(network, u.gpus, u.gpu_type, u.end_h - u.start_h, u.gpu_kwh))
            for u in s.scalars(select(Usage).where(Usage.kind == "run", Usage.site == site,
                                                   Usage.start_h < hi_h, Usage.end_h > lo_h))]
    live = live_energy(s, site)
    for j in s.scalars(select(JobRow).where(JobRow.site == site, JobRow.state == "RUNNING",
                                            JobRow.start_h.is_not(None), JobRow.start_h < hi_h)):
        if j.gpu_type in network.gpu_types and now_h > j.start_h:
            fence, kw = live.get(j.id, (None, 0.0))
            runs.append(Run(-j.id, _us(epoch_us, j.start_h), _us(epoch_us, now_h),
                            kw if fence == j.fence else power_kw(network, j.gpus, j.gpu_type, 0.0, None)))
    carbon, tariff, ren_cny = _series(network, site)
    got = split(points, runs, {u.id for u in rows}, carbon=carbon, tariff=tariff, renewable_cny=ren_cny,
                origin_us=epoch_us)
    done = []
    for u in rows:
        span = _us(epoch_us, u.end_h) - _us(epoch_us, u.start_h)
        if span <= 0 or got.covered_us[u.id] < span:
            continue                               # a gap in the readings: not (yet) metered
        takes = got.takes[u.id]
        new = {"energy_kwh": sum(t.facility_kwh for t in takes.values()),
               "grid_kwh": sum(t.grid_kwh for t in takes.values()),
               "renewable_kwh": sum(t.nongrid_kwh for t in takes.values()),
               "carbon_kg": sum(t.carbon_kg for t in takes.values()),
               "energy_cny": sum(t.energy_cny for t in takes.values())}
        if u.month == month:                      # its month is open: re-priced in place, once
            hit = s.execute(update(Usage).where(Usage.id == u.id, Usage.energy_basis == "modelled")
                            .values(**new, energy_basis="metered",
                                    total_cny=u.gpu_cny + u.transfer_cny + new["energy_cny"])
                            .execution_options(synchronize_session=False)).rowcount
            if hit != 1:
                continue
        else:                                     # its month has closed: the difference, this month
            delta = {k: new[k] - getattr(u, k) for k in ENERGY}
            s.add(Usage(kind="true-up", adjusts=u.id, energy_basis="metered", job_id=u.job_id,
                        tenant_id=u.tenant_id, fence=u.fence, site=u.site, gpu_type=u.gpu_type, gpus=u.gpus,
                        start_h=u.start_h, end_h=u.end_h, month=month, gpu_seconds=0.0, gpu_cny=0.0,
                        transfer_cny=0.0, total_cny=delta["energy_cny"], **delta))
        s.add_all(UsageHour(usage_id=u.id, hour_s=h // US, site=site, facility_kwh=t.facility_kwh,
                            grid_kwh=t.grid_kwh, carbon_kg=t.carbon_kg, energy_cny=t.energy_cny)
                  for h, t in sorted(takes.items()))
        done.append(u.id)
    s.flush()
    return done


class TrueUps:
    """The controller's true-up pass: every EVERY_S, and at the next tick after readings arrive
    (`nudge`), in a transaction of its own (only the leading replica runs it)."""

    def __init__(self) -> None:
        self._due = 0.0
        self.trued = 0

    def nudge(self) -> None:
        self._due = 0.0

    def run(self, c) -> None:
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + EVERY_S
        with c.sessions.begin() as s:
            done = true_up(s, c.network, c.epoch, c.now_h(), c.meter_retention_days)
        if done:
            self.trued += len(done)
            log.info("%d ledger rows re-priced from the meters", len(done), extra={"trued_up": len(done)})


# ------------------------------------------------------------------------- the operator's view
def attribute(s: Session, site: str, rows: list[dict], epoch: datetime, now_h: float) -> list[dict]:
    """Give each measured hour of `meters.energy_rows` its `billed` part: what the site's runs were
    billed from it (`runs_kwh`, `runs_carbon_kg`), the rest (`idle_kwh`, `idle_carbon_kg`: the
    meter less the runs), and `settled`: no run in the hour still waits to be billed from the
    meters (running, or modelled until the meters cover it)."""
    hours = [to_us(r["at"]) // US for r in rows if r["measured"] is not None]
    if not hours:
        return rows
    lo, hi = min(hours), max(hours) + 3600
    took = {h: (kwh, kg) for h, kwh, kg in s.execute(
        select(UsageHour.hour_s, func.sum(UsageHour.facility_kwh), func.sum(UsageHour.carbon_kg))
        .where(UsageHour.site == site, UsageHour.hour_s >= lo, UsageHour.hour_s < hi)
        .group_by(UsageHour.hour_s))}
    epoch_s = to_us(epoch) / US
    lo_h, hi_h = (lo - epoch_s) / 3600.0, (hi - epoch_s) / 3600.0
    done = aliased(Usage)
    open_spans = [(a, b) for a, b in s.execute(
        select(Usage.start_h, Usage.end_h).where(Usage.site == site, Usage.kind == "run",
                                                 Usage.energy_basis == "modelled", Usage.start_h < hi_h,
                                                 Usage.end_h > lo_h, ~exists().where(done.adjusts == Usage.id)))]
    open_spans += [(a, now_h) for (a,) in s.execute(
        select(JobRow.start_h).where(JobRow.site == site, JobRow.state == "RUNNING", JobRow.start_h.is_not(None),
                                     JobRow.start_h < hi_h))]
    for r in rows:
        m = r["measured"]
        if m is None:
            continue
        h = to_us(r["at"]) // US
        kwh, kg = took.get(h, (0.0, 0.0))
        a_h, b_h = (h - epoch_s) / 3600.0, (h + 3600 - epoch_s) / 3600.0
        r["billed"] = {"runs_kwh": float(kwh), "idle_kwh": m["facility_kwh"] - float(kwh),
                       "runs_carbon_kg": float(kg), "idle_carbon_kg": m["carbon_kg"] - float(kg),
                       "settled": not any(a < b_h and b > a_h for a, b in open_spans)}
    return rows


def idle(s: Session, site: str, start: datetime, end: datetime) -> dict[str, float]:
    """The site's meter, what its runs were billed from it and the idle share, summed over the
    hours starting in [start, end): kWh and kg CO2e."""
    a, b = math.ceil(to_us(start) / US), math.ceil(to_us(end) / US)
    meter_kwh, meter_kg = s.execute(
        select(func.coalesce(func.sum(MeterHour.facility_kwh), 0.0), func.coalesce(func.sum(MeterHour.carbon_kg), 0.0))
        .where(MeterHour.site == site, MeterHour.hour_s >= a, MeterHour.hour_s < b)).one()
    runs_kwh, runs_kg = s.execute(
        select(func.coalesce(func.sum(UsageHour.facility_kwh), 0.0), func.coalesce(func.sum(UsageHour.carbon_kg), 0.0))
        .where(UsageHour.site == site, UsageHour.hour_s >= a, UsageHour.hour_s < b)).one()
    return {"meter_kwh": float(meter_kwh), "runs_kwh": float(runs_kwh), "idle_kwh": float(meter_kwh) - float(runs_kwh),
            "meter_carbon_kg": float(meter_kg), "runs_carbon_kg": float(runs_kg),
            "idle_carbon_kg": float(meter_kg) - float(runs_kg)}


__all__ = ["Run", "Split", "Take", "TrueUps", "attribute", "from_us", "idle", "power_kw", "split", "true_up"]
