"""The REST API (FastAPI), versioned under /v1; the OpenAPI schema is at /openapi.json.

Every request carries `Authorization: Bearer TOKEN`. A tenant sees only its own jobs: another
tenant's job answers 404, exactly like one that does not exist. Bad input answers 4xx with
one line naming the field and the value.
"""

# no `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime

import math
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.errors import UserError, short_repr
from suanli.model.scenario import Scenario
from suanli.service import metering
from suanli.service.auth import Principal, authenticate
from suanli.service.controller import Controller, drained_sites
from suanli.service.lifecycle import model_job, move
from suanli.service.models import Job as JobRow
from suanli.service.models import SiteAgent, Tenant, Transition, Usage, utcnow
from suanli.service.schemas import (
    ACTIVE,
    STATES,
    Assignment,
    Heartbeat,
    HeartbeatReply,
    Invoice,
    JobIn,
    JobList,
    JobOut,
    PoolOut,
    Report,
    RunningRef,
    SiteOut,
    UsageOut,
)

_bearer = HTTPBearer(auto_error=False, description="a token from `suanli admin create-*`")


def _loc(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def create_app(controller: Controller, run_loop: bool = True) -> FastAPI:
    sessions = controller.sessions
    net: Scenario = controller.network

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run_loop:
            controller.start()
        yield
        controller.stop()

    app = FastAPI(title="suanli control plane", version="1", lifespan=lifespan,
                  description="Submit GPU jobs to a compute-power network; see docs/SERVICE.md.")
    app.state.controller = controller

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        msg = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(err["type"], err["msg"])
        got = "" if err["type"] == "missing" else f" (got {short_repr(err.get('input'))})"
        more = len(exc.errors()) - 1
        note = f"; and {more} more error{'s' if more > 1 else ''}" if more > 0 else ""
        return JSONResponse(status_code=422, content={"detail": f"{_loc(err['loc'])}: {msg}{got}{note}"})

    @app.exception_handler(UserError)
    async def _user(_req: Request, exc: UserError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    # ------------------------------------------------------------------ dependencies
    def db():
        with sessions() as s:
            yield s

    def principal(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                  s: Annotated[Session, Depends(db)]) -> Principal:
        if cred is None or not cred.credentials:
            raise HTTPException(401, "missing Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})
        p = authenticate(s, cred.credentials)
        s.rollback()      # end the read: a handler may take the controller's lock next (SQLite: one writer)
        if p is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return p

    Who = Annotated[Principal, Depends(principal)]
    DB = Annotated[Session, Depends(db)]

    def tenant_only(p: Principal) -> None:
        if p.role != "tenant":
            raise HTTPException(403, f"this call is for a tenant token, not a {p.role} token")

    def site_only(p: Principal, site: str) -> None:
        if p.role != "site":
            raise HTTPException(403, f"this call is for a site agent token, not a {p.role} token")
        if p.site != site:
            raise HTTPException(403, f"this token is for site {p.site!r}, not {site!r}")

    def visible(s: Session, p: Principal, job_id: int) -> JobRow:
        row = s.get(JobRow, job_id)
        if row is None or (p.role == "tenant" and row.tenant_id != p.tenant_id) or p.role == "site":
            raise HTTPException(404, f"no job {job_id}")
        return row

    def job_out(s: Session, row: JobRow, transitions: bool = True) -> JobOut:
        tenant = s.get(Tenant, row.tenant_id)
        sums = [func.coalesce(func.sum(getattr(Usage, k)), 0.0) for k in UsageOut.model_fields]
        u = s.execute(select(*sums).where(Usage.job_id == row.id)).one()
        usage = UsageOut(**dict(zip(UsageOut.model_fields, (float(x) for x in u), strict=True)))
        if row.state == "RUNNING" and row.start_h is not None and row.site is not None:   # so far, not yet metered
            running_s = max(0.0, controller.now_h() - row.start_h) * 3600.0
            usage.gpu_seconds += running_s * row.gpus
            price = net.sites[row.site].gpus[row.gpu_type].cny_per_gpu_h
            usage.gpu_cny += running_s / 3600.0 * row.gpus * price
            usage.total_cny += running_s / 3600.0 * row.gpus * price
        trs = []
        if transitions:
            q = select(Transition).where(Transition.job_id == row.id).order_by(Transition.id)
            trs = [dict(from_state=t.from_state, to_state=t.to_state, at=t.at, at_h=t.at_h, reason=t.reason)
                   for t in s.scalars(q)]
        return JobOut(id=row.id, name=row.name, tenant=tenant.name, state=row.state, reason=row.reason,
                      command=row.command, gpus=row.gpus, spec=row.spec, submit_h=row.submit_h, site=row.site,
                      gpu_type=row.gpu_type,
                      start_h=row.start_h, end_h=row.end_h, explanation=row.explanation, usage=usage,
                      checkpoint_h=row.checkpoint_h, checkpoint_bytes=row.checkpoint_bytes,
                      transitions=trs, created_at=row.created_at)

    # ------------------------------------------------------------------ jobs
    def check_refs(body: JobIn) -> None:
        if body.origin not in net.cities:
            raise HTTPException(422, f"origin: unknown city {body.origin!r} (cities: {', '.join(net.cities)})")
        for g in body.gpu_types or ():
            if g not in net.gpu_types:
                raise HTTPException(422, f"gpu_types: unknown GPU type {g!r} (types: {', '.join(net.gpu_types)})")
        if body.class_ is not None and body.class_ not in net.job_classes:
            raise HTTPException(422, f"class: unknown job class {body.class_!r}")

    def admit(s: Session, tenant: Tenant, body: JobIn, submit_h: float) -> list[str] | None:
        """Quota and budget at submit; returns the GPU types the job may use (None: all)."""
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
            month = controller.wall(submit_h).strftime("%Y-%m")
            spent = metering.spent(s, tenant.id, month)
            if spent + estimate > tenant.budget_cny + 1e-9:
                raise HTTPException(403, f"budget: {spent:,.2f} CNY spent in {month} + this job's rental of at "
                                         f"least {estimate:,.2f} CNY > budget {tenant.budget_cny:,.2f} CNY")
        return types if (tenant.quota or body.gpu_types) else None

    @app.post("/v1/jobs", status_code=201, response_model=JobOut, tags=["jobs"])
    def submit(body: JobIn, p: Who, s: DB,
               idempotency_key: Annotated[str | None, Header(max_length=256)] = None) -> Any:
        tenant_only(p)
        if idempotency_key is not None:
            old = s.scalar(select(JobRow).where(JobRow.tenant_id == p.tenant_id,
                                                JobRow.idempotency_key == idempotency_key))
            if old is not None:
                return JSONResponse(status_code=200, content=job_out(s, old).model_dump(mode="json"))
        check_refs(body)
        tenant = s.get(Tenant, p.tenant_id)
        now = controller.now_h()
        types = admit(s, tenant, body, now)
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
            return JSONResponse(status_code=200, content=job_out(s, old).model_dump(mode="json"))
        return job_out(s, row)

    @app.get("/v1/jobs", response_model=JobList, tags=["jobs"])
    def list_jobs(p: Who, s: DB,
                  state: Annotated[str | None, Query(description="one of " + ", ".join(STATES))] = None,
                  name: str | None = None, site: str | None = None,
                  tenant: Annotated[str | None, Query(description="admin only")] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  cursor: Annotated[int | None, Query(ge=0, description="the `next_cursor` of the last page")] = None):
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
        return JobList(jobs=[job_out(s, r, transitions=False) for r in rows],
                       next_cursor=rows[-1].id if more else None)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def get_job(job_id: int, p: Who, s: DB):
        return job_out(s, visible(s, p, job_id))

    @app.delete("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def cancel(job_id: int, p: Who, s: DB):
        with controller.lock:          # the controller may be placing it right now
            row = visible(s, p, job_id)
            if row.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                raise HTTPException(409, f"job {job_id} is already {row.state}")
            now = controller.now_h()
            was = row.state
            if was == "RUNNING" and row.start_h is not None:
                metering.meter(s, net, controller.epoch, row, model_job(row), row.fence, row.start_h, now)
            move(s, row, "CANCELLED", now, f"cancelled by {p.role}" + (f" {p.tenant_name}" if p.tenant_name else ""))
            if was in ACTIVE:
                row.end_h = now if was != "PLACED" else row.end_h
            s.commit()
            return job_out(s, row)

    # ------------------------------------------------------------------ sites and invoices
    @app.get("/v1/sites", response_model=list[SiteOut], tags=["sites"])
    def sites(p: Who, s: DB):
        now = controller.now_h()
        seen = {a.site: a for a in s.scalars(select(SiteAgent))}
        up = controller.up_sites(s)
        drained = drained_sites(s)
        busy: dict[tuple[str, str], int] = {}
        for r in s.scalars(select(JobRow).where(JobRow.state.in_(("TRANSFERRING", "RUNNING")))):
            busy[(r.site, r.gpu_type)] = busy.get((r.site, r.gpu_type), 0) + r.gpus
        slot = max(0, math.floor(now))
        out = []
        for i, (sid, site) in enumerate(net.sites.items()):
            ren = net.explicit(site.renewables.kw, f"sites[{i}].renewables.kw")
            out.append(SiteOut(
                id=sid, city=site.city, up=sid in up, drained=sid in drained,
                last_seen_at=seen[sid].last_seen_at if sid in seen else None,
                pools=[PoolOut(gpu_type=g, count=pool.count, free=pool.count - busy.get((sid, g), 0),
                               cny_per_gpu_h=pool.cny_per_gpu_h) for g, pool in site.gpus.items()],
                renewables_kw_now=float(ren.at(slot)),
                carbon_kg_per_kwh_now=float(site.grid.carbon_kg_per_kwh.at(slot)),
                cny_per_kwh_now=float(site.grid.cny_per_kwh.at(slot))))
        return out

    @app.get("/v1/invoices", response_model=list[Invoice], tags=["billing"],
             responses={200: {"content": {"text/csv": {}}}})
    def invoices(p: Who, s: DB, month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
                 tenant: Annotated[str | None, Query(description="admin only; default all tenants")] = None,
                 format: Annotated[str, Query(pattern="^(json|csv)$")] = "json"):
        metering.check_month(month)
        if p.role == "site":
            raise HTTPException(403, "a site agent token cannot read invoices")
        if p.role == "tenant":
            if tenant is not None and tenant != p.tenant_name:
                raise HTTPException(403, "tenant: a tenant token reads its own invoice only")
            tenants = [s.get(Tenant, p.tenant_id)]
        elif tenant is not None:
            t = s.scalar(select(Tenant).where(Tenant.name == tenant))
            if t is None:
                raise HTTPException(404, f"tenant: no tenant {tenant!r}")
            tenants = [t]
        else:
            tenants = list(s.scalars(select(Tenant).order_by(Tenant.id)))
        invs = [metering.invoice(s, t, month) for t in tenants]
        if format == "csv":
            text = "".join(metering.invoice_csv(inv) if k == 0 else metering.invoice_csv(inv).split("\n", 1)[1]
                           for k, inv in enumerate(invs))
            return PlainTextResponse(text, media_type="text/csv")
        return invs

    # ------------------------------------------------------------------ the site agent protocol
    @app.post("/v1/agent/{site}/heartbeat", response_model=HeartbeatReply, tags=["agent"])
    def heartbeat(site: str, body: Heartbeat, p: Who, s: DB):
        """Register (first call) and heartbeat; the reply lists runs the agent must stop."""
        site_only(p, site)
        if site not in net.sites:
            raise HTTPException(404, f"site: no site {site!r} in the network")
        a = s.get(SiteAgent, site)
        info = {"executor": body.executor, "pools": [x.model_dump() for x in body.pools]}
        if a is None:
            s.add(SiteAgent(site=site, info=info))
        else:
            a.last_seen_at = utcnow()
            a.info = info
        cancel = []
        for ref in body.running:
            row = s.get(JobRow, ref.job_id)
            if (row is None or row.site != site or row.fence != ref.fence
                    or row.state not in ("TRANSFERRING", "RUNNING")):
                cancel.append(RunningRef(job_id=ref.job_id, fence=ref.fence))
            elif ref.checkpoint_at is not None:        # the last checkpoint file, in controller hours
                at = ref.checkpoint_at if ref.checkpoint_at.tzinfo else ref.checkpoint_at.replace(tzinfo=UTC)
                row.checkpoint_h = (at - controller.epoch).total_seconds() / 3600.0
                row.checkpoint_bytes = ref.checkpoint_bytes
        s.commit()
        return HeartbeatReply(site=site, now_h=controller.now_h(), cancel=cancel)

    @app.post("/v1/agent/{site}/assignments", response_model=list[Assignment], tags=["agent"])
    def assignments(site: str, p: Who, s: DB, limit: Annotated[int, Query(ge=1, le=100)] = 20):
        """Claim the placements on `site` that are due: each becomes TRANSFERRING under a new fence."""
        site_only(p, site)
        now = controller.now_h()
        out = []
        with controller.lock:
            q = (select(JobRow).where(JobRow.site == site, JobRow.state == "PLACED", JobRow.start_h <= now + 1e-6)
                 .order_by(JobRow.start_h, JobRow.id).limit(limit))
            if s.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            for row in s.scalars(q):
                row.fence += 1
                move(s, row, "TRANSFERRING", now, f"dispatched to the agent of {site} (fence {row.fence})")
                out.append(Assignment(job_id=row.id, fence=row.fence, name=row.name, command=row.command,
                                      gpus=row.gpus, gpu_type=row.gpu_type, start_h=row.start_h, end_h=row.end_h,
                                      checkpoint_h=row.spec.get("checkpoint_h")))
            s.commit()
        return out

    @app.post("/v1/agent/{site}/jobs/{job_id}/report", response_model=JobOut, tags=["agent"])
    def report(site: str, job_id: int, body: Report, p: Who, s: DB):
        site_only(p, site)
        with controller.lock:
            row = s.get(JobRow, job_id)
            if row is None or row.site != site:
                raise HTTPException(404, f"no job {job_id} on site {site}")
            if row.fence != body.fence:
                raise HTTPException(409, f"job {job_id}: fence {body.fence} is stale (current dispatch {row.fence})")
            now = controller.now_h()
            if row.state == "CANCELLED":
                return job_out(s, row)            # the kill the agent confirms: metered at cancel
            if body.state == "RUNNING":
                if row.state != "TRANSFERRING":
                    raise HTTPException(409, f"job {job_id} is {row.state}, not TRANSFERRING")
                dur = row.end_h - row.start_h
                row.start_h, row.end_h = now, now + dur
                move(s, row, "RUNNING", now, body.reason or "process started")
            elif body.state in ("SUCCEEDED", "FAILED"):
                if row.state not in ("TRANSFERRING", "RUNNING"):
                    raise HTTPException(409, f"job {job_id} is {row.state}, not running")
                if row.state == "RUNNING":
                    metering.meter(s, net, controller.epoch, row, model_job(row), row.fence, row.start_h, now,
                                   body.gpu_seconds)
                row.end_h = now
                why = body.reason or (f"exit code {body.exit_code}" if body.exit_code is not None else "")
                move(s, row, body.state, now, why)
            else:
                raise HTTPException(409, f"job {job_id}: CANCELLED is reported only for a cancelled job")
            s.commit()
            return job_out(s, row)

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"ok": controller.last_error is None, "now_h": controller.now_h(), "ticks": controller.ticks,
                "policy": controller.policy_name, "network": net.name, "error": controller.last_error,
                "time": datetime.now(UTC).isoformat()}

    return app
