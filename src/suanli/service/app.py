"""The REST API (FastAPI), versioned under /v1; the OpenAPI schema is at /openapi.json.

Every request carries `Authorization: Bearer TOKEN`. A tenant sees only its own jobs: another
tenant's job answers 404, exactly like one that does not exist. Bad input answers 4xx with
one line naming the field and the value.
"""

# no `from __future__ import annotations`: FastAPI reads the local Annotated aliases at runtime

import logging
import math
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from suanli.errors import UserError, short_repr
from suanli.model.scenario import Scenario
from suanli.model.schema import Event
from suanli.service import dashboard, etags, limits, metering
from suanli.service.auth import Principal, billed_tenants
from suanli.service.bearer import bearer, principal_of
from suanli.service.checkpoints import TooLarge, move_price
from suanli.service.controller import Controller, drained_sites
from suanli.service.db import readers
from suanli.service.lifecycle import model_job, move
from suanli.service.models import GridCap, SiteAgent, Tenant, Transition, Usage, utcnow
from suanli.service.models import Job as JobRow
from suanli.service.schemas import (
    ACTIVE,
    ERROR_RESPONSES,
    STATES,
    Assignment,
    CursorQuery,
    GridCapIn,
    GridCapOut,
    Heartbeat,
    HeartbeatReply,
    Invoice,
    JobIdPath,
    JobIn,
    JobList,
    JobOut,
    PoolOut,
    Report,
    RunningRef,
    SiteOut,
    UsageOut,
)

log = logging.getLogger("suanli.api")


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

    app = FastAPI(title="suanli control plane", version="1", lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="Submit GPU jobs to a compute-power network; see docs/SERVICE.md.")
    app.state.controller = controller
    etags.install(app)        # 304 for a JSON read that did not change (etags.py)
    limits.install(app)       # body size, JSON depth, secrets in URLs, rate per token (limits.py)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        msg = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(err["type"], err["msg"])
        got = "" if err["type"] == "missing" else f" (got {short_repr(err.get('input'))})"
        more = len(exc.errors()) - 1
        note = f"; and {more} more error{'s' if more > 1 else ''}" if more > 0 else ""
        return JSONResponse(status_code=422, content={"detail": f"{_loc(err['loc'])}: {msg}{got}{note}"})

    @app.exception_handler(DBAPIError)
    async def _db_away(_req: Request, exc: DBAPIError):
        # the database is away (restarting, unreachable, our connection cut): the transaction did
        # not commit, so the client may retry; the pool's pre-ping replaces dead connections once
        # it is back. Any other database error is a bug: a 500.
        if not (exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)):
            raise exc
        log.warning("database unavailable: %s", (str(exc.orig or exc).splitlines() or [""])[0])
        return JSONResponse(status_code=503, content={"detail": "the database is unavailable; retry shortly"},
                            headers={"Retry-After": "1"})

    @app.exception_handler(UserError)
    async def _user(_req: Request, exc: UserError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    # ------------------------------------------------------------------ dependencies
    reads = readers(sessions)

    def db(request: Request):
        with (reads if request.method == "GET" else sessions)() as s:     # GET only reads (db.readers)
            yield s

    def principal(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                  s: Annotated[Session, Depends(db)]) -> Principal:
        return principal_of(s, cred)

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

    def visible(s: Session, p: Principal, job_id: int, lock: bool = False) -> JobRow:
        # lock: FOR UPDATE (PostgreSQL), as a tick on another replica may be changing the row
        row = s.get(JobRow, job_id, with_for_update=lock)
        if row is None or (p.role == "tenant" and row.tenant_id != p.tenant_id) or p.role == "site":
            raise HTTPException(404, f"no job {job_id}")
        return row

    def usage_sums(s: Session, ids: list[int]) -> dict[int, UsageOut]:
        """The metered usage of each job in `ids`, in one query (a page of jobs is one query, not one each)."""
        sums = [func.coalesce(func.sum(getattr(Usage, k)), 0.0) for k in UsageOut.model_fields]
        out = {i: UsageOut(**dict.fromkeys(UsageOut.model_fields, 0.0)) for i in ids}
        for job_id, *u in s.execute(select(Usage.job_id, *sums).where(Usage.job_id.in_(ids)).group_by(Usage.job_id)):
            out[job_id] = UsageOut(**dict(zip(UsageOut.model_fields, (float(x) for x in u), strict=True)))
        return out

    def job_out(s: Session, row: JobRow, transitions: bool = True, usage: UsageOut | None = None) -> JobOut:
        tenant = s.get(Tenant, row.tenant_id)
        usage = usage_sums(s, [row.id])[row.id] if usage is None else usage.model_copy()
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

    def done(s: Session, out):
        """End the request's transaction before returning `out`: FastAPI validates a sync handler's
        answer in its thread pool, and a transaction left open meanwhile (on SQLite every one holds
        the write lock) made requests waiting for that lock fill the pool: a deadlock until the
        30 s busy timeout (bench/loadtest.py found it at 100 requests/s)."""
        s.rollback()
        return out

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
        return done(s, job_out(s, row))

    @app.get("/v1/jobs", response_model=JobList, tags=["jobs"])
    def list_jobs(p: Who, s: DB,
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
        return done(s, JobList(jobs=[job_out(s, r, transitions=False, usage=used[r.id]) for r in rows],
                               next_cursor=rows[-1].id if more else None))

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def get_job(job_id: JobIdPath, p: Who, s: DB):
        return done(s, job_out(s, visible(s, p, job_id)))

    @app.delete("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def cancel(job_id: JobIdPath, p: Who, s: DB):
        with controller.lock:          # the controller may be placing it right now
            row = visible(s, p, job_id, lock=True)
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
            return done(s, job_out(s, row))

    # ------------------------------------------------------------------ demand response
    def cap_out(e, source: str, cap_id: int | None, reason: str) -> GridCapOut:
        return GridCapOut(id=cap_id or 0, site=e.site, start_h=e.start_h, end_h=e.end_h,
                          start=controller.wall(e.start_h), end=controller.wall(e.end_h),
                          max_grid_kw=e.max_grid_kw, reason=reason, source=source)

    @app.get("/v1/grid-caps", response_model=list[GridCapOut], tags=["sites"])
    def grid_caps(p: Who, s: DB):
        """The grid caps the scheduler knows of and that have not ended (network file and operator)."""
        return [cap_out(*c) for c in controller.grid_caps(s, controller.now_h())]

    @app.post("/v1/admin/grid-caps", status_code=201, response_model=GridCapOut, tags=["sites"])
    def announce_grid_cap(body: GridCapIn, p: Who, s: DB):
        """Announce a demand-response notice (admin): from now on the policy plans around it."""
        if p.role != "admin":
            raise HTTPException(403, f"this call is for an admin token, not a {p.role} token")
        if body.site not in net.sites:
            raise HTTPException(422, f"site: no site {body.site!r} in the network")
        start = controller.now_h() if body.start is None else controller.hours(body.start)
        end = controller.hours(body.end)
        if not end > start:
            raise HTTPException(422, f"end: must be after start (got {body.end.isoformat()})")
        with controller.lock:
            row = GridCap(site=body.site, start_h=start, end_h=end, max_grid_kw=body.max_grid_kw, reason=body.reason)
            s.add(row)
            s.commit()
        e = Event(type="grid_cap", site=row.site, start_h=row.start_h, end_h=row.end_h, max_grid_kw=row.max_grid_kw)
        return cap_out(e, "operator", row.id, row.reason)

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
        invs = [metering.invoice(s, t, month) for t in billed_tenants(s, p, tenant)]
        if format == "csv":
            text = "".join(metering.invoice_csv(inv) if k == 0 else metering.invoice_csv(inv).split("\n", 1)[1]
                           for k, inv in enumerate(invs))
            return PlainTextResponse(text, media_type="text/csv")
        return invs

    # ------------------------------------------------------------------ the site agent protocol
    async def arrival() -> datetime:
        """When a request reached the service: evaluated on the event loop, before it waits for a
        thread or for the controller's lock."""
        return utcnow()

    Arrived = Annotated[datetime, Depends(arrival)]

    def alive(s: Session, site: str, received: datetime) -> None:
        """Any authenticated call of a site's agent shows the site alive (Controller.saw); stored
        too, for the other replicas (call under the controller's lock)."""
        controller.saw(site, received)
        a = s.get(SiteAgent, site)
        if a is not None:
            seen = a.last_seen_at if a.last_seen_at.tzinfo else a.last_seen_at.replace(tzinfo=UTC)
            if received > seen:
                a.last_seen_at = received

    @app.post("/v1/agent/{site}/heartbeat", response_model=HeartbeatReply, tags=["agent"])
    def heartbeat(received: Arrived, site: str, body: Heartbeat, p: Who, s: DB):
        """Register (first call) and heartbeat; the reply lists runs the agent must stop."""
        site_only(p, site)
        if site not in net.sites:
            raise HTTPException(404, f"site: no site {site!r} in the network")
        controller.saw(site, received)
        with controller.lock:          # first: the tick takes it before the database (SQLite: one writer)
            a = s.get(SiteAgent, site)
            info = {"executor": body.executor, "instance": body.instance, "pools": [x.model_dump() for x in body.pools]}
            before = (a.info or {}).get("instance") if a is not None else None
            if a is None:
                s.add(SiteAgent(site=site, info=info))
            else:
                a.last_seen_at = utcnow()
                a.info = info
            cancel = []
            for ref in sorted(body.running, key=lambda r: r.job_id):      # one lock order: no deadlock
                row = s.get(JobRow, ref.job_id, with_for_update=True)
                if (row is None or row.site != site or row.fence != ref.fence
                        or row.state not in ("TRANSFERRING", "RUNNING")):
                    cancel.append(RunningRef(job_id=ref.job_id, fence=ref.fence))
            # the dispatched jobs the agent does not hold are lost (Controller.lost_runs)
            restarted = before is not None and body.instance is not None and before != body.instance
            controller.lost_runs(s, site, {(r.job_id, r.fence) for r in body.running}, restarted, received)
            s.commit()
        return HeartbeatReply(site=site, now_h=controller.now_h(), cancel=cancel)

    @app.post("/v1/agent/{site}/assignments", response_model=list[Assignment], tags=["agent"])
    def assignments(received: Arrived, site: str, p: Who, s: DB, limit: Annotated[int, Query(ge=1, le=100)] = 20):
        """Claim the placements on `site` that are due: each becomes TRANSFERRING under a new fence."""
        site_only(p, site)
        controller.saw(site, received)
        out = []
        with controller.lock:
            alive(s, site, received)
            now = controller.now_h()          # after the lock: never before the tick that placed it
            q = (select(JobRow).where(JobRow.site == site, JobRow.state == "PLACED", JobRow.start_h <= now + 1e-6)
                 .order_by(JobRow.start_h, JobRow.id).limit(limit))
            if s.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = s.scalars(q).all()
            suspects = controller.suspects(s, [r.id for r in rows])
            for row in rows:
                if row.id in suspects and out:
                    break                     # a job lost with an agent restart is claimed alone
                row.fence += 1
                why = f"dispatched to the agent of {site} (fence {row.fence})"
                resume = row.checkpoint_site is not None and controller.store.has(row.id)
                if resume:
                    hours, cny = move_price(net, row.checkpoint_site, site, row.checkpoint_bytes or 0)
                    row.move_cny += cny
                    why += (f"; resumes from the checkpoint of {row.checkpoint_h:.4f} h made on "
                            f"{row.checkpoint_site} ({row.checkpoint_bytes:,} bytes"
                            + (f", moved in {hours * 3600:.3f} s for {cny:.6f} CNY)" if row.checkpoint_site != site
                               else ")"))
                move(s, row, "TRANSFERRING", now, why)
                out.append(Assignment(job_id=row.id, fence=row.fence, name=row.name, command=row.command,
                                      gpus=row.gpus, gpu_type=row.gpu_type, start_h=row.start_h, end_h=row.end_h,
                                      checkpoint_h=row.spec.get("checkpoint_h"),
                                      resume_bytes=row.checkpoint_bytes if resume else None,
                                      resume_from=row.checkpoint_site if resume else None))
                if row.id in suspects:
                    break
            s.commit()
        return out

    def fenced(s: Session, site: str, job_id: int, fence: int, lock: bool = False) -> JobRow:
        """The job of an agent's call: on `site` (else 404) under dispatch `fence` (else 409: stale)."""
        row = s.get(JobRow, job_id, with_for_update=lock)
        if row is None or row.site != site:
            raise HTTPException(404, f"no job {job_id} on site {site}")
        if row.fence != fence:
            raise HTTPException(409, f"job {job_id}: fence {fence} is stale (current dispatch {row.fence})")
        return row

    def dispatched_here(s: Session, site: str, job_id: int, fence: int, lock: bool = False) -> JobRow:
        row = fenced(s, site, job_id, fence, lock)
        if row.state not in ("TRANSFERRING", "RUNNING"):
            raise HTTPException(409, f"job {job_id} is {row.state}, not dispatched")
        return row

    @app.put("/v1/agent/{site}/jobs/{job_id}/checkpoint", response_model=JobOut, tags=["agent"],
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/gzip": {"schema": {"type": "string",
                                                                                        "format": "binary"}}}}})
    async def put_checkpoint(site: str, job_id: JobIdPath, request: Request, p: Who,
                             fence: Annotated[int, Query(ge=1, le=2**31 - 1, description="the dispatch's fence")],
                             at: Annotated[datetime, Query(description="when the checkpoint was made (its newest "
                                                                       "file)")]):
        """Store the job's newest checkpoint (its SUANLI_CHECKPOINT_DIR as a gzipped tar): what a
        re-placed job resumes from, on whichever site (service/checkpoints.py)."""
        site_only(p, site)
        controller.saw(site, utcnow())

        def check() -> None:
            with sessions() as s:
                dispatched_here(s, site, job_id, fence)
        await run_in_threadpool(check)              # refuse before reading a byte of a stale upload
        try:
            tmp, size = await controller.store.receive(job_id, request.stream(), app.state.limits.max_upload_bytes)
        except TooLarge as e:
            raise HTTPException(413, str(e)) from None

        def record() -> JobOut:
            with controller.lock, sessions() as s:
                try:
                    row = dispatched_here(s, site, job_id, fence, lock=True)
                except HTTPException:
                    controller.store.discard(tmp)   # re-dispatched while uploading: not the job's checkpoint
                    raise
                controller.store.commit(job_id, tmp)
                row.checkpoint_h = controller.hours(at)
                row.checkpoint_bytes = size
                row.checkpoint_site = site
                s.commit()
                return job_out(s, row)
        return await run_in_threadpool(record)

    @app.get("/v1/agent/{site}/jobs/{job_id}/checkpoint", tags=["agent"],
             responses={200: {"content": {"application/gzip": {}}}})
    def get_checkpoint(site: str, job_id: JobIdPath, p: Who, s: DB,
                       fence: Annotated[int, Query(ge=1, le=2**31 - 1, description="the dispatch's fence")]):
        """The job's stored checkpoint, for the site it is dispatched to now."""
        site_only(p, site)
        dispatched_here(s, site, job_id, fence)
        if not controller.store.has(job_id):
            raise HTTPException(404, f"job {job_id} has no stored checkpoint")
        return FileResponse(controller.store.path(job_id), media_type="application/gzip")

    @app.post("/v1/agent/{site}/jobs/{job_id}/report", response_model=JobOut, tags=["agent"])
    def report(received: Arrived, site: str, job_id: JobIdPath, body: Report, p: Who, s: DB):
        site_only(p, site)
        controller.saw(site, received)
        with controller.lock:
            alive(s, site, received)
            row = fenced(s, site, job_id, body.fence, lock=True)
            now = controller.now_h()
            if row.state == "CANCELLED":
                return done(s, job_out(s, row))   # the kill the agent confirms: metered at cancel
            if body.state == "RUNNING":
                if row.state == "RUNNING":
                    return done(s, job_out(s, row))      # said again (an agent that restarted and adopted it)
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
                if body.log_tail:
                    why += f"; log ends: {body.log_tail[-1000:]}"
                if body.state == "FAILED":
                    row.attempts += 1
                    if row.attempts < controller.max_attempts:      # offered again, from its checkpoint
                        controller.preempt_or_fail(s, row, now, f"attempt {row.attempts} of "
                                                   f"{controller.max_attempts} failed ({why}); retrying")
                        s.commit()
                        return done(s, job_out(s, row))
                    if controller.max_attempts > 1:
                        why = f"failed {row.attempts} attempts, the last with {why}"
                move(s, row, body.state, now, why)
            else:
                raise HTTPException(409, f"job {job_id}: CANCELLED is reported only for a cancelled job")
            s.commit()
            return done(s, job_out(s, row))

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"ok": controller.last_error is None, "now_h": controller.now_h(), "ticks": controller.ticks,
                "policy": controller.policy_name, "network": net.name, "leader": controller.leading,
                "error": controller.last_error, "time": datetime.now(UTC).isoformat()}

    dashboard.install(app, controller)       # the web dashboard at / and its API (docs/DASHBOARD.md)
    return app
