"""A tenant's jobs: submit (idempotent by key, quota and budget checked at the door), list, read,
cancel. A tenant sees only its own jobs: another tenant's answers 404, exactly like one that does
not exist."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.service import metering
from suanli.service.controller import Controller
from suanli.service.lifecycle import model_job, move
from suanli.service.models import Job as JobRow
from suanli.service.models import Tenant, Transition
from suanli.service.routes.deps import DB, Ctl, Who, done, job_out, tenant_only, usage_sums, visible
from suanli.service.schemas import ACTIVE, STATES, CursorQuery, JobIdPath, JobIn, JobList, JobOut

router = APIRouter(tags=["jobs"])


def check_refs(c: Controller, body: JobIn) -> None:
    net = c.network
    if body.origin not in net.cities:
        raise HTTPException(422, f"origin: unknown city {body.origin!r} (cities: {', '.join(net.cities)})")
    for g in body.gpu_types or ():
        if g not in net.gpu_types:
            raise HTTPException(422, f"gpu_types: unknown GPU type {g!r} (types: {', '.join(net.gpu_types)})")
    if body.class_ is not None and body.class_ not in net.job_classes:
        raise HTTPException(422, f"class: unknown job class {body.class_!r}")


def admit(c: Controller, s: Session, tenant: Tenant, body: JobIn, submit_h: float) -> list[str] | None:
    """Quota and budget at submit; returns the GPU types the job may use (None: all)."""
    net = c.network
    types = body.gpu_types or list(net.gpu_types)
    if tenant.quota:
        held: dict[str, int] = {}
        for r in s.scalars(select(JobRow).where(JobRow.tenant_id == tenant.id,
                                                JobRow.state.in_(("PENDING", *ACTIVE)))):
            for g in ([r.gpu_type] if r.gpu_type else r.spec.get("gpu_types") or list(net.gpu_types)):
                held[g] = held.get(g, 0) + r.gpus
        fits = [g for g in types if tenant.quota.get(g, 0) - held.get(g, 0) >= body.gpus]
        if not fits:
            left = ", ".join(f"{g} {max(tenant.quota.get(g, 0) - held.get(g, 0), 0)}" for g in types)
            raise HTTPException(403, f"quota: {body.gpus} GPUs do not fit the tenant's quota "
                                     f"(GPUs left: {left})")
        types = fits
    if tenant.budget_cny is not None:
        prices = [p.cny_per_gpu_h * body.work_h / net.gpu_types[g].speed
                  for site in net.sites.values() for g, p in site.gpus.items() if g in types]
        estimate = body.gpus * min(prices, default=0.0)
        month = c.wall(submit_h).strftime("%Y-%m")
        spent = metering.spent(s, tenant.id, month)
        if spent + estimate > tenant.budget_cny + 1e-9:
            raise HTTPException(403, f"budget: {spent:,.2f} CNY spent in {month} + this job's rental of at "
                                     f"least {estimate:,.2f} CNY > budget {tenant.budget_cny:,.2f} CNY")
    return types if (tenant.quota or body.gpu_types) else None


@router.post("/v1/jobs", status_code=201, response_model=JobOut)
def submit(body: JobIn, p: Who, s: DB, c: Ctl,
           idempotency_key: Annotated[str | None, Header(max_length=256)] = None) -> Any:
    tenant_only(p)
    if idempotency_key is not None:
        old = s.scalar(select(JobRow).where(JobRow.tenant_id == p.tenant_id,
                                            JobRow.idempotency_key == idempotency_key))
        if old is not None:
            return JSONResponse(status_code=200, content=job_out(c, s, old).model_dump(mode="json"))
    check_refs(c, body)
    tenant = s.get(Tenant, p.tenant_id)
    now = c.now_h()
    types = admit(c, s, tenant, body, now)
    spec = body.model_dump(by_alias=True, exclude={"name", "command", "gpus"})
    spec["gpu_types"] = types
    if body.deadline_h is not None:
        spec["deadline_h"] = now + body.deadline_h
    row = JobRow(tenant_id=tenant.id, name=body.name, command=body.command, spec=spec, gpus=body.gpus,
                 state="PENDING", reason="submitted", submit_h=now, remaining_work=body.work_h, hosted=[],
                 fence=0, idempotency_key=idempotency_key)
    s.add(row)
    try:
        s.flush()
        s.add(Transition(job_id=row.id, from_state=None, to_state="PENDING", at_h=now, reason="submitted"))
        s.commit()
    except IntegrityError:              # the same key, submitted at the same moment by a retry
        s.rollback()
        old = s.scalar(select(JobRow).where(JobRow.tenant_id == p.tenant_id,
                                            JobRow.idempotency_key == idempotency_key))
        if old is None:
            raise
        return JSONResponse(status_code=200, content=job_out(c, s, old).model_dump(mode="json"))
    return done(s, job_out(c, s, row))


@router.get("/v1/jobs", response_model=JobList)
def list_jobs(p: Who, s: DB, c: Ctl,
              state: Annotated[str | None, Query(description="one of " + ", ".join(STATES))] = None,
              name: str | None = None, site: str | None = None,
              tenant: Annotated[str | None, Query(description="admin only")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              cursor: CursorQuery = None):
    if p.role == "site":
        raise HTTPException(403, "a site agent token cannot list jobs")
    q = select(JobRow).order_by(JobRow.id).limit(limit + 1)
    if p.role == "tenant":
        if tenant is not None and tenant != p.tenant_name:
            raise HTTPException(403, "tenant: a tenant token lists its own jobs only")
        q = q.where(JobRow.tenant_id == p.tenant_id)
    elif tenant is not None:
        t = s.scalar(select(Tenant).where(Tenant.name == tenant))
        if t is None:
            raise HTTPException(404, f"tenant: no tenant {tenant!r}")
        q = q.where(JobRow.tenant_id == t.id)
    if state is not None:
        if state.upper() not in STATES:
            raise HTTPException(422, f"state: unknown state {state!r} (states: {', '.join(STATES)})")
        q = q.where(JobRow.state == state.upper())
    if name is not None:
        q = q.where(JobRow.name == name)
    if site is not None:
        q = q.where(JobRow.site == site)
    if cursor is not None:
        q = q.where(JobRow.id > cursor)
    rows = s.scalars(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    used = usage_sums(s, [r.id for r in rows])
    return done(s, JobList(jobs=[job_out(c, s, r, transitions=False, usage=used[r.id]) for r in rows],
                           next_cursor=rows[-1].id if more else None))


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: JobIdPath, p: Who, s: DB, c: Ctl):
    return done(s, job_out(c, s, visible(s, p, job_id)))


@router.delete("/v1/jobs/{job_id}", response_model=JobOut)
def cancel(job_id: JobIdPath, p: Who, s: DB, c: Ctl):
    with c.lock:          # the controller may be placing it right now
        row = visible(s, p, job_id, lock=True)
        if row.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            raise HTTPException(409, f"job {job_id} is already {row.state}")
        now = c.now_h()
        was = row.state
        if was == "RUNNING" and row.start_h is not None:
            metering.meter(s, c.network, c.epoch, row, model_job(row), row.fence, row.start_h, now)
        move(s, row, "CANCELLED", now, f"cancelled by {p.role}" + (f" {p.tenant_name}" if p.tenant_name else ""))
        if was in ACTIVE:
            row.end_h = now if was != "PLACED" else row.end_h
        s.commit()
        return done(s, job_out(c, s, row))
