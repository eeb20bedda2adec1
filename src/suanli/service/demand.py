"""Demand response against metered grid import (docs/ENERGY.md "Demand response").

A grid cap (the network file's `grid_cap` events, the operator's `POST /v1/admin/grid-caps`, a
utility's signal `POST /v1/sites/{site}/grid-signals`) is planned around by the policy from the
moment it is known (controller.grid_caps). This module enforces it against what the site's meters
say, at every controller tick (`review`, one call from `Controller.tick`), for each site with a
cap in force now (start_h <= now < end_h; of several, the lowest binds):

- The site's newest meter reading (`meters.latest_reading`) counts when it is fresh: taken at most
  `Controller.dr_fresh_s` (FRESH_S) ago. A silent meter says nothing about now.
- **Over**: its `grid_kw` exceeds the cap. The first such reading opens an event (`DemandEvent`),
  starting at the reading (or at the cap's start, for a reading taken before it).
- **Shed**: while the newest fresh reading is X kW over, the controller stops checkpointing runs
  on the site (RUNNING, with `checkpoint_h`) whose power adds up to at least X, less what runs
  already stopped for the event will shed but the reading cannot show yet (stopped less than
  SETTLE_S before it was taken: the agent kills a run at its next heartbeat, the meter sees it at
  its next reading). A run's power is its GPUs x the GPU type's board power x the site's PUE (the
  network file). Of the sets that suffice, the one of least kW is stopped, and of those the one of
  fewest runs (`choose`); when all of them fall short, all are stopped. A stopped run is preempted
  as when its site dies (`Controller.preempt`): metered up to now, PENDING again keeping the work
  of its last checkpoint, its agent told to kill it at its next heartbeat; the policy places the
  rest elsewhere or later, and it resumes from the checkpoint. A run without `checkpoint_h` would
  lose its work: it is never stopped, and the event says so ("N kW over, no checkpointing job to
  stop").
- **Hold**: while an event is open its site takes no new start: the policy sees the site as down,
  placements there that are due are void (offered again), and its agent's claims get nothing.
- **Close**: at the first fresh reading at or under the cap, or when no cap is in force any more.
- **Headroom**: while a cap is in force, and not only during an event, the site's agent is handed
  a due placement only if its power fits under the cap with the latest fresh reading's import and
  the runs dispatched since (`headroom`): else the run the event just stopped, placed there again
  by a policy that cannot see the site's other load, would start and take it over at once. Such a
  placement waits, PLACED, until there is room or the cap ends.
- **kWh above the cap**: each reading's import held until the next reading (at most
  meters.MAX_GAP_S, as the roll-ups hold it), the part above the cap, summed from the reading that
  opened the event to the one that closed it (at a cap's end: to the end of the last reading's
  hold or now). Readings that arrive later than a newer one already counted are left out.

Units: kW, kWh; times UTC (readings' times in µs since 1970, as in meters.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service import metering, meters
from suanli.service.lifecycle import model_job, move
from suanli.service.models import DemandEvent, MeterReading
from suanli.service.models import Job as JobRow

if TYPE_CHECKING:
    from suanli.service.controller import Controller

log = logging.getLogger("suanli.demand")
FRESH_S = 60.0          # a reading older than this says nothing about now (4 readings of a 15-s meter)
SETTLE_S = 10.0         # a stop shows in readings taken this long after it (a heartbeat, a kill, a reading)
READINGS_PER_TICK = 10_000      # readings integrated into an event per tick (the rest at the next)
EXACT_STATES = 200_000          # `choose` searches exactly up to this many partial sums, else greedily


@dataclass(frozen=True)
class Cap:
    """The cap that binds a site now: kW, and where it came from."""

    kw: float
    source: str                 # network | operator | utility
    cap_id: int | None
    start_h: float = 0.0        # controller hours: when it came into force


# --------------------------------------------------------------------------------- pure parts
def choose(runs: Sequence[tuple[Hashable, float]], need_kw: float) -> list[Hashable]:
    """Which of `runs` ((key, kW) each) to stop to shed at least `need_kw`: the set of least total
    kW that reaches it, of those the one of fewest runs; all of them when even all fall short;
    none when nothing is needed. Exact (a search over the distinct partial sums, to the watt) while
    they stay under EXACT_STATES, else greedy (the smallest run that covers what is left, else the
    largest, again)."""
    if need_kw <= 0 or not runs:
        return []
    need = math.ceil(need_kw * 1000 - 1e-6)               # W
    watts = [max(0, round(kw * 1000)) for _, kw in runs]
    if sum(watts) < need:
        return [k for k, _ in runs]
    sums: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}   # partial sum under need -> (runs, which)
    best: tuple[int, int, tuple[int, ...]] | None = None           # (total, runs, which)
    for i, w in enumerate(watts):
        for total, (n, which) in list(sums.items()):
            t, cand = total + w, (n + 1, (*which, i))
            if t >= need:
                if best is None or (t, cand[0]) < best[:2]:
                    best = (t, *cand)
            elif t not in sums or cand[0] < sums[t][0]:
                sums[t] = cand
        if len(sums) > EXACT_STATES:
            return _greedy(runs, watts, need)
    assert best is not None                             # sum(watts) >= need
    return [runs[i][0] for i in best[2]]


def _greedy(runs, watts: list[int], need: int) -> list[Hashable]:
    left = sorted(range(len(runs)), key=lambda i: watts[i])
    out = []
    while need > 0 and left:
        cover = next((i for i in left if watts[i] >= need), None)
        i = cover if cover is not None else left[-1]
        out.append(runs[i][0])
        left.remove(i)
        need -= watts[i]
    return out


def excess_kwh(last: tuple[int, float], points: Sequence[tuple[int, float]], cap_kw: float,
               until_us: int | None = None) -> float:
    """kWh of grid import above `cap_kw`: the reading `last` (at_us, grid_kw) held until each of
    `points` (sorted, all after it) in turn, each hold at most meters.MAX_GAP_S; with `until_us`,
    the last reading's hold up to then too."""
    gap = int(meters.MAX_GAP_S * meters.US)
    total = 0.0
    a, g = last
    for t, grid in points:
        total += max(0.0, g - cap_kw) * min(t - a, gap) / meters.HOUR_US
        a, g = t, grid
    if until_us is not None and until_us > a:
        total += max(0.0, g - cap_kw) * min(until_us - a, gap) / meters.HOUR_US
    return total


# ------------------------------------------------------------------------------ the tick's part
def binding_caps(c: Controller, s: Session, now: float) -> dict[str, Cap]:
    """The lowest cap in force now on each capped site."""
    out: dict[str, Cap] = {}
    for e, source, cap_id, _ in c.grid_caps(s, now):
        if e.start_h <= now < e.end_h and e.max_grid_kw is not None:
            if e.site not in out or e.max_grid_kw < out[e.site].kw:
                out[e.site] = Cap(float(e.max_grid_kw), source, cap_id, float(e.start_h))
    return out


def open_events(s: Session) -> dict[str, DemandEvent]:
    return {e.site: e for e in s.scalars(select(DemandEvent).where(DemandEvent.end_at.is_(None))
                                         .order_by(DemandEvent.id))}


def holding(s: Session, site: str) -> bool:
    """Whether `site` is in an open demand-response event (its agent's claims get nothing)."""
    return s.scalar(select(DemandEvent.id).where(DemandEvent.site == site, DemandEvent.end_at.is_(None))
                    .limit(1)) is not None


def headroom(c: Controller, s: Session, site: str) -> float | None:
    """kW a new start on `site` may add under its cap in force, by its meter: the cap less the
    latest fresh reading's import less the runs dispatched since that reading (not in it yet).
    None when no cap is in force or no fresh reading says what the site draws (then the policy's
    plan alone decides, as before meters)."""
    cap = binding_caps(c, s, c.now_h()).get(site)
    if cap is None:
        return None
    last = meters.latest_reading(s, site)
    if last is None or (datetime.now(UTC) - last.at).total_seconds() > c.dr_fresh_s:
        return None
    seen_h = c.hours(last.at)
    since = s.scalars(select(JobRow).where(JobRow.site == site, JobRow.state.in_(("TRANSFERRING", "RUNNING")))).all()
    coming = sum(run_kw(c, r) for r in since
                 if r.state == "TRANSFERRING" or (r.start_h is not None and r.start_h > seen_h))
    return cap.kw - last.grid_kw - coming


def review(c: Controller, s: Session, now: float) -> set[str]:
    """Open, update, shed for and close the sites' events (the module's rule); the sites held."""
    caps = binding_caps(c, s, now)
    events = open_events(s)
    wall = datetime.now(UTC)
    held: set[str] = set()
    for site in sorted(set(caps) | set(events)):
        if site not in c.network.sites:
            continue
        ev, cap = events.get(site), caps.get(site)
        if cap is None:                                   # no cap in force any more
            _close(s, ev, "the cap ended", until_us=meters.to_us(wall))
            continue
        last = meters.latest_reading(s, site)
        fresh = last is not None and (wall - last.at).total_seconds() <= c.dr_fresh_s
        if ev is None:
            if not fresh or last.grid_kw <= cap.kw:
                continue
            ev = _open(s, site, cap, last, wall, c.wall(cap.start_h))
        else:
            ev.max_grid_kw, ev.cap_source, ev.cap_id = cap.kw, cap.source, cap.cap_id
            _integrate(s, ev)
            if fresh and last.grid_kw <= cap.kw:
                _close(s, ev, "under the cap")
                continue
        held.add(site)
        if fresh and last.grid_kw > cap.kw:
            _shed(c, s, ev, last, cap, now)
        _void_due(c, s, site, ev, now)
    return held


def _open(s: Session, site: str, cap: Cap, last: meters.Reading, wall: datetime, cap_from: datetime) -> DemandEvent:
    """An event from the reading `last`, or from the cap's start if the reading is older (its power
    holds on, but the cap did not bind before it began)."""
    over = last.grid_kw - cap.kw
    start = max(last.at, cap_from)
    ev = DemandEvent(site=site, cap_source=cap.source, cap_id=cap.cap_id, max_grid_kw=cap.kw, start_at=start,
                     detected_at=wall, end_reason="", peak_grid_kw=last.grid_kw, peak_over_kw=over, kwh_above=0.0,
                     last_at_us=meters.to_us(start), last_grid_kw=last.grid_kw, stopped=[], note="")
    s.add(ev)
    s.flush()
    log.warning("demand response: site %s imports %.3f kW from the grid, %.3f kW over its %s cap of %.3f kW; "
                "event %d opened, new starts held", site, last.grid_kw, over, cap.source, cap.kw, ev.id,
                extra={"site": site, "demand_event": ev.id, "grid_kw": last.grid_kw, "over_kw": over,
                       "cap_kw": cap.kw, "cap_source": cap.source})
    return ev


def _integrate(s: Session, ev: DemandEvent) -> None:
    """Add the readings after the event's last one to its kWh above the cap and its peak."""
    rows = s.execute(select(MeterReading.at_us, MeterReading.grid_kw)
                     .where(MeterReading.site == ev.site, MeterReading.at_us > ev.last_at_us)
                     .order_by(MeterReading.at_us).limit(READINGS_PER_TICK)).all()
    if not rows:
        return
    points = [(int(t), float(g)) for t, g in rows]
    ev.kwh_above += excess_kwh((ev.last_at_us, ev.last_grid_kw), points, ev.max_grid_kw)
    peak = max(g for _, g in points)
    if peak > ev.peak_grid_kw:
        ev.peak_grid_kw = peak
    ev.peak_over_kw = max(ev.peak_over_kw, peak - ev.max_grid_kw)
    ev.last_at_us, ev.last_grid_kw = points[-1]


def _close(s: Session, ev: DemandEvent | None, why: str, until_us: int | None = None) -> None:
    if ev is None:
        return
    _integrate(s, ev)
    if until_us is not None:        # the cap ended: the last reading's hold counts up to now
        ev.kwh_above += excess_kwh((ev.last_at_us, ev.last_grid_kw), [], ev.max_grid_kw, until_us)
        end = meters.from_us(min(until_us, ev.last_at_us + int(meters.MAX_GAP_S * meters.US)))
    else:
        end = meters.from_us(ev.last_at_us)
    ev.end_at, ev.end_reason = max(end, _aware(ev.start_at)), why
    log.warning("demand response: site %s event %d closed (%s): peak %.3f kW over its cap of %.3f kW, "
                "%.4f kWh above it, %.1f s, %d runs stopped", ev.site, ev.id, why, ev.peak_over_kw, ev.max_grid_kw,
                ev.kwh_above, (ev.end_at - _aware(ev.start_at)).total_seconds(), len(ev.stopped),
                extra={"site": ev.site, "demand_event": ev.id, "kwh_above": ev.kwh_above,
                       "peak_over_kw": ev.peak_over_kw})


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def run_kw(c: Controller, row: JobRow) -> float:
    """A run's facility power, kW: its GPUs x the type's board power x the site's PUE."""
    return row.gpus * c.network.gpu_types[row.gpu_type].power_kw * c.network.sites[row.site].pue


def _shed(c: Controller, s: Session, ev: DemandEvent, last: meters.Reading, cap: Cap, now: float) -> None:
    over = last.grid_kw - cap.kw
    seen_us = meters.to_us(last.at)
    unseen = sum(x["kw"] for x in ev.stopped
                 if meters.to_us(datetime.fromisoformat(x["at"])) + int(SETTLE_S * meters.US) > seen_us)
    need = over - unseen
    if need <= 1e-9:
        return
    rows = s.scalars(select(JobRow).where(JobRow.site == ev.site, JobRow.state == "RUNNING")
                     .order_by(JobRow.id).with_for_update(skip_locked=True)).all()
    able = [r for r in rows if (r.spec or {}).get("checkpoint_h")]
    if not able:
        note = f"{need:.3f} kW over, no checkpointing job to stop"
        if rows:
            note += f" ({len(rows)} running without checkpoints, left running)"
        if ev.note != note:
            ev.note = note
            log.warning("demand response: site %s event %d: %s", ev.site, ev.id, note,
                        extra={"site": ev.site, "demand_event": ev.id})
        return
    kw = {r.id: run_kw(c, r) for r in able}
    pick = set(choose([(r.id, kw[r.id]) for r in able], need))
    stopped = list(ev.stopped)
    for r in able:
        if r.id not in pick:
            continue
        why = (f"stopped for demand response: site {ev.site} imports {last.grid_kw:.3f} kW, over its "
               f"{cap.source} grid cap of {cap.kw:.3f} kW (event {ev.id}); this run sheds {kw[r.id]:.3f} kW")
        fence = r.fence
        if c.contained(s, r, "while stopping it for demand response", _stop, c, s, r, now, why):
            stopped.append({"job_id": r.id, "fence": fence, "kw": kw[r.id], "at": datetime.now(UTC).isoformat()})
    shed = sum(kw[i] for i in pick)
    note = (f"{need:.3f} kW over: stopped {len(pick)} checkpointing runs ({shed:.3f} kW)"
            + ("" if shed >= need - 1e-9 else f"; {need - shed:.3f} kW over remains, no other checkpointing job"))
    ev.stopped, ev.note = stopped, note


def _stop(c: Controller, s: Session, row: JobRow, now: float, why: str) -> None:
    site = row.site
    metering.meter(s, c.network, c.epoch, row, model_job(row), row.fence, row.start_h, now)
    c.preempt(s, row, now, why)         # PENDING, keeping its checkpointed work, remembering the site
    _decided("preempted", row, why, site)      # the ledger lets its GPUs go at this tick's sync


def _decided(kind: str, row: JobRow, reason: str, site: str) -> None:
    log.info("job %s %s on %s: %s", row.id, kind, site, reason,
             extra={"job_id": row.id, "decision": kind, "site": site, "reason": reason})


def _void_due(c: Controller, s: Session, site: str, ev: DemandEvent, now: float) -> None:
    """Placements on a held site that are due: void, offered again (the policy sees the site down)."""
    soon = now + c.tick_s / 3600.0
    for row in s.scalars(select(JobRow).where(JobRow.site == site, JobRow.state == "PLACED", JobRow.start_h <= soon)
                         .order_by(JobRow.id).with_for_update(skip_locked=True)).all():
        def void(row=row):
            move(s, row, "PENDING", now, f"site {site} is over its grid cap (demand-response event {ev.id}): "
                                         "placement void before dispatch, offered again")
            row.site = row.gpu_type = row.start_h = row.end_h = None
            row.pieces = None
            _decided("deferred", row, row.reason, site)
        c.contained(s, row, "while voiding its placement for demand response", void)
