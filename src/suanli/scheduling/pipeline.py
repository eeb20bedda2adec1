"""The placement pipeline (ARCHITECTURE.md principle 4): filters, candidates, scorers, selector.

For each job: filters cut the (site, GPU type) pools, each rejection carrying the filter's
name and the value that failed; a candidate generator proposes start times on each pool that
is left (all feasible in the capacity calendars); scorers price each candidate in CNY, parts
kept apart for the explanation; a selector picks one. A policy is a `Pipeline` with its own
choice of parts. Everything here is pure: it reads a `StateView` and a `Scratch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from suanli.model.network import Path
from suanli.scheduling.state import (
    Decision,
    Defer,
    Explanation,
    PendingJob,
    Place,
    Reject,
    Scored,
    Scratch,
    StateView,
)

KEEP = 5   # candidates an explanation keeps

# ----------------------------------------------------------------------------- options
class Option(NamedTuple):
    """A pool that passed the filters, with what every later stage needs to know of it."""

    site: str
    gpu_type: str
    duration_h: float          # hours the rest of the job runs here
    ready_h: float             # not before: max(now, data arrival)
    latency_ms: float
    transfer_cny: float        # 0 if the site already holds the data
    rank: int                  # scenario order of (site, type), the last tie-break


# ----------------------------------------------------------------------------- filters
class Filter:
    """Cuts a site (`site_reason`) or a pool (`pool_reason`); None means it passes."""

    name = "filter"
    static = True              # False: may pass later (a site recovers), so defer, don't reject

    def site_reason(self, view: StateView, pj: PendingJob, site: str) -> str | None:
        return None

    def pool_reason(self, view: StateView, pj: PendingJob, site: str, gpu_type: str) -> str | None:
        return None

    def active(self, view: StateView) -> bool:
        """False when the filter cannot cut anything in this view (a shortcut, not a rule)."""
        return True


class Reachable(Filter):
    name = "reachable"

    def site_reason(self, view, pj, site):
        if view.scenario.path(pj.job, site) is None:
            return f"no path from {pj.job.origin} to {view.scenario.sites[site].city}"
        return None


class WithinRtt(Filter):
    name = "max_rtt_ms"

    def site_reason(self, view, pj, site):
        job = pj.job
        if job.max_rtt_ms is not None and not view.scenario.latency_ok(job, site):
            return f"rtt {view.scenario.rtt_ms(job, site):g} ms > {job.max_rtt_ms:g} ms"
        return None


class SiteUp(Filter):
    name = "outage"
    static = False

    def site_reason(self, view, pj, site):
        return "site is down" if site in view.down else None

    def active(self, view):
        return bool(view.down)


class AllowedType(Filter):
    name = "gpu_type"

    def pool_reason(self, view, pj, site, gpu_type):
        allowed = pj.job.gpu_types
        if allowed and gpu_type not in allowed:
            return f"{gpu_type} not in {'/'.join(allowed)}"
        return None


class PoolFits(Filter):
    name = "pool_size"

    def pool_reason(self, view, pj, site, gpu_type):
        count = view.scenario.sites[site].gpus[gpu_type].count
        return f"{gpu_type} pool has {count} < {pj.job.gpus} GPUs" if count < pj.job.gpus else None


DEFAULT_FILTERS: tuple[Filter, ...] = (Reachable(), WithinRtt(), SiteUp(), AllowedType(), PoolFits())


StaticPools = tuple[list[tuple[str, "Path", list[tuple[int, str]]]], dict[str, str]]


def static_pools(view: StateView, pj: PendingJob, static: Sequence[Filter]) -> StaticPools:
    """Sites (with their path and passing pools as (rank, type)) that the static filters let
    through, and the sites they cut, with the first reason for each."""
    scn = view.scenario
    sites: list[tuple[str, Path, list[tuple[int, str]]]] = []
    rejected: dict[str, str] = {}
    rank = 0
    for sid, site in scn.sites.items():
        base = rank
        rank += len(site.gpus)
        why = next((f"{f.name}: {w}" for f in static if (w := f.site_reason(view, pj, sid)) is not None), None)
        if why is not None:
            rejected[sid] = why
            continue
        pools, reasons = [], []
        for k, g in enumerate(site.gpus):
            w = next((f"{f.name}: {w}" for f in static if (w := f.pool_reason(view, pj, sid, g)) is not None), None)
            if w:
                reasons.append(w)
            else:
                pools.append((base + k, g))
        if not pools:
            rejected[sid] = "; ".join(reasons) or "pool_size: no GPU pools"
            continue
        sites.append((sid, scn.path(pj.job, sid), pools))
    return sites, rejected


def options(view: StateView, pj: PendingJob, filters: Sequence[Filter],
            cache: dict | None = None) -> tuple[list[Option], dict[str, str], bool]:
    """Pools that pass every filter; the sites left out, each with the first reason; and
    whether some site was left out only by a dynamic filter (it may pass later).

    What the static filters say depends only on the job's shape (origin, latency bound, types,
    gang size, class), so `cache` (kept by the caller for one scenario) remembers it."""
    static = [f for f in filters if f.static]
    dynamic = [f for f in filters if not f.static and f.active(view)]
    job = pj.job
    key = (job.origin, job.max_rtt_ms, tuple(job.gpu_types or ()), job.gpus)
    got = cache.get(key) if cache is not None else None
    if got is None:
        got = static_pools(view, pj, static)
        if cache is not None:
            cache[key] = got
    sites, rejected = got
    out: list[Option] = []
    blocked_for_now = False
    speed = view.scenario.speed
    for sid, path, pools in sites:
        why = dynamic and next((f"{f.name}: {w}" for f in dynamic if (w := f.site_reason(view, pj, sid)) is not None),
                               None)
        if why:
            rejected = rejected | {sid: why}
            blocked_for_now = True
            continue
        hosted = sid in pj.hosted
        transfer = 0.0 if hosted else path.transfer_cny(job.data_gb)
        ready = pj.ready_h if hosted else pj.ready_h + path.transfer_h(job.data_gb)
        ready = max(view.now, ready)
        for rank, g in pools:
            out.append(Option(sid, g, pj.remaining_work / speed(job, g), ready, path.latency_ms, transfer, rank))
    return out, rejected, blocked_for_now


# ----------------------------------------------------------------------------- candidates
def earliest_start(scratch: Scratch, pj: PendingJob, o: Option) -> float | None:
    return scratch.calendar(o.site, o.gpu_type).earliest_fit(pj.job.gpus, o.duration_h, o.ready_h)


def window_starts(scratch: Scratch, pj: PendingJob, o: Option, latest: float, first: float | None,
                  step_h: float = 1.0, limit: int = 96) -> list[float]:
    """The earliest feasible start, then every whole hour up to `latest` where the pool has the
    GPUs free for the whole run (the candidates a time-shifting policy weighs)."""
    if first is None:
        return []
    starts = [first]
    cal = scratch.calendar(o.site, o.gpu_type)
    t = math.floor(first / step_h) * step_h + step_h
    while t <= latest + 1e-9 and len(starts) < limit:
        if cal.fits(t, t + o.duration_h, pj.job.gpus):
            starts.append(t)
        t += step_h
    return starts


# ----------------------------------------------------------------------------- scorers
@dataclass
class PriceBook:
    """Per-site price arrays for the scenario, cached on the policy (static data only)."""

    grid: dict[str, np.ndarray] = field(default_factory=dict)        # CNY/kWh incl. carbon price
    carbon: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self, view: StateView, site: str, last: int) -> tuple[np.ndarray, np.ndarray]:
        grid = self.grid.get(site)
        if grid is None or len(grid) < last:
            n = max(last, 2 * len(grid) if grid is not None else last, math.ceil(view.scenario.horizon_h) + 48)
            s = view.scenario.sites[site]
            carbon = s.grid.carbon_kg_per_kwh.array(n)
            self.carbon[site] = carbon
            self.grid[site] = s.grid.cny_per_kwh.array(n) + view.scenario.objective.carbon_cny_per_kg * carbon
        return self.grid[site], self.carbon[site]


def rental_cny(view: StateView, pj: PendingJob, o: Option) -> float:
    return o.duration_h * pj.job.gpus * view.scenario.sites[o.site].gpus[o.gpu_type].cny_per_gpu_h


def late_cny(view: StateView, pj: PendingJob, end: np.ndarray) -> np.ndarray:
    dl = pj.job.deadline_h
    if dl is None:
        return np.zeros_like(end)
    return view.scenario.objective.late_cny_per_gpu_h * pj.job.gpus * np.maximum(0.0, end - dl)


class EnergyPricer:
    """Marginal energy cost (CNY, carbon priced in) of a candidate run: its load fills, slot by
    slot, what the site still has free, cheapest tier first (see `Ledger.tiers`). Tiers are
    computed once per site for a window from floor(now), widened when a candidate needs more."""

    def __init__(self, view: StateView, scratch: Scratch, prices: PriceBook, last: int):
        self.view, self.scratch, self.prices = view, scratch, prices
        self.first = math.floor(view.now)
        self.last = last
        self._sites: dict[str, tuple] = {}
        self._floors: dict[str, float] = {}

    def _site(self, site: str, last: int):
        got = self._sites.get(site)
        if got is None or len(got[1]) < last - self.first:
            last = max(last, self.last)
            v = self.view
            tiers = v.ledger.tiers(site, self.first, last, v.caps_at(site),
                                   self.scratch.extra_load(site, self.first, last))
            grid, _ = self.prices.arrays(v, site, last)
            s = v.scenario.sites[site]
            got = (tiers, grid[self.first:last], s.renewables.cny_per_kwh,
                   s.battery.efficiency if s.battery is not None else 1.0, s.pue)
            self._sites[site] = got
        return got

    def floor_per_kwh(self, site: str) -> float:
        """No kWh at `site` costs less than this (renewable price, or the cheapest grid hour ahead)."""
        got = self._floors.get(site)
        if got is None:
            s = self.view.scenario.sites[site]
            grid, _ = self.prices.arrays(self.view, site, self.first + 1)
            grid_floor = float(np.min(grid[self.first:])) if len(grid) > self.first else 0.0
            got = min(s.renewables.cny_per_kwh, grid_floor)
            self._floors[site] = got
        return got

    def cost_one(self, pj: PendingJob, o: Option, start: float) -> float:
        """`cost` for a single start, in plain Python: cheaper than NumPy for a few slots."""
        end = start + o.duration_h
        first = math.floor(start)
        last = max(math.ceil(end), first + 1)
        tiers, grid, rp, eta, pue = self._site(o.site, last)
        kw = pj.job.gpus * self.view.ledger.power[o.gpu_type] * pue
        dr = self.view.scenario.objective.dr_cny_per_kwh
        cur, chg, cap = tiers.curtailed, tiers.charge, tiers.below_cap
        total = 0.0
        for t in range(first, last):
            x = (min(t + 1.0, end) - max(float(t), start)) * kw
            if x <= 0.0:
                continue
            k = t - self.first
            g = grid[k]
            a = min(x, cur[k])
            x -= a
            b = min(x, chg[k])
            x -= b
            c = min(x, cap[k])
            total += a * rp + b * (rp + eta * g) + c * g + (x - c) * (g + dr)
        return float(total)

    def cost(self, pj: PendingJob, o: Option, starts: Sequence[float]) -> np.ndarray:
        """CNY for each start, all starts at once: a (starts × slots) matrix of hours run."""
        starts_a = np.asarray(starts, dtype=float)
        hours, idx = run_hours(starts_a, o.duration_h, self.first)
        tiers, grid, rp, eta, pue = self._site(o.site, self.first + int(idx.max()) + 1)
        kw = pj.job.gpus * self.view.ledger.power[o.gpu_type] * pue
        dr = self.view.scenario.objective.dr_cny_per_kwh
        x = hours * kw
        a = np.minimum(x, tiers.curtailed[idx])
        x = x - a
        b = np.minimum(x, tiers.charge[idx])
        x = x - b
        c = np.minimum(x, tiers.below_cap[idx])
        d = x - c
        g = grid[idx]
        return (a * rp + b * (rp + eta * g) + c * g + d * (g + dr)).sum(axis=1)


def run_hours(starts: np.ndarray, duration: float, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Hours each run [s, s + duration) spends in each slot: (hours, slot index - first), both
    shaped (len(starts), slots spanned by the longest)."""
    lo = np.floor(starts)
    width = int(np.max(np.ceil(starts + duration) - lo)) or 1
    slot = lo[:, None] + np.arange(width)[None, :]
    hours = np.minimum(slot + 1.0, (starts + duration)[:, None]) - np.maximum(slot, starts[:, None])
    return np.maximum(hours, 0.0), (slot - first).astype(np.int64)


def mean_carbon(view: StateView, prices: PriceBook, o: Option, starts: Sequence[float]) -> np.ndarray:
    """Average grid carbon intensity (kg/kWh) over each candidate run at the site."""
    last = math.ceil(max(starts) + o.duration_h) + 1
    _, carbon = prices.arrays(view, o.site, last)
    hours, idx = run_hours(np.asarray(starts, dtype=float), o.duration_h, 0)
    return (hours * carbon[idx]).sum(axis=1) / np.maximum(hours.sum(axis=1), 1e-12)


# ----------------------------------------------------------------------------- the pipeline
Chooser = Callable[[StateView, Scratch, PendingJob, list[Option]], list[Scored]]


@dataclass
class Pipeline:
    """A policy: filters, then `choose` (candidates + scorers), then the selector `key`.

    `choose` returns the scored candidates; the one with the least `key` wins. If none is
    left the job is deferred (something may free up) or rejected (nothing ever could).
    """

    name: str
    choose: Chooser
    key: Callable[[Scored], tuple]
    filters: Sequence[Filter] = DEFAULT_FILTERS
    keep: int = KEEP                               # candidates kept for the explanation
    order: Callable[[StateView, PendingJob], tuple] = lambda view, pj: (pj.ready_h, pj.job.submit_h)
    # None: commit every choice, however far ahead it starts. A number: commit only a run that
    # starts within that many hours of when the pool could first take it; hold the GPUs of any
    # later plan and think again when the network changes (re-planning the queue each time).
    commit_within_h: float | None = None

    def _static_cache(self, view: StateView) -> dict:
        """Static filter results, kept for one scenario (a policy object may see another later)."""
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] is not view.scenario.network:
            cache = (view.scenario.network, {})
            self._cache = cache
        return cache[1]

    def decide(self, view: StateView, jobs: Sequence[PendingJob]) -> list[Decision]:
        scratch = view.scratch()
        out: list[Decision] = []
        # stable: jobs ready together keep the order they were offered in (arrival order)
        cache = self._static_cache(view)
        for pj in sorted(jobs, key=lambda pj: self.order(view, pj)):
            opts, rejected, dynamic = options(view, pj, self.filters, cache)
            if not opts:
                expl = Explanation(self.name, view.now, None, (), rejected, "no pool passed the filters")
                if dynamic:
                    out.append(Defer(pj.job.id, "every site that could host it is down", expl))
                else:
                    out.append(Reject(pj.job.id, "no pool passes the filters: " + "; ".join(
                        f"{s}: {r}" for s, r in list(rejected.items())[:4]), expl))
                continue
            scored = sorted(self.choose(view, scratch, pj, opts), key=self.key)
            if not scored:
                expl = Explanation(self.name, view.now, None, (), rejected, "no candidate start")
                out.append(Defer(pj.job.id, "no pool can start it now", expl))
                continue
            best = scored[0]
            scratch.reserve(best.site, best.gpu_type, best.start_h, best.end_h, pj.job.gpus)
            expl = Explanation(self.name, view.now, best, tuple(scored[: self.keep]), rejected)
            if self.commit_within_h is not None and best.start_h > best.info["ready_h"] + self.commit_within_h:
                out.append(Defer(pj.job.id, f"{self.name}: planned for {best.start_h:.2f} h", expl,
                                 hold=(best.site, best.gpu_type, best.start_h, best.end_h), retry_at=best.start_h))
                continue
            out.append(Place(pj.job.id, best.site, best.gpu_type, best.start_h, best.end_h,
                             reason=f"{self.name}: best of {len(scored)} candidates", explain=expl))
        return out


def scored(o: Option, start: float, parts: dict[str, float], **info: float) -> Scored:
    return Scored(o.site, o.gpu_type, start, start + o.duration_h, parts, sum(parts.values()), info)
