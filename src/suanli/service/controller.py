"""The live controller: the simulator's loop on a wall clock (ARCHITECTURE.md principle 1).

Clock: controller hours = hours since the service epoch (`db.epoch`: the first time this
database was served), which stands for the network's hour 0: slot t of every series of the
network file is the hour [epoch + t h, epoch + t + 1 h).

Each tick (every `tick_s` seconds):
1. sites whose agent has not heartbeat within `heartbeat_timeout_s` (default 30 s; counted from
   this loop's start plus one timeout after a restart) are down. The timeout is long because a
   site declared down while its agent lives runs its jobs twice: on a loaded machine heartbeats
   arrive seconds apart (3 to 8 s were measured on 2 busy cores, where a 3 s timeout ran 40 of
   300 jobs twice); Karmada waits 300 s, MultiKueue 15 min. A down site's running jobs are
   PREEMPTED and go back to PENDING keeping their checkpointed work (up to the checkpoint stored
   with the controller during this run, else the job's `checkpoint_h` rule as in the simulator)
   and remembering the site (the policy prefers its `backup`); placements not yet dispatched
   there are void (PLACED → PENDING). A drained site (`suanli admin drain`) takes no new
   placement and loses its undispatched ones; its running jobs finish. A site that was down
   takes new placements only after `recovery_s` up again (hysteresis: `placeable`);
2. grid caps in force are enforced against the sites' metered import (service/demand.py): a
   site over its cap has checkpointing runs stopped and takes no new start until it is under;
   at the first tick of each hour the forecasts made from the sites' readings are issued
   (energy.nowcast, `live`; the policy's scenario `public` reads them) and the ledger re-reads
   them; the ledger (the scheduler's own `Ledger`: calendars and site load) is brought in line
   with the database: active jobs hold their planned or actual run, finished runs their metered
   segment;
3. every PENDING job is offered to the policy (`suanli.scheduling.policies.make(name)`)
   through a `StateView` (with the grid caps known now: `grid_caps`), exactly as the simulator
   offers it; `Place` → PLACED (the GPUs are
   checked free in the ledger first), `Defer` → stays PENDING with the reason, `Reject` →
   FAILED with the reason. Each decision's explanation is stored with the job. With `preempt`
   (on by default) the policy also sees the RUNNING jobs (`StateView.running_on`) and may stop
   one for a job that would be late (`Preempt`): the run is metered up to now, the job goes
   PREEMPTED → PENDING under a new fence keeping its checkpointed work (as when its site dies,
   so its agent is told to stop it), and the same answer places its rest. With `suspend` (on by
   default; `suanli serve --no-suspend`) the policy may plan a checkpointing job in pieces
   (`StateView.pieces`, `Place.pieces`): the placement is the first piece, the later ones are
   held in the ledger (the job's `pieces`), and at the first piece's end the run is stopped as a
   preemption stops one (`_suspend_due`, before the overrun review), "suspended for price and
   carbon", and its rest offered again, re-planned on the forecasts of then. With the same
   switch the policy may end a checkpointing job's run in a planned stop (`StateView.stops`,
   `Place.stops`; the job's `stops`): at its booking's end a run still going is stopped the
   same way (`_stop_planned`, "stopped at the end of its plan"; never an overrun), and its rest,
   predicted from the work its runs kept (the job's `done_work`), offered at once.
Agents pull due placements (PLACED → TRANSFERRING, a new fence per dispatch) and report
RUNNING, SUCCEEDED or FAILED; reports with an old fence are refused, so a job runs under one
dispatch at a time. A FAILED run is retried (`preempt`) until `max_attempts` runs have failed.

On PostgreSQL one replica at a time runs the loop: the holder of advisory lock `LOCK_ID` (a
session lock on a connection of its own, checked every tick); each tick also takes
`TICK_LOCK_ID` inside its transaction, and the rows it changes are taken `FOR UPDATE SKIP
LOCKED`, so a request on another replica (cancel, an agent's report) never loses an update to
the tick or the tick to it. When the leader dies its connection closes, PostgreSQL frees the
lock, and the next replica to try takes the loop over.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, object_session, sessionmaker

from suanli.energy import nowcast
from suanli.model.scenario import Scenario
from suanli.model.schedule import kept_work
from suanli.model.schema import Event, Job
from suanli.scheduling import policies
from suanli.scheduling.forecast import LiveForecaster
from suanli.scheduling.ledger import Ledger
from suanli.scheduling.state import (
    Defer,
    Explanation,
    PendingJob,
    Place,
    Preempt,
    Reject,
    Running,
    Scored,
    StateView,
)
from suanli.service import bills, demand, metering, meters, overrun
from suanli.service.checkpoints import CheckpointStore
from suanli.service.lifecycle import model_job, move
from suanli.service.models import GridCap, Meta, SiteAgent, Tenant, Transition, Usage, utcnow
from suanli.service.models import Job as JobRow
from suanli.service.schemas import ACTIVE
from suanli.service.telemetry import Telemetry

log = logging.getLogger("suanli.controller")
HEARTBEAT_TIMEOUT_S = 30.0   # a site is down after this long without a heartbeat (`suanli serve --heartbeat-timeout-s`)
MAX_AGENT_LOSSES = 2         # a job lost with this many agent restarts is quarantined (`--max-agent-losses`)
LOST_WITH_RESTART = "restarted and no longer runs it"     # in the reason of each such loss (counted)
SUSPENDED = "suspended for price and carbon"   # the PREEMPTED reason of a run stopped at its piece's end
LOCK_ID = 0x5A4E4C49          # "ZNLI": the scheduling loop's advisory lock on PostgreSQL
TICK_LOCK_ID = LOCK_ID + 1    # held by each tick's own transaction: two ticks never overlap, even
                              # when a leader's lock connection died without it noticing yet
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
    out = {"site": c.site, "gpu_type": c.gpu_type, "start_h": c.start_h, "end_h": c.end_h,
           "parts": dict(c.parts), "total": c.total}
    if c.pieces:                    # a suspend-resume plan: [start_h, end_h) is its first piece
        out["pieces"] = [[a, b] for a, b in c.pieces]
    return out


def explanation_json(kind: str, reason: str, e: Explanation | None) -> dict[str, Any]:
    out: dict[str, Any] = {"decision": kind, "reason": reason}
    if e is not None:
        out.update(policy=e.policy, at_h=e.now, note=e.note, chosen=_scored(e.chosen),
                   candidates=[_scored(c) for c in e.candidates], rejected=dict(e.rejected),
                   weighed=e.weighed, others=[_scored(c) for c in e.others], unscored=dict(e.unscored))
    return out


def _same_deferral(row: JobRow, d: Defer) -> bool:
    """`d` defers `row` again for the reason and with the explanation it has, but for the time
    of the decision: kept as when it was first deferred so (an UPDATE of every waiting job at
    every offer was most of a busy controller's time)."""
    if row.reason != d.reason or not isinstance(row.explanation, dict):
        return False
    new = explanation_json("defer", d.reason, d.explain)
    return {**new, "at_h": None} == {**row.explanation, "at_h": None}


class Controller:
    def __init__(self, sessions: sessionmaker[Session], network: Scenario, policy: str, epoch: datetime,
                 tick_s: float = 1.0, heartbeat_timeout_s: float | None = None,
                 store: CheckpointStore | None = None, max_attempts: int = 3,
                 recovery_s: float | None = None, preempt: bool = True, max_agent_losses: int = MAX_AGENT_LOSSES,
                 suspend: bool = True):
        self.sessions = sessions
        self.preemption = preempt               # the policy may stop a running job (`Preempt`)
        self.suspend = suspend                  # follow suspend-resume plans (`StateView.pieces`)
        self.store = store
        self.max_attempts = max_attempts        # a job whose runs fail this many times is FAILED
        self.network = network
        # what a policy may read: no events, and each site's renewables and carbon as the forecasts
        # issued this hour from its readings (`live`, energy.nowcast; the model where it has none)
        self.live = LiveForecaster(network)
        self.public = self.live.view_scenario(replace(network, events=[]))
        self.site_models = {sid: nowcast.site_models(network, sid, start=epoch) for sid in network.sites}
        self._prepared: tuple[int, list[nowcast.SiteForecast]] | None = None   # next issue, made outside the lock
        self._bad_forecast: dict[str, str] = {}   # site -> the error its last nowcast raised (logged once)
        self.policy_name = policy
        self.policy = policies.make(policy)
        if suspend and getattr(self.policy, "suspend", False) is None:
            # suanli weighs plans in pieces only where its uncertainty features are on (a network's
            # `forecast:` block), so that simulated scenarios keep their schedules; the live
            # controller always plans on forecasts (the nowcasts), and follows the plans it gets
            self.policy.suspend = True
        self.epoch = epoch
        self.tick_s = tick_s
        self.heartbeat_timeout_s = HEARTBEAT_TIMEOUT_S if heartbeat_timeout_s is None else heartbeat_timeout_s
        self.max_agent_losses = max_agent_losses    # a job lost with this many agent restarts: FAILED
        # hysteresis: a site that was down takes new placements only once up this long again
        self.recovery_s = self.heartbeat_timeout_s if recovery_s is None else recovery_s
        self._was_up: set[str] = set()
        self._flapped: set[str] = set()          # went down after being up, not yet steady again
        self._steady_from: dict[str, float] = {}
        self.ledger = Ledger(self.public)
        self._held: dict[str, tuple[str, str, int, float, float]] = {}   # key -> what the ledger holds
        self._unholdable: set[str] = set()      # metered runs the ledger could not hold (logged once)
        self._ledger_stale = False              # build the ledger again at the next tick (`fail`)
        self._bad_caps: set[int] = set()        # operator grid caps that are not valid events (logged once)
        self._tenants: dict[int, str | None] = {}   # tenant names, for the log
        self._seen: dict[str, datetime] = {}    # site -> when its agent's newest call reached this replica
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader_conn = None
        self.ticks = 0
        self.started_at = datetime.now(UTC)
        self.leading = False          # runs the scheduling loop now (shown by /v1/health)
        self.last_error: str | None = None
        self.job_errors = 0           # jobs FAILED because the controller could not handle them (`fail`)
        # Incremental offers (`_schedule`): the pending jobs the policy last answered in a world
        # that has not changed since are not offered again at every tick, only new ones; all of
        # them are, when the world changes or every `full_offer_s` (time alone moves deadlines).
        self.full_offer_s = max(10.0 * tick_s, 5.0)
        self._world: tuple | None = None
        self._answered: set[int] = set()
        self._full_at = -math.inf
        self.full_offers = 0
        # GPUs that came free before their plan said (a run ended early, was cancelled or failed):
        # placements not yet due are offered again at the next tick (`_pull_forward`)
        self._freed_early = False
        self.pulled_forward = 0
        # The jobs that succeeded, in the order they did, each with the work it really took
        # (`StateView.ended`: the run-time predictor learns from them); read incrementally
        self._ended: list[tuple[Job, float]] = []
        self._ended_after = 0                   # the last SUCCEEDED transition read
        self.meter_retention_days: float = meters.RETENTION_DAYS    # raw meter readings kept (meters.py)
        self._meter_sweep_due = 0.0   # monotonic time of the next sweep of raw readings (`sweep_meters`)
        self.telemetry = Telemetry()  # decisions, tick and placement times, requests: this process's (/metrics)
        self.true_ups = bills.TrueUps()   # ledger rows re-priced from the meters once they cover the run
        self.dr_fresh_s: float = demand.FRESH_S     # a meter reading older than this says nothing of now (demand.py)

    # ------------------------------------------------------------------ clock
    def now_h(self) -> float:
        return (datetime.now(UTC) - self.epoch).total_seconds() / 3600.0

    def wall(self, hours: float) -> datetime:
        return self.epoch + timedelta(hours=hours)

    def hours(self, when: datetime) -> float:
        """Controller hours of a wall time (naive: UTC)."""
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return (when - self.epoch).total_seconds() / 3600.0

    # ------------------------------------------------------------------ sites
    def saw(self, site: str, when: datetime) -> None:
        """An agent's call (any: heartbeat, claim, report, checkpoint) reached the service at `when`,
        authenticated: its site is alive. An agent busy for long between two heartbeats (reports
        and claims one by one on a loaded machine took over 30 s) still calls, and its site is not
        taken for dead while it works (its jobs would run twice)."""
        if when > self._seen.get(site, when - timedelta(seconds=1)):
            self._seen[site] = when

    def up_sites(self, s: Session) -> set[str]:
        limit = datetime.now(UTC) - timedelta(seconds=self.heartbeat_timeout_s)
        out = set()
        for a in s.scalars(select(SiteAgent)):
            seen = a.last_seen_at if a.last_seen_at.tzinfo else a.last_seen_at.replace(tzinfo=UTC)
            seen = max(seen, self._seen.get(a.site, seen))      # a call this replica served since
            # silence counts from this loop's start plus one timeout: heartbeats sent while the
            # controller itself was down (a restart) could not arrive, and agents need a moment to
            # find it again; neither is a sign of a dead site (whose jobs would then run twice)
            seen = max(seen, self.started_at + timedelta(seconds=self.heartbeat_timeout_s))
            if seen >= limit and a.site in self.network.sites:
                out.add(a.site)
        return out

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        self.started_at = datetime.now(UTC)
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
        if self._leader_conn is not None:
            try:                                  # still holding it? (a lost connection loses the lock)
                self._leader_conn.execute(text("SELECT 1")).scalar()
                self._leader_conn.commit()
            except Exception:                     # noqa: BLE001 - any failure means: not the leader now
                log.warning("lost the connection that held the scheduling lock; resigning")
                self._resign()
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
                self.leading = self._leader()
                if self.leading:
                    self.prepare_forecasts()
                    self.tick()
                    self.sweep_meters()
                    self.true_ups.run(self)
                self.last_error = None
            except Exception as e:                    # keep serving; the error is logged and shown
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("controller tick failed")
                self._resign()
            self._stop.wait(self.tick_s)

    def tick(self) -> None:
        t0 = time.perf_counter()
        if self._tick():             # timed with its commit; a tick that raised or stood aside is not
            self.telemetry.ticked(time.perf_counter() - t0)

    def _tick(self) -> bool:
        with self.lock, self.sessions.begin() as s:
            if s.bind.dialect.name == "postgresql" and not s.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": TICK_LOCK_ID}).scalar():
                return False    # another replica is mid-tick (it lost the leader lock and has not noticed yet)
            now = self.now_h()
            up = self.up_sites(s)
            drained = drained_sites(s)
            self._site_failures(s, now, up, drained)
            self._suspend_due(s, now)        # plans in pieces: runs whose piece ended stop (before overruns)
            overrun.review(self, s, now)     # runs past their estimate: extended or stopped (overrun.py)
            if self.store is not None:       # ended jobs' checkpoints past their keep time (checkpoints.py)
                self.store.sweep(s)
            held = demand.review(self, s, now)      # grid caps against metered import (demand.py)
            s.flush()
            self._issue_forecasts(s, now)
            self._sync_ledger(s, now)
            if self._freed_early:
                self._freed_early = False
                self._pull_forward(s, now, self.placeable(up) - drained - held)
            self._schedule(s, now, self.placeable(up) - drained - held)
            self.ticks += 1
        return True

    # ------------------------------------------------------------------ forecasts from readings
    def _new_ledger(self) -> Ledger:
        """A fresh ledger over `public`, reading the forecasts of the current issue."""
        ledger = Ledger(self.public)
        if self.live.issue_h is not None:
            ledger.reissue(self.live.issue_h)
        return ledger

    def forecasts(self, s: Session, h: int) -> list[nowcast.SiteForecast]:
        """The nowcasts issued at slot `h` for the week ahead, one per site with readings in the
        last `nowcast.WINDOW_H` complete hours (a site without is left out: its model serves, as
        before meters). Renewables only: no carbon-intensity feed is read, so carbon is the model's.
        A site whose nowcast raises is left out with one log line (its model serves)."""
        first = max(0, h - nowcast.WINDOW_H)
        origin = meters.to_us(self.epoch)
        out = []
        for sid, models in self.site_models.items():
            try:
                a = self.wall(first)
                a -= timedelta(minutes=a.minute, seconds=a.second, microseconds=a.microsecond)
                rows = meters.hourly(s, sid, a, self.wall(h))
                if not rows:
                    continue
                ren = np.asarray(meters.slot_means(rows, origin, first, h - first))
                if not np.isfinite(ren).any():
                    continue
                out.append(nowcast.site_forecast(models, nowcast.HourlyHistory(first, ren, None), h,
                                                 nowcast.HORIZON_MAX_H))
                self._bad_forecast.pop(sid, None)
            except ValueError as e:
                if self._bad_forecast.get(sid) != str(e):
                    self._bad_forecast[sid] = str(e)
                    log.error("site %s: no nowcast at hour %d, its model serves: %s", sid, h, e,
                              extra={"site": sid})
        return out

    def prepare_forecasts(self) -> None:
        """Make the next hour's issue before the tick, outside the controller's lock and in a
        session of its own: reading four weeks of roll-ups and a solar site's first pvlib clear sky
        (about 0.5 s) never hold the API or the tick. The tick issues what was prepared."""
        h = max(0, math.floor(self.now_h()))
        if h == self.live.issue_h or (self._prepared is not None and self._prepared[0] == h):
            return
        with self.sessions() as s:
            self._prepared = (h, self.forecasts(s, h))

    def _issue_forecasts(self, s: Session, now: float) -> None:
        """Once an hour (the first tick of slot h): issue the nowcasts of hour h, and have the
        ledger read them (`Ledger.reissue`), as the simulator does at each hour."""
        h = max(0, math.floor(now))
        if h == self.live.issue_h:
            return
        prepared, self._prepared = self._prepared, None
        made = prepared[1] if prepared is not None and prepared[0] == h else self.forecasts(s, h)
        if self.live.issue(h, made):
            self.ledger.reissue(h)
            log.info("forecasts of hour %d issued: %d of %d sites from their readings", h, len(made),
                     len(self.site_models), extra={"issue_h": h, "sites_from_readings": len(made)})

    def sweep_meters(self) -> None:
        """Every meters.SWEEP_EVERY_S (the first tick too): delete the raw meter readings older than
        the retention, in a transaction of its own, outside the tick's lock (the hourly roll-ups
        stay; meters.py)."""
        if time.monotonic() < self._meter_sweep_due:
            return
        before = datetime.now(UTC) - timedelta(days=self.meter_retention_days)
        with self.sessions.begin() as s:
            gone = meters.sweep(s, before)
        self._meter_sweep_due = time.monotonic() + meters.SWEEP_EVERY_S
        if gone:
            log.info("swept %d raw meter readings taken before %s", gone, before.isoformat(),
                     extra={"meter_readings_swept": gone})

    def placeable(self, up: set[str]) -> set[str]:
        """The up sites that may take new placements: not one that went down and has been up
        again for less than `recovery_s` (a site whose heartbeats flap would otherwise take
        jobs, lose them at its next silence, and make them bounce)."""
        t = time.monotonic()
        for site in self.network.sites:
            if site not in up:
                if site in self._was_up:
                    self._flapped.add(site)
                self._steady_from.pop(site, None)
            else:
                self._was_up.add(site)
                if site in self._flapped:
                    since = self._steady_from.setdefault(site, t)
                    if t - since >= self.recovery_s:
                        self._flapped.discard(site)
                        del self._steady_from[site]
        return up - self._flapped

    def grid_caps(self, s: Session, now: float) -> list[tuple[Event, str, int | None, str]]:
        """The grid caps the policy knows of at `now` and that have not ended: the network file's
        `grid_cap` events from `start_h - notice_h` on (hours since the epoch), and every cap the
        operator announced or a utility signalled. (event, source, id, reason) each."""
        out: list[tuple[Event, str, int | None, str]] = [
            (e, "network", None, "") for e in self.network.events
            if e.type == "grid_cap" and e.end_h > now and e.start_h - (e.notice_h or 0.0) <= now]
        for c in s.scalars(select(GridCap).where(GridCap.end_h > now).order_by(GridCap.start_h, GridCap.id)):
            try:
                out.append((Event(type="grid_cap", site=c.site, start_h=c.start_h, end_h=c.end_h,
                                  max_grid_kw=c.max_grid_kw, notice_h=0.0), c.source or "operator", c.id, c.reason))
            except Exception as e:          # noqa: BLE001 - one bad notice must not stop the loop: left out
                if c.id not in self._bad_caps:
                    self._bad_caps.add(c.id)
                    log.error("grid cap %s left out: %s: %s", c.id, type(e).__name__, e, extra={"grid_cap": c.id})
        return out

    # ------------------------------------------------------------------ containment
    def contained(self, s: Session, row: JobRow, doing: str, fn, *args, writes: bool = True) -> bool:
        """`fn(*args)`, a step for one job, inside a savepoint (unless it `writes` nothing): if it
        raises, the step is undone and the job alone is FAILED with the reason (`fail`), and False
        is returned; the caller's work for every other job goes on. A database that is away is not
        the job's fault: re-raised."""
        try:
            if writes:
                with s.begin_nested():
                    fn(*args)
            else:
                fn(*args)
            return True
        except (OperationalError, InterfaceError):
            raise
        except Exception as e:                  # noqa: BLE001 - whatever it is, it is this job's
            self.fail(s, row, f"{doing}: {type(e).__name__}: {e}", e)
            return False

    def fail(self, s: Session, row: JobRow, why: str, exc: BaseException | None = None) -> None:
        """FAIL one job the controller cannot handle (its numbers break the arithmetic, its row is
        not a job, the policy raises for it), with the reason, so that the loop goes on for every
        other job instead of raising on this one at every tick. A dispatched run of it is told to
        stop at its agent's next heartbeat (a new fence: its reports are refused)."""
        why = "controller error " + why
        why = why if len(why) <= 1000 else why[:997] + "..."
        self.job_errors += 1
        self.telemetry.decided("failed")
        log.error("job %s of %s failed: %s", row.id, self.tenant_name(row), why, exc_info=exc,
                  extra={"job_id": row.id, "tenant": self.tenant_name(row), "site": row.site, "decision": "failed",
                         "reason": why})
        now = self.now_h()
        try:
            with s.begin_nested():
                if row.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    return
                if row.state in ("PREEMPTED", "PLACED"):     # no way to FAILED from these: PENDING first
                    move(s, row, "PENDING", now, "offered again after preemption" if row.state == "PREEMPTED"
                         else "its placement is void: the controller fails the job")
                    row.site = row.gpu_type = row.start_h = row.end_h = None
                row.pieces = None
                dispatched = row.state in ("TRANSFERRING", "RUNNING")
                move(s, row, "FAILED", now, why)
                if dispatched:
                    row.fence += 1
                    row.end_h = now
                row.explanation = explanation_json("failed", why, None)
        except (OperationalError, InterfaceError):
            raise
        except Exception:                           # noqa: BLE001 - the row itself is unreadable: plain SQL
            log.exception("job %s: could not record its failure through the lifecycle; writing it directly", row.id)
            s.execute(update(JobRow).where(JobRow.id == row.id).values(
                state="FAILED", reason=why, fence=JobRow.fence + 1, updated_at=utcnow()))
            s.add(Transition(job_id=row.id, from_state=None, to_state="FAILED", at_h=now, reason=why))
        self._ledger_stale = True      # a step that raised may have left part of a change in the ledger

    def tenant_name(self, row: JobRow) -> str | None:
        """The name of the job's tenant, for the log (None if it cannot be read)."""
        try:
            name = self._tenants.get(row.tenant_id)
            if name is None and (s := object_session(row)) is not None:
                t = s.get(Tenant, row.tenant_id)
                name = self._tenants[row.tenant_id] = t.name if t is not None else None
            return name
        except Exception:                       # noqa: BLE001 - a log line never fails the step it reports
            return None

    def _decided(self, kind: str, row: JobRow, reason: str, site: str | None = None, **more) -> None:
        """The log line of a decision: placed, deferred, rejected, preempted or failed; counted (telemetry.py)."""
        self.telemetry.decided(kind)
        tenant = self.tenant_name(row)
        log.info("job %s of %s %s%s: %s", row.id, tenant, kind, f" on {site}" if site else "", reason,
                 extra={"job_id": row.id, "tenant": tenant, "decision": kind, "site": site, "reason": reason, **more})

    # ------------------------------------------------------------------ steps
    def _site_failures(self, s: Session, now: float, up: set[str], drained: frozenset[str] | set[str] = ()) -> None:
        rows = s.scalars(select(JobRow).where(JobRow.state.in_(ACTIVE), JobRow.site.is_not(None))
                         .order_by(JobRow.id).with_for_update(skip_locked=True)).all()
        for row in rows:
            if row.site in up and not (row.site in drained and row.state == "PLACED"):
                continue
            self.contained(s, row, "while taking it off its site", self._off_site, s, row, now, up)

    def _off_site(self, s: Session, row: JobRow, now: float, up: set[str]) -> None:
        site = row.site
        if row.state == "PLACED":
            why = "was drained" if site in up else "went down"
            move(s, row, "PENDING", now, f"site {site} {why} before the job was dispatched")
            row.site = row.gpu_type = row.start_h = row.end_h = None
            row.pieces = None
            self._decided("deferred", row, row.reason, site)
            return
        self.preempt(s, row, now, f"site {site} stopped heartbeating")
        self._decided("preempted", row, f"site {site} stopped heartbeating", site)

    def preempt_or_fail(self, s: Session, row: JobRow, now: float, why: str) -> None:
        """`preempt`, contained: a job whose preemption raises is FAILED alone (`contained`)."""
        if self.contained(s, row, "while preempting it", self.preempt, s, row, now, why):
            self._decided("preempted", row, why)

    def preempt(self, s: Session, row: JobRow, now: float, why: str,
                again: str = "offered again after preemption") -> None:
        """A dispatched job lost its run (its site died, or its agent restarted without it): PREEMPTED,
        keeping the work up to its last checkpoint, then PENDING again (`again`: why) under a new
        fence, so the old dispatch's reports are refused and a returning agent kills what it still
        runs of it. A plan in pieces it followed is over: its rest is planned again."""
        job = model_job(row)
        kept, how = 0.0, ""
        if row.state == "RUNNING" and row.start_h is not None:
            speed = self.network.speed(job, row.gpu_type)
            if row.checkpoint_h is not None and row.checkpoint_h > row.start_h:
                kept = (row.checkpoint_h - row.start_h) * speed
                how = f" (to its checkpoint at {row.checkpoint_h:.4f} h)"
            else:
                kept = kept_work(now - row.start_h, speed, job.checkpoint_h)
        site = row.site
        move(s, row, "PREEMPTED", now, f"{why}; kept {kept:.4f} h of work{how}")
        # all the work kept counts as done (a run past its estimate keeps more than the estimate:
        # what the predictor conditions its rest on, `PendingJob.done_work`); the estimate's rest
        # never drops below a sliver
        row.done_work = (row.done_work or 0.0) + kept
        row.remaining_work = max(row.remaining_work - min(kept, row.remaining_work), 1e-9)
        row.hosted = sorted(set(row.hosted) | {site})
        row.preempted_from = site
        row.fence += 1
        move(s, row, "PENDING", now, again)
        row.site = row.gpu_type = row.start_h = row.end_h = None
        row.pieces = None
        row.stops = False

    def lost_runs(self, s: Session, site: str, held: set[tuple[int, int]], restarted: bool,
                  received: datetime) -> None:
        """An agent's heartbeat (which reached the service at `received`) names the runs it holds
        (`held`: (job id, fence)); a dispatched job on `site` that it does not hold is lost: at once
        when the agent restarted (a new instance), else once its dispatch is older than the
        heartbeat timeout (a claim whose answer never reached the agent; a run whose end the agent
        could not report). Only a dispatch made before the heartbeat arrived can be missing from
        it: a heartbeat that waited in the service (for a thread, for the lock) while the agent,
        tired of waiting, claimed new work, says nothing about that work (else it would run twice).
        A job lost with `max_agent_losses` agent restarts is quarantined: FAILED, never dispatched
        again (a job that kills every agent that claims it would otherwise take the sites down one
        after another); other losses preempt it (`preempt`)."""
        received = received if received.tzinfo else received.replace(tzinfo=UTC)
        limit = received if restarted else min(received, utcnow() - timedelta(seconds=self.heartbeat_timeout_s))
        for row in s.scalars(select(JobRow).where(JobRow.site == site, JobRow.state.in_(
                ("TRANSFERRING", "RUNNING"))).order_by(JobRow.id).with_for_update()).all():
            since = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
            if (row.id, row.fence) in held or since >= limit:
                continue
            self.contained(s, row, "while handling its lost run", self._lost, s, row, site, restarted)

    def _lost(self, s: Session, row: JobRow, site: str, restarted: bool) -> None:
        now = self.now_h()
        if not restarted:
            why = f"the agent of {site} does not hold it (a lost dispatch)"
            self.preempt(s, row, now, why)
            self._decided("preempted", row, why, site)
            return
        before = s.scalars(select(Transition.reason).where(
            Transition.job_id == row.id, Transition.to_state == "PREEMPTED",
            Transition.reason.like(f"%{LOST_WITH_RESTART}%"))).all()
        n = len(before) + 1
        if self.max_agent_losses and n >= self.max_agent_losses:
            sites = sorted({r.split()[3] for r in before if r.startswith("the agent of ")} | {site})
            why = (f"quarantined: lost with {n} agent restarts (on {', '.join(sites)}); each agent that "
                   f"claimed it died; not dispatched again")
            move(s, row, "FAILED", now, why)
            row.fence += 1                  # a report of the lost run is refused; an agent that holds it stops it
            row.end_h = now
            self.telemetry.decided("failed")
            log.warning("job %s of %s failed on %s: %s", row.id, self.tenant_name(row), site, why,
                        extra={"job_id": row.id, "tenant": self.tenant_name(row), "site": site, "decision": "failed",
                               "reason": why})
            return
        why = f"the agent of {site} {LOST_WITH_RESTART} (agent loss {n} of {self.max_agent_losses or 'unlimited'})"
        self.preempt(s, row, now, why)
        self._decided("preempted", row, why, site)

    def suspects(self, s: Session, ids: list[int]) -> set[int]:
        """The jobs of `ids` already lost with an agent restart: an agent claims such a job alone,
        so that the next loss is its own and not shared with jobs claimed beside it."""
        if not ids:
            return set()
        return set(s.scalars(select(Transition.job_id).where(
            Transition.job_id.in_(ids), Transition.to_state == "PREEMPTED",
            Transition.reason.like(f"%{LOST_WITH_RESTART}%"))))

    def _running(self, s: Session, now: float, names: dict) -> tuple[dict[str, JobRow], dict[tuple, list[Running]]]:
        """The RUNNING jobs a policy may stop: by id, and as `Running` per pool (each run it was
        preempted from before, by the policy, a dead site or a failed attempt, counts as a
        segment done, as the simulator counts them)."""
        rows = s.scalars(select(JobRow).where(JobRow.state == "RUNNING", JobRow.site.is_not(None),
                                              JobRow.start_h < now, JobRow.end_h > now)
                         .order_by(JobRow.id).with_for_update(skip_locked=True)).all()
        done = dict(s.execute(select(Transition.job_id, func.count()).where(
            Transition.job_id.in_([r.id for r in rows]), Transition.to_state == "PREEMPTED")
            .group_by(Transition.job_id)).all()) if rows else {}
        by_pool: dict[tuple, list[Running]] = {}
        ok: dict[str, JobRow] = {}
        for r in rows:
            def one(r=r):
                pj = PendingJob(model_job(r, names.get(r.tenant_id)), r.remaining_work, max(r.submit_h, 0.0),
                                frozenset(r.hosted), segments_done=done.get(r.id, 0))
                by_pool.setdefault((r.site, r.gpu_type), []).append(
                    Running(pj, r.site, r.gpu_type, r.start_h, r.end_h))
                ok[str(r.id)] = r
            self.contained(s, r, "while reading it as a running job", one, writes=False)
        return ok, by_pool

    def _suspend_due(self, s: Session, now: float) -> None:
        """Plans in pieces (`Place.pieces`; docs/SCHEDULER.md, "Suspend and resume"): a run whose
        piece has ended is stopped as a preemption stops one (`_suspend`), and a placement whose
        piece's hours passed before an agent took it is void; either way the job is PENDING again
        with its rest, which this tick offers to the policy, planned again on the forecasts of now."""
        rows = s.scalars(select(JobRow).where(JobRow.state.in_(ACTIVE), JobRow.end_h <= now,
                                              or_(JobRow.pieces.is_not(None),
                                                  and_(JobRow.stops.is_(True), JobRow.state == "RUNNING")))
                         .order_by(JobRow.id).with_for_update(skip_locked=True)).all()
        for row in rows:
            if row.pieces:
                self.contained(s, row, "while suspending it at the end of its piece", self._suspend, s, row, now)
            elif row.stops and row.state == "RUNNING":
                self.contained(s, row, "while stopping it at the end of its plan", self._stop_planned, s, row, now)

    def _suspend(self, s: Session, row: JobRow, now: float) -> None:
        site, g, end, (nxt, _) = row.site, row.gpu_type, row.end_h, row.pieces[0]
        if row.state == "PLACED":
            move(s, row, "PENDING", now, f"suspended: the hours of its piece on {site}/{g} (to {end:.4f} h) passed "
                                         "before its agent took it; its rest is planned again")
            row.site = row.gpu_type = row.start_h = row.end_h = None
            row.pieces = None
            self._decided("deferred", row, row.reason, site)
            return
        why = (f"{SUSPENDED}: its plan in pieces stops it on {site}/{g} at the end of its "
               f"piece, {end:.4f} h, and resumes it at {nxt:.4f} h, where the energy costs less as forecast")
        self._stop_by_plan(s, row, now, why, f"suspended: waits to resume from its checkpoint (its plan's next "
                                             f"piece: {nxt:.4f} h); its rest is planned again", "suspended")

    def _stop_planned(self, s: Session, row: JobRow, now: float) -> None:
        """A planned stop (`Place.stops`; docs/SCHEDULER.md, "Planned stops"): a run still going
        at the end of its booking stops there as a preemption stops one, keeping its checkpointed
        work (`done_work`), and its rest is offered this tick, booked for what its group's learned
        lengths say it still needs given that work. Only a RUNNING run: a placement or a transfer
        moves its booking to when it starts (`report`), as any single run does."""
        site, g, end = row.site, row.gpu_type, row.end_h
        why = (f"stopped at the end of its plan: its run on {site}/{g} was booked to {end:.4f} h for the work "
               "its group's learned lengths predicted, and it has not ended; its rest is planned again")
        self._stop_by_plan(s, row, now, why, "stopped at the end of its plan: its rest, from its checkpoint, "
                                             "is planned again", "stopped")

    def _stop_by_plan(self, s: Session, row: JobRow, now: float, why: str, again: str, decision: str) -> None:
        """A run its own plan stops (the end of a piece, or a planned stop): metered up to now if
        it ran (a TRANSFERRING one has nothing to bill), then PREEMPTED → PENDING (`preempt`)."""
        site = row.site
        if row.state == "RUNNING":
            metering.meter(s, self.network, self.epoch, row, model_job(row), row.fence, row.start_h, now)
        self.preempt(s, row, now, why, again=again)
        row.preempted_from = None           # not an outage: no reason to prefer the site's backup
        self._decided(decision, row, why, site)

    def _stop_run(self, s: Session, row: JobRow, now: float, d: Preempt) -> None:
        """The policy stops a running job: its run so far is metered, its GPUs are free in the
        ledger at once, and it is PENDING again (`preempt`) for the same answer to place."""
        site = row.site
        metering.meter(s, self.network, self.epoch, row, model_job(row), row.fence, row.start_h, now)
        self.preempt(s, row, now, f"stopped by {self.policy_name}: {d.reason}")
        self._unhold(f"j{row.id}")
        row.preempted_from = None               # not an outage: no reason to prefer the site's backup
        row.explanation = explanation_json("preempt", d.reason, d.explain)
        self._decided("preempted", row, f"stopped by {self.policy_name}: {d.reason}", site)

    def _want(self, s: Session, now: float) -> dict[str, tuple[tuple[str, str, int, float, float], JobRow | None]]:
        """What the ledger must hold: each active job's planned or actual run, each metered run of
        the last 48 h (site load); by key, with the job's row."""
        want: dict[str, tuple[tuple[str, str, int, float, float], JobRow | None]] = {}
        for row in s.scalars(select(JobRow).where(JobRow.state.in_(ACTIVE))):
            if row.site is None or row.start_h is None or row.end_h is None:
                continue
            start, end = row.start_h, row.end_h
            if row.pieces and row.state == "PLACED":   # a piece of a plan: it stops at its end (`_suspend_due`)
                start = max(start, now)
                end = max(end, start + self.tick_s / 3600.0)
            elif row.state == "PLACED" and start < now:        # not picked up yet: it starts later
                end, start = now + (end - start), now
            elif row.state != "PLACED":
                end = max(end, now + self.tick_s / 3600.0)      # overrunning its plan: still holds the GPUs
            for key, run in self._runs(row, start, end).items():
                want[key] = (run, row)
        for u in s.scalars(select(Usage).where(Usage.end_h > now - 48.0, Usage.kind == "run")):   # the metered past
            want[f"u{u.id}"] = ((u.site, u.gpu_type, u.gpus, u.start_h, u.end_h), None)
        return want

    @staticmethod
    def _runs(row: JobRow, start: float | None = None,
              end: float | None = None) -> dict[str, tuple[str, str, int, float, float]]:
        """What the ledger holds for an active job, by key: its run (from `start` to `end`, by
        default as planned), and the later pieces of the plan it follows, if any."""
        out = {f"j{row.id}": (row.site, row.gpu_type, row.gpus,
                              row.start_h if start is None else start, row.end_h if end is None else end)}
        for k, (a, b) in enumerate(row.pieces or ()):
            out[f"j{row.id}p{k}"] = (row.site, row.gpu_type, row.gpus, float(a), float(b))
        return out

    def _unhold(self, key: str) -> None:
        """Take what the ledger holds for `key` (a job's run, or a metered one) out of it."""
        held = self._held.pop(key, None)
        if held is not None:
            site, g, gpus, a, b = held
            self.ledger.add(site, g, gpus, a, b, sign=-1)

    def _sync_ledger(self, s: Session, now: float) -> None:
        if self._ledger_stale:          # after a job's step failed: from scratch
            self.ledger, self._held, self._ledger_stale = self._new_ledger(), {}, False
        want = self._want(s, now)
        soon = now + self.tick_s / 3600.0
        for key in list(self._held):
            if key not in want or want[key][0] != self._held[key]:
                end = self._held[key][4]
                if key.startswith("j") and end > soon and (key not in want or want[key][0][4] < end - 1e-9):
                    self._freed_early = True    # a job's GPUs free before its plan said
                self._unhold(key)
        bad: dict[str, Exception] = {}
        for key, (v, _) in want.items():
            if key not in self._held and key not in self._unholdable:
                try:
                    self.ledger.add(*v)
                except Exception as e:          # noqa: BLE001 - one run the ledger cannot hold (its numbers)
                    bad[key] = e
                    continue
                self._held[key] = v
        if not bad:
            return
        # a failed `add` may have changed part of the ledger: build it again without the culprits
        self.ledger, self._held = self._new_ledger(), {}
        for key, e in bad.items():
            row = want[key][1]
            if row is not None:
                self.fail(s, row, f"while booking its run in the ledger: {type(e).__name__}: {e}", e)
            else:
                self._unholdable.add(key)
                log.error("metered run %s left out of the site load: %s: %s", key[1:], type(e).__name__, e)
        for key, (v, _) in want.items():
            if key not in bad and key not in self._unholdable:
                self.ledger.add(*v)
                self._held[key] = v

    def _world_now(self, s: Session, now: float, up: set[str]) -> tuple:
        """What a policy's answers for pending jobs depend on, besides the jobs and the clock: the
        sites open to placements, what the ledger holds, the grid caps known, the forecasts' issue."""
        caps = tuple((e.site, e.start_h, e.end_h, e.max_grid_kw) for e, *_ in self.grid_caps(s, now))
        return frozenset(up), hash(frozenset(self._held.items())), caps, id(self.ledger), self.live.issue_h

    def _schedule(self, s: Session, now: float, up: set[str]) -> None:
        """Offer the pending jobs to the policy. A backlog of thousands that no site can take yet
        was read, modelled and answered again at every tick, holding the interpreter and the
        database from the API (bench/wrk_submit.py: 328 accepted/s in the first 5 s, 181/s over 30 s,
        the controller's thread a third of the process's time). Now a job the policy answered
        (deferred) in the same world is offered again only when the world changes or every
        `full_offer_s`; a new job is offered at once."""
        world = self._world_now(s, now, up)
        full = world != self._world or time.monotonic() - self._full_at >= self.full_offer_s
        pending_q = select(JobRow).where(JobRow.state == "PENDING")
        if not full:
            ids = set(s.scalars(select(JobRow.id).where(JobRow.state == "PENDING")))
            new = ids - self._answered
            self._answered &= ids
            if not new:
                return
            pending_q = pending_q.where(JobRow.id.in_(sorted(new)[:5000]))
        rows = s.scalars(pending_q.order_by(JobRow.id).with_for_update(skip_locked=True)).all()
        if full:
            self._full_at, self._answered = time.monotonic(), set()
            self.full_offers += 1
        try:
            self._offer(s, now, up, rows)
        finally:
            # the world after this round's own placements: they are not a change to answer again
            self._answered.update(r.id for r in rows if r.state == "PENDING")
            self._world = self._world_now(s, now, up)

    def _view(self, s: Session, now: float, up: set[str], names: dict) -> tuple[StateView, tuple | None]:
        """What the policy sees now, and the running jobs it may stop (by id, and per pool)."""
        down = frozenset(set(self.network.sites) - up)
        caps = tuple(e for e, *_ in self.grid_caps(s, now))
        running = self._running(s, now, names) if self.preemption else None
        view = StateView(now=now, scenario=self.public, ledger=self.ledger, down=down, grid_caps=caps,
                         running_on=(lambda site, g: running[1].get((site, g), ())) if running is not None else None,
                         ended=self.ended_jobs(s, names), pieces=self.suspend, stops=self.suspend)
        return view, running

    MAX_ENDED = 100_000

    def ended_jobs(self, s: Session, names: dict) -> list[tuple[Job, float]]:
        """The jobs that succeeded so far, in the order they did, as the policy saw them, each with
        the work it really took: the work done before its last run (`done_work`, or
        `work_h - remaining_work` for a row from before it was kept) plus that run's hours times
        its GPU type's speed for the job. Only the newest
        `MAX_ENDED` are kept (then the list starts afresh, and the predictor with it)."""
        q = (select(Transition.id, JobRow).join(JobRow, JobRow.id == Transition.job_id)
             .where(Transition.to_state == "SUCCEEDED", Transition.id > self._ended_after)
             .order_by(Transition.id).limit(5000))
        got = s.execute(q).all()
        if got and len(self._ended) + len(got) > self.MAX_ENDED:
            self._ended = self._ended[-self.MAX_ENDED // 2:]
        for tid, row in got:
            self._ended_after = tid
            try:
                job = model_job(row, names.get(row.tenant_id))
                if row.start_h is None or row.end_h is None or row.gpu_type not in self.public.gpu_types:
                    continue
                ran = max(row.end_h - row.start_h, 0.0) * self.public.speed(job, row.gpu_type)
                work = max(row.done_work or 0.0, job.work_h - row.remaining_work, 0.0) + ran
                if math.isfinite(work) and work > 0:
                    self._ended.append((job, work))
            except Exception as e:          # noqa: BLE001 - a row that is not a job teaches nothing
                log.warning("job %s left out of the run-time predictor: %s: %s", row.id, type(e).__name__, e)
        return self._ended

    def _pull_forward(self, s: Session, now: float, up: set[str], limit: int = 200) -> None:
        """GPUs came free before the plan said: each placement not yet due (the `limit` due
        first) is offered to the policy again, alone, on the ledger without it; an answer that
        starts it earlier moves it there (it stays PLACED: nothing was dispatched, so nothing can
        run twice; the agents' claims wait for this tick's lock). Any other answer leaves it as it
        was: a job the policy planned for later hours on purpose (it may wait) stays there."""
        soon = now + self.tick_s / 3600.0
        rows = s.scalars(select(JobRow).where(JobRow.state == "PLACED", JobRow.start_h > soon)
                         .order_by(JobRow.start_h, JobRow.id).limit(limit).with_for_update(skip_locked=True)).all()
        if not rows:
            return
        names = dict(s.execute(select(Tenant.id, Tenant.name)).all())
        view, _ = self._view(s, now, up, names)
        # moving a placement never stops a run, nor cuts a single run into pieces
        view = replace(view, running_on=None, pieces=False)
        for row in rows:
            self.contained(s, row, "while placing it earlier", self._earlier, s, now, view, row, names)

    def _earlier(self, s: Session, now: float, view: StateView, row: JobRow, names: dict) -> None:
        key = f"j{row.id}"
        held = self._held.get(key)
        if held is None or row.pieces:     # a plan in pieces keeps its hours: they were chosen for their prices
            return
        pj = PendingJob(model_job(row, names.get(row.tenant_id)), row.remaining_work, max(row.submit_h, 0.0),
                        frozenset(row.hosted), from_site=row.preempted_from,
                        segments_done=self._segments_done(s, [row]).get(row.id, 0), done_work=row.done_work or 0.0)
        pj = replace(pj, ready_h=max(pj.ready_h, now)) if pj.hosted else pj
        if row.stops:      # booked to a planned stop: weighed as one again (a single run, `Place.pieces` unused)
            view = replace(view, pieces=self.suspend, stops=self.suspend)
        self._unhold(key)
        try:
            [d] = [d for d in self.policy.decide(view, [pj]) if getattr(d, "job_id", None) == str(row.id)] or [None]
        finally:
            if key not in self._held:          # whatever happens below, it is booked again first
                self.ledger.add(*held)
                self._held[key] = held
        if (not isinstance(d, Place) or d.pieces or d.start_h > row.start_h - self.tick_s / 3600.0
                or d.site in view.down):
            return
        cal = self.ledger.calendars.get((d.site, d.gpu_type))
        self._unhold(key)
        if cal is None or not cal.fits(d.start_h, d.end_h, row.gpus):
            self.ledger.add(*held)
            self._held[key] = held
            return
        was = row.start_h
        row.site, row.gpu_type, row.start_h, row.end_h = d.site, d.gpu_type, d.start_h, d.end_h
        row.stops = bool(d.stops)
        row.reason = (f"placed earlier: GPUs came free before their plan; {d.site}/{d.gpu_type} at "
                      f"{d.start_h:.4f} h instead of {was:.4f} h")
        row.explanation = explanation_json("place", row.reason, d.explain)
        self.ledger.add(d.site, d.gpu_type, row.gpus, d.start_h, d.end_h)
        self._held[key] = (d.site, d.gpu_type, row.gpus, d.start_h, d.end_h)
        self.pulled_forward += 1
        self._decided("placed earlier", row, row.reason, d.site, gpu_type=d.gpu_type, start_h=d.start_h)

    def _offer(self, s: Session, now: float, up: set[str], rows: list[JobRow]) -> None:
        if not rows:
            return
        now = max(now, self.now_h())     # after reading them: every job offered was submitted before `now`
        names = dict(s.execute(select(Tenant.id, Tenant.name)).all())
        runs = self._segments_done(s, rows)
        by_id: dict[str, JobRow] = {}
        pending: list[PendingJob] = []
        for r in rows:
            def one(r=r):
                p = PendingJob(model_job(r, names.get(r.tenant_id)), r.remaining_work, max(r.submit_h, 0.0),
                               frozenset(r.hosted), from_site=r.preempted_from, segments_done=runs.get(r.id, 0),
                               done_work=r.done_work or 0.0)
                pending.append(replace(p, ready_h=max(p.ready_h, now)) if p.hosted else p)
                by_id[str(r.id)] = r
            self.contained(s, r, "while reading it as a job", one, writes=False)
        if not pending:
            return
        view, running = self._view(s, now, up, names)
        down = view.down
        try:
            decisions = self.policy.decide(view, pending)
        except Exception as e:              # noqa: BLE001 - find the job it raised for: offer them one by one
            log.warning("policy %s raised on %d jobs (%s: %s); offering them one at a time", self.policy_name,
                        len(pending), type(e).__name__, e)
            for p in pending:
                try:
                    one = self.policy.decide(view, [p])
                except Exception as e1:     # noqa: BLE001 - this job's
                    self.fail(s, by_id[p.job.id], f"while deciding for it: policy {self.policy_name} raised "
                                                  f"{type(e1).__name__}: {e1}", e1)
                    continue
                self._apply(s, now, one, by_id, running, down)
            return
        self._apply(s, now, decisions, by_id, running, down)

    @staticmethod
    def _segments_done(s: Session, rows: list[JobRow]) -> dict[int, int]:
        """The runs each job of `rows` was stopped in before (preempted, suspended, stopped at a
        planned stop), as the simulator counts `PendingJob.segments_done`: only a job that ran (its
        data is hosted somewhere) can have any, so the others cost no query."""
        ran = [r.id for r in rows if r.hosted]
        if not ran:
            return {}
        return dict(s.execute(select(Transition.job_id, func.count()).where(
            Transition.job_id.in_(ran), Transition.to_state == "PREEMPTED").group_by(Transition.job_id)).all())

    def _apply(self, s: Session, now: float, decisions, by_id: dict[str, JobRow],
               running: tuple[dict[str, JobRow], dict] | None, down: frozenset[str]) -> None:
        """Carry out the policy's decisions, each for its job alone (`contained`). Deferrals, which
        only write a reason, are written together in one savepoint (one each cost three statements
        per job, most of the controller's time under a burst of submissions), and one at a time
        only if that fails, so that a row that cannot be written fails alone."""
        defers: list[tuple[Defer, JobRow]] = []
        for d in decisions:
            if isinstance(d, Preempt):          # comes before the answers that use the GPUs it frees
                row = running[0].get(d.job_id) if running is not None else None
                if row is None or d.job_id in by_id:
                    log.error("policy %s preempted job %s, which is not running; ignored", self.policy_name, d.job_id,
                              extra={"job_id": d.job_id})
                    continue
                if self.contained(s, row, f"while stopping it for {self.policy_name}", self._stop_run, s, row, now, d):
                    by_id[d.job_id] = row
                continue
            row = by_id.get(d.job_id)
            if isinstance(d, Defer) and row is not None and _same_deferral(row, d):
                continue                        # deferred again as before: nothing to write, no savepoint
            if row is None or row.state != "PENDING":
                log.error("policy %s decided for job %s, which was not offered; ignored", self.policy_name, d.job_id,
                          extra={"job_id": d.job_id})
                continue
            if isinstance(d, Defer):
                defers.append((d, row))
                continue
            self.contained(s, row, f"while carrying out {self.policy_name}'s decision", self._carry_out, s, now, d,
                           row, down)
        if not defers:
            return
        try:
            with s.begin_nested():
                for d, row in defers:
                    self._carry_out(s, now, d, row, down)
        except (OperationalError, InterfaceError):
            raise
        except Exception:                       # noqa: BLE001 - find the one: each alone
            for d, row in defers:
                self.contained(s, row, f"while carrying out {self.policy_name}'s decision", self._carry_out, s, now,
                               d, row, down)

    def _carry_out(self, s: Session, now: float, d, row: JobRow, down: frozenset[str]) -> None:
        if isinstance(d, Place):
            cal = self.ledger.calendars.get((d.site, d.gpu_type))
            if d.site in down or cal is None or not all(cal.fits(a, b, row.gpus)
                                                        for a, b in ((d.start_h, d.end_h), *d.pieces)):
                row.reason = f"placement on {d.site}/{d.gpu_type} no longer fits; offered again"
                self._decided("deferred", row, row.reason, d.site)
                return
            if (d.pieces or d.stops) and not self.suspend:
                raise ValueError(f"policy {self.policy_name} planned it in pieces or to a planned stop, which "
                                 "this controller does not follow (--no-suspend)")
            row.site, row.gpu_type, row.start_h, row.end_h = d.site, d.gpu_type, d.start_h, d.end_h
            row.pieces = [[float(a), float(b)] for a, b in d.pieces] or None
            row.stops = bool(d.stops)
            row.preempted_from = None
            row.explanation = explanation_json("place", d.reason, d.explain)
            move(s, row, "PLACED", now, d.reason or f"{self.policy_name}: {d.site}/{d.gpu_type} at "
                 f"{d.start_h:.4f} h")
            for key, run in self._runs(row).items():       # last: nothing after it raises
                self.ledger.add(*run)
                self._held[key] = run
            self._decided("placed", row, row.reason, d.site, gpu_type=d.gpu_type, start_h=d.start_h)
            if not row.hosted:       # not run yet: its wait since submit (a voided placement made again counts again)
                self.telemetry.placed_after((now - row.submit_h) * 3600.0)
        elif isinstance(d, Defer):
            if row.reason != d.reason:          # a job deferred for the same reason at every tick: logged once
                self._decided("deferred", row, d.reason)
            row.reason = d.reason
            row.explanation = explanation_json("defer", d.reason, d.explain)
        elif isinstance(d, Reject):
            row.explanation = explanation_json("reject", d.reason, d.explain)
            move(s, row, "FAILED", now, f"rejected: {d.reason}")
            self._decided("rejected", row, d.reason)
        else:
            raise TypeError(f"policy {self.policy_name} answered {type(d).__name__}, not a decision")
