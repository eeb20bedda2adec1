"""Metering and invoices, priced by `suanli.accounting` (ARCHITECTURE.md principle 3).

A finished run segment is priced once, when it ends, and appended to the usage ledger:
- GPU rental and transfer: `accounting.account` on that segment alone (transfer is paid once
  per job and site: not again on a site that already holds the job's data);
- a checkpoint moved to the run's site from the site that made it (service/checkpoints.py) adds
  its MODEL.md §5 price to the run's transfer cost;
- energy, grid energy, renewables and carbon: `accounting.account` on the site's metered
  segments that share its hourly slots, whose balance (MODEL.md §4) is split between them by
  IT energy per slot (`accounting.slot_pieces`), as `accounting.origin_carbon` splits carbon.
Once the site's meters cover the run, `bills.true_up` re-prices its energy from them (the line's
`energy_basis` says which: "metered" or "modelled"; a true-up of a closed month is a line of its
own, `kind` "true-up", in the month it is made).
An invoice sums a tenant's ledger rows of a month (the month, UTC, in which the segment ended, or
in which a true-up was made).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli import accounting
from suanli.errors import UserError
from suanli.model.scenario import Scenario
from suanli.model.schedule import Segment
from suanli.model.schema import Job
from suanli.service.models import Job as JobRow
from suanli.service.models import SiteAgent, Tenant, Usage
from suanli.service.schemas import Invoice, InvoiceLine


def _with_jobs(network: Scenario, jobs: list[Job], horizon_h: float) -> Scenario:
    return replace(network, jobs=jobs, events=[], job_index={j.id: i for i, j in enumerate(jobs)},
                   horizon_h=max(horizon_h, 1e-9))


def price_segment(network: Scenario, job: Job, seg: Segment, neighbours: list[Segment],
                  data_moves: bool) -> dict[str, float]:
    """The usage-ledger figures of `seg` (a run of `job`), given the metered `neighbours` (other
    segments on the same site). Units: kWh, kg CO2e, CNY."""
    own = job if data_moves else job.model_copy(update={"data_gb": 0.0})
    alone = accounting.account(_with_jobs(network, [own], seg.end_h), [seg])
    # energy: the site's balance over the slots the segment touches, split by IT energy per slot
    others = [Segment(f"n{k}", s.site, s.gpu_type, s.gpus, s.start_h, s.end_h) for k, s in enumerate(neighbours)]
    mine = Segment("self", seg.site, seg.gpu_type, seg.gpus, seg.start_h, seg.end_h)
    pseudo = [Job(id=s.job_id, submit_h=0.0, gpus=s.gpus, work_h=1.0, origin=job.origin) for s in [mine, *others]]
    scn = _with_jobs(network, pseudo, seg.end_h)
    acc = accounting.account(scn, [mine, *others])
    T = acc.slots
    pieces = accounting.slot_pieces(scn, [mine, *others], T)
    k = list(scn.sites).index(seg.site)
    on_site = pieces.site == k
    total_it = np.bincount(pieces.slot[on_site], weights=pieces.it_kwh[on_site], minlength=T)
    mine_sel = on_site & (pieces.job == 0)
    slots, it = pieces.slot[mine_sel], pieces.it_kwh[mine_sel]
    share = np.divide(it, total_it[slots], out=np.zeros_like(it), where=total_it[slots] > 0)
    bal, ser = acc.balances[seg.site], acc.series[seg.site]
    ren_price = network.sites[seg.site].renewables.cny_per_kwh
    grid = share * bal.grid[slots]
    energy_cny = float(np.sum(grid * ser.cny_per_kwh[slots]
                              + share * (bal.used[slots] + bal.charge[slots]) * ren_price))
    m = alone.metrics
    out = {
        "gpu_seconds": seg.length_h * 3600.0 * seg.gpus,
        "energy_kwh": float(np.sum(share * bal.load[slots])),
        "grid_kwh": float(grid.sum()),
        "renewable_kwh": float(np.sum(share * bal.used[slots])),
        "carbon_kg": float(np.sum(grid * ser.carbon_kg_per_kwh[slots])),
        "gpu_cny": m["gpu_cost_cny"],
        "energy_cny": energy_cny,
        "transfer_cny": m["transfer_cost_cny"] if math.isfinite(m["transfer_cost_cny"]) else 0.0,
    }
    out["total_cny"] = out["gpu_cny"] + out["energy_cny"] + out["transfer_cny"]
    return out


def live_energy(s: Session, site: str) -> dict[int, tuple[int, float]]:
    """The site's running runs' GPUs' mean power so far, as its agent's last heartbeat measured it:
    {job id: (fence, kW)} (routes/agent.py keeps it with the agent's record)."""
    a = s.get(SiteAgent, site)
    energy = ((a.info or {}).get("energy") if a is not None else None) or {}
    out = {}
    for jid, v in energy.items():
        try:
            out[int(jid)] = (int(v[0]), float(v[1]))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def meter(s: Session, network: Scenario, epoch: datetime, row: JobRow, job: Job, fence: int,
          start_h: float, end_h: float, gpu_seconds: float | None = None,
          gpu_kwh: float | None = None, stopped: bool = True) -> Usage | None:
    """Append the ledger row of `row`'s run [start_h, end_h) on its site (once per dispatch), its
    energy priced from the network file's models; `bills.true_up` re-prices it from the site's
    meters once they cover the run. `gpu_kwh`: the run's GPU energy as the agent measured it. A run
    the controller `stopped` (cancelled, preempted, moved: no report of the agent ends it) gets its
    mean power so far from the agent's last heartbeat times its length (`live_energy`), which the
    agent's `POST .../energy` may then replace while the row is modelled."""
    if not end_h > start_h or row.site is None or row.gpu_type is None:
        return None
    if s.scalar(select(Usage.id).where(Usage.job_id == row.id, Usage.fence == fence, Usage.kind == "run")) is not None:
        return None
    seg = Segment(str(row.id), row.site, row.gpu_type, row.gpus, start_h, end_h)
    near = s.scalars(select(Usage).where(Usage.site == row.site, Usage.kind == "run",
                                         Usage.end_h > math.floor(start_h), Usage.start_h < math.ceil(end_h))).all()
    neighbours = [Segment(str(u.job_id), u.site, u.gpu_type, u.gpus, u.start_h, u.end_h) for u in near]
    moved_before = s.scalar(select(Usage.id).where(Usage.job_id == row.id, Usage.site == row.site)) is not None
    figures = price_segment(network, job, seg, neighbours, data_moves=not moved_before)
    if gpu_seconds is not None:
        figures["gpu_seconds"] = gpu_seconds          # what the agent measured
    if row.move_cny:                                  # checkpoint moves to this run's site (checkpoints.py)
        figures["transfer_cny"] += row.move_cny
        figures["total_cny"] += row.move_cny
        row.move_cny = 0.0
    if gpu_kwh is None and stopped:
        fence_at, kw = live_energy(s, row.site).get(row.id, (None, 0.0))
        if fence_at == fence:
            gpu_kwh = kw * (end_h - start_h)
    month = (epoch + timedelta(hours=end_h)).strftime("%Y-%m")
    usage = Usage(job_id=row.id, tenant_id=row.tenant_id, fence=fence, site=row.site, gpu_type=row.gpu_type,
                  gpus=row.gpus, start_h=start_h, end_h=end_h, month=month, gpu_kwh=gpu_kwh, **figures)
    s.add(usage)
    return usage


def check_month(month: str) -> str:
    try:
        datetime.strptime(month, "%Y-%m")
    except ValueError:
        raise UserError(f"month: expected YYYY-MM, got {month!r}") from None
    return month


TOTALS = ("gpu_h", "energy_kwh", "carbon_kg", "gpu_cny", "energy_cny", "transfer_cny", "total_cny")
PAGE = 1000            # the most invoice lines one answer carries


def _line(u: Usage, name: str) -> InvoiceLine:
    return InvoiceLine(job_id=u.job_id, name=name, site=u.site, gpu_type=u.gpu_type, gpus=u.gpus,
                       gpu_h=u.gpu_seconds / 3600.0, energy_kwh=u.energy_kwh, carbon_kg=u.carbon_kg,
                       gpu_cny=u.gpu_cny, energy_cny=u.energy_cny, transfer_cny=u.transfer_cny,
                       total_cny=u.total_cny, energy_basis=u.energy_basis, kind=u.kind)


def _lines(s: Session, tenant: Tenant, month: str, limit: int | None, cursor: int | None) -> list:
    q = (select(Usage, JobRow.name).join(JobRow, JobRow.id == Usage.job_id)
         .where(Usage.tenant_id == tenant.id, Usage.month == month).order_by(Usage.id))
    if cursor is not None:
        q = q.where(Usage.id > cursor)
    if limit is not None:
        q = q.limit(limit)
    return s.execute(q).all()


def totals(s: Session, tenant: Tenant, month: str) -> tuple[int, dict[str, float]]:
    """(lines, totals) of a tenant's month, summed by the database."""
    cols = [func.coalesce(func.sum(Usage.gpu_seconds), 0.0) / 3600.0,
            *(func.coalesce(func.sum(getattr(Usage, k)), 0.0) for k in TOTALS[1:])]
    n, *sums = s.execute(select(func.count(Usage.id), *cols)
                         .where(Usage.tenant_id == tenant.id, Usage.month == month)).one()
    return int(n), dict(zip(TOTALS, (float(x) for x in sums), strict=True))


def invoice(s: Session, tenant: Tenant, month: str, limit: int | None = None, cursor: int | None = None) -> Invoice:
    """A tenant's invoice for `month`: the totals of all its lines, and its lines after `cursor` (a
    usage id), at most `limit` of them (None: all, for `suanli bill`)."""
    check_month(month)
    n, sums = totals(s, tenant, month)
    rows = _lines(s, tenant, month, None if limit is None else limit + 1, cursor)
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    return Invoice(tenant=tenant.name, month=month, lines=[_line(u, name) for u, name in rows], line_count=n,
                   next_cursor=rows[-1][0].id if more and rows else None, **sums)


def _csv_cols() -> list[str]:
    return list(InvoiceLine.model_fields)


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _total_row(tenant: str, month: str, sums) -> list:
    return [tenant, month, "total", "", "", "", "", *(sums[c] for c in TOTALS), "", ""]


def invoice_csv(inv: Invoice) -> str:
    cols = _csv_cols()
    return _csv_text([["tenant", "month", *cols],
                      *([inv.tenant, inv.month, *(getattr(ln, c) for c in cols)] for ln in inv.lines),
                      _total_row(inv.tenant, inv.month, {c: getattr(inv, c) for c in TOTALS})])


def invoice_csv_chunks(s: Session, tenant: Tenant, month: str, header: bool = True):
    """The CSV of `invoice_csv`, made a page of lines at a time (never the whole month in memory)."""
    cols = _csv_cols()
    if header:
        yield _csv_text([["tenant", "month", *cols]])
    cursor = None
    while True:
        rows = _lines(s, tenant, month, PAGE, cursor)
        if not rows:
            break
        yield _csv_text([[tenant.name, month, *(getattr(ln, c) for c in cols)]
                         for ln in (_line(u, name) for u, name in rows)])
        cursor = rows[-1][0].id
    yield _csv_text([_total_row(tenant.name, month, totals(s, tenant, month)[1])])


def spent(s: Session, tenant_id: int, month: str) -> float:
    return float(s.scalar(select(func.coalesce(func.sum(Usage.total_cny), 0.0))
                          .where(Usage.tenant_id == tenant_id, Usage.month == month)) or 0.0)
