"""Runs that outlast their estimate: re-priced against the tenant's budget and quota, then
extended or stopped (docs/RELIABILITY.md).

A tenant's budget is checked at submit against the job's declared `work_h`: a job declared at
0.0001 h that runs for an hour would pass it and be billed for the hour. So a RUNNING job past
its planned end is looked at again on each controller tick (`review`, one call from
`Controller.tick`):
- while it is within its margin past the planned end (`Rules.margin` of its estimate, at least
  `Rules.min_s`) it goes on, unless what its tenant spent this month plus this run so far
  already passes the budget: then it is stopped at once;
- once past the margin it is re-priced: if another estimate-length still fits (spent + this run
  so far + the extension <= budget, and the tenant's GPU quota still holds it) its planned end
  moves to now + one estimate ("ran past its estimate; extended to ..., re-priced: ..."), else
  it is stopped.
Stopping a run: it is metered up to now, its stored checkpoint stays (until the store's
`keep_h` after its end), and it becomes FAILED with the reason "stopped: over budget ..." (or
"over quota"); its agent kills it at its next heartbeat, as it does any run whose job is no
longer dispatched to it. A tenant reads which in the job's transitions and reason.

The run's cost rate is `metering.price_segment` of one hour of its GPUs on its site (rental and
energy at this hour's tariff; cached per pool and hour); a run's data transfer is not in it.
The overshoot past a budget is bounded: one tick, one heartbeat and the agent's kill, at the run's
rate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.model.schedule import Segment
from suanli.service import metering
from suanli.service.lifecycle import model_job, move
from suanli.service.models import Job as JobRow
from suanli.service.models import Tenant, Transition

log = logging.getLogger("suanli.overrun")


@dataclass(frozen=True)
class Rules:
    margin: float = 0.5         # a run may pass its planned end by this fraction of its estimate ...
    min_s: float = 60.0         # ... and at least by this many seconds, before it is re-priced


@dataclass(frozen=True)
class Decision:
    action: str                 # "run" (nothing to do), "extend" or "stop"
    reason: str = ""
    end_h: float | None = None  # "extend": the new planned end


def decide(rules: Rules, now: float, start_h: float, end_h: float, estimate_h: float, cny_per_h: float,
           budget_cny: float | None, spent_cny: float, quota_ok: bool = True, month: str = "") -> Decision:
    """What to do with a RUNNING run [start_h, planned end_h) at `now` (controller hours): `estimate_h`
    is one estimate-length of it, `cny_per_h` its cost rate, `spent_cny` its tenant's metered spend
    this month (without this run). Pure: no database, no clock."""
    if now <= end_h:
        return Decision("run")
    so_far = max(0.0, now - start_h) * cny_per_h
    budget = "no" if budget_cny is None else f"{budget_cny:,.2f} CNY"
    if budget_cny is not None and spent_cny + so_far > budget_cny + 1e-9:
        return Decision("stop", f"stopped: over budget: {spent_cny:,.2f} CNY spent in {month} + this run's "
                                f"{so_far:,.2f} CNY so far > {budget} budget (it ran past its estimate "
                                f"of {estimate_h * 3600:,.1f} s)")
    grace_h = max(rules.margin * estimate_h, rules.min_s / 3600.0)
    if now < end_h + grace_h:
        return Decision("run")
    if not quota_ok:
        return Decision("stop", "stopped: over quota: the tenant's GPU quota no longer holds this run "
                                "(it ran past its estimate)")
    extension = estimate_h * cny_per_h
    total = spent_cny + so_far + extension
    if budget_cny is not None and total > budget_cny + 1e-9:
        return Decision("stop", f"stopped: over budget: it ran past its estimate of {estimate_h * 3600:,.1f} s, "
                                f"and {spent_cny:,.2f} CNY spent in {month} + this run's {so_far:,.2f} CNY so far "
                                f"+ another estimate ({extension:,.2f} CNY) = {total:,.2f} CNY > {budget} budget")
    new_end = now + estimate_h
    return Decision("extend", f"ran past its estimate; extended to {new_end:.4f} h "
                              f"({estimate_h * 3600:,.1f} s more), re-priced: {total:,.2f} CNY of {budget} budget "
                              f"({spent_cny:,.2f} spent in {month} + {so_far:,.2f} so far + {extension:,.2f} "
                              "for the extension)", new_end)


# ---------------------------------------------------------------------------- the controller's side
_rates: dict[tuple[str, str, int, int], float] = {}


def cny_per_h(c, row: JobRow, now: float) -> float:
    """The run's cost per hour now: `metering.price_segment` of this hour on its pool (cached)."""
    slot = max(0, math.floor(now))
    key = (row.site, row.gpu_type, row.gpus, slot)
    if key not in _rates:
        if len(_rates) > 10_000:
            _rates.clear()
        job = model_job(row)
        seg = Segment(str(row.id), row.site, row.gpu_type, row.gpus, float(slot), float(slot) + 1.0)
        _rates[key] = metering.price_segment(c.network, job, seg, [], data_moves=False)["total_cny"]
    return _rates[key]


def _quota_ok(s: Session, tenant: Tenant, row: JobRow) -> bool:
    if not tenant.quota:
        return True
    held = s.scalar(select(func.coalesce(func.sum(JobRow.gpus), 0)).where(
        JobRow.tenant_id == tenant.id, JobRow.gpu_type == row.gpu_type,
        JobRow.state.in_(("PLACED", "TRANSFERRING", "RUNNING"))))
    return int(held or 0) <= int(tenant.quota.get(row.gpu_type, 0))


def _review_one(c, s: Session, row: JobRow, now: float, rules: Rules, month: str,
                out: list[tuple[int, Decision]]) -> None:
    tenant = s.get(Tenant, row.tenant_id)
    job = model_job(row)
    estimate_h = max(row.remaining_work / c.network.speed(job, row.gpu_type), 1e-9)
    d = decide(rules, now, row.start_h, row.end_h, estimate_h, cny_per_h(c, row, now), tenant.budget_cny,
               metering.spent(s, tenant.id, month) if tenant.budget_cny is not None else 0.0,
               _quota_ok(s, tenant, row), month)
    if d.action == "extend":
        row.end_h = d.end_h
        row.reason = d.reason
        s.add(Transition(job_id=row.id, from_state="RUNNING", to_state="RUNNING", at_h=now, reason=d.reason))
        log.info("job %s on %s: %s", row.id, row.site, d.reason)
    elif d.action == "stop":
        metering.meter(s, c.network, c.epoch, row, job, row.fence, row.start_h, now)
        row.end_h = now
        move(s, row, "FAILED", now, d.reason)     # no longer dispatched: its agent kills it at its heartbeat
        log.warning("job %s of tenant %s on %s: %s", row.id, tenant.name, row.site, d.reason)
    else:
        return
    out.append((row.id, d))


def review(c, s: Session, now: float) -> list[tuple[int, Decision]]:
    """Extend or stop each RUNNING run past its planned end (`decide`); called from the controller's
    tick, in its transaction. Returns what it did."""
    rules: Rules = getattr(c, "overrun", None) or Rules()
    # a run booked to a planned stop is not an overrun: the controller stops it at its booking's end
    # (`Controller._suspend_due`, which runs first); never both on one row
    rows = s.scalars(select(JobRow).where(JobRow.state == "RUNNING", JobRow.site.is_not(None),
                                          JobRow.start_h.is_not(None), JobRow.end_h < now,
                                          JobRow.stops.is_(False))
                     .order_by(JobRow.id).with_for_update(skip_locked=True)).all()
    out: list[tuple[int, Decision]] = []
    month = c.wall(now).strftime("%Y-%m")
    for row in rows:
        if row.site not in c.network.sites or row.gpu_type is None:
            continue
        # one job's numbers must not stop the tick for everyone: a step that raises fails that job
        c.contained(s, row, "while re-pricing its run past its estimate", _review_one, c, s, row, now, rules, month,
                    out)
    return out
