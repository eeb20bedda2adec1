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
COMMIT_WITHIN_H = None      # None: commit every plan (0.0: commit runs that start at once, hold the rest)
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
        job = pj.job
        soonest = min(o.ready_h for o in opts)             # the earliest any pool could take it
        delay = self.delay * self._busy_share(view) ** self.delay_power
        late_price = view.scenario.objective.late_cny_per_gpu_h * job.gpus
        backup = view.scenario.sites[pj.from_site].backup if pj.from_site is not None else None
        energy = EnergyPricer(view, scratch, self.prices, math.floor(view.now) + 2)

        power = view.ledger.power
        pue = view.ledger.pue

        def floor_price(o) -> float:
            """No run on `o` costs less: rental, transfer, the cheapest energy, and lateness and
            delay at its ready time."""
            late = late_price * max(0.0, o.ready_h + o.duration_h - job.deadline_h) if job.deadline_h else 0.0
            kwh = job.gpus * power[o.gpu_type] * pue[o.site] * o.duration_h
            return (rental_cny(view, pj, o) + o.transfer_cny + late + delay * job.gpus * (o.ready_h - soonest)
                    + kwh * energy.floor_per_kwh(o.site))

        def price(o, starts):
            e = [energy.cost_one(pj, o, starts[0])] if len(starts) == 1 else energy.cost(pj, o, starts)
            late = late_cny(view, pj, np.asarray(starts) + o.duration_h)
            rental = rental_cny(view, pj, o)
            return [scored(o, s, {"rental": rental, "transfer": o.transfer_cny, "energy": float(ei),
                                  "late": float(li), "delay": delay * job.gpus * (s - soonest)},
                           backup=1.0 if o.site == backup else 0.0, latency_ms=o.latency_ms, rank=o.rank,
                           ready_h=o.ready_h)
                    for s, ei, li in zip(starts, e, late, strict=True)]

        # Price pools cheapest floor first; stop once no pool left can beat the best (with the
        # backup's margin, so a backup within it is still seen).
        out, firsts = [], {}
        best = math.inf
        margin = 1.0 - self.backup_margin if backup is not None else 1.0
        for lo, o in sorted(((floor_price(o), o) for o in opts), key=lambda x: (x[0], x[1].rank)):
            if lo * margin >= best:
                break
            first = earliest_start(scratch, pj, o)
            if first is None:
                continue
            firsts[o] = first
            c = price(o, [first])[0]
            out.append(c)
            best = min(best, c.total)
        out.sort(key=lambda c: c.total)
        refined = 0
        for c in list(out):
            if refined >= self.refine:
                break
            o = next(o for o in firsts if o.site == c.site and o.gpu_type == c.gpu_type)
            refined += 1
            starts = window_starts(scratch, pj, o, self._latest(view, pj, o, firsts[o]), firsts[o])[1:]
            if starts:
                out.extend(price(o, starts))
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
