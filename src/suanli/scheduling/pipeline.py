"""The placement pipeline (ARCHITECTURE.md principle 4): filters, candidates, scorers, selector.

For each job: filters cut the (site, GPU type) pools, each rejection carrying the filter's
name and the value that failed; a candidate generator proposes start times on each pool that
is left (all feasible in the capacity calendars); scorers price each candidate in CNY, parts
kept apart for the explanation; a selector picks one. A policy is a `Pipeline` with its own
choice of parts. Everything here is pure: it reads a `StateView` and a `Scratch`.

Speed: the static filters' verdicts are cached per job shape (`ShapeCache`), and the pools a
job may use come as arrays (`Options`), so that per-pool quantities are vector operations;
energy is priced from a `TierBook`, every site's tiers kept across jobs while its committed
load is unchanged. The caches change no result: each is exactly what computing afresh gives.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from suanli.scheduling.kernels import fill_tier_rows, run_energy_cny, run_prices, run_prices_expected
from suanli.scheduling.ledger import below_caps
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
MAX_OTHERS = 32   # pools an explanation lists beyond them (the best candidate of each)
NO_START = "capacity: no free GPUs for the whole run in the hours it looked at"


class Ranked(NamedTuple):
    """What a policy's `rank` found for a job: the best `keep` candidates (best first), how many
    it weighed, the best candidate of each other pool it priced (best first, at most
    MAX_OTHERS), the pools ("site/gpu_type") that passed the filters but have no candidate, with
    why (capacity, or a price floor above the best), and the sites that passed the filters.
    `others` and `unscored` may be lazy (`Later`): worked out only where an explanation is read."""
    top: list[Scored]
    weighed: int
    others: Sequence[Scored] = ()
    unscored: Mapping[str, str] = {}
    hosts: frozenset[str] | None = None       # None: the sites of top, others and unscored


class Later:
    """A value worked out when first read, once. Listing every other pool's best and why the
    rest had none, for every job, halved the policies' speed (50 sites: suanli 2,983 -> 1,436
    jobs/s, fifo 15,319 -> 7,266, bench/scaling.py) though most explanations are never read
    in full (the simulator keeps the best few)."""

    __slots__ = ("_fn", "_value")

    def __init__(self, fn: Callable[[], tuple]):
        self._fn, self._value = fn, None

    def get(self) -> tuple:
        if self._value is None:
            self._value, self._fn = self._fn(), None
        return self._value


class LaterSeq(Sequence):
    """Item `k` of a `Later`'s value, as a read-only sequence."""

    __slots__ = ("_later", "_k")

    def __init__(self, later: Later, k: int):
        self._later, self._k = later, k

    def __getitem__(self, i):
        return self._later.get()[self._k][i]

    def __len__(self) -> int:
        return len(self._later.get()[self._k])

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __reduce__(self):                   # pickled (a Ray task's result) as what it is
        return tuple, (tuple(self),)


class LaterMap(Mapping):
    """Item `k` of a `Later`'s value, as a read-only mapping."""

    __slots__ = ("_later", "_k")

    def __init__(self, later: Later, k: int):
        self._later, self._k = later, k

    def __getitem__(self, key):
        return self._later.get()[self._k][key]

    def __iter__(self):
        return iter(self._later.get()[self._k])

    def __len__(self) -> int:
        return len(self._later.get()[self._k])

    def __reduce__(self):
        return dict, (dict(self),)


def pool_bests(ordered: Sequence[Scored], top: Sequence[Scored]) -> list[Scored]:
    """The first (best) candidate of each pool in `ordered` (best first) that has none in `top`."""
    seen = {(c.site, c.gpu_type) for c in top}
    out = []
    for c in ordered:
        if (c.site, c.gpu_type) not in seen:
            seen.add((c.site, c.gpu_type))
            out.append(c)
            if len(out) >= MAX_OTHERS:
                break
    return out


def hosts_reason(name: str, weighed: int, sites: set[str]) -> str:
    """A placement's reason: `cheapest: best of 7 candidates; 3 sites could host it`, or, where
    one site could, `fifo: best of 1 candidate; only hami-1 could host it`."""
    head = f"{name}: best of {weighed} candidate{'' if weighed == 1 else 's'}"
    if len(sites) == 1:
        return f"{head}; only {next(iter(sites))} could host it"
    return f"{head}; {len(sites)} sites could host it"


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
SHAPE = ("origin", "max_rtt_ms", "gpu_types", "gpus", "class_")   # the job fields static filters may read


class Filter:
    """Cuts a site (`site_reason`) or a pool (`pool_reason`); None means it passes.

    A static filter's answers depend only on the job's shape (`SHAPE`), and only on the fields
    it names in `site_fields` and `pool_fields`: they are cached on those."""

    name = "filter"
    static = True              # False: may pass later (a site recovers), so defer, don't reject
    site_fields: tuple[str, ...] = SHAPE      # what `site_reason` reads of the job
    pool_fields: tuple[str, ...] = SHAPE      # what `pool_reason` reads of the job

    def site_reason(self, view: StateView, pj: PendingJob, site: str) -> str | None:
        return None

    def site_reasons(self, view: StateView, pj: PendingJob, sites: Sequence[str]) -> list[str | None]:
        """`site_reason` for each of `sites` (a filter may answer for all of them at once)."""
        return [self.site_reason(view, pj, site) for site in sites]

    def pool_reason(self, view: StateView, pj: PendingJob, site: str, gpu_type: str) -> str | None:
        return None

    def active(self, view: StateView) -> bool:
        """False when the filter cannot cut anything in this view (a shortcut, not a rule)."""
        return True


class Reachable(Filter):
    name = "reachable"
    site_fields, pool_fields = ("origin",), ()

    def site_reason(self, view, pj, site):
        if view.scenario.path(pj.job, site) is None:
            return f"no path from {pj.job.origin} to {view.scenario.sites[site].city}"
        return None

    def site_reasons(self, view, pj, sites):
        scn, origin = view.scenario, pj.job.origin
        paths = scn.network.paths_from(origin)
        return [None if (city := scn.sites[site].city) in paths else f"no path from {origin} to {city}"
                for site in sites]


class WithinRtt(Filter):
    name = "max_rtt_ms"
    site_fields, pool_fields = ("origin", "max_rtt_ms"), ()

    def site_reason(self, view, pj, site):
        job = pj.job
        if job.max_rtt_ms is not None and not view.scenario.latency_ok(job, site):
            return f"rtt {view.scenario.rtt_ms(job, site):g} ms > {job.max_rtt_ms:g} ms"
        return None

    def site_reasons(self, view, pj, sites):
        if pj.job.max_rtt_ms is None:
            return [None] * len(sites)
        return super().site_reasons(view, pj, sites)


class SiteUp(Filter):
    name = "outage"
    site_fields, pool_fields = (), ()
    static = False

    def site_reason(self, view, pj, site):
        return "site is down" if site in view.down else None

    def active(self, view):
        return bool(view.down)


class AllowedType(Filter):
    name = "gpu_type"
    site_fields, pool_fields = (), ("gpu_types",)

    def pool_reason(self, view, pj, site, gpu_type):
        allowed = pj.job.gpu_types
        if allowed and gpu_type not in allowed:
            return f"{gpu_type} not in {'/'.join(allowed)}"
        return None


class PoolFits(Filter):
    name = "pool_size"
    site_fields, pool_fields = (), ("gpus",)

    def pool_reason(self, view, pj, site, gpu_type):
        count = view.scenario.sites[site].gpus[gpu_type].count
        return f"{gpu_type} pool has {count} < {pj.job.gpus} GPUs" if count < pj.job.gpus else None


DEFAULT_FILTERS: tuple[Filter, ...] = (Reachable(), WithinRtt(), SiteUp(), AllowedType(), PoolFits())


@dataclass(frozen=True)
class ShapePools:
    """The pools a job shape may use (they passed the static filters), one entry per pool in
    the scenario's order, as arrays: what every job of the shape needs to know of them, so
    that durations, data arrival and prices are vector operations rather than a loop."""

    site: tuple[str, ...]
    gpu_type: tuple[str, ...]
    site_pos: np.ndarray          # the site's index in the scenario
    rank: np.ndarray              # scenario order of (site, type), the last tie-break
    latency_ms: np.ndarray
    local: np.ndarray             # the path stays in one city: data moves at once
    gbps: np.ndarray              # the path's bottleneck
    cny_per_gb: np.ndarray
    cny_per_gpu_h: np.ndarray
    power_kw: np.ndarray          # one GPU's draw
    pue: np.ndarray
    speed: np.ndarray             # work per hour on one GPU, for the shape's job class
    rejected: Mapping[str, str]
    all_keys: tuple[tuple[str, str], ...]   # (site, GPU type) of every pool of the scenario, by rank

    @functools.cached_property
    def sites(self) -> tuple[str, ...]:
        """The sites of the pools, each once, in order."""
        pos = self.site_pos
        firsts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1]))) if len(pos) else pos
        return tuple(map(self.site.__getitem__, firsts.tolist()))

    @functools.cached_property
    def site_set(self) -> frozenset[str]:
        """The sites of the pools, as a set (the hosts a placement's reason counts)."""
        return frozenset(self.site)

    def without(self, sites: Mapping[str, str]) -> ShapePools:
        """The same pools less those of `sites`."""
        keep = [k for k, s in enumerate(self.site) if s not in sites]
        pick = lambda t: tuple(map(t.__getitem__, keep))     # noqa: E731
        return ShapePools(pick(self.site), pick(self.gpu_type), self.site_pos[keep], self.rank[keep],
                          self.latency_ms[keep], self.local[keep], self.gbps[keep], self.cny_per_gb[keep],
                          self.cny_per_gpu_h[keep], self.power_kw[keep], self.pue[keep], self.speed[keep],
                          self.rejected, self.all_keys)


class ShapeCache:
    """The pools of each job shape for one scenario, built from the static filters' verdicts,
    which are cached on the job fields each filter reads (with the built-in filters: sites on
    origin and latency bound, pools on types and gang size), and from a table of every pool."""

    def __init__(self, view: StateView, filters: Sequence[Filter]):
        scn = view.scenario
        self.scenario_key = (scn.network, scn.sites)
        self.static = [f for f in filters if f.static]
        self.site_fields = [f for f in SHAPE if any(f in x.site_fields for x in self.static)]
        self.pool_fields = [f for f in SHAPE if any(f in x.pool_fields for x in self.static)]
        self.shapes: dict[tuple, ShapePools] = {}
        self._site_verdicts: dict[tuple, list[str | None]] = {}
        self._pool_verdicts: dict[tuple, list[str | None]] = {}
        self._paths: dict[str, tuple[np.ndarray, ...]] = {}
        self._speeds: dict[str | None, np.ndarray] = {}
        # every pool of the scenario, in its order (the rank)
        self.sites = list(scn.sites)
        self.site_pools: list[range] = []
        site, gpu_type, price, power, pue = [], [], [], [], []
        for k, st in enumerate(scn.sites.values()):
            self.site_pools.append(range(len(site), len(site) + len(st.gpus)))
            for g, pool in st.gpus.items():
                site.append(k)
                gpu_type.append(g)
                price.append(pool.cny_per_gpu_h)
                power.append(scn.gpu_types[g].power_kw)
                pue.append(st.pue)
        self.pool_site = np.asarray(site, dtype=np.int64)
        self.pool_site_id = tuple(self.sites[k] for k in site)
        self.pool_keys = tuple(zip(self.pool_site_id, gpu_type, strict=True))
        self.pool_type = gpu_type
        self.pool_price = np.asarray(price, dtype=float)
        self.pool_power = np.asarray(power, dtype=float)
        self.pool_pue = np.asarray(pue, dtype=float)

    def pools(self, view: StateView, pj: PendingJob) -> ShapePools:
        job = pj.job
        key = (job.origin, job.max_rtt_ms, tuple(job.gpu_types or ()), job.gpus, job.class_)
        got = self.shapes.get(key)
        if got is None:
            got = self.shapes[key] = self._build(view, pj)
        return got

    @staticmethod
    def _fields(pj: PendingJob, fields: Sequence[str]) -> tuple:
        return tuple(tuple(v) if isinstance(v := getattr(pj.job, f), list) else v for f in fields)

    def _build(self, view: StateView, pj: PendingJob) -> ShapePools:
        scn, static = view.scenario, self.static
        key = self._fields(pj, self.site_fields)
        site_why = self._site_verdicts.get(key)
        if site_why is None:                # the first static filter that cuts each site
            site_why = self._site_verdicts[key] = [None] * len(self.sites)
            left = list(range(len(self.sites)))
            for f in static:                # each asked only about the sites the ones before let through
                reasons = f.site_reasons(view, pj, [self.sites[k] for k in left])
                for k, w in zip(left, reasons, strict=True):
                    if w is not None:
                        site_why[k] = f"{f.name}: {w}"
                left = [k for k in left if site_why[k] is None]
        key = self._fields(pj, self.pool_fields)
        pool_why = self._pool_verdicts.get(key)
        if pool_why is None:                # the first static filter that cuts each pool
            pool_why = self._pool_verdicts[key] = [
                next((f"{f.name}: {w}" for f in static
                      if (w := f.pool_reason(view, pj, self.sites[k], g)) is not None), None)
                for k, g in zip(self.pool_site.tolist(), self.pool_type, strict=True)]
        # the pools left, and the sites cut (by a site filter, or left without a pool), in order
        ok = np.asarray([w is None for w in site_why], dtype=bool)[self.pool_site]
        ok &= np.asarray([w is None for w in pool_why], dtype=bool)
        hosting = np.zeros(len(self.sites), dtype=bool)
        hosting[self.pool_site[ok]] = True
        rejected: dict[str, str] = {}
        for k in np.flatnonzero(~hosting).tolist():
            rejected[self.sites[k]] = site_why[k] if site_why[k] is not None else (
                "; ".join(w for i in self.site_pools[k] if (w := pool_why[i])) or "pool_size: no GPU pools")
        idx = np.flatnonzero(ok)
        at = self.pool_site[idx]
        latency, local, gbps, cny_per_gb = (c[at] for c in self._paths_from(view, pj.job.origin))
        speed = self._speeds.get(pj.job.class_)
        if speed is None:
            speed = self._speeds[pj.job.class_] = np.asarray(
                [scn.speed(pj.job, g) for g in self.pool_type], dtype=float)
        keep = idx.tolist()
        return ShapePools(tuple(map(self.pool_site_id.__getitem__, keep)), tuple(map(self.pool_type.__getitem__, keep)),
                          at, idx, latency, local, gbps, cny_per_gb, self.pool_price[idx], self.pool_power[idx],
                          self.pool_pue[idx], speed[idx], rejected, self.pool_keys)

    def _paths_from(self, view: StateView, origin: str) -> tuple[np.ndarray, ...]:
        """Per site: latency, whether in the origin's city, bottleneck and CNY/GB of the best path
        from `origin` (NaN where unreachable)."""
        got = self._paths.get(origin)
        if got is None:
            scn = view.scenario
            paths = scn.network.paths_from(origin)
            found = [paths.get(st.city) for st in scn.sites.values()]
            nan = math.nan
            got = self._paths[origin] = (
                np.asarray([nan if p is None else p.latency_ms for p in found], dtype=float),
                np.asarray([p is not None and len(p.cities) == 1 for p in found], dtype=bool),
                np.asarray([nan if p is None else p.bottleneck_gbps for p in found], dtype=float),
                np.asarray([nan if p is None else p.cny_per_gb for p in found], dtype=float))
        return got


class Options(Sequence[Option]):
    """The pools one job may use now, as arrays (index i is one pool), plus what depends on the
    job itself: how long the rest of it runs there, when its data is there, what moving the
    data costs. Indexing or iterating gives `Option` tuples, for policies that go pool by pool."""

    __slots__ = ("pools", "site", "gpu_type", "site_pos", "rank", "latency_ms", "cny_per_gpu_h", "power_kw",
                 "pue", "duration_h", "ready_h", "transfer_cny", "_list")

    def __init__(self, pools: ShapePools, duration_h: np.ndarray, ready_h: np.ndarray, transfer_cny: np.ndarray):
        self.pools = pools
        self.site, self.gpu_type, self.site_pos, self.rank = pools.site, pools.gpu_type, pools.site_pos, pools.rank
        self.latency_ms, self.cny_per_gpu_h = pools.latency_ms, pools.cny_per_gpu_h
        self.power_kw, self.pue = pools.power_kw, pools.pue
        self.duration_h, self.ready_h, self.transfer_cny = duration_h, ready_h, transfer_cny
        self._list: list[Option] | None = None

    @classmethod
    def of(cls, view: StateView, pj: PendingJob, pools: ShapePools) -> Options:
        job = pj.job
        duration = pj.remaining_work / pools.speed
        data = job.data_gb
        transfer_cny = data * pools.cny_per_gb
        if not data > 0 and not pj.hosted:  # nothing to move: ready everywhere at once
            return cls(pools, duration, np.full(len(pools.site), max(view.now, pj.ready_h + 0.0)), transfer_cny)
        if data > 0:
            transfer_h = np.where(pools.local, 0.0, data * 8.0 / pools.gbps / 3600.0)
        else:
            transfer_h = np.zeros(len(pools.site))
        if pj.hosted:                       # its data is already there: no new transfer
            here = np.asarray([s in pj.hosted for s in pools.site], dtype=bool)
            transfer_cny = np.where(here, 0.0, transfer_cny)
            transfer_h = np.where(here, 0.0, transfer_h)
        ready = np.maximum(view.now, pj.ready_h + transfer_h)
        return cls(pools, duration, ready, transfer_cny)

    def __len__(self) -> int:
        return len(self.site)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.as_list()[i]
        return Option(self.site[i], self.gpu_type[i], float(self.duration_h[i]), float(self.ready_h[i]),
                      float(self.latency_ms[i]), float(self.transfer_cny[i]), int(self.rank[i]))

    def __iter__(self):
        return iter(self.as_list())

    def as_list(self) -> list[Option]:
        if self._list is None:
            self._list = [Option(*row) for row in zip(
                self.site, self.gpu_type, self.duration_h.tolist(), self.ready_h.tolist(), self.latency_ms.tolist(),
                self.transfer_cny.tolist(), self.rank.tolist(), strict=True)]
        return self._list


def pool_options(view: StateView, pj: PendingJob, filters: Sequence[Filter],
                 cache: ShapeCache | None = None) -> tuple[Options, Mapping[str, str], bool]:
    """Pools that pass every filter (as `Options`); the sites left out, each with the first
    reason; and whether some site was left out only by a dynamic filter (it may pass later).

    What the static filters say depends only on the job's shape, so `cache` (kept by the caller
    for one scenario and these filters) remembers it, with the pools' arrays."""
    if cache is None:
        cache = ShapeCache(view, filters)
    pools = cache.pools(view, pj)
    rejected = pools.rejected
    dynamic = [f for f in filters if not f.static and f.active(view)]
    blocked_for_now = False
    if dynamic:
        cut = {}
        for sid in pools.sites:
            why = next((f"{f.name}: {w}" for f in dynamic if (w := f.site_reason(view, pj, sid)) is not None), None)
            if why:
                cut[sid] = why
        if cut:
            rejected = rejected | cut
            blocked_for_now = True
            pools = pools.without(cut)
    return Options.of(view, pj, pools), rejected, blocked_for_now


def options(view: StateView, pj: PendingJob, filters: Sequence[Filter],
            cache: ShapeCache | None = None) -> tuple[list[Option], Mapping[str, str], bool]:
    """`pool_options` with the pools as a list of `Option`."""
    opts, rejected, blocked_for_now = pool_options(view, pj, filters, cache)
    return opts.as_list(), rejected, blocked_for_now


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
    end = latest + 1e-9
    # the hours are t, t + step, t + 2 step, ... summed one step at a time (as a loop adding
    # `step_h` would), checked against the calendar a block at a time
    while t <= end and len(starts) < limit:
        span = (end - t) / step_h
        n = _BLOCK if span >= _BLOCK else int(span) + 2
        if step_h == 1.0 and t.is_integer() and abs(t) < 2.0 ** 52:
            hours = np.arange(t, t + n)            # whole numbers: the sums are exact
        else:
            hours = np.add.accumulate(np.concatenate(([t], np.full(n - 1, step_h))))
        if hours[-1] > end:
            hours = hours[hours <= end]
        free = cal.free_starts(hours, o.duration_h, pj.job.gpus)
        starts.extend(free[: limit - len(starts)].tolist())
        t = float(hours[-1]) + step_h
    return starts


_BLOCK = 128      # whole hours checked against a calendar at once


def window_end(starts: Sequence[float], duration: float) -> int:
    """For runs of `duration` hours on one pool from `starts`: the latest first slot plus the
    widest span (at least one slot), which the price book's arrays grow to cover."""
    firsts = [math.floor(t) for t in starts]
    return max(firsts) + max(1, max(math.ceil(t + duration) - f for t, f in zip(starts, firsts, strict=True)))


# ----------------------------------------------------------------------------- scorers
@dataclass
class PriceBook:
    """Per-site price arrays for the scenario, cached on the policy (static data only).

    A site's arrays cover slots [0, n) and grow (to at least twice) when a pricing needs
    slots past n. `floors` reads the cheapest grid price over what an array covers, so the
    arrays must grow exactly where pricing asks them to, never ahead of it."""

    grid: dict[str, np.ndarray] = field(default_factory=dict)        # CNY/kWh incl. carbon price
    carbon: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = 0                  # bumped whenever an array is built or grown
    _scenario_sites: object = None
    _issue: int | None = None         # the forecasts' hour (`Ledger.issue`) the arrays were built from
    _shortest: float = math.inf       # no site's arrays (of those built) are shorter
    _tail_min: dict[str, np.ndarray] = field(default_factory=dict)   # min of grid[t:] for each t
    _floors: tuple[tuple[int, int], np.ndarray] | None = None

    def bind(self, view: StateView) -> None:
        """Start afresh if `view` is of another scenario, or sees forecasts issued since."""
        if self._scenario_sites is not view.scenario.sites or self._issue != view.ledger.issue:
            self.grid, self.carbon, self._tail_min = {}, {}, {}
            self._scenario_sites, self._shortest, self._floors = view.scenario.sites, math.inf, None
            self._issue = view.ledger.issue
            self.version += 1

    def arrays(self, view: StateView, site: str, last: int) -> tuple[np.ndarray, np.ndarray]:
        self.bind(view)
        grid = self.grid.get(site)
        if grid is None or len(grid) < last:
            n = max(last, 2 * len(grid) if grid is not None else last, math.ceil(view.scenario.horizon_h) + 48)
            s = view.scenario.sites[site]
            carbon = s.grid.carbon_kg_per_kwh.array(n)
            self.carbon[site] = carbon
            self.grid[site] = s.grid.cny_per_kwh.array(n) + view.scenario.objective.carbon_cny_per_kg * carbon
            self._tail_min.pop(site, None)
            self.version += 1
            self._shortest = min(len(g) for g in self.grid.values())
        return self.grid[site], self.carbon[site]

    def cover(self, view: StateView, sites: Sequence[str], last: int) -> None:
        """`arrays(view, site, last)` for each of `sites`, in order: nothing to do while each
        has arrays and every array is long enough."""
        self.bind(view)
        grid = self.grid
        if last > self._shortest or len(grid) < len(view.scenario.sites) and any(s not in grid for s in sites):
            for site in sites:
                self.arrays(view, site, last)

    def covers(self, site: str, last: int) -> bool:
        """Whether `site`'s arrays cover slots up to `last` (what its floor speaks for)."""
        grid = self.grid.get(site)
        return grid is not None and len(grid) >= last

    def floors(self, view: StateView, first: int) -> np.ndarray:
        """Per scenario site (in order): no kWh there from slot `first` on costs less than this,
        the renewables price or the cheapest grid hour its arrays cover (NaN for a site
        without arrays yet)."""
        self.bind(view)
        if self._floors is None or self._floors[0] != (first, self.version):
            out = np.full(len(view.scenario.sites), np.nan)
            for k, (sid, s) in enumerate(view.scenario.sites.items()):
                grid = self.grid.get(sid)
                if grid is None:
                    continue
                tail = self._tail_min.get(sid)
                if tail is None:
                    tail = self._tail_min[sid] = np.minimum.accumulate(grid[::-1])[::-1]
                out[k] = min(s.renewables.cny_per_kwh, float(tail[first]) if len(grid) > first else 0.0)
            self._floors = ((first, self.version), out)
        return self._floors[1]


def rental_cny(view: StateView, pj: PendingJob, o: Option) -> float:
    return o.duration_h * pj.job.gpus * view.scenario.sites[o.site].gpus[o.gpu_type].cny_per_gpu_h


def late_cny(view: StateView, pj: PendingJob, end: np.ndarray) -> np.ndarray:
    dl = pj.job.deadline_h
    if dl is None:
        return np.zeros_like(end)
    return view.scenario.objective.late_cny_per_gpu_h * pj.job.gpus * np.maximum(0.0, end - dl)


class TierBook:
    """Every site's free energy per tier (`Ledger.tiers`) and the price of each tier for the
    slots ahead, as one (parts × sites × slots) array kept across jobs and policy calls, so
    that runs at many sites are priced in one gather.

    A site's row is derived from its committed load (`Ledger.version`), the grid caps known for
    it and the load planned on it in the current `Scratch`; it is computed again only when one
    of these changes, or when slots it does not cover are asked for. The value of a slot does
    not depend on where the window starts or ends (the battery rule runs forward in time from
    the committed past), so a row stays valid as the clock moves on."""

    MIN_SLOTS = 48      # a row covers at least this many slots from floor(now)
    # the parts: kWh free per tier, then CNY/kWh: the grid (carbon priced in), the renewables,
    # renewables that would otherwise charge the battery, and grid above a cap
    CURTAILED, CHARGE, BELOW_CAP, GRID, RENEWABLE, CHARGE_PRICE, OVER_CAP_PRICE = range(7)

    def __init__(self) -> None:
        self.ledger: object = None

    def _reset(self, view: StateView) -> None:
        scn = view.scenario
        n = len(scn.sites)
        self.ledger = view.ledger
        self.issue = view.ledger.issue              # the forecasts the grid prices were built from
        self.pos = {sid: k for k, sid in enumerate(scn.sites)}
        self.sites = list(scn.sites)
        self.first = math.floor(view.now)           # no slot before it is asked for any more
        self.base = self.first                      # `rows` holds slots [base, base + its width)
        self.rows = np.zeros((7, n, 0))
        self.hi = np.zeros(n, dtype=np.int64)       # row k is valid for slots [first, hi[k])
        self.version = np.full(n, -1, dtype=np.int64)
        self.context: list[tuple | None] = [None] * n   # (caps, scratch token) a row was built with
        self.with_context = 0                       # rows built with caps or planned load
        self.has_context = np.zeros(n, dtype=bool)  # ... which rows
        self._marked: tuple[object, np.ndarray | None] = (None, None)   # `_with_context`'s last answer
        self._grid = np.zeros((n, 0))               # grid price with the carbon price, from slot 0
        self.renewable_cny = np.asarray([s.renewables.cny_per_kwh for s in scn.sites.values()], dtype=float)
        self.efficiency = np.asarray([s.battery.efficiency if s.battery is not None else 1.0
                                      for s in scn.sites.values()], dtype=float)

    def index(self, view: StateView, site: str) -> int:
        """The row of `site` (its index in the scenario)."""
        if view.ledger is not self.ledger or view.ledger.issue != self.issue or math.floor(view.now) < self.first:
            self._reset(view)
        return self.pos[site]

    @staticmethod
    def _context(view: StateView, scratch: Scratch, site: str) -> tuple | None:
        caps = tuple(view.caps_at(site))
        token = scratch.token(site)
        return (caps, token) if caps or token is not None else None

    def ensure(self, view: StateView, scratch: Scratch, rows: np.ndarray, last: np.ndarray) -> None:
        """Make each of `rows` (site indices, repeats allowed) valid for slots [floor(now),
        last[i])."""
        first = math.floor(view.now)
        if view.ledger is not self.ledger or view.ledger.issue != self.issue or first < self.first:
            self._reset(view)
        self.first = first
        # A row without context (no caps known at its site, nothing planned there in this
        # scratch, none when it was built) is valid while it is long enough and its site's load
        # unchanged: checked for all such rows at once. The others go one by one.
        stale = (self.hi[rows] < last) | (self.version[rows] != view.ledger.version[rows])
        if self.with_context or view.grid_caps or scratch.has_plans():
            special = self._with_context(view, scratch)
            if special is not None:
                stale |= special[rows]
        if not np.count_nonzero(stale):
            return
        rows, last = rows[stale], last[stale]
        need: dict[int, int] = {}
        for k, n in zip(rows.tolist(), last.tolist(), strict=True):
            if n > need.get(k, -1):
                need[k] = int(n)
        for k in sorted(need):
            self.ensure_one(view, scratch, k, need[k])

    def _with_context(self, view: StateView, scratch: Scratch) -> np.ndarray | None:
        """Per row: whether its context may differ from none (caps known at the site, load
        planned there in `scratch`, or a row built with context); None if no row's may."""
        key = (scratch.serial, scratch.planned_count, len(view.grid_caps))
        if self._marked[0] != key:
            sites = {e.site for e in view.grid_caps} | scratch.planned_sites()
            marked = None
            if sites:
                marked = np.zeros(len(self.sites), dtype=bool)
                marked[[self.pos[s] for s in sites if s in self.pos]] = True
            self._marked = (key, marked)
        marked = self._marked[1]
        if not self.with_context:
            return marked
        return self.has_context if marked is None else self.has_context | marked

    def ensure_one(self, view: StateView, scratch: Scratch, k: int, last: int) -> None:
        """`ensure` for one row."""
        first = math.floor(view.now)
        if view.ledger is not self.ledger or view.ledger.issue != self.issue or first < self.first:
            self._reset(view)
        self.first = first
        context = (self._context(view, scratch, self.sites[k])
                   if self.with_context or view.grid_caps or scratch.has_plans() else None)
        if self.hi[k] < last or self.version[k] != view.ledger.version[k] or self.context[k] != context:
            self._fill(view, scratch, k, first, last, context)

    def _fill(self, view: StateView, scratch: Scratch, k: int, first: int, last: int, context: tuple | None) -> None:
        ledger = view.ledger
        n = max(last - first, self.MIN_SLOTS)
        if self.version[k] == ledger.version[k] and self.context[k] == context:
            n = max(n, 2 * (int(self.hi[k]) - first))        # only longer: twice as long
        end = first + n
        if end > self.base + self.rows.shape[2]:
            self._make_room(first, end)
        site = self.sites[k]
        if end > self._grid.shape[1]:
            self._grid_to(view, end)
        # the ledger's `tiers` and the prices of each tier, written in one compiled pass
        soc, cap, pw, eta = ledger.battery_at(site, first)
        ledger.ensure(end)
        load = ledger.load[site][first:end]
        extra = scratch.extra_load(site, first, end)
        if extra is not None:
            load = load + extra
        ren = ledger.renewable[site][first:end]
        fill_tier_rows(self.rows, k, first - self.base, load, ren, soc, cap, pw, eta, self._grid[k, first:end],
                       float(self.renewable_cny[k]), float(self.efficiency[k]),
                       float(view.scenario.objective.dr_cny_per_kwh))
        if context is not None and context[0]:       # announced grid caps: what the grid may still give
            self.rows[self.BELOW_CAP, k, first - self.base: end - self.base] = below_caps(
                first, list(context[0]), np.maximum(load - ren, 0.0))
        self.with_context += (context is not None) - (self.context[k] is not None)
        self.has_context[k] = context is not None
        self.hi[k], self.version[k], self.context[k] = end, ledger.version[k], context

    def _make_room(self, first: int, end: int) -> None:
        """Rows from slot `first` (the past is never asked for again) up to at least `end`."""
        old, base = self.rows.shape[2], self.base
        keep = max(0, base + old - first)             # slots [first, base + old) carry over
        rows = np.zeros(self.rows.shape[:2] + (max(2 * (end - first), old, 64),))
        rows[:, :, :keep] = self.rows[:, :, old - keep:]
        self.rows, self.base = rows, first

    def _grid_to(self, view: StateView, last: int) -> None:
        """Grid prices (a `PriceBook`'s values, kept apart from it so that its arrays grow only as
        pricing asks them to) for slots [0, last) at least."""
        scn = view.scenario
        n = max(last, 2 * self._grid.shape[1], math.ceil(scn.horizon_h) + 48)
        c = scn.objective.carbon_cny_per_kg
        self._grid = np.stack([s.grid.cny_per_kwh.array(n) + c * s.grid.carbon_kg_per_kwh.array(n)
                               for s in scn.sites.values()])


class EnergyPricer:
    """Marginal energy cost (CNY, carbon priced in) of a candidate run: its load fills, slot by
    slot, what the site still has free, cheapest tier first (see `Ledger.tiers`). The tiers come
    from a `TierBook`, kept across jobs when the policy passes one."""

    def __init__(self, view: StateView, scratch: Scratch, prices: PriceBook, last: int,
                 book: TierBook | None = None):
        self.view, self.scratch, self.prices = view, scratch, prices
        self.book = book if book is not None else TierBook()
        self.first = math.floor(view.now)
        self.last = last

    def priced(self, sites: Sequence[str], lasts: Sequence[int]) -> None:
        """Runs at `sites` up to slots `lasts` were priced: the price book's arrays grow to cover
        them, one after the other (as they always have: the floors read their length)."""
        prices, view, least = self.prices, self.view, self.last
        prices.bind(view)
        if not len(lasts) or max(max(lasts), least) <= prices._shortest and all(s in prices.grid for s in sites):
            return
        for site, last in zip(sites, lasts, strict=True):
            prices.arrays(view, site, max(int(last), least))

    def _row(self, site: str, last: int) -> int:
        """The book's row for `site`, valid up to slot `last`."""
        self.priced((site,), (last,))
        k = self.book.index(self.view, site)
        self.book.ensure_one(self.view, self.scratch, k, max(last, self.last))
        return k

    def floors(self, opts: Options) -> np.ndarray:
        """Per pool of `opts`: no kWh at its site costs less than this (the renewables price, or
        the cheapest grid hour ahead)."""
        self.prices.cover(self.view, opts.pools.sites, self.first + 1)
        return self.prices.floors(self.view, self.first)[opts.site_pos]

    def floor_per_kwh(self, site: str) -> float:
        """`floors` for one site."""
        self.prices.cover(self.view, [site], self.first + 1)
        return float(self.prices.floors(self.view, self.first)[self.book.index(self.view, site)])

    def cost_one(self, pj: PendingJob, o: Option, start: float) -> float:
        """`cost` for a single start."""
        end = start + o.duration_h
        first = math.floor(start)
        k_site = self._row(o.site, max(math.ceil(end), first + 1))
        kw = pj.job.gpus * self.view.ledger.power[o.gpu_type] * self.view.ledger.pue[o.site]
        return float(run_energy_cny(self.book.rows, self.book.base, np.asarray([k_site]), np.asarray([float(kw)]),
                                    np.asarray([float(start)]), np.asarray([float(end)]))[0])

    def _rows_for(self, site_pos: np.ndarray, starts: np.ndarray,
                  durations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Make the tier rows valid for runs i (at site_pos[i], from starts[i] for durations[i]
        hours): their ends, and one past each one's last slot."""
        ends = starts + durations
        last = np.maximum(np.ceil(ends), np.floor(starts) + 1)
        self.book.ensure(self.view, self.scratch, site_pos, last)
        return ends, last

    def cost_each(self, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray,
                  durations: np.ndarray) -> np.ndarray:
        """`cost_one` for many runs at once (run i: at the scenario's site_pos[i], drawing kw[i]
        kW from starts[i] for durations[i] hours). Leaves the price book alone (see `priced`)."""
        ends, _ = self._rows_for(site_pos, starts, durations)
        return run_energy_cny(self.book.rows, self.book.base, site_pos, kw.astype(float), starts, ends)

    def price_each(self, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray, durations: np.ndarray,
                   bill: np.ndarray, late_cny_per_h: float, deadline: float | None, delay_cny_per_h: float,
                   soonest: float, lengths: tuple[np.ndarray, np.ndarray, float, float] | None = None
                   ) -> tuple[np.ndarray, ...]:
        """`cost_each`, with each run's lateness (late_cny_per_h per hour past `deadline`), delay
        (delay_cny_per_h per hour after `soonest`) and total (bill + energy + lateness + delay),
        in one pass: (energy, late, delay, total, and one past each run's last slot).

        `lengths`: the job's learned distribution of true work (`RuntimePredictor.distribution`:
        ratios to the estimate, their prefix sums, the booking's factor) and the ratio its runs
        are priced up to (`reach`, at least the factor), or None. With it, the energy is the
        expected energy of a run whose length follows it, cut at `reach`
        (`kernels.run_energy_expected`): each slot weighted by the chance the run still goes;
        lateness stays that of the booking, and the slots returned reach as far as the pricing."""
        late, dl = float(late_cny_per_h), math.nan if deadline is None else float(deadline)
        if lengths is None:
            ends, last = self._rows_for(site_pos, starts, durations)
            return (*run_prices(self.book.rows, self.book.base, site_pos, kw, starts, ends, bill, late, dl,
                                float(delay_cny_per_h), float(soonest)), last)
        ratios, sums, factor, reach = lengths
        unit = durations / factor                   # hours of each run per ratio of 1 (the estimate)
        ends, last = self._rows_for(site_pos, starts, unit * reach)
        energy, _, wait, total = run_prices_expected(self.book.rows, self.book.base, site_pos, kw, starts, ends, unit,
                                                     ratios, sums, bill, 0.0, math.nan, float(delay_cny_per_h),
                                                     float(soonest))
        booked = starts + durations
        late_c = late * np.maximum(0.0, booked - dl) if deadline is not None else np.zeros(len(starts))
        return energy, late_c, wait, total + late_c, last

    def cost(self, pj: PendingJob, o: Option, starts: Sequence[float]) -> np.ndarray:
        """CNY for each start (as `cost_one` gives it)."""
        return self.cost_many(pj, [(o, starts)])[0]

    def cost_many(self, pj: PendingJob, runs: Sequence[tuple[Option, Sequence[float]]]) -> list[np.ndarray]:
        """CNY for each start of each (pool, starts) in `runs` (as `cost_one` gives it), in one
        pass over all of them. The price book's arrays grow, pool by pool, to cover the slots
        of its latest start's run."""
        counts = [len(starts) for _, starts in runs]
        st = np.asarray([t for _, starts in runs for t in starts], dtype=float)
        ends = st + np.asarray([o.duration_h for o, _ in runs]).repeat(counts)
        lasts = [window_end(starts, o.duration_h) for o, starts in runs]
        self.priced([o.site for o, _ in runs], lasts)
        power, pue, pos = self.view.ledger.power, self.view.ledger.pue, self.book.index
        site_pos = np.asarray([pos(self.view, o.site) for o, _ in runs]).repeat(counts)
        kw = np.asarray([pj.job.gpus * power[o.gpu_type] * pue[o.site] for o, _ in runs], dtype=float).repeat(counts)
        self.book.ensure(self.view, self.scratch, site_pos, np.asarray(lasts, dtype=float).repeat(counts))
        e = run_energy_cny(self.book.rows, self.book.base, site_pos, kw, st, ends)
        bounds = [0, *itertools.accumulate(counts)]
        return [e[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


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


# ----------------------------------------------------------------------------- candidates as arrays
@dataclass
class Candidates:
    """Scored starts as arrays, one entry per candidate: what a vector chooser builds, so that
    only the few an explanation keeps become `Scored` objects."""

    opts: Options
    pool: np.ndarray                      # index into `opts`
    start: np.ndarray
    parts: dict[str, np.ndarray]          # CNY per candidate, in the order an explanation lists them
    total: np.ndarray
    key: tuple[np.ndarray, ...]           # the selector's key, most significant first (unique per candidate)
    info: dict[str, np.ndarray]
    floor: np.ndarray | None = None       # per pool of `opts`: no run there costs less (CNY), if known

    def __len__(self) -> int:
        return len(self.start)

    def ranked(self, keep: int) -> Ranked:
        """The best `keep`, then the best candidate of each other pool, and the pools without one."""
        order = np.lexsort(self.key[::-1])
        top = order[:keep]
        best = self.scored(top)

        def detail() -> tuple[list[Scored], dict[str, str]]:
            _, first = np.unique(self.pool[order], return_index=True)
            mine = set(self.pool[top].tolist())
            others = [i for i in order[np.sort(first)].tolist() if int(self.pool[i]) not in mine][:MAX_OTHERS]
            priced = set(self.pool.tolist())
            unscored: dict[str, str] = {}
            for i, (site, g) in enumerate(zip(self.opts.site, self.opts.gpu_type, strict=True)):
                if i in priced:
                    continue
                if self.floor is not None and best and float(self.floor[i]) >= best[0].total - 1e-9:
                    unscored[f"{site}/{g}"] = (f"cost: no run there costs less than {float(self.floor[i]):.2f} CNY, "
                                               f"above the chosen's {best[0].total:.2f} (not priced further)")
                else:
                    unscored[f"{site}/{g}"] = NO_START
            return self.scored(others), unscored
        later = Later(detail)
        return Ranked(best, len(self), LaterSeq(later, 0), LaterMap(later, 1), self.opts.pools.site_set)

    def best(self, k: int) -> list[Scored]:
        """The `k` least by `key`, least first."""
        return self.scored(np.lexsort(self.key[::-1])[:k])

    def scored(self, which: np.ndarray | Sequence[int]) -> list[Scored]:
        """The candidates `which` as `Scored` (values as Python numbers)."""
        which = np.asarray(which, dtype=np.int64)
        pool = self.pool[which]
        start = self.start[which].tolist()
        end = (self.start[which] + self.opts.duration_h[pool]).tolist()
        names, infos = tuple(self.parts), tuple(self.info)
        parts = zip(*(v[which].tolist() for v in self.parts.values()), strict=True)
        info = zip(*(v[which].tolist() for v in self.info.values()), strict=True)
        site, gpu_type = self.opts.site, self.opts.gpu_type
        return [Scored(site[p], gpu_type[p], s, e, dict(zip(names, v, strict=True)), t,
                       dict(zip(infos, i, strict=True)))
                for p, s, e, v, t, i in zip(pool.tolist(), start, end, parts, self.total[which].tolist(), info,
                                            strict=True)]


# ----------------------------------------------------------------------------- the pipeline
Chooser = Callable[[StateView, Scratch, PendingJob, Options], list[Scored]]


@dataclass
class Pipeline:
    """A policy: filters, then `choose` (candidates + scorers), then the selector `key`.

    `choose` returns the scored candidates; the one with the least `key` wins. If none is
    left the job is deferred (something may free up) or rejected (nothing ever could).
    A policy that scores candidates as arrays overrides `rank` instead.
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

    def _static_cache(self, view: StateView) -> ShapeCache:
        """Static filter results, kept for one scenario (a policy object may see another later)."""
        cache = getattr(self, "_cache", None)
        scn = view.scenario
        if cache is None or cache.scenario_key[0] is not scn.network or cache.scenario_key[1] is not scn.sites:
            cache = self._cache = ShapeCache(view, self.filters)
        return cache

    def rank(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options) -> Ranked:
        """The best `keep` candidates, best first, how many were weighed, the best of each other
        pool, and the pools without a candidate (`Ranked`)."""
        scored = sorted(self.choose(view, scratch, pj, opts), key=self.key)
        top = scored[: self.keep]

        def detail() -> tuple[list[Scored], dict[str, str]]:
            got = {(c.site, c.gpu_type) for c in scored}
            return pool_bests(scored, top), {f"{s}/{g}": NO_START for s, g in zip(opts.site, opts.gpu_type, strict=True)
                                             if (s, g) not in got}
        later = Later(detail)
        return Ranked(top, len(scored), LaterSeq(later, 0), LaterMap(later, 1), opts.pools.site_set)

    def may_hold(self, view: StateView, pj: PendingJob, best: Scored) -> bool:
        """Whether a plan that starts later (see `commit_within_h`) may be held rather than
        committed; a policy that bounds its re-planning says no once its budget is spent."""
        return True

    def kept_hold(self, view: StateView, pj: PendingJob,
                  planned: Sequence[tuple[str, str, str, float, float]]) -> Defer | None:
        """A held plan to keep as it is, without pricing the job again, given what this call
        has planned so far (`planned`: (job, site, GPU type, start, end) of each job priced);
        None: price it again. By default every job is priced again."""
        return None

    def preempt_for(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options, top: list[Scored],
                    cache: ShapeCache, stopped: set[str]) -> tuple | None:
        """Stop a running job (not one of `stopped`, those this call stops already) so that `pj`
        does better (where `view.running_on` allows it): None, or (pj's new `Ranked`, the
        `Preempt`, the stopped job's rest, its `Ranked`, rejected sites), with both new runs
        already booked in `scratch`. By default nothing is ever stopped."""
        return None

    def _answer(self, view: StateView, pj: PendingJob, r: Ranked, rejected: Mapping[str, str]) -> Decision:
        """Place the best of `r.top`, or hold it where it starts later (`commit_within_h`)."""
        best = r.top[0]
        expl = Explanation(self.name, view.now, best, tuple(r.top), rejected, weighed=r.weighed,
                           others=r.others, unscored=r.unscored)
        if (self.commit_within_h is not None and best.start_h > best.info["ready_h"] + self.commit_within_h
                and self.may_hold(view, pj, best)):
            return Defer(pj.job.id, f"{self.name}: planned for {best.start_h:.2f} h", expl,
                         hold=(best.site, best.gpu_type, best.start_h, best.end_h), retry_at=best.start_h,
                         pieces=best.pieces, stops=best.stops)
        sites = r.hosts if r.hosts is not None else (
            {c.site for c in (*r.top, *r.others)} | {k.split("/", 1)[0] for k in r.unscored})
        pieces = f" in {len(best.pieces) + 1} pieces" if best.pieces else ""
        return Place(pj.job.id, best.site, best.gpu_type, best.start_h, best.end_h,
                     reason=hosts_reason(self.name, r.weighed, sites) + pieces, explain=expl, pieces=best.pieces,
                     stops=best.stops)

    @staticmethod
    def reserve_plan(scratch: Scratch, gpus: int, site: str, gpu_type: str, start: float, end: float,
                pieces: Sequence[tuple[float, float]] = (), sign: int = 1) -> None:
        """Book (sign 1) or give back (-1) a planned run and its later pieces in `scratch`."""
        scratch.reserve(site, gpu_type, start, end, sign * gpus)
        for a, b in pieces:
            scratch.reserve(site, gpu_type, a, b, sign * gpus)

    def decide(self, view: StateView, jobs: Sequence[PendingJob]) -> list[Decision]:
        scratch = view.scratch()
        out: list[Decision] = []
        planned: list[tuple[str, str, str, float, float]] = []    # what this call priced, for `kept_hold`
        # stable: jobs ready together keep the order they were offered in (arrival order)
        cache = self._static_cache(view)
        stopped: set[str] = set()                                   # running jobs this call stops
        for pj in sorted(jobs, key=lambda pj: self.order(view, pj)) if len(jobs) > 1 else jobs:
            kept = self.kept_hold(view, pj, planned)
            if kept is not None and kept.hold is not None:
                site, gpu_type, start, end = kept.hold
                self.reserve_plan(scratch, pj.job.gpus, site, gpu_type, start, end, kept.pieces)
                out.append(kept)
                continue
            opts, rejected, dynamic = pool_options(view, pj, self.filters, cache)
            if not len(opts):
                expl = Explanation(self.name, view.now, None, (), rejected, "no pool passed the filters")
                if dynamic:
                    out.append(Defer(pj.job.id, "every site that could host it is down", expl))
                else:
                    out.append(Reject(pj.job.id, "no pool passes the filters: " + "; ".join(
                        f"{s}: {r}" for s, r in list(rejected.items())[:4]), expl))
                continue
            ranked = self.rank(view, scratch, pj, opts)
            if not ranked.top:
                expl = Explanation(self.name, view.now, None, (), rejected, "no candidate start")
                out.append(Defer(pj.job.id, "no pool can start it now", expl))
                continue
            pre = (self.preempt_for(view, scratch, pj, opts, ranked.top, cache, stopped)
                   if view.running_on is not None else None)
            if pre is not None:             # `preempt_for` booked both runs in the scratch
                ranked, stop, rest, rest_ranked, rest_rejected = pre
                out.append(stop)
                stopped.add(stop.job_id)
                rb = rest_ranked.top[0]
                planned.append((rest.job.id, rb.site, rb.gpu_type, rb.start_h, rb.end_h))
                planned.extend((rest.job.id, rb.site, rb.gpu_type, a, b) for a, b in rb.pieces)
                out.append(self._answer(view, rest, rest_ranked, rest_rejected))
            best = ranked.top[0]
            if pre is None:
                self.reserve_plan(scratch, pj.job.gpus, best.site, best.gpu_type, best.start_h, best.end_h, best.pieces)
            planned.append((pj.job.id, best.site, best.gpu_type, best.start_h, best.end_h))
            planned.extend((pj.job.id, best.site, best.gpu_type, a, b) for a, b in best.pieces)
            out.append(self._answer(view, pj, ranked, rejected))
        return out


def scored(o: Option, start: float, parts: dict[str, float], **info: float) -> Scored:
    return Scored(o.site, o.gpu_type, start, start + o.duration_h, parts, sum(parts.values()), info)
