"""A tenant's jobs: submit (idempotent by key, quota and budget checked at the door), list, read,
cancel. A tenant sees only its own jobs: another tenant's answers 404, exactly like one that does
not exist."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import hashlib
import json
import re
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.errors import short_repr
from suanli.service import metering
from suanli.service.auth import default_max_wait_h
from suanli.service.controller import Controller
from suanli.service.lifecycle import model_job, move
from suanli.service.models import Job as JobRow
from suanli.service.models import RunOutput, Tenant, Transition
from suanli.service.routes.deps import (
    DB,
    Ctl,
    Who,
    done,
    job_out,
    outputs_of,
    suspended_ids,
    tenant_only,
    usage_sums,
    visible,
)
from suanli.service.schemas import (
    ACTIVE,
    IDEMPOTENCY_KEY,
    STATES,
    BatchIn,
    BatchOut,
    CursorQuery,
    JobIdPath,
    JobIn,
    JobList,
    JobLogs,
    JobOut,
    UsageOut,
)
from suanli.service.schemas import Transition as TransitionOut

router = APIRouter(tags=["jobs"])
_KEY = re.compile(IDEMPOTENCY_KEY)


def check_refs(c: Controller, body: JobIn) -> None:
    net = c.network
    if body.origin not in net.cities:
        raise HTTPException(422, f"origin: unknown city {body.origin!r} (cities: {', '.join(net.cities)})")
    for g in body.gpu_types or ():
        if g not in net.gpu_types:
            raise HTTPException(422, f"gpu_types: unknown GPU type {g!r} (types: {', '.join(net.gpu_types)})")
    if body.class_ is not None and body.class_ not in net.job_classes:
        raise HTTPException(422, f"class: unknown job class {body.class_!r}")


def body_digest(body: JobIn) -> str:
    """SHA-256 of the job's canonical form (every field, defaults filled in, keys sorted; a batch
    item's `key` left out): two bodies that ask for the same job have the same digest. Kept in the
    job's spec as `body_sha256`, so a reused Idempotency-Key with another body is told apart."""
    data = body.model_dump(mode="json", by_alias=True, exclude={"key"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_key(key: str | None, field: str = "Idempotency-Key") -> None:
    if key is not None and not _KEY.match(key):
        raise HTTPException(422, f"{field}: 1 to 256 printable ASCII characters, no control characters "
                                 f"(got {short_repr(key)})")


def replay(old: JobRow, digest: str, field: str = "Idempotency-Key") -> None:
    """An earlier job under the same key: the same body returns it; another body is refused."""
    was = (old.spec or {}).get("body_sha256")
    if was is not None and was != digest:
        raise HTTPException(422, f"{field}: reused with a different body (key {short_repr(old.idempotency_key)} "
                                 f"is job {old.id})")


def admit(c: Controller, s: Session, tenant: Tenant, bodies: list[JobIn], submit_h: float,
          where: list[str] | None = None) -> list[list[str] | None]:
    """Quota and budget at submit, for all of `bodies` together (a batch is admitted whole or not
    at all); returns each job's GPU types it may use (None: all). `where`: each body's name in an
    error ("jobs.3: ..."), for a batch."""
    net = c.network
    out: list[list[str] | None] = []
    held: dict[str, int] | None = None
    estimate = 0.0
    for i, body in enumerate(bodies):
        at = f"{where[i]}: " if where else ""
        types = body.gpu_types or list(net.gpu_types)
        if tenant.quota:
            if held is None:
                held = {}
                for r in s.scalars(select(JobRow).where(JobRow.tenant_id == tenant.id,
                                                        JobRow.state.in_(("PENDING", *ACTIVE)))):
                    for g in ([r.gpu_type] if r.gpu_type else r.spec.get("gpu_types") or list(net.gpu_types)):
                        held[g] = held.get(g, 0) + r.gpus
            fits = [g for g in types if tenant.quota.get(g, 0) - held.get(g, 0) >= body.gpus]
            if not fits:
                left = ", ".join(f"{g} {max(tenant.quota.get(g, 0) - held.get(g, 0), 0)}" for g in types)
                raise HTTPException(403, f"{at}quota: {body.gpus} GPUs do not fit the tenant's quota "
                                         f"(GPUs left: {left})")
            types = fits
            for g in fits:                   # as a PENDING job is counted: against each type it may use
                held[g] = held.get(g, 0) + body.gpus
        if tenant.budget_cny is not None:
            prices = [p.cny_per_gpu_h * body.work_h / net.gpu_types[g].speed
                      for site in net.sites.values() for g, p in site.gpus.items() if g in types]
            estimate += body.gpus * min(prices, default=0.0)
        out.append(types if (tenant.quota or body.gpu_types) else None)
    if tenant.budget_cny is not None:
        month = c.wall(submit_h).strftime("%Y-%m")
        spent = metering.spent(s, tenant.id, month)
        if spent + estimate > tenant.budget_cny + 1e-9:
            what = "this job's" if len(bodies) == 1 else f"these {len(bodies)} jobs'"
            raise HTTPException(403, f"budget: {spent:,.2f} CNY spent in {month} + {what} rental of at "
                                     f"least {estimate:,.2f} CNY > budget {tenant.budget_cny:,.2f} CNY")
    return out


def new_row(s: Session, tenant: Tenant, body: JobIn, types: list[str] | None, now: float, key: str | None,
            digest: str) -> JobRow:
    spec = body.model_dump(by_alias=True, exclude={"name", "command", "gpus", "key"})
    spec["gpu_types"] = types
    if body.deadline_h is not None:
        spec["deadline_h"] = now + body.deadline_h
    spec["body_sha256"] = digest
    if body.max_wait_h is None:         # none asked: the tenant's default, else 0 (start as soon as it can)
        spec["max_wait_h"] = default_max_wait_h(s, tenant.id)
    row = JobRow(tenant_id=tenant.id, name=body.name, command=body.command, spec=spec, gpus=body.gpus,
                 state="PENDING", reason="submitted", submit_h=now, remaining_work=body.work_h, hosted=[],
                 fence=0, idempotency_key=key)
    s.add(row)
    return row


def new_out(row: JobRow, tr: Transition, tenant_name: str) -> JobOut:
    """A job just created: no usage, one transition, its tenant's name known (no query at all)."""
    return JobOut(id=row.id, name=row.name, tenant=tenant_name, state=row.state, reason=row.reason,
                  command=row.command, gpus=row.gpus, spec=row.spec, submit_h=row.submit_h, site=None,
                  gpu_type=None, start_h=None, end_h=None, explanation=None, usage=UsageOut(),
                  transitions=[TransitionOut(from_state=None, to_state="PENDING", at=tr.at, at_h=tr.at_h,
                                             reason=tr.reason)], created_at=row.created_at)


def writer(c: Controller):
    """On SQLite, one writing submit transaction at a time in this process (the group committer's
    lock): the write lock is taken in turn here, instead of by SQLite's busy handler, which sleeps
    up to 100 ms between tries. PostgreSQL: no lock."""
    return _GROUP.lock if c.sessions.kw["bind"].dialect.name == "sqlite" else nullcontext()


@dataclass(eq=False)
class _Pending:
    """One submit waiting for a group commit."""
    tenant_id: int
    tenant_name: str
    body: JobIn
    key: str | None
    digest: str
    status: int = 0                     # 201 created, 200 an earlier job of the same key
    out: JobOut | None = None
    error: BaseException | None = None


class GroupCommit:
    """Submits committed together: each handler thread appends its job to `pending` and takes
    `lock`; the thread that holds it creates every job pending then (its own and those that
    arrived meanwhile) in one transaction, and the others find theirs done when they get the lock.
    Under load a commit carries tens of jobs; alone, each carries its own. Every job is still
    checked on its own (quota, budget, key): one refused job does not refuse the others."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._mu = threading.Lock()
        self.pending: list[_Pending] = []

    def run(self, c: Controller, item: _Pending) -> _Pending:
        with self._mu:
            self.pending.append(item)
        with self.lock:
            if item.status == 0 and item.error is None:
                with self._mu:
                    group, self.pending = self.pending, []
                if group:
                    self._commit(c, group)
        return item

    def _commit(self, c: Controller, group: list[_Pending]) -> None:
        try:
            with c.sessions() as s:
                try:
                    self._create(c, s, group)
                except IntegrityError:      # a key taken meanwhile (another replica): one by one
                    s.rollback()
                    if len(group) == 1:
                        raise
                    for it in group:
                        it.status, it.out, it.error = 0, None, None
                        self._commit(c, [it])
        except BaseException as e:         # the database away, a bug: every job of the group hears of it
            for it in group:
                if it.status == 0 and it.error is None:
                    it.error = e
            if not isinstance(e, Exception):
                raise

    def _create(self, c: Controller, s: Session, group: list[_Pending]) -> None:
        keys = sorted({it.key for it in group if it.key is not None})
        olds: dict[tuple[int, str], JobRow] = {}
        if keys:
            q = select(JobRow).where(JobRow.tenant_id.in_({it.tenant_id for it in group}),
                                     JobRow.idempotency_key.in_(keys))
            olds = {(r.tenant_id, r.idempotency_key): r for r in s.scalars(q)}
        made: list[tuple[_Pending, JobRow]] = []
        again: list[tuple[_Pending, JobRow]] = []
        firsts: dict[tuple[int, str], JobRow] = {}
        for it in group:
            k = (it.tenant_id, it.key) if it.key is not None else None
            try:
                if k is not None and k in olds:
                    replay(olds[k], it.digest)
                    it.status, it.out = 200, job_out(c, s, olds[k])
                    continue
                if k is not None and k in firsts:        # the same key twice in this group
                    again.append((it, firsts[k]))
                    continue
                tenant = s.get(Tenant, it.tenant_id)
                now = c.now_h()
                [types] = admit(c, s, tenant, [it.body], now)
            except HTTPException as e:
                it.error = e
                continue
            row = new_row(s, tenant, it.body, types, now, it.key, it.digest)
            made.append((it, row))
            if k is not None:
                firsts[k] = row
        if not made and not again:
            s.rollback()
            return
        s.flush()
        trs = [Transition(job_id=row.id, from_state=None, to_state="PENDING", at_h=row.submit_h,
                          reason="submitted") for _, row in made]
        s.add_all(trs)
        s.commit()
        for (it, row), tr in zip(made, trs, strict=True):
            it.status, it.out = 201, new_out(row, tr, it.tenant_name)
        for it, row in again:
            try:
                replay(row, it.digest)
                it.status, it.out = 200, job_out(c, s, row)
            except HTTPException as e:
                it.error = e
        s.rollback()


_GROUP = GroupCommit()


def _by_key(s: Session, tenant_id: int, keys: list[str]) -> dict[str, JobRow]:
    if not keys:
        return {}
    q = select(JobRow).where(JobRow.tenant_id == tenant_id, JobRow.idempotency_key.in_(keys))
    return {r.idempotency_key: r for r in s.scalars(q)}


@router.post("/v1/jobs", status_code=201, response_model=JobOut)
def submit(body: JobIn, p: Who, s: DB, c: Ctl,
           idempotency_key: Annotated[str | None, Header(max_length=256)] = None) -> Any:
    """Submit a job. With an `Idempotency-Key`, a retry with the same body returns the first job
    (200); the same key with a different body is refused (422)."""
    tenant_only(p)
    check_key(idempotency_key)
    check_refs(c, body)
    item = _GROUP.run(c, _Pending(p.tenant_id, p.tenant_name, body, idempotency_key, body_digest(body)))
    if item.error is not None:
        raise item.error
    # the answer as it is: JobOut already, so no second validation by FastAPI (in another thread)
    return Response(item.out.model_dump_json(), status_code=item.status, media_type="application/json")


@router.post("/v1/jobs/batch", status_code=201, response_model=BatchOut)
def submit_batch(body: BatchIn, p: Who, s: DB, c: Ctl) -> Any:
    """Submit up to 1,000 jobs at once, all or none: every job is checked (fields, references,
    keys) and the quota and budget are checked for the whole batch before any is created; one
    refusal refuses the batch, naming the job (`jobs.3.origin: ...`). A job whose `key` an earlier
    job of the tenant has is not created again: with the same body the earlier job is returned in
    its place (not counted in `created`), with another body the batch is refused (422). 201 when
    any job was created, else 200."""
    tenant_only(p)
    seen: dict[str, int] = {}
    for i, item in enumerate(body.jobs):
        try:
            check_refs(c, item)
        except HTTPException as e:
            raise HTTPException(e.status_code, f"jobs.{i}.{e.detail}") from None
        if item.key is not None:
            if item.key in seen:
                raise HTTPException(422, f"jobs.{i}.key: the same key as jobs.{seen[item.key]} "
                                         f"(got {short_repr(item.key)})")
            seen[item.key] = i
    digests = [body_digest(item) for item in body.jobs]
    with writer(c):
        olds = _by_key(s, p.tenant_id, list(seen))
        fresh = []
        for i, item in enumerate(body.jobs):
            old = olds.get(item.key) if item.key is not None else None
            if old is not None:
                replay(old, digests[i], field=f"jobs.{i}.key")
            else:
                fresh.append(i)
        tenant = s.get(Tenant, p.tenant_id)
        now = c.now_h()
        types = admit(c, s, tenant, [body.jobs[i] for i in fresh], now, where=[f"jobs.{i}" for i in fresh])
        rows = {i: new_row(s, tenant, body.jobs[i], t, now, body.jobs[i].key, digests[i])
                for i, t in zip(fresh, types, strict=True)}
        try:
            s.flush()
            trs = {i: Transition(job_id=r.id, from_state=None, to_state="PENDING", at_h=now, reason="submitted")
                   for i, r in rows.items()}
            s.add_all(trs.values())
            s.commit()
        except IntegrityError:              # a key taken meanwhile (by another replica): retry
            s.rollback()
            raise HTTPException(409, "jobs: a key of this batch was used by a submit at the same moment; "
                                     "send the batch again") from None
        outs = [new_out(rows[i], trs[i], tenant.name) if i in rows else job_out(c, s, olds[body.jobs[i].key])
                for i in range(len(body.jobs))]
        out = done(s, BatchOut(jobs=outs, created=len(rows)))
    return out if rows else JSONResponse(status_code=200, content=out.model_dump(mode="json"))


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
    waits = suspended_ids(s, rows)
    return done(s, JobList(jobs=[job_out(c, s, r, transitions=False, usage=used[r.id], suspended=r.id in waits)
                                 for r in rows],
                           next_cursor=rows[-1].id if more else None))


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: JobIdPath, p: Who, s: DB, c: Ctl):
    return done(s, job_out(c, s, visible(s, p, job_id)))


@router.get("/v1/jobs/{job_id}/logs", response_model=JobLogs)
def get_logs(job_id: JobIdPath, p: Who, s: DB,
             fence: Annotated[int | None, Query(ge=1, le=2**31 - 1,
                                                description="the run (dispatch fence); default the last one")] = None):
    """A run's output, as its site's agent uploaded it when the run ended: the file's last MiB. The
    job's owner (or an admin) only: another tenant's job answers 404, like one that does not exist."""
    row = visible(s, p, job_id)
    runs = outputs_of(s, row.id)
    if fence is None and runs:
        fence = runs[-1].fence
    if fence is not None and not any(r.fence == fence for r in runs):
        raise HTTPException(404, f"job {job_id} has no output of run {fence}")
    if fence is None:
        return done(s, JobLogs(job_id=row.id, fence=None, runs=[]))
    tail = s.scalar(select(RunOutput.tail).where(RunOutput.job_id == row.id, RunOutput.fence == fence)) or b""
    run = next(r for r in runs if r.fence == fence)
    return done(s, JobLogs(job_id=row.id, fence=fence, runs=runs, truncated=run.size_bytes > len(tail),
                           text=tail.decode("utf-8", errors="replace")))


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
