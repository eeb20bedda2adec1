"""`fifo`: the honest baseline.

Jobs in arrival order; each goes to the pool where it can start earliest, among the sites
that are up, reachable and within its latency bound, on any allowed GPU type; ties go to the
site nearest the job's origin (least latency), then to the scenario's order of sites and
types. Its start is the earliest moment the pool has the GPUs free for the whole run and
the job's data has arrived. No prices, no energy, no waiting for better hours.
"""

from __future__ import annotations

from suanli.scheduling.pipeline import Pipeline, earliest_start, rental_cny, scored
from suanli.scheduling.policies import register


def _choose(view, scratch, pj, opts):
    out = []
    for o in opts:
        start = earliest_start(scratch, pj, o)
        if start is not None:
            out.append(scored(o, start, {"rental": rental_cny(view, pj, o), "transfer": o.transfer_cny},
                              latency_ms=o.latency_ms, rank=o.rank))
    return out


@register("fifo")
def fifo() -> Pipeline:
    return Pipeline("fifo", _choose, key=lambda c: (c.start_h, c.info["latency_ms"], c.info["rank"]))
