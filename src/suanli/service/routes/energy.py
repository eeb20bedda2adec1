"""Metered energy (service/meters.py): a site's agent posts its meter readings; the operator reads
a site's hourly energy, measured for the hours past and forecast for the hours ahead."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime

from suanli.service import bills, meters
from suanli.service.routes.agent import Arrived
from suanli.service.routes.deps import DB, Ctl, Who, admin_only, done, site_only
from suanli.service.schemas import EnergyHour, MeterBatchIn, MeterBatchOut

router = APIRouter(tags=["energy"])
log = logging.getLogger("suanli.api")


@router.post("/v1/agent/{site}/meter", status_code=202, response_model=MeterBatchOut)
def post_readings(received: Arrived, site: str, body: MeterBatchIn, p: Who, s: DB, c: Ctl):
    """Store a batch of the site's meter readings (at most 10,000), whole or not at all: a batch
    with an impossible value answers 422 naming the reading and the field. A reading already
    stored with the same values (a retry) is ignored; with other values it is refused."""
    site_only(p, site)
    if site not in c.network.sites:
        raise HTTPException(404, f"site: no site {site!r} in the network")
    c.saw(site, received)
    readings = [meters.Reading(r.at, r.it_kw, r.facility_kw, r.renewable_kw, r.grid_kw, r.battery_soc_kwh)
                for r in body.readings]
    try:
        got = meters.ingest(s, site, readings, network=c.network, epoch=c.epoch,
                            retention_days=c.meter_retention_days)
    except meters.Refused as e:
        s.rollback()
        log.warning("meter readings of site %s refused: %s", site, e)
        raise HTTPException(422, str(e)) from None
    s.commit()
    if got.accepted:
        c.true_ups.nudge()           # runs these readings now cover are re-priced at the next tick (bills.py)
    return MeterBatchOut(accepted=got.accepted, duplicates=got.duplicates, hours=got.hours)


@router.get("/v1/sites/{site}/energy", response_model=list[EnergyHour])
def energy(site: str, p: Who, s: DB, c: Ctl,
           start: Annotated[AwareDatetime, Query(alias="from", description="ISO 8601 with its offset")],
           end: Annotated[AwareDatetime, Query(alias="to", description="ISO 8601 with its offset")]):
    """The site's energy by UTC hour over [from, to) (widened to whole hours; a year at most,
    reaching a week ahead at most): `measured` where the hour has readings, with what the site's
    runs were billed from it and the idle share (bills.py), `forecast` for the hour in progress and
    those ahead (operator only)."""
    admin_only(p)
    if site not in c.network.sites:
        raise HTTPException(404, f"site: no site {site!r} in the network")
    try:
        # c.public: the series the scheduler plans with (the nowcast where the site has readings)
        rows = meters.energy_rows(s, c.public, c.epoch, site, start, end, datetime.now(UTC))
    except meters.BadRange as e:
        raise HTTPException(422, str(e)) from None
    return done(s, bills.attribute(s, site, rows, c.epoch, c.now_h()))
