"""`fifo`: the honest baseline.

Jobs in arrival order; each goes to the pool where it can start earliest, among the sites
that are up, reachable and within its latency bound, on any allowed GPU type; ties go to the
site nearest the job's origin (least latency), then to the scenario's order of sites and
types. Its start is the earliest moment the pool has the GPUs free for the whole run and
the job's data has arrived. No prices, no energy, no waiting for better hours.
"""

from __future__ import annotations

from suanli.scheduling.pipeline import KEEP, Pipeline, earliest_start, rental_cny, scored
from suanli.scheduling.policies import register


def _choose(view, scratch, pj, opts):
    found = []
    best = None
    # A run starts no earlier than its pool's `ready_h`, so once the pools left are ready later
    # than the best start found (ties: nearer, then earlier in the scenario) none can win.
    for o in sorted(opts, key=lambda o: (o.ready_h, o.latency_ms, o.rank)):
        if best is not None and (o.ready_h, o.latency_ms, o.rank) > best:
            break
        start = earliest_start(scratch, pj, o)
        if start is not None:
            found.append((start, o.latency_ms, o.rank, o))
            best = min(best or found[-1][:3], found[-1][:3])
    found.sort(key=lambda f: f[:3])
    # only the few an explanation shows are priced: fifo itself never looks at prices
    return [scored(o, start, {"rental": rental_cny(view, pj, o), "transfer": o.transfer_cny},
                   latency_ms=o.latency_ms, rank=o.rank) for start, _, _, o in found[:KEEP]]


@register("fifo")
def fifo() -> Pipeline:
    return Pipeline("fifo", _choose, key=lambda c: (c.start_h, c.info["latency_ms"], c.info["rank"]))
