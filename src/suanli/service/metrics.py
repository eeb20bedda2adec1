"""`GET /metrics`: the service's state for Prometheus, in its text exposition format
(docs/SERVICE.md "Metrics").

Read at each scrape, not kept in global gauges: `Scrape.collect` opens a short read session of
its own and asks the database for aggregates (jobs counted by state, GPUs in use summed by
pool, site load summed by hour, each site's latest meter reading), so the Python work grows with
the network and the hours of history, not with the number of jobs; scrapes take turns (a lock),
so a burst of them is one query at a time. What the service counts as it works (decisions, tick
and placement times, requests) is the controller's `Telemetry` (telemetry.py), collected with it.

Who may read it: an admin token (Bearer) on the API's address; a tenant or site token gets
403. `suanli serve --metrics-listen HOST:PORT` serves the same page without a token on an address
of its own (`metrics_app`), for a Prometheus that holds no token: keep that one on loopback or
a private network.
"""

# no `from __future__ import annotations`: FastAPI reads the Annotated aliases at runtime

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from sqlalchemy import Integer, and_, case, cast, func, literal, select, union_all
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.routing import Route

from suanli.accounting import battery_of
from suanli.energy.balance import balance
from suanli.model.scenario import Scenario
from suanli.service import meters
from suanli.service.controller import Controller, drained_sites
from suanli.service.dashboard import HISTORY_H  # metered runs older than this no longer load a site
from suanli.service.db import readers
from suanli.service.models import Job as JobRow
from suanli.service.models import Usage
from suanli.service.routes.deps import Who, admin_only
from suanli.service.schemas import ACTIVE, STATES

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4      # generate_latest writes the 0.0.4 text format


@dataclass(frozen=True)
class SitePower:
    """A site's power now (kW; an hour's kWh are its mean kW). `source`: "model" (the network file's
    series and the site's planned and metered runs, MODEL.md §4) or "meter" (the site's reading)."""

    load_kw: float          # facility load: PUE × IT power
    renewable_kw: float     # renewable power available to the site
    grid_kw: float          # grid import, after renewables and the battery (negative: export, metered)
    source: str
    age_s: float | None = None      # seconds since the site's latest meter reading (None: it has none)


class SeriesCache:
    """Each site's renewable series from slot 0 on, and the battery's state of charge after idle
    hours: a model spec (pvlib, wind) takes a second to resolve for a month of hours, so series are
    resolved a day ahead at a time (a series' first n slots do not depend on how many are asked
    for: each slot's value is its hour's), and a scrape is slow once a day, not once an hour."""

    AHEAD = 24          # slots resolved past the ones asked for

    def __init__(self, net: Scenario):
        self.net = net
        self._renewable: dict[str, np.ndarray] = {}
        self._soc: dict[tuple[str, int], float] = {}

    def renewable_kw(self, site: str, slots: int) -> np.ndarray:
        have = self._renewable.get(site)
        if have is None or len(have) < slots:
            i = list(self.net.sites).index(site)
            ser = self.net.explicit(self.net.sites[site].renewables.kw, f"sites[{i}].renewables.kw")
            have = self._renewable[site] = ser.array(slots + self.AHEAD)
        return have[:slots]

    def idle_soc(self, site: str, first: int) -> float | None:
        """The battery's kWh after slots 0 .. first-1 with no load (charged by renewables alone)."""
        battery = battery_of(self.net, site)
        if battery is None or battery.capacity_kwh <= 0:
            return None
        key = (site, first)
        if key not in self._soc:
            if len(self._soc) > 1024:           # `first` moves on by the hour: forget the old ones
                self._soc.clear()
            ren = self.renewable_kw(site, first)
            self._soc[key] = (float(balance(np.zeros(first), ren, battery).soc[-1]) if first > 0
                              else battery.initial_soc * battery.capacity_kwh)
        return self._soc[key]


def _floor(x, dialect: str):
    """floor() of a non-negative number of hours, on both databases (SQLite has no floor() unless
    built with its math functions; its CAST truncates, which is floor for x >= 0)."""
    return func.floor(x) if dialect == "postgresql" else cast(x, Integer)


def it_kwh_by_hour(s: Session, net: Scenario, now: float, slots: int) -> tuple[dict[str, np.ndarray], int]:
    """Each site's IT energy (kWh) in hours 0 .. slots-1, as the dashboard counts it (MODEL.md §4 on
    the metered runs of the last HISTORY_H hours and the active jobs' runs: a PLACED job not yet
    picked up starts now, a running one draws at least until now), and the first hour that any
    run loads (none before it).

    Summed by the database, so the cost in Python grows with sites x GPU types x hours, not with
    the runs: the integral of a pool's IT power up to time x is
    F(x) = Σ_{start < x} gpus (x - start) - Σ_{end < x} gpus (x - end), so at whole hours it needs
    only, per hour, the sums of gpus and of gpus x start over the runs that start in it (and the
    same for the ends); an hour's energy is F(t + 1) - F(t), exactly."""
    dialect = s.bind.dialect.name
    late = and_(JobRow.state == "PLACED", JobRow.start_h < now)
    used = select(Usage.site.label("site"), Usage.gpu_type.label("gpu_type"), Usage.gpus.label("gpus"),
                  Usage.start_h.label("a"), Usage.end_h.label("b")).where(Usage.end_h > now - HISTORY_H)
    active = select(JobRow.site, JobRow.gpu_type, JobRow.gpus,
                    case((late, literal(now)), else_=JobRow.start_h),
                    case((late, literal(now) + JobRow.end_h - JobRow.start_h),
                         (and_(JobRow.state != "PLACED", JobRow.end_h < now), literal(now)), else_=JobRow.end_h)
                    ).where(JobRow.state.in_(ACTIVE), JobRow.site.is_not(None), JobRow.gpu_type.is_not(None),
                            JobRow.start_h.is_not(None), JobRow.end_h.is_not(None))
    runs = union_all(used, active).subquery()
    a = case((runs.c.a < 0, 0.0), else_=runs.c.a)         # hours before 0 load nothing (the dashboard drops them)
    clipped = select(runs.c.site, runs.c.gpu_type, runs.c.gpus, a.label("a"), runs.c.b).where(runs.c.b > a).subquery()
    out = {sid: np.zeros(slots) for sid in net.sites}
    low = s.execute(select(func.min(clipped.c.a))).scalar()
    if low is None or math.floor(low) >= slots:
        return out, slots
    base = math.floor(low)
    hours = slots - base
    # times relative to `base` (the first run's hour): small numbers, so the sums lose no precision,
    # and never negative (SQLite's floor is a CAST, which truncates)
    rel = select(clipped.c.site, clipped.c.gpu_type, clipped.c.gpus, (clipped.c.a - base).label("a"),
                 (clipped.c.b - base).label("b")).subquery()
    per_site = {sid: np.zeros((2, hours + 1)) for sid in net.sites}     # [Σ kW, Σ kW x time] by hour of the edge
    for column, sign in ((rel.c.a, 1.0), (rel.c.b, -1.0)):
        k = _floor(column, dialect)
        q = (select(rel.c.site, rel.c.gpu_type, k, func.sum(rel.c.gpus), func.sum(rel.c.gpus * column))
             .group_by(rel.c.site, rel.c.gpu_type, k))
        for site, g, hour, n, nt in s.execute(q):
            if site not in per_site or g not in net.gpu_types or int(hour) >= hours:
                continue                    # an end after the last hour: F there is not needed
            kw = net.gpu_types[g].power_kw
            per_site[site][0, int(hour)] += sign * kw * float(n)
            per_site[site][1, int(hour)] += sign * kw * float(nt)
    x = np.arange(hours + 1, dtype=float)
    for sid, (kw, kwt) in per_site.items():
        # F(x) at x = 0 .. hours: the edges of the hours before x (cumulative sums shifted by one)
        cum_kw = np.concatenate(([0.0], np.cumsum(kw[:-1])))
        cum_kwt = np.concatenate(([0.0], np.cumsum(kwt[:-1])))
        f = x * cum_kw - cum_kwt
        out[sid][base:] = np.diff(f)
    return out, base


def site_power_now(s: Session, c: Controller, cache: SeriesCache) -> dict[str, SitePower]:
    """Each site's load, renewable and grid power now: the one place /metrics reads a site's power.

    From the site's meter (`source="meter"`) where its latest reading (`meters.latest_reading`,
    POST /v1/agent/{site}/meter) is at most `meters.MAX_GAP_S` old, as the meter integration holds
    a reading's power: facility, renewable and grid power as read. Otherwise from the network
    model (`source="model"`): the current hour's value of the site's energy balance (MODEL.md §4;
    the dashboard's site view shows the same numbers) on the network file's renewable series and
    the site's runs. `SitePower.age_s`: how old the meter's reading is (None: no meter, or none)."""
    net = c.network
    now = c.now_h()
    slot = max(0, math.floor(now))
    slots = slot + 1
    it, first = it_kwh_by_hour(s, net, now, slots)
    first = min(first, slot)
    wall = datetime.now(UTC)
    out = {}
    for sid, site in net.sites.items():
        reading = meters.latest_reading(s, sid)       # one indexed row per site
        age = (wall - reading.at).total_seconds() if reading is not None else None
        if reading is not None and age <= meters.MAX_GAP_S:
            out[sid] = SitePower(load_kw=reading.facility_kw, renewable_kw=reading.renewable_kw,
                                 grid_kw=reading.grid_kw, source="meter", age_s=age)
            continue
        ren = cache.renewable_kw(sid, slots)
        load = site.pue * it[sid]
        battery = battery_of(net, sid)
        soc = cache.idle_soc(sid, first)
        if battery is not None and soc is not None:
            # no run loads the hours before `first`: the battery's state there is the idle one, kept
            # an hour, and only the hours since are run (a service's epoch may be a year back)
            battery = replace(battery, initial_soc=soc / battery.capacity_kwh)
        bal = balance(load[first:], ren[first:], battery)
        out[sid] = SitePower(load_kw=float(bal.load[-1]), renewable_kw=float(ren[slot]),
                             grid_kw=float(bal.grid[-1]), source="model", age_s=age)
    return out


class Scrape:
    """A prometheus_client collector of the service's state, read from the database at each scrape."""

    def __init__(self, c: Controller):
        self.c = c
        self.reads = readers(c.sessions)
        self.cache = SeriesCache(c.network)
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        c, net = self.c, self.c.network
        with self.lock, self.reads() as s:
            by_state = dict.fromkeys(STATES, 0)
            for state, n in s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)):
                by_state[state] = int(n)
            busy = {(site, g): int(n) for site, g, n in s.execute(
                select(JobRow.site, JobRow.gpu_type, func.sum(JobRow.gpus))
                .where(JobRow.state.in_(("TRANSFERRING", "RUNNING"))).group_by(JobRow.site, JobRow.gpu_type))}
            up = c.up_sites(s)
            drained = drained_sites(s)
            power = site_power_now(s, c, self.cache)
            s.rollback()

        jobs = GaugeMetricFamily("suanli_jobs", "Jobs by state", labels=["state"])
        for state, n in by_state.items():
            jobs.add_metric([state], n)
        yield jobs
        gpus = GaugeMetricFamily("suanli_site_gpus", "GPUs of each pool", labels=["site", "gpu_type"])
        free = GaugeMetricFamily("suanli_site_gpus_free", "GPUs of each pool not held by a dispatched job "
                                 "(TRANSFERRING or RUNNING), as GET /v1/sites counts them", labels=["site", "gpu_type"])
        for sid, site in net.sites.items():
            for g, pool in site.gpus.items():
                gpus.add_metric([sid, g], pool.count)
                free.add_metric([sid, g], pool.count - busy.get((sid, g), 0))
        yield gpus
        yield free
        site_up = GaugeMetricFamily("suanli_site_up", "1 if the site's agent heartbeats (within the timeout)",
                                    labels=["site"])
        site_drained = GaugeMetricFamily("suanli_site_drained", "1 if the site is drained (no new placements)",
                                         labels=["site"])
        for sid in net.sites:
            site_up.add_metric([sid], 1 if sid in up else 0)
            site_drained.add_metric([sid], 1 if sid in drained else 0)
        yield site_up
        yield site_drained
        families = {
            "load_kw": GaugeMetricFamily("suanli_site_load_kw", "The site's facility load this hour (PUE x IT), kW",
                                         labels=["site", "source"]),
            "renewable_kw": GaugeMetricFamily("suanli_site_renewable_kw", "Renewable power available to the "
                                              "site this hour, kW", labels=["site", "source"]),
            "grid_kw": GaugeMetricFamily("suanli_site_grid_kw", "The site's grid import this hour, after "
                                         "renewables and battery, kW", labels=["site", "source"]),
        }
        age = GaugeMetricFamily("suanli_site_meter_age_seconds", "Seconds since the site's latest meter reading "
                                f"(sites with one); past {meters.MAX_GAP_S:g} s its power is the model's",
                                labels=["site"])
        for sid, p in power.items():
            for key, fam in families.items():
                fam.add_metric([sid, p.source], getattr(p, key))
            if p.age_s is not None:
                age.add_metric([sid], p.age_s)
        yield from families.values()
        yield age
        ticks = CounterMetricFamily("suanli_controller_ticks", "Controller ticks run by this process")
        ticks.add_metric([], c.ticks)
        yield ticks
        leader = GaugeMetricFamily("suanli_controller_leader", "1 if this process runs the scheduling loop now")
        leader.add_metric([], 1 if c.leading else 0)
        yield leader
        yield from c.telemetry.collect()


def exposition(scrape: Scrape) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(scrape)
    return generate_latest(registry)


def install(app, c: Controller) -> None:
    """`GET /metrics` on the API (admin token)."""
    scrape = Scrape(c)
    router = APIRouter(tags=["service"])

    @router.get("/metrics", response_class=Response,
                responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}})
    def metrics(p: Who) -> Response:
        """The service's metrics for Prometheus (admin token); docs/SERVICE.md "Metrics"."""
        admin_only(p)
        return Response(exposition(scrape), media_type=CONTENT_TYPE)

    app.include_router(router)
    app.state.metrics_scrape = scrape


def metrics_app(c: Controller, scrape: Scrape | None = None) -> Starlette:
    """The page alone, without a token, for `suanli serve --metrics-listen` (its own address)."""
    scrape = scrape or Scrape(c)

    def page(_request: Request) -> Response:
        return Response(exposition(scrape), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", page, methods=["GET"])])
