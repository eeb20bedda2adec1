"""What a policy sees and what it answers.

The simulator (virtual clock) and, later, the live controller (wall clock) build a
`StateView` and call `Policy.decide`; the policy returns decisions and changes nothing.
To plan several jobs in one call a policy works on a `Scratch`: copy-on-write calendars and
extra load over the view's ledger, so the view itself stays untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from suanli.model.scenario import Scenario
from suanli.model.schedule import TIME_TOL, kept_work
from suanli.model.schema import Event, Job
from suanli.scheduling.calendar import PoolCalendar
from suanli.scheduling.ledger import Ledger, slot_overlaps

# hours an overrunning run is booked for at a time (MODEL.md §7): a run still going at the end of
# its booking is booked for this much more (or until it ends, if sooner), hour by hour
OVERRUN_LEASE_H = 1.0


@dataclass(frozen=True)
class PendingJob:
    """A job (or the rest of one) waiting for a placement.

    remaining_work: reference-GPU hours still to do (work_h less checkpointed progress): the
        user's estimate; the true work (`actual_work_h`) is never in what a policy sees (§7).
    ready_h: when its data can leave `origin` (submit_h, or the end of its previous segment).
    hosted: sites that already hold its data (they need no new transfer).
    from_site: the site an outage cut it from (its `backup` is preferred), if any.
    done_work: reference-GPU hours its earlier segments kept (whole checkpoints, §3.7): what a
        policy may condition the rest's length on (`remaining_work` stops telling once a run
        has outlived its estimate).
    """

    job: Job
    remaining_work: float
    ready_h: float
    hosted: frozenset[str] = frozenset()
    segments_done: int = 0
    from_site: str | None = None
    done_work: float = 0.0


@dataclass(frozen=True)
class Running:
    """A run in progress: `pending` is the job as it was when the run was placed (its
    `remaining_work` counted from `start_h`)."""

    pending: PendingJob
    site: str
    gpu_type: str
    start_h: float
    end_h: float

    @property
    def job(self) -> Job:
        return self.pending.job

    def rest(self, now: float, scn: Scenario) -> PendingJob:
        """What is left to do if the run stops at `now`: its whole checkpoints are kept
        (MODEL.md §3.7), the rest starts again from there, with the data already at its site.

        `remaining_work` is the estimate less the work kept. A run that has overrun its estimate
        (MODEL.md §7: its true work was more) may have kept all of it: its rest is then estimated
        at one more `OVERRUN_LEASE_H` on this GPU type, as the simulator books an overrun."""
        pj = self.pending
        speed = scn.speed(pj.job, self.gpu_type)
        kept = kept_work(now - self.start_h, speed, pj.job.checkpoint_h)
        left = pj.remaining_work - kept
        if left <= TIME_TOL * speed:
            left = OVERRUN_LEASE_H * speed
        return PendingJob(pj.job, left, now, pj.hosted | {self.site}, pj.segments_done + 1,
                          done_work=pj.done_work + kept)


@dataclass(slots=True)      # not frozen: policies make thousands per second, and frozen init is slow
class Scored:
    """One candidate placement and the parts of its price (CNY)."""

    site: str
    gpu_type: str
    start_h: float
    end_h: float
    parts: Mapping[str, float]
    total: float
    info: Mapping[str, float] = field(default_factory=dict)   # not money: what else the selector weighs
    # a suspend-resume plan's later pieces (start, end) on the same pool, after [start_h, end_h),
    # which is then its first piece (see `Place.pieces`); () for one uninterrupted run
    pieces: tuple[tuple[float, float], ...] = ()
    stops: bool = False     # the plan's end is a planned stop too (see `Place.stops`)


@dataclass(frozen=True)
class Explanation:
    """Why a job went where it went: the best candidates, and why other sites were left out."""

    policy: str
    now: float
    chosen: Scored | None
    candidates: tuple[Scored, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)     # site -> "filter: detail"
    note: str = ""
    weighed: int = 0            # how many candidates were priced (`candidates` keeps the best few)
    # beyond the best few: the best candidate of each other pool (site x GPU type) priced, best
    # first, and the pools ("site/gpu_type") that passed the filters yet have none, with why
    others: Sequence[Scored] = ()         # may be worked out when first read (pipeline.Later)
    unscored: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Place:
    """Run the job on (site, gpu_type) over [start_h, end_h).

    With `pieces` (a suspend-resume plan), [start_h, end_h) is only its first piece: the run
    stops at end_h, keeping its whole checkpoints (MODEL.md §3.7), and `pieces`, the later
    (start, end) runs on the same pool in time order, are booked for it too. The kept work of
    every piece but the last and the last piece's whole length must cover the remaining work.
    At each stop the caller keeps the later pieces booked as a hold and offers the job's rest
    again at the next piece's start (or sooner, as any held plan), so a plan is re-planned
    piece by piece as forecasts change; a job that ends early gives the later pieces back.

    With `stops` (a checkpointing job's plan, where the caller follows pieces: `StateView.pieces`),
    the end of the plan's last run is a planned stop too: a job not done by then stops there,
    keeping its whole checkpoints, and its rest is offered again at once, rather than overrunning
    (MODEL.md §7). The plan then need not cover the remaining work's estimate: it is the policy's
    plan that ends, and for a job of unknown length the policy may book what it expects."""

    job_id: str
    site: str
    gpu_type: str
    start_h: float
    end_h: float
    reason: str = ""
    explain: Explanation | None = None
    pieces: tuple[tuple[float, float], ...] = ()
    stops: bool = False


@dataclass(frozen=True)
class Defer:
    """Not now: offer the job again when the network changes (a site recovers, a job arrives)
    or at `retry_at`. With `hold` = (site, gpu_type, start_h, end_h), the GPUs of that planned
    run (and of its later `pieces`, as `Place.pieces`) stay booked for the job until it is
    offered again, so later jobs cannot take them."""

    job_id: str
    reason: str
    explain: Explanation | None = None
    hold: tuple[str, str, float, float] | None = None
    retry_at: float | None = None
    pieces: tuple[tuple[float, float], ...] = ()     # with `hold`: a suspend-resume plan's later pieces, held too
    stops: bool = False     # with `hold`: the plan's end is a planned stop (as `Place.stops`)


@dataclass(frozen=True)
class Reject:
    """Never placeable (no reachable pool of an allowed type is big enough)."""

    job_id: str
    reason: str
    explain: Explanation | None = None


@dataclass(frozen=True)
class Preempt:
    """Stop the running job `job_id` now (where the caller allows it: `StateView.running_on`).
    It keeps its whole checkpoints; the same answer must then hold one `Place`, `Defer` or
    `Reject` for the job's rest (`Running.rest`), as if it had been offered."""

    job_id: str
    reason: str
    explain: Explanation | None = None


Decision = Place | Defer | Reject | Preempt


@dataclass
class StateView:
    """The network as a policy may know it at `now` (MODEL.md §7).

    `scenario` is the public part only: its `events` list is empty, since a policy learns of
    outages when they happen (`down`) and of grid caps `notice_h` ahead (`grid_caps`); its jobs
    carry `work_h`, the estimate, never `actual_work_h`. Renewables and grid carbon are the
    forecasts issued at the start of the current hour (`scheduling.forecast`; `ledger.issue`
    names that hour, None when the scenario has no `forecast:` block and they are known
    exactly); tariffs are exact.
    """

    now: float
    scenario: Scenario
    ledger: Ledger
    down: frozenset[str] = frozenset()
    grid_caps: Sequence[Event] = ()
    # True where the caller keeps a `Defer`'s `hold` (the GPUs stay reserved) and offers the job
    # again at the next arrival or at `retry_at` (the simulator); a policy may then re-plan
    holds: bool = False
    # The runs in progress on a pool (site, GPU type), where the caller lets a policy preempt
    # them (the simulator); None: no preemption
    running_on: Callable[[str, str], Sequence[Running]] | None = None
    # Bookings the caller has lengthened so far, for runs still going past their estimate
    # (MODEL.md §7): when it changes, GPUs a plan held across calls counted on may be taken
    overruns: int = 0
    # The jobs that have ended so far, in the order they ended, each as the policy saw it (its
    # `work_h` the estimate) with the work it really needed (`actual_work_h`, or `work_h`): what
    # a policy learns when a job ends (MODEL.md §7). The caller appends; a policy reads it to
    # learn how estimates err (`suanli`'s run-time predictor), keeping how far it has read.
    ended: Sequence[tuple[Job, float]] = ()
    # True where the caller follows suspend-resume plans (`Place.pieces`, `Defer.pieces`: the
    # simulator, and the live controller unless `--no-suspend`); elsewhere a policy plans each
    # run in one piece
    pieces: bool = False
    # True where the caller also follows planned stops (`Place.stops`: the simulator, and the live
    # controller unless `--no-suspend`, `Controller._suspend_due`); elsewhere a run past its
    # booking overruns (the live controller reviews it, `service/overrun.py`)
    stops: bool = False

    @property
    def calendars(self) -> Mapping[tuple[str, str], PoolCalendar]:
        return self.ledger.calendars

    def scratch(self) -> Scratch:
        return Scratch(self.ledger)

    def duration_h(self, pj: PendingJob, gpu_type: str) -> float:
        """Hours the rest of the job runs on `gpu_type`."""
        return pj.remaining_work / self.scenario.speed(pj.job, gpu_type)

    def data_ready_h(self, pj: PendingJob, site: str) -> float:
        """When the job's data is at `site` (inf if unreachable)."""
        if site in pj.hosted:
            return pj.ready_h
        return pj.ready_h + self.scenario.transfer_h(pj.job, site)

    def caps_at(self, site: str) -> list[Event]:
        if not self.grid_caps:
            return []
        return [e for e in self.grid_caps if e.site == site]

    def candidate_pools(self, pj: PendingJob) -> list[tuple[str, str]]:
        """(site, GPU type) pairs that could ever host the job: reachable, rtt within bound,
        type allowed, pool big enough. Down sites included."""
        scn = self.scenario
        out = []
        allowed = scn.allowed_types(pj.job)
        for sid, site in scn.sites.items():
            if scn.path(pj.job, sid) is None or not scn.latency_ok(pj.job, sid):
                continue
            for g in allowed:
                pool = site.gpus.get(g)
                if pool is not None and pool.count >= pj.job.gpus:
                    out.append((sid, g))
        return out


_SCRATCH_SERIAL = itertools.count(1)


class Scratch:
    """Copy-on-write calendars, and extra site load, for planning several placements inside
    one `decide` call.

    A reservation is applied (the pool's calendar copied, the load spread over slots) only when
    something reads that pool or site again: most calls plan one job, and nothing reads after
    the last reservation."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self._own: dict[tuple[str, str], PoolCalendar] = {}
        self._extra: dict[str, dict[int, float]] = {}     # site -> slot -> kWh planned here
        self._serial = next(_SCRATCH_SERIAL)              # unique for the process, unlike id()
        self._planned: dict[str, int] = {}                # site -> placements planned on it here
        self._pending: list[tuple[str, str, float, float, int]] = []   # reserved, not applied yet
        self._applied = 0

    def has_plans(self) -> bool:
        return bool(self._planned)

    @property
    def serial(self) -> int:
        return self._serial

    @property
    def planned_count(self) -> int:
        """Placements planned in this scratch so far."""
        return len(self._pending) + self._applied

    def planned_sites(self) -> set[str]:
        """Sites with a placement planned in this scratch."""
        return set(self._planned)

    def token(self, site: str) -> tuple[int, int] | None:
        """None while nothing is planned on `site` in this scratch; otherwise a value that
        changes with every placement planned there (what was derived from its load is stale)."""
        n = self._planned.get(site)
        return None if n is None else (self._serial, n)

    def calendars_of(self, keys: Sequence[tuple[str, str]]) -> list[PoolCalendar]:
        """`calendar(site, gpu_type)` for each (site, GPU type) of `keys`."""
        if self._pending:
            self._apply()
        own, ledger = self._own, self.ledger.calendars
        if not own:
            return [ledger[k] for k in keys]
        return [own.get(k) or ledger[k] for k in keys]

    def calendar(self, site: str, gpu_type: str) -> PoolCalendar:
        key = (site, gpu_type)
        if self._pending:
            self._apply()
        return self._own.get(key) or self.ledger.calendars[key]

    def extra_load(self, site: str, first: int, last: int) -> np.ndarray | None:
        if self._pending:
            self._apply()
        planned = self._extra.get(site)
        if not planned:
            return None
        out = np.zeros(last - first)
        for t, kwh in planned.items():
            if first <= t < last:
                out[t - first] += kwh
        return out

    def release(self, site: str, gpu_type: str, start: float, end: float, gpus: int) -> None:
        """Give back GPUs the ledger (or this scratch) holds over [start, end), and their load."""
        self.reserve(site, gpu_type, start, end, -gpus)

    def reserve(self, site: str, gpu_type: str, start: float, end: float, gpus: int) -> None:
        self._planned[site] = self._planned.get(site, 0) + 1
        self._pending.append((site, gpu_type, start, end, gpus))

    def _apply(self) -> None:
        for site, gpu_type, start, end, gpus in self._pending:
            key = (site, gpu_type)
            if key not in self._own:
                self._own[key] = self.ledger.calendars[key].copy()
            self._own[key].add(start, end, gpus)
            first, hours = slot_overlaps(start, end)
            kw = gpus * self.ledger.power[gpu_type] * self.ledger.pue[site]
            planned = self._extra.setdefault(site, {})
            for k, h in enumerate(hours):
                planned[first + k] = planned.get(first + k, 0.0) + h * kw
        self._applied += len(self._pending)
        self._pending.clear()


class Policy(Protocol):
    name: str

    def decide(self, view: StateView, jobs: Sequence[PendingJob]) -> list[Decision]:
        """One decision per job in `jobs`; must not change `view`."""
        ...
