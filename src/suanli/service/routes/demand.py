"""Demand response (service/demand.py): a utility's grid-cap signal in, the events out."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from suanli.model.schema import Event
from suanli.service.models import DemandEvent, GridCap
from suanli.service.routes.deps import DB, Ctl, Who, admin_only, done
from suanli.service.routes.sites import cap_out
from suanli.service.schemas import DemandEventOut, DemandStop, GridCapOut, GridSignalIn

router = APIRouter(tags=["demand response"])
SIGNAL_AHEAD = timedelta(days=7)        # a signal's expiry at most this far ahead


def _site_or_admin(p, site: str) -> None:
    """The site's own token (its energy management system relays the utility's signal) or an operator."""
    if p.role == "admin" or (p.role == "site" and p.site == site):
        return
    raise HTTPException(403, f"site {site}: only its own site token or an operator may send its grid signals")


@router.post("/v1/sites/{site}/grid-signals", response_model=GridCapOut, status_code=201,
             responses={200: {"description": "a signal already received, renewed or changed"}})
def grid_signal(site: str, body: GridSignalIn, p: Who, s: DB, c: Ctl, response: Response):
    """A utility's demand-response signal for the site: at most `max_grid_kw` from the grid until
    `end`. The policy plans around it and the controller enforces it against the site's metered
    import (docs/ENERGY.md "Demand response"). The same `signal_id` again renews or changes it
    (200); an `end` now or past ends it."""
    _site_or_admin(p, site)
    if site not in c.network.sites:
        raise HTTPException(404, f"site: no site {site!r} in the network")
    now = datetime.now(UTC)
    if body.end > now + SIGNAL_AHEAD:
        raise HTTPException(422, f"end: {body.end.isoformat()} is more than {SIGNAL_AHEAD.days} days ahead")
    with c.lock:
        row = s.scalars(select(GridCap).where(GridCap.site == site, GridCap.signal_id == body.signal_id)).first()
        start = row.start_h if row is not None and body.start is None else c.hours(body.start or now)
        end = c.hours(body.end)
        if row is not None:             # a renewal or a change; an end now or past ends it now
            end = max(end, c.now_h())
        if not end > start:
            raise HTTPException(422, f"end: {body.end.isoformat()} is not after start")
        if row is None:
            row = GridCap(site=site, start_h=start, end_h=end, max_grid_kw=body.max_grid_kw, reason=body.reason,
                          source="utility", signal_id=body.signal_id, sender=body.sender)
            s.add(row)
        else:
            row.start_h, row.end_h, row.max_grid_kw, row.sender = start, end, body.max_grid_kw, body.sender
            row.reason = body.reason or row.reason
            response.status_code = 200
        s.commit()
    e = Event(type="grid_cap", site=site, start_h=row.start_h, end_h=row.end_h, max_grid_kw=row.max_grid_kw)
    return cap_out(c, e, "utility", row.id, row.reason).model_copy(update={"signal_id": row.signal_id,
                                                                           "sender": row.sender})


def event_out(e: DemandEvent) -> DemandEventOut:
    start = e.start_at if e.start_at.tzinfo else e.start_at.replace(tzinfo=UTC)
    end = None if e.end_at is None else (e.end_at if e.end_at.tzinfo else e.end_at.replace(tzinfo=UTC))
    return DemandEventOut(
        id=e.id, site=e.site, open=e.end_at is None, cap_source=e.cap_source, cap_id=e.cap_id,
        max_grid_kw=e.max_grid_kw, start=start, detected_at=e.detected_at, end=end, end_reason=e.end_reason,
        duration_s=None if end is None else (end - start).total_seconds(), peak_grid_kw=e.peak_grid_kw,
        peak_over_kw=e.peak_over_kw, kwh_above=e.kwh_above,
        stopped=[DemandStop(**x) for x in e.stopped or []], note=e.note)


@router.get("/v1/sites/{site}/demand-response", response_model=list[DemandEventOut])
def events(site: str, p: Who, s: DB, c: Ctl, limit: Annotated[int, Query(ge=1, le=1000)] = 100):
    """The site's demand-response events, newest first (operator only): each the metered import over
    the cap from its first reading over to its end, the peak, the kWh above the cap, the runs stopped."""
    admin_only(p)
    if site not in c.network.sites:
        raise HTTPException(404, f"site: no site {site!r} in the network")
    rows = s.scalars(select(DemandEvent).where(DemandEvent.site == site).order_by(DemandEvent.id.desc())
                     .limit(limit)).all()
    return done(s, [event_out(e) for e in rows])
