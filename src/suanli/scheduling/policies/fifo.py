"""`fifo`: the honest baseline.

Jobs in arrival order; each goes to the pool where it can start earliest, among the sites
that are up, reachable and within its latency bound, on any allowed GPU type; ties go to the
site nearest the job's origin (least latency), then to the scenario's order of sites and
types. Its start is the earliest moment the pool has the GPUs free for the whole run and
the job's data has arrived. No prices, no energy, no waiting for better hours.
"""

from __future__ import annotations

from collections.abc import Sequence

from suanli.scheduling.policies import register
from suanli.scheduling.state import Decision, Defer, PendingJob, Place, Reject, StateView


@register("fifo")
class Fifo:
    name = "fifo"

    def decide(self, view: StateView, jobs: Sequence[PendingJob]) -> list[Decision]:
        scn = view.scenario
        scratch = view.scratch()
        out: list[Decision] = []
        order = {sid: k for k, sid in enumerate(scn.sites)}
        # stable: jobs that became ready together keep the order they were offered in (arrival order)
        for pj in sorted(jobs, key=lambda p: (p.ready_h, p.job.submit_h)):
            job = pj.job
            pools = view.candidate_pools(pj)
            if not pools:
                out.append(Reject(job.id, f"no reachable pool of an allowed type with {job.gpus} GPUs"
                                          + (f" within rtt {job.max_rtt_ms} ms" if job.max_rtt_ms is not None else "")))
                continue
            best = None
            for rank, (sid, g) in enumerate(pools):
                if sid in view.down:
                    continue
                duration = view.duration_h(pj, g)
                t0 = max(view.now, view.data_ready_h(pj, sid))
                start = scratch.calendar(sid, g).earliest_fit(job.gpus, duration, t0)
                if start is None:
                    continue
                key = (start, scn.path(job, sid).latency_ms, order[sid], rank)
                if best is None or key < best[0]:
                    best = (key, sid, g, start, start + duration)
            if best is None:
                out.append(Defer(job.id, "every site that could host it is down"))
                continue
            _, sid, g, start, end = best
            scratch.reserve(sid, g, start, end, job.gpus)
            out.append(Place(job.id, sid, g, start, end, reason="earliest start, then nearest"))
        return out
