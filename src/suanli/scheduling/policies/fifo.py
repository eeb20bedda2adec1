"""`fifo`: the honest baseline.

Jobs in arrival order; each goes to the pool where it can start earliest, among the sites
that are up, reachable and within its latency bound, on any allowed GPU type; ties go to the
site nearest the job's origin (least latency), then to the scenario's order of sites and
types. Its start is the earliest moment the pool has the GPUs free for the whole run and
the job's data has arrived. No prices, no energy, no waiting for better hours.
"""

from __future__ import annotations

import numpy as np

from suanli.scheduling.pipeline import KEEP, Options, Pipeline, rental_cny, scored
from suanli.scheduling.policies import register
from suanli.scheduling.state import PendingJob, Scored, Scratch, StateView


def _choose(view: StateView, scratch: Scratch, pj: PendingJob, opts: Options) -> list[Scored]:
    found = []
    best = None
    ready, latency, rank = opts.ready_h.tolist(), opts.latency_ms.tolist(), opts.rank.tolist()
    # A run starts no earlier than its pool's `ready_h`, so once the pools left are ready later
    # than the best start found (ties: nearer, then earlier in the scenario) none can win.
    for i in np.lexsort((opts.rank, opts.latency_ms, opts.ready_h)).tolist():
        if best is not None and (ready[i], latency[i], rank[i]) > best:
            break
        start = scratch.calendar(opts.site[i], opts.gpu_type[i]).earliest_fit(
            pj.job.gpus, float(opts.duration_h[i]), ready[i])
        if start is not None:
            found.append((start, latency[i], rank[i], i))
            best = min(best or found[-1][:3], found[-1][:3])
    found.sort(key=lambda f: f[:3])
    # only the few an explanation shows are priced: fifo itself never looks at prices
    out = []
    for start, _, _, i in found[:KEEP]:
        o = opts[i]
        out.append(scored(o, start, {"rental": rental_cny(view, pj, o), "transfer": o.transfer_cny},
                          latency_ms=o.latency_ms, rank=o.rank))
    return out


@register("fifo")
def fifo() -> Pipeline:
    return Pipeline("fifo", _choose, key=lambda c: (c.start_h, c.info["latency_ms"], c.info["rank"]))
