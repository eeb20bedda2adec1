"""The site agents' protocol: heartbeat (register; the reply lists runs to stop), claim the due
assignments (each under a new fence), report a run's start and end, and store or fetch a job's
checkpoint. Every call carries the site's token and, for a job, the dispatch's fence: a stale
fence answers 409, so a job runs under one dispatch at a time."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service import demand, metering
from suanli.service.checkpoints import OverQuota, StoreFull, TooLarge, move_price
from suanli.service.controller import Controller
from suanli.service.lifecycle import model_job, move
from suanli.service.models import Job as JobRow
from suanli.service.models import RunOutput, SiteAgent, Transition, Usage, utcnow
from suanli.service.routes.deps import DB, Ctl, Who, done, job_out, site_only
from suanli.service.schemas import (
    MAX_GPU_KW,
    OUTPUT_TAIL_BYTES,
    Assignment,
    Heartbeat,
    HeartbeatReply,
    JobIdPath,
    JobOut,
    Report,
    RunEnergy,
    RunEnergyOut,
    RunningRef,
    RunOutputOut,
)

router = APIRouter(tags=["agent"])
log = logging.getLogger("suanli.api")

# What an agent reports is bounded by what can be true (a site's token could otherwise bill any
# GPU-hours to any job on its site, or date a checkpoint 9999-12-31 and have it credit all of a
# job's work at its next preemption). The slack covers clocks that disagree a little.
CLOCK_SKEW_S = 10.0          # agent and controller clocks may differ by this much
GPU_SECONDS_SLACK = 0.01     # and a run's wall time measured on the agent by this fraction


def dispatch_h(s: Session, row: JobRow) -> float:
    """When the job's current dispatch was claimed (its last move to TRANSFERRING), controller hours."""
    at = s.scalar(select(Transition.at_h).where(Transition.job_id == row.id, Transition.to_state == "TRANSFERRING")
                  .order_by(Transition.id.desc()).limit(1))
    return at if at is not None else (row.start_h if row.start_h is not None else row.submit_h)


def implausible(site: str, row: JobRow, fence: int, what: str, value, bound: str) -> HTTPException:
    """A 422 (one line), logged at WARNING with the site, job, fence and value."""
    log.warning("implausible report refused: site %s, job %s, fence %s: %s %s (%s)", site, row.id, fence, what,
                value, bound)
    return HTTPException(422, f"{what}: {value} is not possible ({bound})")


def max_gpu_seconds(row: JobRow, since_h: float, now_h: float) -> float:
    wall_s = max(0.0, (now_h - since_h) * 3600.0)
    return row.gpus * (wall_s * (1 + GPU_SECONDS_SLACK) + CLOCK_SKEW_S)


async def arrival() -> datetime:
    """When a request reached the service: evaluated on the event loop, before it waits for a
    thread or for the controller's lock."""
    return utcnow()


Arrived = Annotated[datetime, Depends(arrival)]


def alive(c: Controller, s: Session, site: str, received: datetime) -> None:
    """Any authenticated call of a site's agent shows the site alive (Controller.saw); stored
    too, for the other replicas (call under the controller's lock)."""
    c.saw(site, received)
    a = s.get(SiteAgent, site)
    if a is not None:
        seen = a.last_seen_at if a.last_seen_at.tzinfo else a.last_seen_at.replace(tzinfo=UTC)
        if received > seen:
            a.last_seen_at = received


@router.post("/v1/agent/{site}/heartbeat", response_model=HeartbeatReply)
def heartbeat(received: Arrived, site: str, body: Heartbeat, p: Who, s: DB, c: Ctl):
    """Register (first call) and heartbeat; the reply lists runs the agent must stop."""
    site_only(p, site)
    if site not in c.network.sites:
        raise HTTPException(404, f"site: no site {site!r} in the network")
    c.saw(site, received)
    with c.lock:          # first: the tick takes it before the database (SQLite: one writer)
        a = s.get(SiteAgent, site)
        info = {"executor": body.executor, "instance": body.instance, "pools": [x.model_dump() for x in body.pools]}
        before = (a.info or {}).get("instance") if a is not None else None
        if a is None:
            a = SiteAgent(site=site, info=info)
            s.add(a)
        else:
            a.last_seen_at = utcnow()
        cancel = []
        energy: dict[str, list] = {}        # job id -> [fence, its GPUs' mean kW so far]: metering.live_energy
        for ref in sorted(body.running, key=lambda r: r.job_id):      # one lock order: no deadlock
            row = s.get(JobRow, ref.job_id, with_for_update=True)
            if (row is None or row.site != site or row.fence != ref.fence
                    or row.state not in ("TRANSFERRING", "RUNNING")):
                cancel.append(RunningRef(job_id=ref.job_id, fence=ref.fence))
            elif ref.gpu_kw is not None and row.state == "RUNNING":
                if ref.gpu_kw <= row.gpus * MAX_GPU_KW:      # else left out: the run weighs its rating
                    energy[str(row.id)] = [row.fence, ref.gpu_kw]
                else:
                    log.warning("implausible power in a heartbeat ignored: site %s, job %s, fence %s: gpu_kw %s "
                                "over %d GPUs x %g kW", site, row.id, ref.fence, ref.gpu_kw, row.gpus, MAX_GPU_KW)
        a.info = {**info, "energy": energy} if energy else info
        # the dispatched jobs the agent does not hold are lost (Controller.lost_runs)
        restarted = before is not None and body.instance is not None and before != body.instance
        c.lost_runs(s, site, {(r.job_id, r.fence) for r in body.running}, restarted, received)
        s.commit()
    return HeartbeatReply(site=site, now_h=c.now_h(), cancel=cancel)


@router.post("/v1/agent/{site}/assignments", response_model=list[Assignment])
def assignments(received: Arrived, site: str, p: Who, s: DB, c: Ctl,
                limit: Annotated[int, Query(ge=1, le=100)] = 20):
    """Claim the placements on `site` that are due: each becomes TRANSFERRING under a new fence."""
    site_only(p, site)
    c.saw(site, received)
    out = []
    with c.lock:
        alive(c, s, site, received)
        if demand.holding(s, site):      # over its grid cap: no new start until it is under (demand.py)
            s.commit()
            return out
        now = c.now_h()          # after the lock: never before the tick that placed it
        q = (select(JobRow).where(JobRow.site == site, JobRow.state == "PLACED", JobRow.start_h <= now + 1e-6)
             .order_by(JobRow.start_h, JobRow.id).limit(limit))
        if s.bind.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        rows = s.scalars(q).all()
        room = demand.headroom(c, s, site) if rows else None
        if room is not None:             # under a cap: only what fits under it by the meter (demand.py)
            fits = []
            for row in rows:
                kw = demand.run_kw(c, row)
                if kw <= room:
                    fits.append(row)
                    room -= kw
            rows = fits
        suspects = c.suspects(s, [r.id for r in rows])
        for row in rows:
            if row.id in suspects and out:
                break                     # a job lost with an agent restart is claimed alone
            row.fence += 1
            why = f"dispatched to the agent of {site} (fence {row.fence})"
            resume = row.checkpoint_site is not None and c.store.has(row.id)
            if resume:
                hours, cny = move_price(c.network, row.checkpoint_site, site, row.checkpoint_bytes or 0)
                row.move_cny += cny
                why += (f"; resumes from the checkpoint of {row.checkpoint_h:.4f} h made on "
                        f"{row.checkpoint_site} ({row.checkpoint_bytes:,} bytes"
                        + (f", moved in {hours * 3600:.3f} s for {cny:.6f} CNY)" if row.checkpoint_site != site
                           else ")"))
            move(s, row, "TRANSFERRING", now, why)
            out.append(Assignment(job_id=row.id, fence=row.fence, tenant_id=row.tenant_id, name=row.name,
                                  command=row.command,
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

@router.put("/v1/agent/{site}/jobs/{job_id}/checkpoint", response_model=JobOut,
         openapi_extra={"requestBody": {"required": True,
                                        "content": {"application/gzip": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}}})
async def put_checkpoint(site: str, job_id: JobIdPath, request: Request, p: Who, c: Ctl,
                         fence: Annotated[int, Query(ge=1, le=2**31 - 1, description="the dispatch's fence")],
                         at: Annotated[datetime, Query(description="when the checkpoint was made (its newest "
                                                                   "file)")]):
    """Store the job's newest checkpoint (its SUANLI_CHECKPOINT_DIR as a gzipped tar): what a
    re-placed job resumes from, on whichever site (service/checkpoints.py)."""
    site_only(p, site)
    c.saw(site, utcnow())
    at_h = c.hours(at)

    def check() -> tuple[int | None, bool]:
        """(the bytes the tenant's quota leaves for it, whether it is the stored checkpoint again)"""
        with c.sessions() as s:
            row = dispatched_here(s, site, job_id, fence)
            return c.store.quota_left(s, row.tenant_id, job_id), plausible_at(c, s, site, row, fence, at, at_h)
    # refuse before reading a byte of a stale, implausible or over-quota upload
    quota_left, again = await run_in_threadpool(check)
    if again:
        return await run_in_threadpool(lambda: unchanged(c, site, job_id, fence))
    if quota_left is not None and quota_left <= 0:
        raise _full(f"checkpoint: the tenant's checkpoint quota ({c.store.quota_bytes:,} bytes) is used up; "
                    "upload refused")
    try:
        tmp, size = await c.store.receive(job_id, request.stream(), request.app.state.limits.max_upload_bytes,
                                          quota_left)
    except TooLarge as e:
        raise HTTPException(413, str(e)) from None
    except (OverQuota, StoreFull) as e:
        log.warning("checkpoint of job %s from site %s refused: %s", job_id, site, e.strerror
                    if isinstance(e, StoreFull) else e)
        raise _full(e.strerror if isinstance(e, StoreFull) else str(e)) from None

    def record() -> JobOut:
        with c.lock, c.sessions() as s:
            try:
                row = dispatched_here(s, site, job_id, fence, lock=True)
                left = c.store.quota_left(s, row.tenant_id, job_id)     # again: uploads of its other jobs
                if left is not None and size > left:                   # may have been stored meanwhile
                    raise _full(f"checkpoint: the tenant's checkpoint quota ({c.store.quota_bytes:,} bytes) "
                                f"leaves {max(left, 0):,} bytes for this job; upload refused")
            except HTTPException:
                c.store.discard(tmp)   # re-dispatched while uploading: not the job's checkpoint
                raise
            c.store.commit(job_id, tmp)
            row.checkpoint_h = at_h
            row.checkpoint_bytes = size
            row.checkpoint_site = site
            s.commit()
            return job_out(c, s, row)
    return await run_in_threadpool(record)


def _full(why: str) -> HTTPException:
    """The store cannot take it now (the tenant's quota, or the disk): 507, which an agent waits out."""
    return HTTPException(507, why, headers={"Retry-After": "60"})


def plausible_at(c: Controller, s: Session, site: str, row: JobRow, fence: int, at: datetime, at_h: float) -> bool:
    """A checkpoint's time is between its run's dispatch and now (with CLOCK_SKEW_S either side).
    Later than now, or earlier than the job's submission: 422. Between the two: a checkpoint of an
    earlier run of the job, left in its directory: True if it is the stored one (the checkpoint the
    run resumed from, sent back: its files keep their times, to the second, through tar), which
    changes nothing; else 409, as for any upload that is not this run's (an agent drops it)."""
    skew_h = CLOCK_SKEW_S / 3600.0
    if at_h > c.now_h() + skew_h:
        raise implausible(site, row, fence, "at", at.isoformat(), f"later than now, {datetime.now(UTC).isoformat()}")
    if at_h < row.submit_h - skew_h:
        raise implausible(site, row, fence, "at", at.isoformat(),
                          f"earlier than the job's submission, {c.wall(row.submit_h).isoformat()}")
    since = dispatch_h(s, row)
    if at_h < since - skew_h:
        if row.checkpoint_h is not None and row.checkpoint_site is not None and at_h <= row.checkpoint_h + 1 / 3600:
            return True
        log.warning("stale checkpoint refused: site %s, job %s, fence %s: at %s, before the run's dispatch at %s",
                    site, row.id, fence, at.isoformat(), c.wall(since).isoformat())
        raise HTTPException(409, f"at: {at.isoformat()} is earlier than this run's dispatch, "
                                 f"{c.wall(since).isoformat()}: a checkpoint of an earlier run, not stored")
    return False


def unchanged(c: Controller, site: str, job_id: int, fence: int) -> JobOut:
    with c.sessions() as s:
        return done(s, job_out(c, s, dispatched_here(s, site, job_id, fence)))


@router.get("/v1/agent/{site}/jobs/{job_id}/checkpoint",
         responses={200: {"content": {"application/gzip": {}}}})
def get_checkpoint(site: str, job_id: JobIdPath, p: Who, s: DB, c: Ctl,
                   fence: Annotated[int, Query(ge=1, le=2**31 - 1, description="the dispatch's fence")]):
    """The job's stored checkpoint, for the site it is dispatched to now."""
    site_only(p, site)
    dispatched_here(s, site, job_id, fence)
    if not c.store.has(job_id):
        raise HTTPException(404, f"job {job_id} has no stored checkpoint")
    return FileResponse(c.store.path(job_id), media_type="application/gzip")

@router.post("/v1/agent/{site}/jobs/{job_id}/report", response_model=JobOut)
def report(received: Arrived, site: str, job_id: JobIdPath, body: Report, p: Who, s: DB, c: Ctl):
    site_only(p, site)
    c.saw(site, received)
    with c.lock:
        alive(c, s, site, received)
        row = fenced(s, site, job_id, body.fence, lock=True)
        now = c.now_h()
        if body.output_path:
            output_row(s, row, site, body.fence).path = body.output_path
        if row.state == "CANCELLED":
            s.commit()
            return done(s, job_out(c, s, row))   # the kill the agent confirms: metered at cancel
        if body.state == "RUNNING":
            if row.state == "RUNNING":
                return done(s, job_out(c, s, row))      # said again (an agent that restarted and adopted it)
            if row.state != "TRANSFERRING":
                raise HTTPException(409, f"job {job_id} is {row.state}, not TRANSFERRING")
            if row.pieces:          # a piece of a plan: it stops when its hours end, however late it started
                row.start_h = now
            else:
                dur = row.end_h - row.start_h
                row.start_h, row.end_h = now, now + dur
            move(s, row, "RUNNING", now, body.reason or "process started")
        elif body.state in ("SUCCEEDED", "FAILED"):
            if row.state not in ("TRANSFERRING", "RUNNING"):
                raise HTTPException(409, f"job {job_id} is {row.state}, not running")
            if body.gpu_seconds is not None:        # no more than its GPUs for as long as it was dispatched
                since = dispatch_h(s, row)
                bound = max_gpu_seconds(row, since, now)
                if body.gpu_seconds > bound:
                    s.rollback()
                    raise implausible(site, row, body.fence, "gpu_seconds", body.gpu_seconds,
                                      f"{row.gpus} GPUs for {(now - since) * 3600:,.1f} s since the dispatch "
                                      f"allow at most {bound:,.1f}")
            if body.gpu_kwh is not None:            # no more than its GPUs at MAX_GPU_KW each, likewise
                bound = max_gpu_seconds(row, dispatch_h(s, row), now) * MAX_GPU_KW / 3600.0
                if body.gpu_kwh > bound:
                    s.rollback()
                    raise implausible(site, row, body.fence, "gpu_kwh", body.gpu_kwh,
                                      f"{row.gpus} GPUs of at most {MAX_GPU_KW:g} kW since the dispatch "
                                      f"allow at most {bound:,.6f} kWh")
            if row.state == "RUNNING":
                metering.meter(s, c.network, c.epoch, row, model_job(row), row.fence, row.start_h, now,
                               body.gpu_seconds, body.gpu_kwh, stopped=False)
            row.end_h = now
            why = body.reason or (f"exit code {body.exit_code}" if body.exit_code is not None else "")
            if body.log_tail:
                why += f"; log ends: {body.log_tail[-1000:]}"
            if body.state == "FAILED":
                row.attempts += 1
                if row.attempts < c.max_attempts:      # offered again, from its checkpoint
                    c.preempt_or_fail(s, row, now, f"attempt {row.attempts} of {c.max_attempts} "
                                              f"failed ({why}); retrying")
                    s.commit()
                    return done(s, job_out(c, s, row))
                if c.max_attempts > 1:
                    why = f"failed {row.attempts} attempts, the last with {why}"
            move(s, row, body.state, now, why)
        else:
            raise HTTPException(409, f"job {job_id}: CANCELLED is reported only for a cancelled job")
        s.commit()
        return done(s, job_out(c, s, row))


@router.post("/v1/agent/{site}/jobs/{job_id}/energy", response_model=RunEnergyOut)
def run_energy(received: Arrived, site: str, job_id: JobIdPath, body: RunEnergy, p: Who, s: DB, c: Ctl):
    """The GPUs' mean power of a run the agent stopped (cancelled, preempted, moved), for the ledger
    row the controller made when it stopped it: its `gpu_kwh` becomes that power times the row's
    length (the agent stops the run a heartbeat or so after the controller ended the row, so its
    own energy would cover more time than the row). It replaces the estimate from the run's last
    heartbeat (metering.meter) while the row is priced from the models; 409 once the meters billed
    it; at most the row's GPUs at MAX_GPU_KW each (422)."""
    site_only(p, site)
    c.saw(site, received)
    with c.lock:
        alive(c, s, site, received)
        row = s.get(JobRow, job_id)
        u = s.scalar(select(Usage).where(Usage.job_id == job_id, Usage.fence == body.fence, Usage.kind == "run",
                                         Usage.site == site).with_for_update())
        if row is None or u is None:
            raise HTTPException(404, f"job {job_id} fence {body.fence}: no run of it on site {site} is on the ledger")
        if u.energy_basis != "modelled":
            raise HTTPException(409, f"job {job_id} fence {body.fence}: already billed from the meters")
        if body.gpu_kw > u.gpus * MAX_GPU_KW:
            raise implausible(site, row, body.fence, "gpu_kw", body.gpu_kw,
                              f"{u.gpus} GPUs of at most {MAX_GPU_KW:g} kW each")
        u.gpu_kwh = body.gpu_kw * max(0.0, u.end_h - u.start_h)
        s.commit()
        return RunEnergyOut(job_id=job_id, fence=body.fence, gpu_kwh=u.gpu_kwh, energy_basis=u.energy_basis)


def output_row(s: Session, row: JobRow, site: str, fence: int) -> RunOutput:
    """The record of run (`row`, `fence`)'s output, made on first use."""
    out = s.scalar(select(RunOutput).where(RunOutput.job_id == row.id, RunOutput.fence == fence))
    if out is None:
        out = RunOutput(job_id=row.id, fence=fence, site=site, path="", size_bytes=0, tail=b"")
        s.add(out)
    return out


@router.put("/v1/agent/{site}/jobs/{job_id}/output", response_model=RunOutputOut,
            openapi_extra={"requestBody": {"required": True,
                                           "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                               "format": "binary"}}}}})
async def put_output(site: str, job_id: JobIdPath, request: Request, p: Who, c: Ctl,
                     fence: Annotated[int, Query(ge=1, le=2**31 - 1, description="the dispatch's fence")],
                     size: Annotated[int, Query(ge=0, le=2**63 - 1, description="the whole output file's bytes")],
                     path: Annotated[str, Query(min_length=1, max_length=4096,
                                                description="the output file on the site")]):
    """The tail of a run's output (its stdout and stderr): at most OUTPUT_TAIL_BYTES, the file's
    last bytes, sent by the agent when the run ends. It replaces the one stored for the run."""
    site_only(p, site)
    c.saw(site, utcnow())

    def check() -> None:
        with c.sessions() as s:
            fenced(s, site, job_id, fence)
    await run_in_threadpool(check)            # a stale or foreign upload is refused before its body is read
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > OUTPUT_TAIL_BYTES:
            raise HTTPException(413, f"output: more than {OUTPUT_TAIL_BYTES:,} bytes; send the file's last "
                                     f"{OUTPUT_TAIL_BYTES:,} only")
    if len(body) > size:
        raise HTTPException(422, f"size: {size} is less than the {len(body)} bytes sent")

    def record() -> RunOutputOut:
        with c.sessions() as s:
            row = fenced(s, site, job_id, fence)
            out = output_row(s, row, site, fence)
            out.path, out.size_bytes, out.tail, out.uploaded_at = path, size, bytes(body), utcnow()
            s.commit()
            return RunOutputOut(fence=fence, site=site, path=path, size_bytes=size, kept_bytes=len(body),
                                uploaded_at=out.uploaded_at)
    return await run_in_threadpool(record)
