"""What the routers share: the controller, the request's database session, the caller (its
bearer token's `Principal`), the checks of who may call what, and a job's public form
(`job_out`, with its metered usage).

Dependencies read the controller from `request.app.state.controller` (`app.create_app` puts it
there), so the routers are plain module-level `APIRouter`s."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import math
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.model.schedule import Segment
from suanli.service import metering
from suanli.service.auth import Principal
from suanli.service.bearer import bearer, principal_of
from suanli.service.controller import SUSPENDED, Controller
from suanli.service.lifecycle import model_job
from suanli.service.models import Job as JobRow
from suanli.service.models import RunOutput, Tenant, Transition, Usage
from suanli.service.schemas import ACTIVE, LEDGER_FIELDS, JobOut, RunOutputOut, UsageOut


def controller_of(request: Request) -> Controller:
    return request.app.state.controller


def db(request: Request):
    """A session for the request: GET only reads (`db.readers`: on SQLite no write lock)."""
    make = request.app.state.readers if request.method == "GET" else request.app.state.controller.sessions
    with make() as s:
        yield s


def principal(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              s: Annotated[Session, Depends(db)]) -> Principal:
    """The caller: as the door (limits.py) authenticated it, else looked up (through the token cache)."""
    p = request.scope.get("state", {}).get("principal")
    if p is not None:
        return p
    return principal_of(s, cred, getattr(request.app.state, "token_cache", None))


Ctl = Annotated[Controller, Depends(controller_of)]
Who = Annotated[Principal, Depends(principal)]
DB = Annotated[Session, Depends(db)]


def tenant_only(p: Principal) -> None:
    if p.role != "tenant":
        raise HTTPException(403, f"this call is for a tenant token, not a {p.role} token")


def admin_only(p: Principal) -> None:
    if p.role != "admin":
        raise HTTPException(403, f"this call is for an admin token, not a {p.role} token")


def site_only(p: Principal, site: str) -> None:
    if p.role != "site":
        raise HTTPException(403, f"this call is for a site agent token, not a {p.role} token")
    if p.site != site:
        raise HTTPException(403, f"this token is for site {p.site!r}, not {site!r}")


def visible(s: Session, p: Principal, job_id: int, lock: bool = False) -> JobRow:
    """The job `p` may see: its own (a tenant), any (an admin), none (a site agent); otherwise 404,
    exactly like a job that does not exist. `lock`: FOR UPDATE (PostgreSQL), as a tick on another
    replica may be changing the row."""
    row = s.get(JobRow, job_id, with_for_update=lock)
    if row is None or (p.role == "tenant" and row.tenant_id != p.tenant_id) or p.role == "site":
        raise HTTPException(404, f"no job {job_id}")
    return row


def usage_sums(s: Session, ids: list[int]) -> dict[int, UsageOut]:
    """The metered usage of each job in `ids`, in one query (a page of jobs is one query, not one each)."""
    sums = [func.coalesce(func.sum(getattr(Usage, k)), 0.0) for k in LEDGER_FIELDS]
    out = {i: UsageOut() for i in ids}
    for job_id, *u in s.execute(select(Usage.job_id, *sums).where(Usage.job_id.in_(ids)).group_by(Usage.job_id)):
        out[job_id] = _with_battery(UsageOut(**dict(zip(LEDGER_FIELDS, (float(x) for x in u), strict=True))))
    return out


def _with_battery(u: UsageOut) -> UsageOut:
    """The battery's share of the load: what neither the grid nor renewables served (MODEL.md §4:
    load = used + discharge + grid), so it needs no column of its own."""
    u.battery_kwh = max(0.0, u.energy_kwh - u.grid_kwh - u.renewable_kwh)
    if u.battery_kwh < 1e-9 * max(1.0, u.energy_kwh):
        u.battery_kwh = 0.0                        # rounding of the three sums, not a battery
    return u


def _so_far(c: Controller, s: Session, row: JobRow, usage: UsageOut) -> None:
    """Add the running run [start_h, now) to `usage`, priced as metering will price it when it ends
    (`metering.price_segment` against the metered runs on its site): an estimate."""
    now = c.now_h()
    if not now > row.start_h:
        return
    seg = Segment(str(row.id), row.site, row.gpu_type, row.gpus, row.start_h, now)
    near = s.scalars(select(Usage).where(Usage.site == row.site, Usage.end_h > math.floor(row.start_h),
                                         Usage.start_h < math.ceil(now))).all()
    neighbours = [Segment(str(u.job_id), u.site, u.gpu_type, u.gpus, u.start_h, u.end_h) for u in near]
    moved = s.scalar(select(Usage.id).where(Usage.job_id == row.id, Usage.site == row.site).limit(1)) is not None
    got = metering.price_segment(c.network, model_job(row), seg, neighbours, data_moves=not moved)
    got["total_cny"] += row.move_cny or 0.0
    got["transfer_cny"] += row.move_cny or 0.0
    for k in LEDGER_FIELDS:
        setattr(usage, k, getattr(usage, k) + got[k])
    _with_battery(usage)
    usage.estimated = True


WAITING = ("PENDING", "PLACED")     # where a suspended job waits for its plan's next piece


def pieces_done(trs: list[dict[str, Any]]) -> list[list[float]]:
    """The pieces of plans in pieces a job ran, from its transitions: each run stopped at its
    piece's end (PREEMPTED, `controller.SUSPENDED`), [its RUNNING hour, its stop's hour), oldest first."""
    out: list[list[float]] = []
    began = None
    for t in trs:
        if t["to_state"] == "RUNNING":
            began = t["at_h"]
        elif t["to_state"] == "PREEMPTED":
            if began is not None and t["reason"].startswith(SUSPENDED):
                out.append([began, t["at_h"]])
            began = None
    return out


def suspended_ids(s: Session, rows: list[JobRow]) -> set[int]:
    """The jobs among `rows` suspended now: waiting (PENDING, PLACED) and their latest run ended
    with a suspension, not another preemption. One query for a page of jobs."""
    ids = [r.id for r in rows if r.state in WAITING]
    if not ids:
        return set()
    latest = (select(func.max(Transition.id)).where(Transition.job_id.in_(ids),
                                                     Transition.to_state.in_(("RUNNING", "PREEMPTED")))
              .group_by(Transition.job_id))
    q = select(Transition.job_id).where(Transition.id.in_(latest), Transition.to_state == "PREEMPTED",
                                        Transition.reason.startswith(SUSPENDED, autoescape=True))
    return set(s.scalars(q))


def job_out(c: Controller, s: Session, row: JobRow, transitions: bool = True, usage: UsageOut | None = None,
            suspended: bool | None = None) -> JobOut:
    """A job's public form; `suspended` (a page of jobs: from `suspended_ids`) is looked up when not given."""
    tenant = s.get(Tenant, row.tenant_id)
    usage = usage_sums(s, [row.id])[row.id] if usage is None else usage.model_copy()
    if row.state == "RUNNING" and row.start_h is not None and row.site is not None:   # so far, not yet metered
        if transitions:                 # one job's view: the run so far priced in full (energy, carbon)
            _so_far(c, s, row, usage)
        else:                           # a page of jobs: its GPU time and rental only, cheap to add up
            running_s = max(0.0, c.now_h() - row.start_h) * 3600.0
            usage.gpu_seconds += running_s * row.gpus
            price = c.network.sites[row.site].gpus[row.gpu_type].cny_per_gpu_h
            usage.gpu_cny += running_s / 3600.0 * row.gpus * price
            usage.total_cny += running_s / 3600.0 * row.gpus * price
            usage.estimated = True
    trs, outs = [], []
    if transitions:
        outs = outputs_of(s, row.id)
        q = select(Transition).where(Transition.job_id == row.id).order_by(Transition.id)
        trs = [dict(from_state=t.from_state, to_state=t.to_state, at=t.at, at_h=t.at_h, reason=t.reason)
               for t in s.scalars(q)]
        ran = [t for t in trs if t["to_state"] in ("RUNNING", "PREEMPTED")]
        suspended = row.state in WAITING and bool(ran) and ran[-1]["to_state"] == "PREEMPTED" \
            and ran[-1]["reason"].startswith(SUSPENDED)
    elif suspended is None:
        suspended = row.id in suspended_ids(s, [row])
    return JobOut(id=row.id, name=row.name, tenant=tenant.name, state=row.state, reason=row.reason,
                  command=row.command, gpus=row.gpus, spec=row.spec, submit_h=row.submit_h, site=row.site,
                  gpu_type=row.gpu_type,
                  start_h=row.start_h, end_h=row.end_h, explanation=row.explanation, usage=usage,
                  checkpoint_h=row.checkpoint_h, checkpoint_bytes=row.checkpoint_bytes,
                  pieces=row.pieces if row.state in ACTIVE else None,
                  pieces_done=pieces_done(trs), suspended=suspended,
                  stops=bool(row.stops) and row.state in ACTIVE,
                  transitions=trs, outputs=outs, created_at=row.created_at)


def outputs_of(s: Session, job_id: int) -> list[RunOutputOut]:
    """Where each run of the job wrote its output, oldest run first (the tails stay in the database)."""
    q = (select(RunOutput.fence, RunOutput.site, RunOutput.path, RunOutput.size_bytes,
                func.length(RunOutput.tail), RunOutput.uploaded_at)
         .where(RunOutput.job_id == job_id).order_by(RunOutput.fence))
    return [RunOutputOut(fence=f, site=site, path=path, size_bytes=size, kept_bytes=kept or 0, uploaded_at=at)
            for f, site, path, size, kept, at in s.execute(q)]


def done(s: Session, out: Any) -> Any:
    """End the request's transaction before returning `out`: FastAPI validates a sync handler's
    answer in its thread pool, and a transaction left open meanwhile (on SQLite every one holds
    the write lock) made requests waiting for that lock fill the pool: a deadlock until the
    30 s busy timeout (bench/loadtest.py found it at 100 requests/s)."""
    s.rollback()
    return out
