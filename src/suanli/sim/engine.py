"""The event-driven simulator (MODEL.md §7).

Events, in this order when they fall at the same instant: outage end, outage start,
grid_cap notice, segment end, wake-up, job arrival. At each instant the policy is offered
every job that is waiting: new arrivals, work handed back by an outage, and jobs it deferred
earlier. A deferred job without a hold comes back after something changed (a site recovered,
a segment ended); one the policy holds GPUs for comes back, its hold released, when a job
arrives, an outage starts or ends, or its wake-up time comes, so the policy can plan the whole
queue again in its own order.

An outage at site k starting at a cuts each running segment on k at a (it keeps its
checkpointed progress, §3.7), cancels each placement on k that has not started, and hands
the rest of those jobs back to the policy, which learns only then that k is down. Until the
outage ends the policy may not place anything on k.

A policy may also stop a running job itself (`Preempt`, with `preempt=True`): the run is cut
at that instant as an outage would cut it, and the same answer places (or holds, or defers)
the rest.

A suspend-resume plan (`Place.pieces`, `Defer.pieces`) books every piece's GPUs. Its run
stops at the end of its first piece (keeping its whole checkpoints, §3.7, as a stop at an
outage would); the later pieces stay booked as the job's hold, and the rest is offered again at
the next piece's start (or sooner, with every held plan), so the policy plans it again with
the forecasts of then. A job whose true work ends inside a piece gives the later ones back; one
that needs more than its plan overruns its last piece as any run does, unless the plan says its
end is a planned stop too (`Place.stops`): then the run stops there, keeping its whole
checkpoints, and the rest is offered again at once. An outage, a preemption or a voiding gives
back the later pieces with the run.

Under uncertainty (MODEL.md §7) a policy plans with estimates; the simulator keeps the truth:
- A job's `work_h` is the user's estimate, what a policy sees and plans runs with; the run
  really lasts its true rest (from `actual_work_h`) on the GPU type. A job that needs less ends
  early: its GPUs are free from then on (the policy learns it then). A job that needs more is
  still running at the end of its booking (an overrun): it is booked `OVERRUN_LEASE_H` more at a
  time (never past its true end, which the policy learns only when it comes). A placement or a
  hold on that pool that the longer booking would push over the pool's count, latest start
  first, is voided and offered again at once, as after an outage.
- With a `forecast:` block, at each instant a policy sees the renewables and grid carbon that
  `scheduling.forecast` issued at the start of the hour (exact for the current slot).
- In a scenario that uses any of these fields (a `forecast:` block, or a job with `max_wait_h` or
  `actual_work_h`: `replans_hourly`), every plan held for later comes back at each whole hour, its
  hold released, so the policy plans the queue again with what it knows then (new forecasts, runs
  that ended early or overran, windows drawing to their end). That does not hang on a forecast
  being there: with perfect information the queue is re-planned as often as with forecasts. An
  older scenario, without any of them, has no hourly event and keeps its schedules exactly.
- The offline reference (`optimal`) sees everything: the true work as `work_h`, the true series.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from suanli.model.scenario import Scenario
from suanli.model.schedule import TIME_TOL, Segment, kept_work
from suanli.model.schema import Job
from suanli.scheduling.forecast import Forecaster
from suanli.scheduling.ledger import Ledger
from suanli.scheduling.state import (
    OVERRUN_LEASE_H,
    Defer,
    Explanation,
    PendingJob,
    Place,
    Policy,
    Preempt,
    Reject,
    Running,
    StateView,
)

_OUTAGE_END, _OUTAGE_START, _CAP_NOTICE, _SEG_END, _WAKE, _ARRIVAL, _HOUR = range(7)


class PolicyError(RuntimeError):
    """A policy returned an impossible decision: a bug in the policy, not the user's mistake."""


@dataclass
class _JobState:
    pending: PendingJob
    true_rest: float          # reference-GPU hours the job really still needs (W_j less work kept)
    # the job's placed run as the ledger books it (planned end, or an overrun's booking), not
    # yet final: it becomes a segment when it ends, or is cut or voided (identity tells a stale
    # end event from the current run)
    assignment: Segment | None = None
    true_end: float | None = None     # when the placed run really ends
    done: bool = False
    later: tuple[tuple[float, float], ...] = ()   # later pieces of a suspend-resume plan, booked
    stops: bool = False               # the placed run is a piece: it stops at its booking's end


@dataclass(frozen=True)
class ExplainedDecision:
    kind: str             # place, defer or reject
    at_h: float
    explain: Explanation


@dataclass
class SimResult:
    segments: list[Segment]
    rejected: dict[str, str] = field(default_factory=dict)     # job id -> reason
    unplaced: dict[str, str] = field(default_factory=dict)     # still deferred at the end
    cuts: int = 0                                              # segments cut by outages
    preemptions: int = 0                                       # runs the policy stopped
    overruns: int = 0                                          # bookings lengthened for overrunning runs
    voided: int = 0                                            # placements and holds overruns voided
    policy_calls: int = 0
    explanations: dict[str, list[ExplainedDecision]] = field(default_factory=dict)   # job id -> decisions


class Simulation:
    def __init__(self, scn: Scenario, policy: Policy,
                 progress: Callable[[int, int], None] | None = None, preempt: bool = True):
        self.scn = scn
        self.policy = policy
        self.preempt = preempt
        self._now = 0.0
        self.progress = progress
        # what a policy may read of the scenario (MODEL.md §7): no events; jobs with their
        # estimates only; the series forecast where the scenario says so. The offline reference
        # sees the true work (as work_h) and the true series.
        self.offline = bool(getattr(policy, "offline", False))
        if self.offline:
            self.public = replace(scn.with_true_work(), events=[])
        else:
            self.public = replace(scn, events=[], jobs=[_estimate_only(j) for j in scn.jobs])
        self.forecaster = None if self.offline else Forecaster(scn)
        if self.forecaster:
            self.public = self.forecaster.view_scenario(self.public)
        else:
            self.forecaster = None
        self.ledger = Ledger(self.public)
        if self.forecaster is not None:
            self.ledger.reissue(self.forecaster.issue_h)     # the forecasts issued at hour 0
        self.jobs: dict[str, _JobState] = {}
        self.by_site: dict[str, set[str]] = defaultdict(set)    # site -> jobs placed there
        self.down: dict[str, int] = defaultdict(int)            # site -> outages in progress
        self.known_caps = []
        # job -> (its rest, the held run (site, GPU type, start, end), later pieces held with it)
        self.held: dict[str, tuple[PendingJob, tuple[str, str, float, float], tuple[tuple[float, float], ...]]] = {}
        self._wake_due: set[str] = set()
        self.segments: list[Segment] = []
        self.ended: list[tuple[Job, float]] = []     # jobs ended, as the policy saw them, with their true work
        self.result = SimResult(self.segments)
        self._heap: list[tuple] = []
        self._seq = 0

    def _push(self, t: float, kind: int, data) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, data))

    def run(self) -> SimResult:
        scn = self.scn
        if self.offline:                               # the offline reference sees everything
            self.policy.prepare(scn.with_true_work())
        for job in scn.jobs:
            self._push(job.submit_h, _ARRIVAL, job)
        for e in scn.events:
            if e.type == "outage":
                self._push(e.start_h, _OUTAGE_START, e)
                self._push(e.end_h, _OUTAGE_END, e)
            else:
                self._push(e.start_h - (e.notice_h or 0.0), _CAP_NOTICE, e)
        # every whole hour (forecasts are issued then), held plans are offered again (`replans_hourly`)
        self.hourly = not self.offline and replans_hourly(scn)
        if self.hourly and scn.jobs:
            self._push(math.floor(min(j.submit_h for j in scn.jobs)) + 1.0, _HOUR, None)
        deferred: list[PendingJob] = []
        arrived = 0
        total = len(scn.jobs)
        steps = 0
        while self._heap:
            now = self._heap[0][0]
            waiting: list[PendingJob] = []
            changed = False
            replan = False
            while self._heap and self._heap[0][0] == now:
                _, kind, _, data = heapq.heappop(self._heap)
                if kind == _ARRIVAL:
                    seen = self.public.jobs[scn.job_index[data.id]]
                    st = _JobState(PendingJob(seen, seen.work_h, data.submit_h), data.true_work_h)
                    self.jobs[data.id] = st
                    waiting.append(st.pending)
                    arrived += 1
                    replan = True
                elif kind == _SEG_END:
                    ended, voided = self._run_end(data, now)
                    changed |= ended
                    if voided:
                        waiting.extend(voided)
                        replan = True
                elif kind == _OUTAGE_START:
                    self.down[data.site] += 1
                    waiting.extend(self._outage(data.site, now))
                    replan = True
                elif kind == _OUTAGE_END:
                    self.down[data.site] -= 1
                    changed = replan = True
                elif kind == _WAKE:
                    replan |= data in self.held
                elif kind == _HOUR:
                    # a new hour (and new forecasts, if any: the policy sees the new issue hour):
                    # the plans held for later are offered again; the next hour while anything is
                    # left to happen
                    replan |= bool(self.held)
                    if self._heap:
                        self._push(now + 1.0, _HOUR, None)
                else:
                    self.known_caps.append(data)
            if changed and deferred:
                waiting.extend(deferred)
                deferred = []
            if replan and self.held:
                waiting.extend(self._release_holds())
            if waiting:
                deferred.extend(self._decide(now, waiting))
            steps += 1
            if steps % 512 == 0:
                self.ledger.prune(now)
                if self.progress:
                    self.progress(arrived, total)
        for pj in deferred + self._release_holds():
            self.result.unplaced[pj.job.id] = "still waiting when the simulation ended"
        if self.progress:
            self.progress(arrived, total)
        self.segments.sort(key=lambda s: (s.start_h, s.job_id))
        return self.result

    # ------------------------------------------------------------------ policy
    def _decide(self, now: float, waiting: list[PendingJob]) -> list[PendingJob]:
        self._now = now
        if self.forecaster is not None and self.forecaster.issue(math.floor(now)):
            self.ledger.reissue(self.forecaster.issue_h)      # the forecasts of this hour
        view = StateView(now=now, scenario=self.public, ledger=self.ledger,
                         down=frozenset(s for s, n in self.down.items() if n > 0),
                         grid_caps=tuple(self.known_caps), holds=True,
                         running_on=self._running_on if self.preempt else None,
                         overruns=self.result.overruns, ended=self.ended, pieces=True,
                         stops=True)
        decisions = self.policy.decide(view, waiting)
        self.result.policy_calls += 1
        by_id = {pj.job.id: pj for pj in waiting}
        for d in decisions:                 # stops first: the rest of the answer may use the GPUs they free
            if isinstance(d, Preempt):
                if d.job_id in by_id:
                    raise PolicyError(f"{self.policy.name}: job {d.job_id!r} preempted twice, or both "
                                      "offered and preempted")
                by_id[d.job_id] = self._preempt(view, d)
        answered: set[str] = set()
        deferred = []
        for d in decisions:
            if isinstance(d, Preempt):
                continue
            pj = by_id.get(d.job_id)
            if pj is None or d.job_id in answered:
                raise PolicyError(f"{self.policy.name}: decision for job {d.job_id!r} that was not offered "
                                  "or was already answered")
            answered.add(d.job_id)
            if d.explain is not None:
                log = self.result.explanations.setdefault(d.job_id, [])
                if log and log[-1].kind == "defer":      # keep only the latest of a run of deferrals
                    log.pop()
                # kept without the other pools' bests (explain.jsonl has the best few): a lazy list of
                # them holds the job's every priced candidate (whole Philly: 1.0 -> 1.65 GB)
                log.append(ExplainedDecision(type(d).__name__.lower(), now,
                                             replace(d.explain, others=(), unscored={})))
            if isinstance(d, Place):
                self._place(view, pj, d)
            elif isinstance(d, Defer) and d.hold is not None:
                self._hold(view, pj, d)
            elif isinstance(d, Defer):
                deferred.append(pj)
            elif isinstance(d, Reject):
                self.result.rejected[d.job_id] = d.reason
        missing = set(by_id) - answered
        if missing:
            raise PolicyError(f"{self.policy.name}: no decision for jobs {sorted(missing)[:5]}")
        return deferred

    def _running_on(self, site: str, gpu_type: str) -> list[Running]:
        """The runs in progress on a pool at the current instant, in scenario order."""
        now, out = self._now, []
        for jid in self.by_site[site]:
            st = self.jobs[jid]
            asg = st.assignment
            if asg.gpu_type == gpu_type and asg.start_h < now - TIME_TOL and asg.end_h > now + TIME_TOL:
                out.append(Running(st.pending, site, gpu_type, asg.start_h, asg.end_h))
        out.sort(key=lambda r: self.scn.job_index[r.job.id])
        return out

    def _preempt(self, view: StateView, d: Preempt) -> PendingJob:
        """Stop a running job now, as an outage would (its whole checkpoints kept); its rest."""
        st = self.jobs.get(d.job_id)
        asg = st.assignment if st is not None else None
        now = view.now
        if (view.running_on is None or asg is None or not asg.start_h < now - TIME_TOL
                or not asg.end_h > now + TIME_TOL):
            raise PolicyError(f"{self.policy.name}: preempted job {d.job_id!r}, which is not running now ({now})")
        run = Running(st.pending, asg.site, asg.gpu_type, asg.start_h, asg.end_h)
        self.ledger.add(asg.site, asg.gpu_type, asg.gpus, now, asg.end_h, sign=-1)
        self._drop_later(st, asg)
        st.stops = False
        self.segments.append(Segment(asg.job_id, asg.site, asg.gpu_type, asg.gpus, asg.start_h, now))
        self.result.preemptions += 1
        if d.explain is not None:
            self.result.explanations.setdefault(d.job_id, []).append(
                ExplainedDecision("preempt", now, replace(d.explain, others=(), unscored={})))
        st.pending = run.rest(now, self.scn)
        st.true_rest -= self._kept(st, asg, now)
        st.assignment = st.true_end = None
        self.by_site[asg.site].discard(asg.job_id)
        return st.pending

    def _release_holds(self) -> list[PendingJob]:
        back = []
        for pj, (site, g, start, end), pieces in self.held.values():
            self.ledger.add(site, g, pj.job.gpus, start, end, sign=-1)
            for a, b in pieces:
                self.ledger.add(site, g, pj.job.gpus, a, b, sign=-1)
            back.append(pj)
        self.held.clear()
        return back

    def _hold(self, view: StateView, pj: PendingJob, d: Defer) -> None:
        site, g, start, end = d.hold
        if d.retry_at is not None and not d.retry_at > view.now:
            raise PolicyError(f"{self.policy.name}: job {pj.job.id} deferred to retry at {d.retry_at}, not later "
                              f"than now ({view.now})")
        self._check(view, pj, Place(pj.job.id, site, g, start, end, pieces=d.pieces, stops=d.stops))
        self.ledger.add(site, g, pj.job.gpus, start, end)
        for a, b in d.pieces:
            self.ledger.add(site, g, pj.job.gpus, a, b)
        self.held[pj.job.id] = (pj, d.hold, d.pieces)
        if d.retry_at is not None:
            self._push(d.retry_at, _WAKE, pj.job.id)

    def _place(self, view: StateView, pj: PendingJob, d: Place) -> None:
        self._check(view, pj, d)
        job = pj.job
        self.ledger.add(d.site, d.gpu_type, job.gpus, d.start_h, d.end_h)
        for a, b in d.pieces:
            self.ledger.add(d.site, d.gpu_type, job.gpus, a, b)
        asg = Segment(job.id, d.site, d.gpu_type, job.gpus, d.start_h, d.end_h)
        st = self.jobs[job.id]
        st.assignment = asg
        st.later, st.stops = d.pieces, bool(d.pieces) or d.stops
        st.true_end = d.end_h                 # the booking is right: it ends as planned
        if d.pieces or st.true_rest != pj.remaining_work or not self._exact(view, pj, d):
            true_end = d.start_h + st.true_rest / self.scn.speed(job, d.gpu_type)
            if d.pieces or abs(true_end - d.end_h) > TIME_TOL:
                st.true_end = true_end
        self.by_site[d.site].add(job.id)
        self._push(min(st.true_end, d.end_h), _SEG_END, asg)

    def _drop_later(self, st: _JobState, asg: Segment) -> None:
        """Give back the later pieces booked for the run `asg` of `st` (none without a plan in pieces)."""
        for a, b in st.later:
            self.ledger.add(asg.site, asg.gpu_type, asg.gpus, a, b, sign=-1)
        st.later = ()

    def _check(self, view: StateView, pj: PendingJob, d: Place) -> None:
        """Refuse a run the policy could not have: a bug in the policy, never silently."""
        scn, job = self.scn, pj.job
        def bad(why: str) -> PolicyError:
            return PolicyError(f"{self.policy.name} placed job {job.id} on {d.site}/{d.gpu_type} "
                               f"at {d.start_h}: {why}")
        site = scn.sites.get(d.site)
        if site is None or d.gpu_type not in site.gpus or d.gpu_type not in scn.allowed_types(job):
            raise bad("no such pool, or the GPU type is not allowed")
        if view.down and d.site in view.down:
            raise bad("the site is down")
        if not scn.latency_ok(job, d.site) or scn.path(job, d.site) is None:
            raise bad("unreachable or beyond max_rtt_ms")
        if d.start_h < view.now - TIME_TOL or d.start_h < view.data_ready_h(pj, d.site) - TIME_TOL:
            raise bad("starts before now or before its data arrives")
        calendar = self.ledger.calendars[(d.site, d.gpu_type)]
        if d.stops and not job.checkpoint_h:
            raise bad("a planned stop for a job that does not checkpoint")
        if d.pieces:
            self._check_pieces(pj, d, bad)
        elif d.stops:
            if not d.end_h > d.start_h:
                raise bad("its run is empty")
        elif not self._exact(view, pj, d) and not d.end_h - d.start_h > view.duration_h(pj, d.gpu_type):
            raise bad("it is shorter than the remaining work")
        if not calendar.fits(d.start_h, d.end_h, job.gpus):
            raise bad("the pool does not have the GPUs free")
        for a, b in d.pieces:
            if not calendar.fits(a, b, job.gpus):
                raise bad(f"the pool does not have the GPUs free for its piece [{a}, {b})")

    def _check_pieces(self, pj: PendingJob, d: Place, bad: Callable[[str], PolicyError]) -> None:
        """A plan in pieces: each after the one before, and together (whole checkpoints of each
        but the last, all of the last, MODEL.md §3.7) at least the remaining work."""
        job = pj.job
        speed = self.scn.speed(job, d.gpu_type)
        runs = [(d.start_h, d.end_h), *d.pieces]
        for (a0, b0), (a1, b1) in zip(runs, runs[1:], strict=False):
            if not (b0 > a0 and a1 >= b0 - TIME_TOL and b1 > a1):
                raise bad(f"its pieces are not in time order, or empty: [{a0}, {b0}) then [{a1}, {b1})")
        kept = sum(kept_work(b - a, speed, job.checkpoint_h) for a, b in runs[:-1])
        a, b = runs[-1]
        if not d.stops and kept + (b - a) * speed < pj.remaining_work - TIME_TOL * speed:
            raise bad(f"its pieces keep {kept + (b - a) * speed:g} h of work, less than the remaining "
                      f"{pj.remaining_work:g} h")

    @staticmethod
    def _exact(view: StateView, pj: PendingJob, d: Place) -> bool:
        """Whether the run is booked for the remaining work's estimate exactly (a policy may book
        longer, expecting an overrun; never shorter)."""
        return math.isclose(d.end_h - d.start_h, view.duration_h(pj, d.gpu_type), rel_tol=1e-9, abs_tol=1e-9)

    # ------------------------------------------------------------------ state changes
    def _kept(self, st: _JobState, asg: Segment, now: float) -> float:
        """Work a run of `st` kept when cut at `now` (whole checkpoints, MODEL.md §3.7)."""
        job = st.pending.job
        return kept_work(now - asg.start_h, self.scn.speed(job, asg.gpu_type), job.checkpoint_h)

    def _run_end(self, asg: Segment, now: float) -> tuple[bool, list[PendingJob]]:
        """The end of a run's booking, or its true end if that comes first: (whether the job
        ended, the jobs whose placements or holds an overrun voided)."""
        st = self.jobs[asg.job_id]
        if st.assignment is not asg:
            return False, []                  # cut or cancelled by an outage, or stopped
        if now < st.true_end - TIME_TOL:
            if st.stops:
                return True, self._suspend(st, asg, now)
            return False, self._overrun(st, asg, now)
        self._drop_later(st, asg)             # done within a piece: the later ones are not needed
        st.assignment = None
        st.done = True
        self.ended.append((st.pending.job, self.scn.jobs[self.scn.job_index[asg.job_id]].true_work_h))
        self.by_site[asg.site].discard(asg.job_id)
        if st.true_end < asg.end_h:           # ended early: the rest of its booking is free
            self.ledger.add(asg.site, asg.gpu_type, asg.gpus, st.true_end, asg.end_h, sign=-1)
            asg = asg._replace(end_h=st.true_end)
        self.segments.append(asg)
        return True, []

    def _suspend(self, st: _JobState, asg: Segment, now: float) -> list[PendingJob]:
        """The planned stop at the end of a piece: the run keeps its whole checkpoints, and its
        later pieces, still booked, become the rest's hold, offered again at the next one's start
        (the rest is offered at once where an overrun took them: returned)."""
        self.segments.append(asg)
        st.true_rest -= self._kept(st, asg, now)
        st.pending = Running(st.pending, asg.site, asg.gpu_type, asg.start_h, asg.end_h).rest(now, self.scn)
        later = st.later
        st.assignment = st.true_end = None
        st.later, st.stops = (), False
        self.by_site[asg.site].discard(asg.job_id)
        if not later:
            return [st.pending]
        (a, b), *more = later
        self.held[asg.job_id] = (st.pending, (asg.site, asg.gpu_type, a, b), tuple(more))
        self._push(a, _WAKE, asg.job_id)
        return []

    def _overrun(self, st: _JobState, asg: Segment, now: float) -> list[PendingJob]:
        """A run still going at the end of its booking: book it `OVERRUN_LEASE_H` more (not past
        its true end), voiding what that pushes over the pool's count (MODEL.md §7)."""
        until = min(st.true_end, now + OVERRUN_LEASE_H)
        key = (asg.site, asg.gpu_type)
        calendar = self.ledger.calendars[key]
        voided: list[PendingJob] = []
        if not calendar.fits(now, until, asg.gpus):
            # not started yet and in the way: placements, and plans held for later; latest first
            order = []
            for jid in self.by_site[asg.site]:
                other_st = self.jobs[jid]
                other = other_st.assignment
                if other is asg or other.gpu_type != asg.gpu_type:
                    continue
                # a placement not started yet, or a later piece of a plan in pieces (running or not)
                runs = other_st.later if other.start_h < now - TIME_TOL else ((other.start_h, other.end_h),
                                                                               *other_st.later)
                hit = [a for a, b in runs if a < until and b > now]
                if hit:
                    order.append((hit[0], self.scn.job_index[jid], jid, False))
            for jid, (_, (site, g, start, end), pieces) in self.held.items():
                hit = [a for a, b in ((start, end), *pieces) if a < until and b > now]
                if (site, g) == key and hit:
                    order.append((hit[0], self.scn.job_index[jid], jid, True))
            for _, _, jid, is_hold in sorted(order, reverse=True):
                if is_hold:
                    pj, (site, g, start, end), pieces = self.held.pop(jid)
                    self.ledger.add(site, g, pj.job.gpus, start, end, sign=-1)
                    for a, b in pieces:
                        self.ledger.add(site, g, pj.job.gpus, a, b, sign=-1)
                elif self.jobs[jid].assignment.start_h < now - TIME_TOL:
                    # running: only its later pieces go; the rest is offered again at its stop
                    other_st = self.jobs[jid]
                    self._drop_later(other_st, other_st.assignment)
                    pj = None
                else:
                    other_st = self.jobs[jid]
                    other = other_st.assignment
                    self._drop_later(other_st, other)
                    self.ledger.add(other.site, other.gpu_type, other.gpus, other.start_h, other.end_h, sign=-1)
                    self.by_site[other.site].discard(jid)
                    other_st.assignment = other_st.true_end = None
                    other_st.stops = False
                    pj = other_st.pending
                if pj is not None:
                    voided.append(pj)
                if calendar.fits(now, until, asg.gpus):
                    break
            else:
                raise RuntimeError(f"overrun of job {asg.job_id} on {key} at {now}: the pool cannot take it "
                                   "even with every later placement voided")
        self.result.voided += len(voided)
        self.result.overruns += 1
        self.ledger.add(asg.site, asg.gpu_type, asg.gpus, now, until)
        longer = asg._replace(end_h=until)
        st.assignment = longer
        self._push(until, _SEG_END, longer)
        return voided

    def _outage(self, site: str, a: float) -> list[PendingJob]:
        """Cut running segments on `site` at `a`, cancel later ones; return the work handed back."""
        back = []
        for jid in sorted(self.by_site[site], key=self.scn.job_index.__getitem__):
            st = self.jobs[jid]
            asg = st.assignment
            if st.true_end <= a + TIME_TOL:
                continue                       # finishes as the outage begins
            pj = st.pending
            self._drop_later(st, asg)
            st.stops = False
            if asg.start_h < a - TIME_TOL:     # running: cut, keep checkpointed progress
                if asg.end_h > a:              # (an overrun's booking may end just now)
                    self.ledger.add(site, asg.gpu_type, asg.gpus, a, asg.end_h, sign=-1)
                self.segments.append(Segment(jid, site, asg.gpu_type, asg.gpus, asg.start_h, a))
                self.result.cuts += 1
                st.true_rest -= self._kept(st, asg, a)
                pj = replace(Running(pj, site, asg.gpu_type, asg.start_h, asg.end_h).rest(a, self.scn),
                             from_site=site)
            else:                              # not started: the placement is void
                self.ledger.add(site, asg.gpu_type, asg.gpus, asg.start_h, asg.end_h, sign=-1)
                pj = replace(pj, from_site=site)
            st.pending = pj
            st.assignment = st.true_end = None
            back.append(pj)
        self.by_site[site].clear()
        return back


def replans_hourly(scn: Scenario) -> bool:
    """Whether the simulator offers held plans again at every whole hour: in a scenario written
    with uncertainty in mind (MODEL.md §7: a `forecast:` block, or a job with `max_wait_h` or
    `actual_work_h`), whatever its level of information. Older scenarios have no hourly event,
    so their schedules stay exactly as they were."""
    return scn.forecast is not None or any(j.max_wait_h is not None or j.actual_work_h is not None
                                           for j in scn.jobs)


def _estimate_only(job: Job) -> Job:
    """The job as an online policy sees it: `work_h`, the estimate, and no `actual_work_h`."""
    return job if job.actual_work_h is None else job.model_copy(update={"actual_work_h": None})


def simulate(scn: Scenario, policy: Policy, progress: Callable[[int, int], None] | None = None,
             preempt: bool = True) -> SimResult:
    return Simulation(scn, policy, progress, preempt).run()
