"""A run-time predictor: the user's estimate, corrected by what finished jobs taught.

A policy sees each job's `work_h`, the user's estimate (MODEL.md §7), and learns a job's true
work only when it ends (`StateView.ended`). The predictor keeps, per group of jobs, the ratios
true work / estimate of the jobs that have ended, and predicts a new job's work as its estimate
times a quantile of its group's ratios, so that fewer runs outgrow their bookings and void the
placements behind them. A quantile, not a mean: a mean is pulled by the few jobs that run
very long or end very early.

Which quantile: the median by default. A high one (0.9, which covers most overruns) books
runs far longer than most need; a run that ends early frees its GPUs, but the runs already
placed behind it do not move up, so the pool idles. Measured on the public `small` scenario
with log-normal estimates (bench/uncertain_variant.py, docs/SCHEDULER.md): σ 0.5, unbiased:
no predictor 21,537 CNY, median 21,537, q 0.7 29,039, q 0.9 32,022; σ 0.3 with users
underestimating (bias -0.3): none 22,178, median 21,880, 0.7 32,917, 0.9 26,075. The median
corrects a tenant's bias and leaves unbiased estimates alone.

The groups, most specific first: (tenant, class), tenant, class, and every job. A job's factor
comes from the first of its groups with at least `min_count` ended jobs; the quantile is taken
over that group's ratios together with `prior_count` ratios of `prior_ratio` (the prior: the
estimate is right), nearest rank (the ceil(q × n)-th smallest of n). The factor is kept in
[1, `max_factor`]: the booking is never shorter than the user's estimate (a job that needs less
ends early and frees its GPUs then, MODEL.md §7), nor longer than `max_factor` times it.

The same ratios also give a job's distribution of lengths (`lengths`, `survival`,
`expected_work`): the group's ratios (the prior's among them) times the job's estimate, each
equally likely. The booking stays a point (the quantile above); what the distribution is for is
pricing: a job whose group mostly ends far before its booking emits mostly in its first hours,
so a start is better judged by the expected cost of its run than by the cost of its booking
(docs/SCHEDULER.md, "Run-time predictor").

Pure and deterministic: the same jobs ended in the same order give the same predictions. A
scenario without `actual_work_h` has every ratio exactly 1, so every factor is exactly 1, and no
job has a distribution (`distribution` is None: every length equals the booking).
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Sequence

import numpy as np

from suanli.model.schema import Job

QUANTILE = 0.5        # of the ratios true work / estimate (measured: higher ones cost more than they save)
MIN_COUNT = 3         # ended jobs a group needs before its ratios are used
PRIOR_RATIO = 1.0     # the prior: estimates are right ...
PRIOR_COUNT = 2       # ... worth this many ended jobs
MAX_FACTOR = 4.0      # a booking is never more than this many times the estimate


class RuntimePredictor:
    def __init__(self, quantile: float = QUANTILE, min_count: int = MIN_COUNT, prior_ratio: float = PRIOR_RATIO,
                 prior_count: int = PRIOR_COUNT, max_factor: float = MAX_FACTOR):
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.quantile, self.min_count = quantile, min_count
        self.prior_ratio, self.prior_count, self.max_factor = prior_ratio, prior_count, max_factor
        self.reset()

    def reset(self) -> None:
        self._ratios: dict[tuple, list[float]] = {}     # group -> its ratios, ascending
        self._counts: dict[tuple, int] = {}             # group -> ended jobs in it
        self._factors: dict[tuple, float] = {}          # group -> its factor, while no job of it ends
        self._arrays: dict[tuple, tuple] = {}           # group -> (ratios, their prefix sums), while no job ends
        self._source: object = None                     # the `ended` list being read
        self._read = 0                                  # how much of it has been read

    @staticmethod
    def groups(job: Job) -> tuple[tuple, ...]:
        """The groups `job` belongs to, most specific first."""
        return (("tenant-class", job.tenant, job.class_), ("tenant", job.tenant), ("class", job.class_), ("all",))

    def observe(self, job: Job, true_work_h: float) -> None:
        """Learn that `job` (with its estimate `work_h`) really needed `true_work_h`."""
        ratio = true_work_h / job.work_h
        for g in self.groups(job):
            insort(self._ratios.setdefault(g, [self.prior_ratio] * self.prior_count), ratio)
            self._counts[g] = self._counts.get(g, 0) + 1
            self._factors.pop(g, None)
            self._arrays.pop(g, None)

    def learn(self, ended: Sequence[tuple[Job, float]]) -> None:
        """Observe the jobs of `ended` (`StateView.ended`, which only grows) not read yet; a
        different or shorter list starts afresh."""
        if ended is not self._source or len(ended) < self._read:
            if self._read:
                self.reset()
            self._source = ended
        for job, true_work in ended[self._read:]:
            self.observe(job, true_work)
        self._read = len(ended)

    def _factor_of(self, g: tuple) -> float:
        got = self._factors.get(g)
        if got is None:
            ratios = self._ratios[g]
            q = ratios[max(0, math.ceil(self.quantile * len(ratios) - 1e-9) - 1)]
            got = self._factors[g] = min(self.max_factor, max(1.0, q))
        return got

    def factor(self, job: Job) -> float:
        """What `job`'s estimate is multiplied by: 1 until one of its groups has `min_count`
        ended jobs."""
        for g in self.groups(job):
            if self._counts.get(g, 0) >= self.min_count:
                return self._factor_of(g)
        return 1.0

    def work_h(self, job: Job) -> float:
        """The predicted work of `job`: its estimate times `factor`."""
        return job.work_h * self.factor(job)

    def _group(self, job: Job) -> tuple | None:
        """The first of `job`'s groups with `min_count` ended jobs (None: none has)."""
        for g in self.groups(job):
            if self._counts.get(g, 0) >= self.min_count:
                return g
        return None

    def distribution(self, job: Job) -> tuple[np.ndarray, np.ndarray, float] | None:
        """`job`'s learned ratios true work / estimate, ascending, each equally likely (its
        group's, the prior's among them), their prefix sums (n + 1 of them, from 0) and the
        factor its booking has; None where no group of it has `min_count` ended jobs, or where
        no ratio is below the factor (every length fills the booking: nothing to weigh)."""
        g = self._group(job)
        if g is None:
            return None
        got = self._arrays.get(g)
        if got is None:
            ratios = np.asarray(self._ratios[g], dtype=float)
            got = self._arrays[g] = (ratios, np.concatenate(([0.0], np.cumsum(ratios))))
        ratios, sums = got
        factor = self._factor_of(g)
        if not ratios[0] < factor:
            return None
        return ratios, sums, factor

    def lengths(self, job: Job) -> np.ndarray | None:
        """`job`'s possible true works (hours of work), ascending, each equally likely: its
        estimate times each learned ratio; None as `distribution`."""
        d = self.distribution(job)
        return None if d is None else d[0] * job.work_h

    def survival(self, job: Job, hours: np.ndarray) -> np.ndarray | None:
        """P(true work > h) for each h of `hours` (hours of work): the share of `lengths`
        longer than h; None as `distribution`."""
        lengths = self.lengths(job)
        if lengths is None:
            return None
        h = np.asarray(hours, dtype=float)
        return (len(lengths) - np.searchsorted(lengths, h, side="right")) / len(lengths)

    def remaining(self, job: Job, done_h: float, quantile: float | None = None) -> float | None:
        """The work `job` still needs (hours of work) once it has done `done_h` (its checkpoints
        kept): a quantile (`quantile`, default the predictor's; nearest rank) of L - done_h over
        its group's learned lengths L (ratios, the prior's among them, times its estimate) longer
        than done_h: the lengths it can still have. None where no group of it has `min_count`
        ended jobs, or where no learned length is longer (it has outlived every one seen).

        Not "the estimate less the work done": once a run has outlived its estimate that says
        nothing, and where lengths are spread wide (GAIA's long queue: most far below its mean,
        a few far above) a job that has run long is likely one of the long ones."""
        g = self._group(job)
        if g is None:
            return None
        ratios = self._ratios[g]
        x = done_h / job.work_h
        k = bisect_right(ratios, x + 1e-9)
        n = len(ratios) - k
        if not n:
            return None
        q = self.quantile if quantile is None else quantile
        return (ratios[k + max(0, math.ceil(q * n - 1e-9) - 1)] - x) * job.work_h

    def expected_work(self, job: Job, hours: np.ndarray) -> np.ndarray | None:
        """E[min(true work, h)] for each h of `hours` (hours of work): the integral of
        `survival` from 0 to h, the work a run has done by h hours in, on average; None as
        `distribution`."""
        d = self.distribution(job)
        if d is None:
            return None
        ratios, sums, _ = d
        x = np.asarray(hours, dtype=float) / job.work_h
        k = np.searchsorted(ratios, x, side="left")     # ratios below x count whole, the rest as x
        return (sums[k] + x * (len(ratios) - k)) / len(ratios) * job.work_h
