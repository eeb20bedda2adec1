"""The baselines suanli is measured against, each a composition of pipeline parts.

- `cheapest` (the SkyPilot way): the lowest GPU bill (rental for the run, plus data
  transfer) among pools that can start the job now (as soon as its data is there); no
  energy, no waiting: if nothing is free the job waits for the next change.
- `greenest`: the site with the lowest grid carbon intensity now, started at once.
- `wait-awhile` (the Let's-Wait-Awhile way, Wiesner et al. 2021): the nearest site, with the
  start deferred to the window of lowest average grid carbon intensity that still meets the
  deadline and, for a job with `max_wait_h` not started yet, starts by submit_h + max_wait_h
  (the paper's flexibility window); jobs with neither start at once.
"""

from __future__ import annotations

import math

from suanli.scheduling.pipeline import (
    Pipeline,
    PriceBook,
    earliest_start,
    mean_carbon,
    rental_cny,
    scored,
    window_starts,
)
from suanli.scheduling.policies import register


def _bill(view, pj, o):
    return {"rental": rental_cny(view, pj, o), "transfer": o.transfer_cny}


@register("cheapest")
def cheapest() -> Pipeline:
    def choose(view, scratch, pj, opts):
        out = []
        for o in opts:
            start = earliest_start(scratch, pj, o)
            if start is not None and start <= o.ready_h:       # free now, no waiting
                out.append(scored(o, start, _bill(view, pj, o), latency_ms=o.latency_ms, rank=o.rank))
        return out
    return Pipeline("cheapest", choose, key=lambda c: (c.total, c.info["latency_ms"], c.info["rank"]))


@register("greenest")
def greenest() -> Pipeline:
    prices = PriceBook()

    def choose(view, scratch, pj, opts):
        now_slot = math.floor(view.now)
        out = []
        for o in opts:
            start = earliest_start(scratch, pj, o)
            if start is not None:
                _, carbon = prices.arrays(view, o.site, now_slot + 1)
                out.append(scored(o, start, _bill(view, pj, o), carbon_now=float(carbon[now_slot]),
                                  latency_ms=o.latency_ms, rank=o.rank))
        return out
    return Pipeline("greenest", choose,
                    key=lambda c: (c.info["carbon_now"], c.start_h, c.info["latency_ms"], c.info["rank"]))


@register("wait-awhile")
def wait_awhile() -> Pipeline:
    prices = PriceBook()

    def choose(view, scratch, pj, opts):
        nearest = min(o.latency_ms for o in opts)
        out = []
        for o in opts:
            if o.latency_ms > nearest:
                continue
            first = earliest_start(scratch, pj, o)
            latest = (pj.job.deadline_h - o.duration_h) if pj.job.deadline_h is not None else -math.inf
            if pj.job.max_wait_h is not None and not pj.segments_done:     # the user's window, as LWA's
                window = pj.job.submit_h + pj.job.max_wait_h
                latest = min(latest, window) if pj.job.deadline_h is not None else window
            starts = window_starts(scratch, pj, o, latest, first)
            if not starts:
                continue
            for s, c in zip(starts, mean_carbon(view, prices, o, starts), strict=True):
                out.append(scored(o, s, _bill(view, pj, o), carbon=float(c), rank=o.rank))
        return out
    return Pipeline("wait-awhile", choose, key=lambda c: (c.info["carbon"], c.start_h, c.info["rank"]))
