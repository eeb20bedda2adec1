"""The live controller: the simulator's loop on a wall clock (ARCHITECTURE.md principle 1).

Clock: controller hours = hours since the service epoch (`db.epoch`: the first time this
database was served), which stands for the network's hour 0: slot t of every series of the
network file is the hour [epoch + t h, epoch + t + 1 h).

Each tick (every `tick_s` seconds):
1. sites whose agent has not heartbeat within `heartbeat_timeout_s` (default: `missed_heartbeats`
   × `heartbeat_interval_s`, 3 × 1 s) are down: their running jobs are PREEMPTED and go back to
   PENDING keeping their checkpointed work (up to the last checkpoint file the agent reported
   during this run, else the job's `checkpoint_h` rule as in the simulator) and remembering the
   site (the policy prefers its `backup`); placements not yet dispatched there are void
   (PLACED → PENDING). A drained site (`suanli admin drain`) takes no new placement and loses
   its undispatched ones; its running jobs finish;
2. the ledger (the scheduler's own `Ledger`: calendars and site load) is brought in line with
   the database: active jobs hold their planned or actual run, finished runs their metered
   segment;
3. every PENDING job is offered to the policy (`suanli.scheduling.policies.make(name)`)
   through a `StateView`, exactly as the simulator offers it; `Place` → PLACED (the GPUs are
   checked free in the ledger first), `Defer` → stays PENDING with the reason, `Reject` →
   FAILED with the reason. Each decision's explanation is stored with the job.
Agents pull due placements (PLACED → TRANSFERRING, a new fence per dispatch) and report
RUNNING, SUCCEEDED or FAILED; reports with an old fence are refused, so a job runs under one
dispatch at a time.

On PostgreSQL one replica at a time runs the loop: the holder of advisory lock `LOCK_ID`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from suanli.model.scenario import Scenario
from suanli.model.schedule import kept_work
from suanli.scheduling import policies
from suanli.scheduling.ledger import Ledger
from suanli.scheduling.state import Defer, Explanation, PendingJob, Place, Reject, Scored, StateView
from suanli.service.lifecycle import model_job, move
from suanli.service.models import Job as JobRow
from suanli.service.models import Meta, SiteAgent, Tenant, Usage
from suanli.service.schemas import ACTIVE

log = logging.getLogger("suanli.controller")
LOCK_ID = 0x5A4E4C49          # "ZNLI": the scheduling loop's advisory lock on PostgreSQL
DRAIN = "drain:"              # Meta keys of drained sites: "drain:<site>"


def drained_sites(s: Session) -> set[str]:
    return {k[len(DRAIN):] for k in s.scalars(select(Meta.key).where(Meta.key.like(DRAIN + "%")))}


def set_drain(s: Session, site: str, on: bool = True) -> None:
    """Drain a site (no new placements; its running jobs finish) or undo it."""
    row = s.get(Meta, DRAIN + site)
    if on and row is None:
        s.add(Meta(key=DRAIN + site, value=datetime.now(UTC).isoformat()))
    elif not on and row is not None:
        s.delete(row)


def _scored(c: Scored | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"site": c.site, "gpu_type": c.gpu_type, "start_h": c.start_h, "end_h": c.end_h,
            "parts": dict(c.parts), "total": c.total}


def explanation_json(kind: str, reason: str, e: Explanation | None) -> dict[str, Any]:
    out: dict[str, Any] = {"decision": kind, "reason": reason}
    if e is not None:
        out.update(policy=e.policy, at_h=e.now, note=e.note, chosen=_scored(e.chosen),
                   candidates=[_scored(c) for c in e.candidates], rejected=dict(e.rejected))
    return out


class Controller:
    def __init__(self, sessions: sessionmaker[Session], network: Scenario, policy: str, epoch: datetime,
                 tick_s: float = 1.0, heartbeat_timeout_s: float | None = None, heartbeat_interval_s: float = 1.0,
                 missed_heartbeats: int = 3):
        self.sessions = sessions
        self.network = network
        self.public = replace(network, events=[])       # what a policy may read
        self.policy_name = policy
        self.policy = policies.make(policy)
        self.epoch = epoch
        self.tick_s = tick_s
        self.heartbeat_timeout_s = heartbeat_timeout_s or missed_heartbeats * heartbeat_interval_s
        self.ledger = Ledger(self.public)
        self._held: dict[str, tuple[str, str, int, float, float]] = {}   # key -> what the ledger holds
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader_conn = None
        self.ticks = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ clock
    def now_h(self) -> float:
        return (datetime.now(UTC) - self.epoch).total_seconds() / 3600.0

    def wall(self, hours: float) -> datetime:
        return self.epoch + timedelta(hours=hours)

    # ------------------------------------------------------------------ sites
    def up_sites(self, s: Session) -> set[str]:
        limit = datetime.now(UTC) - timedelta(seconds=self.heartbeat_timeout_s)
        out = set()
        for a in s.scalars(select(SiteAgent)):
            seen = a.last_seen_at if a.last_seen_at.tzinfo else a.last_seen_at.replace(tzinfo=UTC)
            if seen >= limit and a.site in self.network.sites:
                out.add(a.site)
        return out

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suanli-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._resign()
        self.sessions.kw["bind"].dispose()

    def _resign(self) -> None:
        """Give up the loop's advisory lock: close the connection that holds it (not back to the pool,
        where the lock would stay held)."""
        if self._leader_conn is not None:
            try:
                self._leader_conn.invalidate()
                self._leader_conn.close()
            finally:
                self._leader_conn = None

    def _leader(self) -> bool:
        """True if this replica runs the loop (always on SQLite; the advisory lock on PostgreSQL)."""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            return True
        if self._leader_conn is None:
            conn = engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_ID}).scalar()
            conn.commit()
            if not got:
                conn.close()
                return False
            self._leader_conn = conn
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._leader():
                    self.tick()
                self.last_error = None
            except Exception as e:                    # keep serving; the error is logged and shown
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("controller tick failed")
                self._resign()
            self._stop.wait(self.tick_s)

    def tick(self) -> None:
        with self.lock, self.sessions.begin() as s:
            now = self.now_h()
            up = self.up_sites(s)
            drained = drained_sites(s)
            self._site_failures(s, now, up, drained)
            s.flush()
            self._sync_ledger(s, now)
            self._schedule(s, now, up - drained)
            self.ticks += 1

    # ------------------------------------------------------------------ steps
    def _site_failures(self, s: Session, now: float, up: set[str], drained: frozenset[str] | set[str] = ()) -> None:
        rows = s.scalars(select(JobRow).where(JobRow.state.in_(ACTIVE), JobRow.site.is_not(None))).all()
        for row in rows:
            if row.site in up and not (row.site in drained and row.state == "PLACED"):
                continue
            if row.state == "PLACED":
                why = "was drained" if row.site in up else "went down"
                move(s, row, "PENDING", now, f"site {row.site} {why} before the job was dispatched")
                row.site = row.gpu_type = row.start_h = row.end_h = None
                continue
            job = model_job(row)
            kept, how = 0.0, ""
            if row.state == "RUNNING" and row.start_h is not None:
                speed = self.network.speed(job, row.gpu_type)
                if row.checkpoint_h is not None and row.checkpoint_h > row.start_h:
                    kept = min((row.checkpoint_h - row.start_h) * speed, row.remaining_work)
                    how = f" (to its checkpoint at {row.checkpoint_h:.4f} h)"
                else:
                    kept = kept_work(now - row.start_h, speed, job.checkpoint_h)
            site = row.site
            move(s, row, "PREEMPTED", now, f"site {site} stopped heartbeating; kept {kept:.4f} h of work{how}")
            row.remaining_work = max(row.remaining_work - kept, 1e-9)
            row.hosted = sorted(set(row.hosted) | {site})
            row.preempted_from = site
            row.fence += 1                              # the old dispatch's reports are refused
            move(s, row, "PENDING", now, "offered again after preemption")
            row.site = row.gpu_type = row.start_h = row.end_h = None

    def _want(self, s: Session, now: float) -> dict[str, tuple[str, str, int, float, float]]:
        want: dict[str, tuple[str, str, int, float, float]] = {}
        for row in s.scalars(select(JobRow).where(JobRow.state.in_(ACTIVE))):
            if row.site is None or row.start_h is None or row.end_h is None:
                continue
            start, end = row.start_h, row.end_h
            if row.state == "PLACED" and start < now:          # not picked up yet: it starts later
                end, start = now + (end - start), now
            elif row.state != "PLACED":
                end = max(end, now + self.tick_s / 3600.0)      # overrunning its plan: still holds the GPUs
            want[f"j{row.id}"] = (row.site, row.gpu_type, row.gpus, start, end)
        for u in s.scalars(select(Usage).where(Usage.end_h > now - 48.0)):   # the metered past (site load)
            want[f"u{u.id}"] = (u.site, u.gpu_type, u.gpus, u.start_h, u.end_h)
        return want

    def _sync_ledger(self, s: Session, now: float) -> None:
        want = self._want(s, now)
        for key in list(self._held):
            if want.get(key) != self._held[key]:
                site, g, gpus, a, b = self._held.pop(key)
                self.ledger.add(site, g, gpus, a, b, sign=-1)
        for key, v in want.items():
            if key not in self._held:
                site, g, gpus, a, b = v
                self.ledger.add(site, g, gpus, a, b)
                self._held[key] = v

    def _schedule(self, s: Session, now: float, up: set[str]) -> None:
        rows = s.scalars(select(JobRow).where(JobRow.state == "PENDING").order_by(JobRow.id)).all()
        if not rows:
            return
        now = max(now, self.now_h())     # after reading them: every job offered was submitted before `now`
        names = dict(s.execute(select(Tenant.id, Tenant.name)).all())
        by_id = {str(r.id): r for r in rows}
        pending = [PendingJob(model_job(r, names.get(r.tenant_id)), r.remaining_work, max(r.submit_h, 0.0),
                              frozenset(r.hosted), from_site=r.preempted_from) for r in rows]
        pending = [replace(p, ready_h=max(p.ready_h, now)) if p.hosted else p for p in pending]
        down = frozenset(set(self.network.sites) - up)
        view = StateView(now=now, scenario=self.public, ledger=self.ledger, down=down)
        for d in self.policy.decide(view, pending):
            row = by_id.get(d.job_id)
            if row is None:
                raise RuntimeError(f"{self.policy_name}: decision for job {d.job_id!r} that was not offered")
            if isinstance(d, Place):
                cal = self.ledger.calendars.get((d.site, d.gpu_type))
                if d.site in down or cal is None or not cal.fits(d.start_h, d.end_h, row.gpus):
                    row.reason = f"placement on {d.site}/{d.gpu_type} no longer fits; offered again"
                    continue
                self.ledger.add(d.site, d.gpu_type, row.gpus, d.start_h, d.end_h)
                self._held[f"j{row.id}"] = (d.site, d.gpu_type, row.gpus, d.start_h, d.end_h)
                row.site, row.gpu_type, row.start_h, row.end_h = d.site, d.gpu_type, d.start_h, d.end_h
                row.preempted_from = None
                row.explanation = explanation_json("place", d.reason, d.explain)
                move(s, row, "PLACED", now, d.reason or f"{self.policy_name}: {d.site}/{d.gpu_type} at "
                     f"{d.start_h:.4f} h")
            elif isinstance(d, Defer):
                row.reason = d.reason
                row.explanation = explanation_json("defer", d.reason, d.explain)
            elif isinstance(d, Reject):
                row.explanation = explanation_json("reject", d.reason, d.explain)
                move(s, row, "FAILED", now, f"rejected: {d.reason}")
