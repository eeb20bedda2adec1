"""`suanli`: the joint choice of site, GPU type and start time by marginal objective.

For every pool that passes the filters, the job's earliest feasible start is priced by the
parts of the scenario's objective it would add (MODEL.md §6): GPU rental, data transfer,
marginal energy cost and carbon against what the site's renewables and battery still have
free after the load already committed, grid-cap (demand-response) penalties for caps already
announced, and lateness. The few cheapest pools are then priced again at every whole hour up
to the latest start that still meets the deadline (or a short window for jobs without one,
since waiting then only trades time for energy), within the look-ahead. The cheapest
candidate wins; work handed back by an outage prefers the failed site's `backup` when it is
within `backup_margin` of the best.
"""

from __future__ import annotations

import math

import numpy as np

from suanli.scheduling.pipeline import (
    EnergyPricer,
    Pipeline,
    PriceBook,
    earliest_start,
    late_cny,
    rental_cny,
    scored,
    window_starts,
)
from suanli.scheduling.policies import register

LOOKAHEAD_H = 72.0          # how far ahead a start may be planned
NO_DEADLINE_SHIFT_H = 6.0   # how long a job without a deadline may wait for cheaper energy
REFINE_POOLS = 3            # pools priced at every hour of their window
COMMIT_WITHIN_H = 0.0       # commit runs that start at once; hold GPUs for later plans
BACKUP_MARGIN = 0.02        # the backup wins if it costs at most 2 % more than the best
DELAY_CNY_PER_GPU_H = 20.0  # the price of holding a job back past its earliest possible start,
                            # at a fully busy network (scaled by the busy share squared)


class Suanli(Pipeline):
    def __init__(self, lookahead_h: float = LOOKAHEAD_H, no_deadline_shift_h: float = NO_DEADLINE_SHIFT_H,
                 refine: int = REFINE_POOLS, backup_margin: float = BACKUP_MARGIN,
                 delay_cny_per_gpu_h: float = DELAY_CNY_PER_GPU_H, delay_power: float = 2.0,
                 commit_within_h: float | None = COMMIT_WITHIN_H):
        self.prices = PriceBook()
        self.lookahead_h = lookahead_h
        self.no_deadline_shift_h = no_deadline_shift_h
        self.refine = refine
        self.backup_margin = backup_margin
        self.delay = delay_cny_per_gpu_h
        self.delay_power = delay_power
        self._busy = (None, 0.0)
        super().__init__("suanli", self._choose, key=self._key, order=self._priority, commit_within_h=commit_within_h)

    @staticmethod
    def _priority(view, pj) -> tuple:
        """Most urgent first: the latest start that still meets the deadline on the fastest
        allowed type; jobs without a deadline after all others, in arrival order."""
        job = pj.job
        if job.deadline_h is None:
            return (1, job.submit_h)
        fastest = max(view.scenario.speed(job, g) for g in view.scenario.allowed_types(job))
        return (0, job.deadline_h - pj.remaining_work / fastest)

    def _latest(self, view, pj, o, first: float) -> float:
        if pj.job.deadline_h is not None:
            latest = pj.job.deadline_h - o.duration_h
        else:
            latest = first + self.no_deadline_shift_h
        return min(latest, view.now + self.lookahead_h)

    def _choose(self, view, scratch, pj, opts):
        firsts = {o: earliest_start(scratch, pj, o) for o in opts}
        live = [o for o in opts if firsts[o] is not None]
        if not live:
            return []
        last = max(math.ceil(max(firsts[o], self._latest(view, pj, o, firsts[o])) + o.duration_h) for o in live) + 2
        energy = EnergyPricer(view, scratch, self.prices, last)
        soonest = min(firsts[o] for o in live)
        delay = self.delay * self._busy_share(view) ** self.delay_power
        backup = None
        if pj.from_site is not None:
            backup = view.scenario.sites[pj.from_site].backup

        def price(o, starts):
            starts_a = np.asarray(starts)
            e = energy.cost(pj, o, starts)
            late = late_cny(view, pj, starts_a + o.duration_h)
            return [scored(o, s, {"rental": rental_cny(view, pj, o), "transfer": o.transfer_cny,
                                  "energy": float(ei), "late": float(li),
                                  "delay": delay * pj.job.gpus * (s - soonest)},
                           backup=1.0 if o.site == backup else 0.0, latency_ms=o.latency_ms, rank=o.rank,
                           ready_h=o.ready_h)
                    for s, ei, li in zip(starts, e, late, strict=True)]

        out = []
        for o in live:
            out.extend(price(o, [firsts[o]]))
        out.sort(key=lambda c: c.total)
        seen = set()
        for c in out[:]:
            o = next(o for o in live if o.site == c.site and o.gpu_type == c.gpu_type)
            if o in seen:
                continue
            seen.add(o)
            starts = window_starts(scratch, pj, o, self._latest(view, pj, o, firsts[o]), firsts[o])[1:]
            if starts:
                out.extend(price(o, starts))
            if len(seen) >= self.refine:
                break
        return out

    def _busy_share(self, view) -> float:
        """Share of the network's GPUs busy now: waiting is dear only when GPUs are scarce."""
        if self._busy[0] != view.now:
            cals = view.ledger.calendars.values()
            total = sum(c.count for c in cals)
            used = sum(c.used_at(view.now) for c in cals)
            self._busy = (view.now, used / total if total else 0.0)
        return self._busy[1]

    def _key(self, c):
        factor = 1.0 - self.backup_margin if c.info.get("backup") else 1.0
        return (c.total * factor, c.start_h, c.info["latency_ms"], c.info["rank"])


@register("suanli")
def suanli() -> Suanli:
    return Suanli()
