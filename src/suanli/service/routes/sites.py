"""The network's sites (up, drained, free GPUs, the hour's tariff, carbon and renewables) and the
grid caps the scheduler plans around (demand response: the network file's and the operator's)."""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import math

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from suanli.model.schema import Event
from suanli.service.controller import Controller, drained_sites
from suanli.service.models import GridCap, SiteAgent
from suanli.service.models import Job as JobRow
from suanli.service.routes.deps import DB, Ctl, Who, admin_only
from suanli.service.schemas import GridCapIn, GridCapOut, PoolOut, SiteOut

router = APIRouter(tags=["sites"])


def cap_out(c: Controller, e: Event, source: str, cap_id: int | None, reason: str) -> GridCapOut:
    return GridCapOut(id=cap_id or 0, site=e.site, start_h=e.start_h, end_h=e.end_h,
                      start=c.wall(e.start_h), end=c.wall(e.end_h),
                      max_grid_kw=e.max_grid_kw, reason=reason, source=source)


@router.get("/v1/grid-caps", response_model=list[GridCapOut])
def grid_caps(p: Who, s: DB, c: Ctl):
    """The grid caps the scheduler knows of and that have not ended (network file and operator)."""
    return [cap_out(c, *cap) for cap in c.grid_caps(s, c.now_h())]


@router.post("/v1/admin/grid-caps", status_code=201, response_model=GridCapOut)
def announce_grid_cap(body: GridCapIn, p: Who, s: DB, c: Ctl):
    """Announce a demand-response notice (admin): from now on the policy plans around it."""
    admin_only(p)
    if body.site not in c.network.sites:
        raise HTTPException(422, f"site: no site {body.site!r} in the network")
    start = c.now_h() if body.start is None else c.hours(body.start)
    end = c.hours(body.end)
    if not end > start:
        raise HTTPException(422, f"end: must be after start (got {body.end.isoformat()})")
    with c.lock:
        row = GridCap(site=body.site, start_h=start, end_h=end, max_grid_kw=body.max_grid_kw, reason=body.reason)
        s.add(row)
        s.commit()
    e = Event(type="grid_cap", site=row.site, start_h=row.start_h, end_h=row.end_h, max_grid_kw=row.max_grid_kw)
    return cap_out(c, e, "operator", row.id, row.reason)


@router.get("/v1/sites", response_model=list[SiteOut])
def sites(p: Who, s: DB, c: Ctl):
    net = c.network
    now = c.now_h()
    seen = {a.site: a for a in s.scalars(select(SiteAgent))}
    up = c.up_sites(s)
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
