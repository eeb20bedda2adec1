"""`suanli`: the joint choice of site, GPU type and start time by marginal objective.

For every pool that passes the filters, the job's earliest feasible start is priced by the
parts of the scenario's objective it would add (MODEL.md §6): GPU rental, data transfer,
marginal energy cost and carbon against what the site's renewables and battery still have
free after the load already committed, grid-cap (demand-response) penalties for caps already
announced, lateness, and the room the run takes from larger gangs on pools few are big enough
for (`Suanli._room`: runs are not preempted). The few cheapest pools are then priced again at
every whole hour up to the latest start that still meets the deadline (or a short window for
jobs without one, since waiting then only trades time for energy), within the look-ahead.
The cheapest candidate wins; work handed back by an outage prefers the failed site's `backup`
when it is within `backup_margin` of the best.

A run that starts at once is committed; a later one only holds its GPUs, and the queue of held
plans comes back, most urgent first, at each arrival (so an urgent gang can take a pool a lax
job had planned on); a held plan is priced again only where something planned before it booked
its site in the slots it needs, while a per-run re-planning budget lasts (docs/SCHEDULER.md).

The pools are priced as arrays (`Options`): floors, durations and times for all of them at
once, energy for a batch of runs in one gather from the `TierBook`, and only the few
candidates an explanation keeps become `Scored` objects.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from suanli.model.schedule import TIME_TOL, kept_work
from suanli.scheduling.pipeline import (
    Candidates,
    EnergyPricer,
    Options,
    Pipeline,
    PriceBook,
    Ranked,
    ShapeCache,
    TierBook,
    pool_options,
    window_end,
    window_starts,
)
from suanli.scheduling.policies import register
from suanli.scheduling.predictor import RuntimePredictor
from suanli.scheduling.state import (
    Decision,
    Defer,
    Explanation,
    PendingJob,
    Preempt,
    Running,
    Scored,
    Scratch,
    StateView,
)

MAX_LOOKAHEAD_H = 168.0    # how far ahead a start may be planned (as far as a job's slack reaches, up to this)
LOOKAHEAD_H = 72.0          # ... in a scenario without uncertainty fields (`uncertain`), as before them
NO_DEADLINE_SHIFT_H = 6.0   # how long a job without a deadline may wait for cheaper energy
REFINE_POOLS = 3            # pools priced at every hour of their window
COMMIT_WITHIN_H = 0.0       # commit runs that start at once, hold the rest and re-plan (None: commit every plan)
BACKUP_MARGIN = 0.02        # the backup wins if it costs at most 2 % more than the best
DELAY_CNY_PER_GPU_H = 20.0  # the price of holding a job back past its earliest possible start,
                            # at a fully busy network (scaled by the busy share squared)
REPLAN_BUDGET = 2_000       # held plans priced again, at most, in one run
REPLAN_CELLS = 2_500_000    # hour-slots of runs priced while re-planning, at most, in one run
REPLAN_PER_JOB = 24         # ... and, in a scenario written for uncertainty (`uncertain`), this many more held
                            # plans offered again per job seen: a day of hourly re-plans each (see `decide`)
PREEMPT_TRIES = 6           # running jobs tried, at most, when a job would be late
PREEMPT_MAX_SEGMENTS = 3    # a running job is stopped only while it has had fewer segments before this run
PREEMPT_MARGIN = 0.05       # a stop must save more than this share of what it gains the late job
ROOM_CNY_PER_GPU_H = 5.0    # the price of taking the room a larger gang needs, per GPU-hour, at a fully
                            # busy network (scaled by the busy share; see `Suanli._room`)
TAIL_FACTOR = 4.0           # a run of uncertain length is priced up to this many times its estimate (its
                            # group's longest learned ratio, if less; see `Suanli._lengths`)
SUSPEND_MIN_SLACK_H = 1.0   # a checkpointing job is weighed in pieces only with at least this much slack
SUSPEND_MAX_CELLS = 1024    # ... and over at most this many cells (hours) between its ready time and its end


def start_by(end: float, duration: float) -> float:
    """The latest start whose run of `duration` ends by `end` in floating point, not one ulp
    after it: `(end - duration) + duration` may exceed `end` (51.568397 - 9.246109 + 9.246109
    = 51.568397000000004), and a run ending there is a deadline miss to a reader who compares
    without MODEL.md's tolerance (the shared checker does)."""
    s = end - duration
    while s + duration > end:
        s = math.nextafter(s, -math.inf)
    return s


class Suanli(Pipeline):
    def __init__(self, max_lookahead_h: float = MAX_LOOKAHEAD_H, window_ends: bool = True,
                 uncertain: bool | None = None, no_deadline_shift_h: float = NO_DEADLINE_SHIFT_H,
                 refine: int = REFINE_POOLS, backup_margin: float = BACKUP_MARGIN,
                 delay_cny_per_gpu_h: float = DELAY_CNY_PER_GPU_H, delay_power: float = 2.0,
                 commit_within_h: float | None = COMMIT_WITHIN_H, replan_budget: int = REPLAN_BUDGET,
                 replan_cells: int = REPLAN_CELLS, lazy_replan: bool = True, refine_bound: bool = True,
                 room_cny_per_gpu_h: float = ROOM_CNY_PER_GPU_H, room_power: float = 1.0,
                 preempt: bool = True, preempt_max_segments: int = PREEMPT_MAX_SEGMENTS,
                 predictor: RuntimePredictor | None = None, predict: bool = True, suspend: bool | None = None,
                 expect_lengths: bool = True, tail_factor: float = TAIL_FACTOR, plan_stops: bool = True,
                 rest_quantile: float | None = None):
        self.prices = PriceBook()
        self.tiers = TierBook()      # energy tiers per site, kept across jobs while the site's load is unchanged
        self.max_lookahead_h = max_lookahead_h
        self.window_ends = window_ends    # also weigh the latest start and starts whose runs end on the hour
        # Plan as far as a job's slack reaches (up to `max_lookahead_h`) and weigh window-end
        # starts: True, False, or None for scenarios written with uncertainty in mind (a
        # `forecast:` block or a job with `max_wait_h`), so that older scenarios keep their
        # schedules exactly (`LOOKAHEAD_H`, whole hours only)
        self.uncertain = uncertain
        # bookings as long as the estimate corrected by the jobs ended so far (None: the estimate)
        self.predictor = predictor if predictor is not None else RuntimePredictor() if predict else None
        self._uncertain = bool(uncertain)
        self.no_deadline_shift_h = no_deadline_shift_h
        self.refine = refine
        self.backup_margin = backup_margin
        self.delay = delay_cny_per_gpu_h
        self.delay_power = delay_power
        self.replan_budget = replan_budget
        self.replan_cells = replan_cells
        self._scenario: object = None     # the run the counters below are for
        self._held: dict[str, Defer] = {}  # the plans it holds now, by job
        self.lazy_replan = lazy_replan
        self.refine_bound = refine_bound  # skip windows that cannot beat the best (same choices, less work)
        self._replan_all = True           # this call prices every held plan again
        self._pricing_held = False        # the job being priced has a held plan
        self._world: tuple | None = None  # sites down and grid caps known at the last call
        self._offered = 0                 # held jobs offered again, so far in the run
        self._jobs_seen: set[str] = set()  # jobs offered so far in the run (the budget grows with them)
        self._replanned = 0               # ... and priced again
        self._replan_cells = 0            # hour-slots of the runs priced for held jobs priced again
        self._may_hold = True
        self.room = room_cny_per_gpu_h
        self.room_power = room_power
        self.preempt = preempt
        self.preempt_max_segments = preempt_max_segments   # 1: a job is stopped at most once
        # Weigh suspend-resume plans for checkpointing jobs (`_pieces`): True, False, or None for
        # scenarios written with uncertainty in mind (as `uncertain`), so older ones keep their schedules
        self.suspend = suspend
        self._suspend = bool(suspend)
        self._one_piece = False           # price single runs only (while weighing a preemption)
        self._finish: dict[str, float] = {}   # job -> the end its suspend-resume plan must keep to
        # A checkpointing job's plan ends in a planned stop (`Place.stops`) where suspend-resume is
        # weighed, and its rest is booked for the work its group's lengths say it still needs
        # given the work done (`_stop_work`, with `rest_quantile`; None: the predictor's quantile)
        self.plan_stops = plan_stops
        self.rest_quantile = rest_quantile
        self._totals: dict[str, float] = {}   # job -> the total work its rest was booked for (done + predicted)

        self._counts: dict[tuple[str, str], int] = {}  # the run's pools: GPUs in each
        self._seen: set[int] = set()      # gang sizes of the jobs seen so far in the run
        self._cover: dict[int, int] = {}  # gang size that may come -> how many pools are that large
        # ... where uncertain (`_room`): (gang size, the GPU types it may use or None: any) -> how many
        # pools of those types are that large
        self._kinds: dict[tuple[int, frozenset[str] | None], int] = {}
        self._shares: dict[tuple, float] = {}  # (pool size (and type), gang, pools it fits) -> room share (`_room`)
        self._by_shape: dict[int, tuple] = {}  # id(ShapePools) -> (it, its distinct pool sizes, index into them)
        self._by_kind: dict[int, tuple] = {}   # ... (it, its distinct (pool size, GPU type) pairs, index into them)
        self._kw: dict[int, tuple] = {}   # id(ShapePools) -> (it, the draw of a run at each pool)
        self._room_of: dict[tuple[int, int], tuple] = {}   # (id(ShapePools), gang) -> (it, its share per pool)
        # price a start by the expected energy over the learned lengths (`_lengths`), where there are some
        self.expect_lengths = expect_lengths
        self.tail_factor = tail_factor   # a run's energy is priced up to this many times its estimate, at most
        self._priced_per_job = 8.0   # how many pools a job's pricing looked at, lately (sizes the batches)
        super().__init__("suanli", self._choose, key=self._key, order=self._priority, commit_within_h=commit_within_h)

    def decide(self, view: StateView, jobs: Sequence[PendingJob]) -> list[Decision]:
        """Plans that start later are held (with `commit_within_h`, where the caller keeps holds:
        `view.holds`) and the queue re-planned, most urgent first, at each arrival, while the
        re-planning budget lasts; then every plan is committed, as without `commit_within_h`."""
        self._see(view, jobs)
        jobs = self._predicted(view, jobs)
        if self.commit_within_h is None:
            return super().decide(view, jobs)
        if not view.holds:                            # the caller would not keep a hold: commit
            self._may_hold = False
            return super().decide(view, jobs)
        # Each held plan offered again costs (the simulator releases and books it again; it may be
        # priced again): a busy or long-running network would pay that many times over, so
        # holding stops for good once the budget is spent.
        self._offered += sum(1 for pj in jobs if pj.job.id in self._held)
        self._may_hold = self._offered <= self._budget(jobs) and self._replan_cells <= self.replan_cells
        # Sites going down or up, grid caps announced and forecasts issued anew change what
        # every plan costs, and a run booked longer past its estimate may take a plan's GPUs:
        # then every held plan is priced again. In a scenario written for uncertainty, so is every
        # new hour, forecasts or not: GPUs that runs ending early, plans moving later and
        # newcomers' choices left free are otherwise never taken back by the plans behind them,
        # and a perfect-information run would re-plan less than one with forecasts
        # (docs/SCHEDULER.md, "Re-planning every hour").
        hour = math.floor(view.now) if self._uncertain else None
        world = (view.down, len(view.grid_caps), view.overruns, view.ledger.issue, hour)
        self._replan_all = not self.lazy_replan or world != self._world
        self._world = world
        out = super().decide(view, jobs)
        self._held = {d.job_id: d for d in out if isinstance(d, Defer) and d.hold is not None}
        return out

    def _budget(self, jobs: Sequence[PendingJob]) -> int:
        """Held plans that may come back in the run before holding stops: `replan_budget`, and in
        a scenario written for uncertainty `REPLAN_PER_JOB` more per job seen so far, so that
        hourly re-planning does not run out of budget part-way through a few hundred jobs and
        commit every plan at once (then a far-off plan on a pool an overrun will need is voided
        and placed again behind everything committed: seed 8 of the 300-job network lost
        161,972 CNY of wait-excess so, all on one 48-GPU gang)."""
        if not self._uncertain:
            return self.replan_budget
        self._jobs_seen.update(pj.job.id for pj in jobs)
        return self.replan_budget + REPLAN_PER_JOB * len(self._jobs_seen)

    def _predicted(self, view: StateView, jobs: Sequence[PendingJob]) -> Sequence[PendingJob]:
        """`jobs` with the work of those not started yet as the run-time predictor has it (the
        estimate times what the jobs ended so far taught, `predictor.RuntimePredictor`): their
        runs are booked that long (a job that needs less ends early and frees its GPUs then)."""
        if self.predictor is None:
            return jobs
        self.predictor.learn(view.ended)
        out = None
        for i, pj in enumerate(jobs):
            if pj.segments_done:
                self._totals.pop(pj.job.id, None)
            if self._stops(view, pj.job):
                work = self._stop_work(view, pj)
            elif pj.segments_done:
                continue
            else:
                f = self.predictor.factor(pj.job)
                if f == 1.0:
                    continue
                work = pj.remaining_work * f
            if out is None:
                out = list(jobs)
            out[i] = replace(pj, remaining_work=work)
        return jobs if out is None else out

    def _stops(self, view: StateView, job) -> bool:
        """Whether `job`'s plans end in planned stops (`plan_stops`, `Place.stops`): a
        checkpointing job without a deadline, where suspend-resume is weighed and the caller
        follows pieces and planned stops (`StateView.stops`: the simulator, the live controller
        unless `--no-suspend`), whose group's learned lengths vary
        (`RuntimePredictor.distribution`: its length is uncertain, and known to be).
        Elsewhere (exact estimates, before 3 jobs of its group have ended, a deadline) a run
        that outlives its plan overruns, as before: an overrun keeps its GPUs, a stopped job
        queues again for them, which with a deadline on a busy network costs lateness
        (bench/scenarios/uncertain-300x10.yaml, objective CNY on the branch that built it: no
        stops 95,132; stops for every job 256,345; for jobs without a deadline 103,428)."""
        return (self.plan_stops and self._suspend and view.pieces and view.stops
                and bool(job.checkpoint_h)
                and job.deadline_h is None and self.predictor is not None
                and self.predictor.distribution(job) is not None)

    def _stop_work(self, view: StateView, pj: PendingJob) -> float:
        """The work a plan that ends in a planned stop (`_stops`) books, whole checkpoints of a
        run on its fastest GPU type (so a run on any type is at least one checkpoint long, and
        each stop moves the job on): for a job not started, its estimate times the predictor's
        factor, as any job's; for the rest of one, what its group's learned lengths say it still
        needs given the work it has done (`RuntimePredictor.remaining`, with `rest_quantile`),
        not the estimate less the work done (that says nothing once a run outlives its
        estimate), or, where it has outlived every learned length, that or one lease
        (`Running.rest`). If it is not done by the plan's end, it stops there and is offered
        again, knowing more."""
        job = pj.job
        if pj.segments_done:
            got = self.predictor.remaining(job, pj.done_work, self.rest_quantile)
            work = pj.remaining_work if got is None else got
        else:
            work = pj.remaining_work * self.predictor.factor(job)
        scn = view.scenario
        step = float(job.checkpoint_h) * max(scn.speed(job, g) for g in scn.allowed_types(job))
        work = step * max(1, math.ceil(work / step - 1e-9))
        if pj.segments_done:
            self._totals[job.id] = pj.done_work + work
        return work

    def _see(self, view: StateView, jobs: Sequence[PendingJob]) -> None:
        """Note the run (a new one starts afresh: re-planning budget, held plans, gang sizes) and
        the gang sizes of `jobs`."""
        if view.scenario is not self._scenario:
            self._scenario, self._held, self._world = view.scenario, {}, None
            self._offered = self._replanned = self._replan_cells = 0
            self._jobs_seen = set()
            if self.predictor is not None:
                self.predictor.reset()
            scn = view.scenario
            self._uncertain = (self.uncertain if self.uncertain is not None else
                               scn.forecast is not None or any(j.max_wait_h is not None for j in scn.jobs))
            self._suspend = self.suspend if self.suspend is not None else self._uncertain
            self._finish, self._totals = {}, {}
            self._counts = {(k, g): p.count for k, site in view.scenario.sites.items() for g, p in site.gpus.items()}
            self._seen, self._cover, self._shares, self._by_shape, self._room_of = set(), {}, {}, {}, {}
            self._kinds = {}
        new = {pj.job.gpus for pj in jobs} - self._seen
        if new:
            self._seen |= new
            counts = self._counts.values()
            self._shares, self._room_of = {}, {}
            self._cover = {n: sum(c >= n for c in counts) for n in self._seen | set(counts)}
        if self._uncertain:
            # gangs by the GPU types they may use, each with the pools (of those types) it fits
            kinds = {self._kind(pj) for pj in jobs}
            if not self._kinds:   # the pools' own sizes: gangs the network is built for, of any type
                kinds |= {(c, frozenset((t,))) for (_, t), c in self._counts.items()}
            new_kinds = kinds - self._kinds.keys()
            if new_kinds:
                self._shares, self._room_of = {}, {}
                for n, ts in new_kinds:
                    self._kinds[(n, ts)] = sum(c >= n for (_, t), c in self._counts.items() if ts is None or t in ts)

    def _room(self, view: StateView, pj: PendingJob, opts: Options) -> np.ndarray:
        """Per pool, CNY per hour of the run: the price of the room it takes from larger gangs.

        A gang of g GPUs on a pool of C leaves it, while it runs, unable to host a gang of n
        GPUs for any n in (max(g, C - g), C]: the gang sizes seen so far in the run, and the
        pools' own sizes (the gangs the network is built for), these weighed by how plausible
        such a gang is (min(1, 2 × the largest gang seen / n)). The fewer pools of the network
        can host n, the dearer: the share is max over those n of plausibility / (pools with at
        least n GPUs). Price: `room_cny_per_gpu_h` × g × share × the network's busy share
        (`room_power`): nothing for a gang that fits its pool exactly or leaves it room for
        every size, most for a small job on the one pool a big gang can use. So, online, small
        and lax jobs keep off the few pools that big (often urgent) gangs need, which they
        could not take back: runs are not preempted. In a scenario written for uncertainty the
        gangs are counted by the GPU types they may use as well (`_typed_share`).
        """
        if (view.scenario is not self._scenario or pj.job.gpus not in self._seen
                or (self._uncertain and self._kind(pj) not in self._kinds)):
            self._see(view, (pj,))                    # priced outside `decide` (an explanation)
        g = pj.job.gpus
        key = (id(opts.pools), g)
        got = self._room_of.get(key)
        if got is None or got[0] is not opts.pools:       # per job shape, until new gang sizes are seen
            top = max(self._seen)
            mine = 0                                        # pools the job itself fits (where uncertain)
            if self._uncertain:
                sizes, at = self._pool_kinds(opts)
                mine = self._kinds[self._kind(pj)]
            else:
                sizes, at = self._pool_sizes(opts)
            share = np.empty(len(sizes))
            for i, c in enumerate(sizes):
                v = self._shares.get((c, g, mine))
                if v is None:
                    v = self._shares[(c, g, mine)] = (self._typed_share(c, g, mine, top) if self._uncertain else
                                                max((min(1.0, 2.0 * top / n) / k for n, k in self._cover.items()
                                                     if max(g, c - g) < n <= c), default=0.0))
                share[i] = v
            got = self._room_of[key] = (opts.pools, share[at])
        return self.room * view.ledger.busy_share(view.now) ** self.room_power * g * got[1]

    def _typed_share(self, pool: tuple[int, str], g: int, mine: int, top: int) -> float:
        """`_room`'s share for a gang of `g` GPUs that fits `mine` pools, on a pool of (size,
        GPU type), where uncertain: only gangs that may use the pool's type count, each against
        the pools of the types it may use (a 32-GPU l40s-only gang has one pool to go to, however
        many 32-GPU pools of other types there are; seed 12 of issue #15's network,
        docs/SCHEDULER.md). A gang no larger than this one counts too where it has fewer pools to
        go to (by the difference of the shares: a job that may use any type keeps off the one
        pool of the type a same-sized gang is bound to)."""
        c, t = pool
        return max((min(1.0, 2.0 * top / n) * (1.0 / k if n > g else 1.0 / k - 1.0 / mine)
                    for (n, ts), k in self._kinds.items()
                    if c - g < n <= c and k and (ts is None or t in ts)), default=0.0)

    @staticmethod
    def _kind(pj: PendingJob) -> tuple[int, frozenset[str] | None]:
        """A job's gang: its size and the GPU types it may use (None: any)."""
        return pj.job.gpus, frozenset(pj.job.gpu_types) if pj.job.gpu_types else None

    def _pool_kinds(self, opts: Options) -> tuple[list[tuple[int, str]], np.ndarray]:
        """The distinct (size, GPU type) pairs among `opts`' pools, and each pool's index into
        them (kept per job shape, as `_pool_sizes`)."""
        got = self._by_kind.get(id(opts.pools))
        if got is None or got[0] is not opts.pools:
            pairs = [(self._counts[key], key[1]) for key in zip(opts.site, opts.gpu_type, strict=True)]
            kinds = sorted(set(pairs))
            index = {p: i for i, p in enumerate(kinds)}
            if len(self._by_kind) > 4096:
                self._by_kind.clear()
            got = self._by_kind[id(opts.pools)] = (opts.pools, kinds, np.asarray([index[p] for p in pairs]))
        return got[1], got[2]

    def _draw(self, opts: Options, gpus: int) -> np.ndarray:
        """kW a run of `gpus` GPUs draws at each pool of `opts`, PUE included (kept per job
        shape, which fixes the gang size)."""
        got = self._kw.get(id(opts.pools))
        if got is None or got[0] is not opts.pools:
            if len(self._kw) > 4096:
                self._kw.clear()
            got = self._kw[id(opts.pools)] = (opts.pools, gpus * opts.power_kw * opts.pue)
        return got[1]

    def _pool_sizes(self, opts: Options) -> tuple[list[int], np.ndarray]:
        """The distinct pool sizes among `opts`' pools, and each pool's index into them (kept per
        job shape: `opts.pools` is cached per shape)."""
        got = self._by_shape.get(id(opts.pools))
        if got is None or got[0] is not opts.pools:
            counts = np.asarray([self._counts[key] for key in zip(opts.site, opts.gpu_type, strict=True)])
            sizes, at = np.unique(counts, return_inverse=True)
            if len(self._by_shape) > 4096:
                self._by_shape.clear()
            got = self._by_shape[id(opts.pools)] = (opts.pools, sizes.tolist(), at.reshape(-1))
        return got[1], got[2]

    def may_hold(self, view: StateView, pj: PendingJob, best: Scored) -> bool:
        return self._may_hold

    @property
    def _holding(self) -> set[str]:
        return set(self._held)

    def kept_hold(self, view: StateView, pj: PendingJob,
                  planned: Sequence[tuple[str, str, str, float, float]]) -> Defer | None:
        """A held plan is kept, unpriced, unless something planned before it in this call (a
        newcomer more urgent than it, or a held plan that moved) books its site in a slot its
        run touches: the only way it can have lost its GPUs or its cheap energy. It is priced
        again at its planned start (to be committed), when a site goes down or comes back or a
        grid cap is announced, and always with `lazy_replan=False`."""
        held = self._held.get(pj.job.id)
        self._pricing_held = held is not None
        if held is None or self._replan_all or not self._may_hold:
            self._replanned += self._pricing_held
            return None
        site, _, start, end = held.hold
        if not start > view.now:
            self._replanned += 1
            return None
        spans = ((start, end), *held.pieces)          # a suspend-resume plan: each of its pieces
        for job, s, g, a, b in planned:
            if s == site and any(math.floor(a) < math.ceil(y) and math.ceil(b) > math.floor(x) for x, y in spans):
                before = self._held.get(job)
                if before is None or ((a, b) != before.hold[2:] and (a, b) not in before.pieces) or (
                        (s, g) != before.hold[:2]):           # not just the same plan again
                    self._replanned += 1
                    return None
        self._pricing_held = False
        return held

    def preempt_for(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options, top: list[Scored],
                    cache: ShapeCache, stopped: set[str]) -> tuple | None:
        """A job that would be late may stop one running job (one whose job has had fewer than
        `preempt_max_segments` segments before this run: stopped or cut by outages; so no job is
        stopped without end) on a pool it can use, when the stop saves more than it
        costs: the late job's price falls by more than the stopped job's rest costs over just
        letting it run on (work since its last checkpoint done again, a later end, lateness of
        its own), plus `PREEMPT_MARGIN`. Up to `PREEMPT_TRIES` running jobs are tried, those
        that lose the least work first; each is priced as if stopped, then put back."""
        best = top[0]
        if not self.preempt or not best.parts.get("late", 0.0) > 0.0:
            return None
        scn, now = view.scenario, view.now
        tries: list[tuple[float, int, Running, PendingJob]] = []
        for key in dict.fromkeys(zip(opts.site, opts.gpu_type, strict=True)):
            cal = scratch.calendar(*key)
            free = cal.count - cal.used_at(now)
            for run in view.running_on(*key):
                if (run.pending.segments_done >= self.preempt_max_segments or run.job.id in stopped
                        or free + run.job.gpus < pj.job.gpus):
                    continue
                rest = run.rest(now, scn)
                kept = run.pending.remaining_work - rest.remaining_work
                lost_h = now - run.start_h - kept / scn.speed(run.job, run.gpu_type)   # run again after the stop
                price = scn.sites[run.site].gpus[run.gpu_type].cny_per_gpu_h
                tries.append((lost_h * run.job.gpus * price, len(tries), run, rest))   # ties: the caller's order
        found = None
        for lost, _, run, rest in sorted(tries, key=lambda t: t[:2])[:PREEMPT_TRIES]:
            if lost >= best.parts["late"]:
                continue                    # doing that work again costs more than all the lateness
            got = self._stop(view, scratch, pj, opts, best, run, rest, cache, keep=False)
            if got is not None and (found is None or got[0] > found[0]):
                found = (got[0], run, rest)
        if found is None:
            return None
        got = self._stop(view, scratch, pj, opts, best, *found[1:], cache, keep=True)
        return None if got is None else got[1]

    def _stop(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options, best: Scored, run: Running,
              rest: PendingJob, cache: ShapeCache, keep: bool) -> tuple[float, tuple] | None:
        """Price `pj` with `run` stopped and its `rest` (`Running.rest`) placed after it: (what the stop saves, the
        answer `preempt_for` returns), or None where it saves too little. The runs stay booked
        in `scratch` only with `keep` and a saving."""
        now, job = view.now, run.job
        scratch.release(run.site, run.gpu_type, now, run.end_h, job.gpus)
        undo = [(run.site, run.gpu_type, now, run.end_h, job.gpus)]
        self._one_piece = True                        # both runs priced here are single runs
        try:
            return self._stop_priced(view, scratch, pj, opts, best, run, rest, cache, keep, undo)
        finally:
            self._one_piece = False

    def _stop_priced(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options, best: Scored,
                     run: Running, rest: PendingJob, cache: ShapeCache, keep: bool,
                     undo: list[tuple]) -> tuple[float, tuple] | None:
        """`_stop`, with `run` already given back in `scratch` (`undo` puts it back)."""
        scn, now, job = view.scenario, view.now, run.job
        answer = None
        ranked = self.rank(view, scratch, pj, opts)
        top = ranked.top
        gain = best.total - top[0].total if top else 0.0
        if gain > 0.0:
            b = top[0]
            scratch.reserve(b.site, b.gpu_type, b.start_h, b.end_h, pj.job.gpus)
            undo.append((b.site, b.gpu_type, b.start_h, b.end_h, -pj.job.gpus))
            ropts, rejected, _ = pool_options(view, rest, self.filters, cache)
            held, self._pricing_held = self._pricing_held, False
            rranked = self.rank(view, scratch, rest, ropts) if len(ropts) else Ranked([], 0)
            rtop = rranked.top
            self._pricing_held = held
            if rtop:
                r = rtop[0]
                # what the rest costs against running on: rental, transfer, lateness and energy
                # (this run's energy taken as the rest's, per hour)
                late_price = scn.objective.late_cny_per_gpu_h * job.gpus
                hours = run.end_h - now
                on = (hours * job.gpus * scn.sites[run.site].gpus[run.gpu_type].cny_per_gpu_h
                      + r.parts.get("energy", 0.0) * hours / (r.end_h - r.start_h)
                      + (late_price * max(0.0, run.end_h - job.deadline_h) if job.deadline_h is not None else 0.0))
                after = sum(r.parts.get(k, 0.0) for k in ("rental", "transfer", "late", "energy"))
                net = gain - (after - on)
                if net > PREEMPT_MARGIN * gain + 1.0:
                    scratch.reserve(r.site, r.gpu_type, r.start_h, r.end_h, job.gpus)
                    undo.append((r.site, r.gpu_type, r.start_h, r.end_h, -job.gpus))
                    note = (f"stopped for {pj.job.id}, which it saved {gain:,.0f} CNY; the rest costs "
                            f"{after - on:,.0f} CNY more than running on")
                    stop = Preempt(job.id, note, Explanation(self.name, now, r, tuple(rtop), rejected, note))
                    answer = (net, (ranked, stop, rest, rranked, rejected))
        if answer is None or not keep:
            for site, g, a, b, gpus in reversed(undo):
                scratch.reserve(site, g, a, b, gpus)
        return answer

    def _priority(self, view, pj) -> tuple:
        """Most urgent first: the latest start that still meets the deadline on the fastest
        allowed type, or the end of the job's `max_wait_h` window if sooner (a soft deadline:
        past it the wait is priced); jobs with neither after all others, in arrival order.
        Without the window, a held plan of a job with a window queued behind every newcomer
        with a deadline and was pushed past its window's end: on a generated 300-job, 10-site
        network with GAIA's windows (bench/scenarios/uncertain-300x10.yaml), suanli with
        perfect information scored 246,615 CNY with 2,386 wait-excess GPU-hours, worse than
        fifo (202,155); with it, 154,487 (556).

        The rest of a job run in pieces has no window any more (it has started), but its plan
        has an end it keeps to (`_finish`): that end counts as a deadline here. Without it, the
        rest came last whenever held plans were priced again (every hour, in a scenario written
        for uncertainty), and a lax newcomer took the clean hours its later pieces held."""
        job = pj.job
        window = Suanli._window_end(pj)
        finish = self._finish.get(job.id) if self._finish else None
        due = job.deadline_h if finish is None else finish if job.deadline_h is None else min(job.deadline_h, finish)
        if due is None:
            return (1, job.submit_h) if window is None else (0, window)
        fastest = max(view.scenario.speed(job, g) for g in view.scenario.allowed_types(job))
        latest = due - pj.remaining_work / fastest
        return (0, latest if window is None else min(latest, window))

    def _latest(self, view, pj, o, first: float) -> float:
        """The latest start weighed on pool `o`: the latest that meets the deadline, or, without one,
        `no_deadline_shift_h` after the first possible start; for a job with a `max_wait_h` window,
        no later than the window's end (past it the wait is priced, and a deadline's slack is no
        reason to wait); never more than `max_lookahead_h` ahead."""
        job = pj.job
        if job.deadline_h is not None:
            latest = start_by(job.deadline_h, o.duration_h)
        else:
            latest = first + self.no_deadline_shift_h
        window = self._window_end(pj)
        if window is not None:
            latest = min(latest, window) if job.deadline_h is not None else window
        finish = self._finish.get(job.id) if self._finish else None
        if finish is not None:                # the rest of a suspend-resume plan keeps to its end, and may wait for it
            by = start_by(finish, o.duration_h)
            latest = by if job.deadline_h is None and window is None else min(latest, by)
        return min(latest, view.now + (self.max_lookahead_h if self._uncertain else LOOKAHEAD_H))

    def _window_starts(self, scratch: Scratch, pj: PendingJob, o, first: float, latest: float) -> list[float]:
        """The later starts weighed on pool `o` after its first `first`: every whole hour up to
        `latest`, and, with `window_ends`, `latest` itself (the last start that meets the deadline or
        the window) and the starts whose runs end on a whole hour (a run that ends as a cheap or
        clean slot does), each where the pool has the GPUs free.

        Every hour of the window, however long: where a slot's price per kWh does not change with
        how much of it the run takes (grid only, or no renewable or battery tier crossed), a
        run's cost is piecewise linear in its start, with corners only where its start or its
        end crosses a whole hour (delay, lateness and wait are linear, with corners at the
        window's end), so these starts hold the window's best single start. The look-ahead
        (`_latest`) bounds the window, so the work too: about two starts per hour of it, per
        pool. Windows past 72 h were walked in steps of 2 h before: that missed the best start
        of 201 of LWA's 3,387 jobs on its next-Mon/Thu windows (up to 95 h), 14.24 % of carbon
        saved instead of the exact 14.25 % (docs/BENCHMARKS.md)."""
        starts = window_starts(scratch, pj, o, latest, first, limit=math.ceil(latest - first) + 2)[1:]
        if not (self.window_ends and self._uncertain) or not latest > first + 1e-9:
            return starts
        d = o.duration_h
        extra = [latest]
        if d - math.floor(d) > 1e-9:                   # runs ending on whole hours start off the hour
            lo, hi = math.floor(first + d) + 1, math.floor(latest + d + 1e-9)
            extra.extend((np.arange(lo, hi + 1) - d).tolist())
        cand = np.unique(np.asarray([t for t in extra if first + 1e-9 < t <= latest + 1e-9], dtype=float))
        if not len(cand):
            return starts
        cand = scratch.calendar(o.site, o.gpu_type).free_starts(cand, d, pj.job.gpus)
        merged = np.unique(np.concatenate((np.asarray(starts, dtype=float), cand)))
        if not len(merged):
            return []
        keep = np.concatenate(([True], np.diff(merged) > 1e-9))     # one of starts that differ by rounding only
        return merged[keep].tolist()

    def rank(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options) -> Ranked:
        r = self._candidates(view, scratch, pj, opts).ranked(self.keep)
        if r.top and self._suspend and view.pieces and pj.job.checkpoint_h:
            if not self._one_piece:
                plan = self._pieces(view, scratch, pj, opts, r.top[0])
                if plan is not None:
                    r = r._replace(top=[plan, *r.top[: self.keep - 1]], weighed=r.weighed + 1)
            # the plan's end is a planned stop too; every stop moves the job on: a plan in pieces
            # keeps whole checkpoints at its first stop, and a single run is at least one
            # checkpoint long (`_stop_work`)
            if self._stops(view, pj.job):
                r.top[0] = replace(r.top[0], stops=True)
        return r

    def _finish_by(self, view: StateView, pj: PendingJob, speed: float, duration: float) -> float | None:
        """The latest end of a suspend-resume plan for `pj` on a pool of `speed` where it runs
        `duration` hours: its deadline, and, for a job with `max_wait_h`, submit_h + max_wait_h +
        the job's whole run (the window's wait spent in pieces, as GAIA's Wait Awhile spends
        it); None for a job with neither. The rest of a job already run in pieces keeps the end
        its plan had, or, where its rest is booked for what it is now predicted to need
        (`_stop_work`), submit_h + max_wait_h + the work done and predicted, if later: a job
        that outlives its estimate still has its window's wait to spend in pauses, no more."""
        job = pj.job
        got = self._finish.get(job.id)
        total = self._totals.get(job.id) if pj.segments_done else None
        if got is not None and total is None:
            return got
        ends = []
        if job.deadline_h is not None:
            ends.append(job.deadline_h)
        if job.max_wait_h is not None:
            whole = duration if not pj.segments_done else (job.work_h if total is None else total) / speed
            ends.append(job.submit_h + job.max_wait_h + whole)
        if not ends:
            return got
        end = min(min(ends), view.now + (self.max_lookahead_h if self._uncertain else LOOKAHEAD_H) + duration)
        return end if got is None else max(end, got)

    def _pieces(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options,
                best: Scored) -> Scored | None:
        """A suspend-resume plan for a checkpointing job on `best`'s pool, where it costs less
        than `best` (None otherwise): the job runs in the cheapest hours between its ready time
        and `_finish_by`, by the marginal energy cost (carbon priced in) of a run in each.

        The time is cut into cells: whole hours where the checkpoint interval c divides an hour
        (the first cell, before the first whole hour, a whole number of checkpoints long), else
        blocks of the least multiple of c of at least an hour from the ready time; cells where
        the pool lacks the GPUs are left out. The cheapest cells (earliest first among equals)
        are taken until they hold the run; the last one taken is cut by whole checkpoints to
        what is still needed, at the side away from a taken neighbour. Taken cells that touch
        make pieces, so every piece but the last lasts whole checkpoints: nothing is lost at a
        stop (what would be, §3.7, is run again: the last piece is as long as the work not
        kept). The plan is priced as the single runs are (rental, transfer, energy, room,
        delay by its end, lateness, wait) and kept only if that is less than `best`. It may be a
        single run, where the cheapest cells touch: one later than the single starts reach (a
        rest may wait for the end its plan had, past the shift a job without a deadline has)."""
        job = pj.job
        c = float(job.checkpoint_h)
        i = next((k for k in range(len(opts)) if opts.site[k] == best.site and opts.gpu_type[k] == best.gpu_type),
                 None)
        if i is None:
            return None
        speed, duration, ready = float(opts.pools.speed[i]), float(opts.duration_h[i]), float(opts.ready_h[i])
        finish = self._finish_by(view, pj, speed, duration)
        if finish is None or finish - ready < duration + SUSPEND_MIN_SLACK_H - 1e-9:
            return None
        # the cells
        per_h = 1.0 / c
        if c <= 1.0 and abs(per_h - round(per_h)) < 1e-6 * per_h:     # (1/60 written with 12 digits)
            h0 = math.ceil(ready - 1e-9)
            head = math.floor((h0 - ready) / c + 1e-9) * c
            starts = np.arange(float(h0), float(math.ceil(finish - 1e-9)))
            if head > 1e-9:
                starts = np.concatenate(([h0 - head], starts))
            ends = np.minimum(np.floor(starts + 1e-9) + 1.0, finish)
        else:
            block = c * math.ceil(per_h - 1e-9) if c < 1.0 else c
            starts = ready + block * np.arange(math.ceil((finish - ready) / block - 1e-9))
            ends = np.minimum(starts + block, finish)
        if len(starts) > SUSPEND_MAX_CELLS or len(starts) < 2:
            return None
        lens = ends - starts
        gpus = job.gpus
        cal = scratch.calendar(best.site, best.gpu_type)
        free = cal.fits_each(starts, float(lens.max()), gpus) & (lens > 1e-9)
        energy = EnergyPricer(view, scratch, self.prices, math.floor(view.now) + 2, self.tiers)
        energy.priced([best.site], [math.ceil(finish) + 1])
        site_pos = np.full(len(starts), opts.site_pos[i])
        kw = float(self._draw(opts, gpus)[i])
        rate = energy.cost_each(site_pos, np.full(len(starts), kw), starts, lens) / np.maximum(lens, 1e-12)
        idx = np.flatnonzero(free)
        if not len(idx) or float(np.ptp(rate[idx])) <= 1e-12 * max(1.0, float(np.max(np.abs(rate[idx])))):
            return None                          # no cell costs less than another: nothing to gain
        order = idx[np.lexsort((starts[idx], rate[idx]))]
        held = np.cumsum(lens[order])
        k = int(np.searchsorted(held, duration - 1e-9))
        if k >= len(order):
            return None                          # the free cells do not hold the run
        taken = np.zeros(len(starts), dtype=bool)
        taken[order[: k + 1]] = True
        a, b = starts.copy(), ends.copy()
        m = int(order[k])
        use = lens[m] - max(0, math.floor((float(held[k]) - duration) / c + 1e-9)) * c
        if m + 1 < len(starts) and taken[m + 1] and abs(ends[m] - starts[m + 1]) <= 1e-9:
            a[m] = b[m] - use
        else:
            b[m] = a[m] + use
        pieces: list[list[float]] = []
        for t in np.flatnonzero(taken).tolist():
            if pieces and abs(pieces[-1][1] - a[t]) <= 1e-9:
                pieces[-1][1] = float(b[t])
            else:
                pieces.append([float(a[t]), float(b[t])])
        # the last piece runs the work the others do not keep
        while pieces:
            kept = sum(kept_work(y - x, speed, c) for x, y in pieces[:-1])
            need = (pj.remaining_work - kept) / speed
            if need > TIME_TOL:
                break
            pieces.pop()
        if not pieces:
            return None
        last = pieces[-1]
        end = last[0] + need
        if end > last[1] + 1e-9 and (end > finish + 1e-9 or not cal.fits(last[1], end, gpus)):
            return None
        last[1] = end
        # priced as the single runs are
        ps = np.asarray(pieces)
        run_h = ps[:, 1] - ps[:, 0]
        obj = view.scenario.objective
        e = float(np.add.reduce(energy.cost_each(site_pos[: len(ps)], np.full(len(ps), kw), ps[:, 0], run_h)))
        hours = float(np.add.reduce(run_h))
        soonest = float(np.minimum.reduce(opts.ready_h))
        delay = self.delay * view.ledger.busy_share(view.now) ** self.delay_power
        parts = {"rental": hours * gpus * float(opts.cny_per_gpu_h[i]), "transfer": float(opts.transfer_cny[i]),
                 "energy": e,
                 "late": (obj.late_cny_per_gpu_h * gpus * max(0.0, end - job.deadline_h)
                          if job.deadline_h is not None else 0.0),
                 "delay": delay * gpus * max(0.0, end - duration - soonest)}
        window = self._window_end(pj)
        if window is not None:
            parts["wait"] = obj.wait_cny_per_gpu_h * gpus * max(0.0, pieces[0][0] - window)
        if self.room:
            parts["room"] = float(self._room(view, pj, opts)[i]) * hours
        total = sum(parts.values())
        if not total < best.total - 1e-9 * abs(best.total) - 1e-9:
            return None
        self._finish[job.id] = finish
        later = tuple((x, y) for x, y in pieces[1:])
        return Scored(best.site, best.gpu_type, pieces[0][0], pieces[0][1], parts, total, dict(best.info),
                      pieces=later)

    def _choose(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options) -> list[Scored]:
        """Every candidate `rank` weighs, as `Scored` (for a look at all of them)."""
        cands = self._candidates(view, scratch, pj, opts)
        return cands.scored(range(len(cands)))

    def _candidates(self, view: StateView, scratch: Scratch, pj: PendingJob, opts: Options) -> Candidates:
        job = pj.job
        gpus = job.gpus
        soonest = float(np.minimum.reduce(opts.ready_h))              # the earliest any pool could take it
        delay = self.delay * view.ledger.busy_share(view.now) ** self.delay_power
        late_price = view.scenario.objective.late_cny_per_gpu_h * gpus
        backup = view.scenario.sites[pj.from_site].backup if pj.from_site is not None else None
        energy = EnergyPricer(view, scratch, self.prices, math.floor(view.now) + 2, self.tiers)
        rental = opts.duration_h * gpus * opts.cny_per_gpu_h
        bill = rental + opts.transfer_cny                 # what a run there costs before energy and time
        kw = self._draw(opts, gpus)                       # the run's draw at each pool, PUE included

        # No run on a pool costs less than its floor: rental, transfer, the cheapest energy, and
        # lateness and delay at its ready time.
        late_at_ready = (late_price * np.maximum(0.0, opts.ready_h + opts.duration_h - job.deadline_h)
                         if job.deadline_h else 0.0)
        # the room the run takes from larger gangs, priced like rental (`_room`)
        room = self._room(view, pj, opts) * opts.duration_h if self.room else None
        if room is not None:
            bill = bill + room
        energy_floor = kw * opts.duration_h * energy.floors(opts)
        lengths = self._lengths(pj)
        span = opts.duration_h        # the hours of a run its energy is priced over
        if lengths is not None:       # the run lasts, on average, this share of its booking
            energy_floor = energy_floor * self._expected_share(lengths)
            span = opts.duration_h * (lengths[3] / lengths[2])
        floor = bill + late_at_ready + delay * gpus * (opts.ready_h - soonest) + energy_floor
        deadline = job.deadline_h
        # wait-excess (MODEL.md §3): a job not started yet, with `max_wait_h`, pays the wait price
        # per GPU-hour its first start comes past submit_h + max_wait_h, as lateness is priced
        window = self._window_end(pj)
        wait_price = view.scenario.objective.wait_cny_per_gpu_h * gpus if window is not None else 0.0
        if window is not None:
            floor = floor + wait_price * np.maximum(0.0, opts.ready_h - window)

        # Price each pool's earliest start, cheapest floor first; stop once no pool left can beat
        # the best (with the backup's margin, so a backup within it is still seen).
        margin = 1.0 - self.backup_margin if backup is not None else 1.0
        terms = (late_price, deadline, delay * gpus, soonest, lengths, wait_price, window)
        found = self._first_starts(scratch, pj, opts, floor, margin, energy, kw, bill, terms)
        pool_c, start_c, energy_c, late_c, wait_c, total_c, excess_c = found

        # The few cheapest are priced again at every whole hour of their window, unless no later
        # start there can beat the best found: lateness and delay only grow with the start, and
        # no energy costs less than the floor (where the price arrays cover the window).
        def on_backup(pools: np.ndarray) -> np.ndarray:
            return (np.asarray([opts.site[i] == backup for i in pools.tolist()], dtype=bool)
                    if backup is not None else np.zeros(len(pools), dtype=bool))

        refined = []
        factor_c = np.where(on_backup(pool_c), 1.0 - self.backup_margin, 1.0) if backup is not None else None
        best_key = (math.inf if not len(total_c) else float(np.minimum.reduce(total_c)) if factor_c is None
                    else float(np.minimum.reduce(total_c * factor_c)))
        for j in total_c.argsort(kind="stable")[: self.refine].tolist():
            i = int(pool_c[j])
            o = opts[i]
            first = float(start_c[j])
            latest = self._latest(view, pj, o, first)
            # the earliest of the later starts (window-end starts may come before the next hour)
            s0 = first if self.window_ends and self._uncertain else math.floor(first) + 1.0
            bound = (float(bill[i]) + float(energy_floor[i]) + delay * gpus * (s0 - soonest)
                     + (late_price * max(0.0, s0 + o.duration_h - deadline) if deadline is not None else 0.0)
                     + (wait_price * max(0.0, s0 - window) if window is not None else 0.0))
            if (self.refine_bound and bound * (1.0 if factor_c is None else float(factor_c[j]))
                    > best_key * (1.0 + 1e-9) + 1e-9
                    and self.prices.covers(o.site, math.ceil(latest + float(span[i])) + 1)):
                continue
            starts = self._window_starts(scratch, pj, o, first, latest)
            if starts:
                refined.append((int(pool_c[j]), o, starts))
        if refined:
            # the price book's arrays grow pool by pool, to the slots of the pool's latest run
            energy.priced([o.site for _, o, _ in refined],
                          [window_end(starts, float(span[i])) for i, _, starts in refined])
            p = np.asarray([i for i, _, _ in refined]).repeat([len(starts) for _, _, starts in refined])
            st = np.asarray([t for _, _, starts in refined for t in starts], dtype=float)
            e, late, wait, total, _, excess = self._price(energy, opts.site_pos[p], kw[p], st, opts.duration_h[p],
                                                          bill[p], terms)
            pool_c, start_c, energy_c, late_c, wait_c, total_c, excess_c = (
                np.concatenate(pair) for pair in zip(found, (p, st, e, late, wait, total, excess), strict=True))

        if self._pricing_held:                        # the re-planning budget counts its work
            self._replan_cells += int(np.add.reduce(opts.duration_h[pool_c])) + len(pool_c)
        backup_c = on_backup(pool_c) if backup is not None else None
        parts = {"rental": rental[pool_c], "transfer": opts.transfer_cny[pool_c], "energy": energy_c,
                 "late": late_c, "delay": wait_c}
        if window is not None:
            parts["wait"] = excess_c
        if room is not None:
            parts["room"] = room[pool_c]
        latency_c, rank_c = opts.latency_ms[pool_c], opts.rank[pool_c]
        info = {"backup": backup_c.astype(float) if backup_c is not None else np.zeros(len(pool_c)),
                "latency_ms": latency_c, "rank": rank_c,
                "ready_h": opts.ready_h[pool_c]}
        keyed = total_c * np.where(backup_c, 1.0 - self.backup_margin, 1.0) if backup_c is not None else total_c
        # totals equal but for rounding (the same energy summed over other slots) go to the
        # earlier start, not to whichever the last bit favours
        keyed = np.round(keyed, 6)
        return Candidates(opts, pool_c, start_c, parts, total_c, (keyed, start_c, latency_c, rank_c), info,
                          floor=floor)

    def _first_starts(self, scratch: Scratch, pj: PendingJob, opts: Options, floor: np.ndarray, margin: float,
                      energy: EnergyPricer, kw: np.ndarray, bill: np.ndarray,
                      terms: tuple) -> tuple[np.ndarray, ...]:
        """The earliest start of each pool priced, in the order priced: pools by their floor
        (then rank) until the floor of the next, times `margin`, is no less than the best total
        so far. Pools are priced a batch at a time (the first sized from the jobs before, the
        next to hold every pool whose floor is still below the best), and where the one-by-one
        rule stops is then found in the batch. Returns (pool, start, energy, late,
        delay, total, wait) arrays."""
        order = floor.argsort(kind="stable")         # `opts` is in rank order: ties go by rank
        floor_sorted = (floor[order] * margin).tolist()
        duration, ready = opts.duration_h.tolist(), opts.ready_h.tolist()
        keys, rank = opts.pools.all_keys, opts.rank
        gpus = pj.job.gpus
        out: list[tuple[np.ndarray, ...]] = []
        best = math.inf
        at, n = 0, len(order)
        batch = max(4, round(self._priced_per_job * 1.25) + 2)
        while at < n and floor_sorted[at] < best:
            pools = order[at:at + batch]
            idx = pools.tolist()
            cals = scratch.calendars_of([keys[r] for r in rank[pools].tolist()])
            starts = [c.earliest_fit(gpus, duration[i], ready[i]) for c, i in zip(cals, idx, strict=True)]
            if None in starts:
                fits = [s is not None for s in starts]
                p, st = pools[np.asarray(fits)], np.asarray([s for s in starts if s is not None], dtype=float)
            else:
                fits, p, st = [True] * len(starts), pools, np.asarray(starts, dtype=float)
            e, late, wait, total, last, excess = self._price(energy, opts.site_pos[p], kw[p], st, opts.duration_h[p],
                                                             bill[p], terms)
            # where pricing one by one would have stopped in this batch
            keep, totals = 0, iter(total.tolist())
            for cut, fit in zip(floor_sorted[at:at + batch], fits, strict=False):
                if cut >= best:
                    at = n
                    break
                if fit:
                    best = min(best, next(totals))
                    keep += 1
            at += batch
            # the next batch: every pool left whose floor is below the best so far (the rest
            # cannot win, and the best only falls)
            batch = max(1, bisect_left(floor_sorted, best, at) - at)
            if keep < len(p):
                p, st, e, late, wait, total, excess = (p[:keep], st[:keep], e[:keep], late[:keep], wait[:keep],
                                                       total[:keep], excess[:keep])
            if keep:
                energy.priced([opts.site[i] for i in p.tolist()], last[:keep].tolist())
            out.append((p, st, e, late, wait, total, excess))
        found = (out[0] if len(out) == 1 else tuple(np.concatenate(c) for c in zip(*out, strict=True)) if out else
                 (np.zeros(0, dtype=np.int64), *(np.zeros(0) for _ in range(6))))
        self._priced_per_job = 0.8 * self._priced_per_job + 0.2 * len(found[0])
        return found

    def _lengths(self, pj: PendingJob) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The learned distribution of `pj`'s true work its starts are priced against
        (`RuntimePredictor.distribution`), in a scenario written for uncertainty (`uncertain`)
        and for a job not started yet; None otherwise (its runs are priced as booked).

        A start is chosen by the expected energy and carbon of the run, not of its booking: the
        booking stays the quantile the predictor books (the GPUs held), but a run that most
        likely ends early emits mostly in its first hours, so the start whose first hours are
        clean beats one whose whole booked window is cleaner on average. Measured on GAIA's
        setup with each estimate its queue's mean (docs/SCHEDULER.md): 19.03 % of carbon saved
        priced as booked, 18.96 % priced by expectation on GAIA's own lengths, but +0.25 to +1.19
        points on each of 6 redraws of the lengths from the same queues."""
        if not self.expect_lengths or self.predictor is None or not self._uncertain or pj.segments_done:
            return None
        got = self.predictor.distribution(pj.job)
        if got is None:
            return None
        ratios, sums, factor = got
        return ratios, sums, factor, max(factor, min(float(ratios[-1]), self.tail_factor))

    @staticmethod
    def _expected_share(lengths: tuple[np.ndarray, np.ndarray, float, float]) -> float:
        """E[min(r, reach)] / factor: the share of its booking a run lasts on average (where
        pricing reaches)."""
        ratios, sums, factor, reach = lengths
        k = int(np.searchsorted(ratios, reach, side="left"))
        return float((sums[k] + reach * (len(ratios) - k)) / len(ratios) / factor)

    @staticmethod
    def _window_end(pj: PendingJob) -> float | None:
        """submit_h + max_wait_h for a job that has not started yet and has a `max_wait_h`
        (its first start is then priced past it); None otherwise."""
        job = pj.job
        if job.max_wait_h is None or pj.segments_done:
            return None
        return job.submit_h + job.max_wait_h

    @staticmethod
    def _price(energy: EnergyPricer, site_pos: np.ndarray, kw: np.ndarray, starts: np.ndarray,
               durations: np.ndarray, bill: np.ndarray, terms: tuple) -> tuple[np.ndarray, ...]:
        """`EnergyPricer.price_each` (with `terms` but its last two: lateness, deadline, delay,
        soonest and the job's learned lengths, `_lengths`) with the wait-excess price (`terms`'
        last two: CNY per hour, for the job's gang, and the end of its window; None: no window)
        added to each total: (energy, late, delay, total, one past each run's last slot, wait)."""
        *priced, wait_price, window = terms
        e, late, delay, total, last = energy.price_each(site_pos, kw, starts, durations, bill, *priced)
        if window is None:
            return e, late, delay, total, last, np.zeros(len(starts))
        excess = wait_price * np.maximum(0.0, starts - window)
        return e, late, delay, total + excess, last, excess

    def _key(self, c):
        factor = 1.0 - self.backup_margin if c.info.get("backup") else 1.0
        return (round(c.total * factor, 6), c.start_h, c.info["latency_ms"], c.info["rank"])


@register("suanli")
def suanli() -> Suanli:
    return Suanli()
