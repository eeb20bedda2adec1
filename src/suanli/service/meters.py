"""Metered energy: the sites' meter readings in, hourly energy out (docs/ENERGY.md "Meter readings").

Readings. A site's agent posts batches of readings (`POST /v1/agent/{site}/meter`): at the
instant `at`, the site's IT power `it_kw`, its facility power `facility_kw` (IT plus cooling and
losses), the renewable output `renewable_kw`, the grid import `grid_kw` (negative: export, only
where the network file gives the site `grid.export_kw`), and the battery's state of charge
`battery_soc_kwh` (None where unmetered). A batch is taken whole or refused whole (`check`,
`Refused`); a reading already stored with the same `at` is a retry when it agrees (ignored) and
refused when it does not.

Energy (`integrate`, pure: no database, no clock). Each reading's power holds from its instant
until the site's next reading, but for at most MAX_GAP_S: a meter that falls silent leaves a gap
(`covered_s` says how much of an hour was covered), never a flat line made up across an outage.
A hold is cut at UTC hour boundaries (an hour's energy is what fell inside it) and at the
network's slot boundaries (the service epoch + k h, where the carbon factor of MODEL.md §2 may
change), and each piece of h hours adds
    it_kwh += it_kw × h,  facility_kwh += facility_kw × h,  renewable_kwh += renewable_kw × h,
    grid_kwh += max(grid_kw, 0) × h,  export_kwh += max(−grid_kw, 0) × h,
    carbon_kg += max(grid_kw, 0) × h × carbon_kg_per_kwh(the piece's slot).

Roll-ups (`MeterHour`, one per site and UTC hour) are kept for good; raw readings are kept for
the retention (`suanli serve --meter-retention-days`) and swept by the controller (`sweep`). A new
reading changes two holds only: its own, and its predecessor's, which it cuts short. So every
ingest adds to the stored roll-ups the difference those holds make, computed from the new readings
and their stored neighbours (the reading before each, the one after, those between), not from
all the readings of the hours they touch: a batch costs its own readings, not the hour's. Late and
out-of-order batches leave the same roll-ups as readings sent in order (to the rounding of the
sums; tested). A reading older than the retention less RETENTION_MARGIN_S is refused: its
neighbours may already be swept.

Units: power kW, energy kWh, carbon kg CO2e, time µs since 1970-01-01 UTC inside (integers: exact
keys and hour boundaries), aware datetimes at the edges.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import CompoundSelect, Connection, bindparam, delete, insert, select, text, union_all
from sqlalchemy.orm import Session

from suanli.model.scenario import Scenario
from suanli.service.models import MeterHour, MeterReading

_READINGS, _HOURS = MeterReading.__table__, MeterHour.__table__

MAX_READINGS = 10_000         # readings in one batch (POST /v1/agent/{site}/meter)
MAX_KW = 1e7                  # |power| of one reading: 10 GW, beyond any site (a sum never overflows)
MAX_GAP_S = 1200.0            # a reading's power holds at most this long (a 15-minute meter, with jitter)
CLOCK_SKEW_S = 300.0          # a reading may be this far ahead of the service's clock
RETENTION_DAYS = 35           # raw readings kept (`suanli serve --meter-retention-days`)
RETENTION_MARGIN_S = 7200.0   # readings older than the retention less this are refused (> 2 gaps + 1 h)
SWEEP_EVERY_S = 600.0         # the controller sweeps raw readings past the retention this often
MAX_RANGE = timedelta(days=366)          # GET /v1/sites/{site}/energy: at most a year of hours
FORECAST_AHEAD = timedelta(days=7)       # ... reaching at most a week ahead
LOCK_ID = 0x5A4E4C4B          # PostgreSQL advisory lock (with the site's CRC): one ingest per site at once

US = 1_000_000
HOUR_US = 3600 * US
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
POWERS = ("it_kw", "facility_kw", "renewable_kw", "grid_kw")
FIELDS = (*POWERS, "battery_soc_kwh")
ROLL_UP = ("it_kwh", "facility_kwh", "renewable_kwh", "grid_kwh", "export_kwh", "carbon_kg", "covered_s", "readings")


@dataclass(frozen=True)
class Reading:
    """One meter reading: powers in kW at the instant `at` (aware), the battery's charge in kWh."""

    at: datetime
    it_kw: float
    facility_kw: float
    renewable_kw: float
    grid_kw: float
    battery_soc_kwh: float | None = None


@dataclass
class HourEnergy:
    """A site's metered energy in the UTC hour starting at `at`: kWh, kg CO2e, the seconds some
    reading covered, and the readings taken in the hour."""

    at: datetime
    it_kwh: float = 0.0
    facility_kwh: float = 0.0
    renewable_kwh: float = 0.0
    grid_kwh: float = 0.0
    export_kwh: float = 0.0
    carbon_kg: float = 0.0
    covered_s: float = 0.0
    readings: int = 0


@dataclass(frozen=True)
class Ingested:
    """What `ingest` did: readings stored, retries of stored readings ignored, hours recomputed."""

    accepted: int
    duplicates: int
    hours: int


class Refused(ValueError):
    """A batch refused whole: `str()` is one line naming the reading (its index in the batch), the
    field and the value."""

    def __init__(self, index: int, field: str, value: object, why: str):
        self.index, self.field = index, field
        shown = value.isoformat() if isinstance(value, datetime) else repr(value)
        super().__init__(f"readings.{index}.{field}: {shown} is not possible: {why}")


class BadRange(ValueError):
    """A bad `from`/`to` of the energy endpoint: one line naming the parameter."""


@dataclass(frozen=True)
class SiteMeter:
    """What the meters need of a site from the network file: its export limit (kW), its battery's
    capacity (kWh, None: no battery declared), and its grid carbon factor by slot (kg/kWh; slot k
    is [origin_us + k h, origin_us + (k + 1) h), origin the service epoch)."""

    export_kw: float
    battery_kwh: float | None
    carbon: Callable[[int], float]
    origin_us: int


def to_us(at: datetime) -> int:
    """Microseconds since 1970-01-01 UTC of an aware datetime (exact)."""
    d = at - _UNIX
    return (d.days * 86400 + d.seconds) * US + d.microseconds


def from_us(us: int) -> datetime:
    return _UNIX + timedelta(microseconds=us)


def site_meter(network: Scenario, epoch: datetime, site: str) -> SiteMeter:
    s = network.sites[site]
    series = s.grid.carbon_kg_per_kwh
    cache: dict[int, float] = {}

    def carbon(slot: int) -> float:
        if slot not in cache:
            cache[slot] = float(series.at(max(slot, 0)))
        return cache[slot]
    battery = s.battery.capacity_kwh if s.battery is not None and s.battery.capacity_kwh > 0 else None
    return SiteMeter(export_kw=s.grid.export_kw, battery_kwh=battery, carbon=carbon, origin_us=to_us(epoch))


# ------------------------------------------------------------------------------- checks (pure)
def ingest_floor(epoch: datetime, now: datetime, retention_days: float) -> tuple[datetime, str]:
    """The earliest `at` taken now, and why: the service's hour 0 (the site has no history in the
    service before it, and the network's series start there), or the retention less its margin."""
    kept = now - timedelta(days=retention_days) + timedelta(seconds=RETENTION_MARGIN_S)
    if kept > epoch:
        return kept, (f"older than the raw-reading retention allows ({retention_days:g} days less "
                      f"{RETENTION_MARGIN_S / 3600:g} h: not before {kept.isoformat()})")
    return epoch, f"before the site's history starts (the service's hour 0, {epoch.isoformat()})"


def check(readings: Sequence[Reading], *, now: datetime, floor: datetime, floor_why: str = "too old",
          export_kw: float = 0.0, battery_kwh: float | None = None) -> None:
    """Raise `Refused` for the first impossible value of the batch: a time without its offset, in
    the future (beyond CLOCK_SKEW_S) or before `floor`; a power not finite or beyond MAX_KW; a
    negative IT, facility or renewable power; facility power below IT power; grid import below
    −`export_kw`; a negative battery charge, or one above the declared battery's `battery_kwh`."""
    late = now + timedelta(seconds=CLOCK_SKEW_S)
    for i, r in enumerate(readings):
        if r.at.tzinfo is None or r.at.utcoffset() is None:
            raise Refused(i, "at", r.at, "a time needs its UTC offset (Z or +08:00)")
        if r.at > late:
            raise Refused(i, "at", r.at, f"in the future (the service's clock says {now.isoformat()}; "
                                         f"{CLOCK_SKEW_S:g} s of clock skew allowed)")
        if r.at < floor:
            raise Refused(i, "at", r.at, floor_why)
        for name in FIELDS:
            v = getattr(r, name)
            if v is None and name == "battery_soc_kwh":
                continue
            if not (isinstance(v, float | int) and math.isfinite(v) and -MAX_KW <= v <= MAX_KW):
                raise Refused(i, name, v, f"not a finite number within ±{MAX_KW:g}")
        for name, what in (("it_kw", "IT power"), ("facility_kw", "facility power"),
                           ("renewable_kw", "renewable output")):
            if getattr(r, name) < 0:
                raise Refused(i, name, getattr(r, name), f"{what} is never negative")
        if r.facility_kw < r.it_kw:
            raise Refused(i, "facility_kw", r.facility_kw, f"less than it_kw {r.it_kw!r} (the facility's power "
                                                           "includes its IT load)")
        if r.grid_kw < -export_kw:
            raise Refused(i, "grid_kw", r.grid_kw,
                          "the site cannot export (its network file gives no grid.export_kw)" if export_kw == 0
                          else f"exports more than the site's grid.export_kw {export_kw:g}")
        soc = r.battery_soc_kwh
        if soc is not None and soc < 0:
            raise Refused(i, "battery_soc_kwh", soc, "a battery's charge is never negative")
        if soc is not None and battery_kwh is not None and soc > battery_kwh:
            raise Refused(i, "battery_soc_kwh", soc, f"more than the site's battery holds ({battery_kwh:g} kWh)")


# --------------------------------------------------------------------------- integration (pure)
def integrate(points: Sequence[tuple[int, float, float, float, float]], *, max_gap_s: float = MAX_GAP_S,
              carbon: Callable[[int], float] | None = None, origin_us: int = 0,
              next_us: int | None = None) -> dict[int, HourEnergy]:
    """The hourly energy of one site's readings (the rule in the module's docstring).

    `points`: (at_us, it_kw, facility_kw, renewable_kw, grid_kw), sorted by time, one per instant.
    `carbon(slot)`: kg CO2e/kWh of slot [origin_us + slot h, +1 h) (None: no carbon).
    `next_us`: the instant of the site's next reading after the last of `points`, which ends that
    one's hold (None: none, or none within the gap). Returns {hour start µs: HourEnergy}; an hour
    that no reading covered is absent."""
    gap = int(round(max_gap_s * US))
    acc: dict[int, list[float]] = {}
    n = len(points)
    for i in range(n):
        t, it, fac, ren, grid = points[i]
        end = t + gap
        nxt = points[i + 1][0] if i + 1 < n else next_us
        if nxt is not None and nxt < end:
            end = nxt
        acc.setdefault(t - t % HOUR_US, [0.0] * 8)[7] += 1
        imp, exp = (grid, 0.0) if grid > 0 else (0.0, -grid)
        a = t
        while a < end:
            h = a - a % HOUR_US
            b = min(end, h + HOUR_US)
            factor = 0.0
            if carbon is not None:
                slot = (a - origin_us) // HOUR_US
                b = min(b, origin_us + (slot + 1) * HOUR_US)
                factor = carbon(slot)
            dt_h = (b - a) / HOUR_US
            row = acc.get(h)
            if row is None:
                row = acc[h] = [0.0] * 8
            row[0] += it * dt_h
            row[1] += fac * dt_h
            row[2] += ren * dt_h
            row[3] += imp * dt_h
            row[4] += exp * dt_h
            row[5] += imp * dt_h * factor
            row[6] += (b - a) / US
            a = b
    return {h: HourEnergy(from_us(h), *r[:7], readings=int(r[7])) for h, r in sorted(acc.items())}


# ------------------------------------------------------------------------------------ storage
def _lock(session: Session, site: str) -> None:
    """One ingest per site at a time on PostgreSQL (a transaction's advisory lock): two batches
    recomputing the same hour from different snapshots would leave one's readings out. SQLite
    has one writer at a time anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                        {"a": LOCK_ID, "b": zlib.crc32(site.encode()) - 2**31})


def _first_difference(a: tuple, b: tuple) -> str:
    return next(name for name, x, y in zip(FIELDS, a, b, strict=True) if x != y)


def ingest(session: Session, site: str, readings: Sequence[Reading], *, network: Scenario, epoch: datetime,
           now: datetime | None = None, retention_days: float = RETENTION_DAYS) -> Ingested:
    """Store a batch of `site`'s readings and add the change they make to the roll-ups of the hours
    they touch, in `session`'s transaction (the caller commits; after `Refused` it must roll back).
    `network` and `epoch`: the served network file (export limit, battery, carbon factor) and the
    service's hour 0."""
    now = now or datetime.now(UTC)
    meter = site_meter(network, epoch, site)
    floor, why = ingest_floor(epoch, now, retention_days)
    check(readings, now=now, floor=floor, floor_why=why, export_kw=meter.export_kw, battery_kwh=meter.battery_kwh)
    new: dict[int, tuple[int, tuple]] = {}
    duplicates = 0
    for i, r in enumerate(readings):                 # within the batch: one reading per instant
        key, row = to_us(r.at), (float(r.it_kw), float(r.facility_kw), float(r.renewable_kw), float(r.grid_kw),
                                 None if r.battery_soc_kwh is None else float(r.battery_soc_kwh))
        seen = new.get(key)
        if seen is None:
            new[key] = (i, row)
            continue
        if seen[1] != row:
            name = _first_difference(seen[1], row)
            raise Refused(i, name, getattr(r, name), f"reading {seen[0]} of this batch has the same time with "
                                                    f"{name} {seen[1][FIELDS.index(name)]!r}")
        duplicates += 1
    _lock(session, site)
    # Core, not the ORM: rows as tuples (the ORM's loading cost more than the SQL). The stored
    # readings are read by ranges of the primary key (an IN list of thousands of keys made
    # PostgreSQL scan the table), once, for the duplicates and the roll-ups both.
    db = session.connection()
    runs = [(keys, _around(db, site, keys[0], keys[-1])) for keys in _runs(sorted(new))]
    fresh: dict[int, tuple[int, tuple]] = {}
    for keys, (_, inside, _) in runs:           # a retry, or a conflict
        stored = {p[0]: p[1:] for p in inside}
        for at_us in keys:
            i, row = new[at_us]
            values = stored.get(at_us)
            if values is None:
                fresh[at_us] = (i, row)
            elif tuple(values) != row:
                name = _first_difference(tuple(values), row)
                raise Refused(i, name, row[FIELDS.index(name)],
                              f"the reading of {site} at {from_us(at_us).isoformat()} is stored with {name} "
                              f"{values[FIELDS.index(name)]!r}; a reading sent again must agree")
            else:
                duplicates += 1
    if not fresh:
        return Ingested(accepted=0, duplicates=duplicates, hours=0)
    db.execute(insert(_READINGS), [dict(site=site, at_us=at_us, **dict(zip(FIELDS, row, strict=True)))
                                   for at_us, (_, row) in sorted(fresh.items())])
    change: dict[int, list[float]] = {}
    for keys, (before, inside, after) in runs:
        added = [(k, *fresh[k][1][:4]) for k in keys if k in fresh]
        if not added:
            continue
        old = before + [p[:5] for p in inside]
        nxt = after[0][0] if after else None
        _add(change, integrate(sorted(old + added), carbon=meter.carbon, origin_us=meter.origin_us, next_us=nxt), +1)
        _add(change, integrate(old, carbon=meter.carbon, origin_us=meter.origin_us, next_us=nxt), -1)
    _apply(db, site, change)
    return Ingested(accepted=len(fresh), duplicates=duplicates, hours=len(change))


def _runs(keys: list[int]) -> list[list[int]]:
    """The sorted instants `keys` in runs, a new run where two follow each other by more than
    MAX_GAP_S: one query reads the stored readings a run needs (`_around`), so a late batch of
    readings days apart does not read the days between them, and no stored reading's hold is
    changed by two runs (each run's change is computed on its own)."""
    gap = int(round(MAX_GAP_S * US))
    out: list[list[int]] = []
    for k in keys:
        if out and k - out[-1][-1] <= gap:
            out[-1].append(k)
        else:
            out.append([k])
    return out


def _around_query() -> CompoundSelect:
    """The query of `_around`, built once (SQLAlchemy then compiles it once, not per batch)."""
    t = _READINGS
    cols = [t.c.at_us, *(t.c[f] for f in FIELDS)]
    mine = t.c.site == bindparam("site")
    return union_all(
        select(*cols).where(mine, t.c.at_us < bindparam("first"), t.c.at_us >= bindparam("reach_back"))
        .order_by(t.c.at_us.desc()).limit(1).subquery().select(),
        select(*cols).where(mine, t.c.at_us >= bindparam("first"), t.c.at_us <= bindparam("last")),
        select(*cols).where(mine, t.c.at_us > bindparam("last"), t.c.at_us <= bindparam("reach_on"))
        .order_by(t.c.at_us).limit(1).subquery().select())


_AROUND = _around_query()


def _around(db: Connection, site: str, first: int, last: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The stored readings a run of new ones [first, last] needs, in one query: the last one before
    `first` whose hold reaches it (its hold is cut short), those in [first, last] (retries, and the
    readings a late batch falls between), the first one after `last` within reach (it ends the last
    new reading's hold). Each (at_us, *FIELDS); the first and the last as lists of at most one."""
    gap = int(round(MAX_GAP_S * US))
    rows = sorted(tuple(r) for r in db.execute(_AROUND, {"site": site, "first": first, "last": last,
                                                           "reach_back": first - gap, "reach_on": last + gap}))
    before = [r[:5] for r in rows if r[0] < first]
    after = [r[:5] for r in rows if r[0] > last]
    return before, [r for r in rows if first <= r[0] <= last], after


def _add(change: dict[int, list[float]], hours: dict[int, HourEnergy], sign: int) -> None:
    """Add (`sign` 1) or take away (−1) `integrate`'s `hours` to `change`, by hour and figure of ROLL_UP."""
    for h, e in hours.items():
        row = change.setdefault(h, [0.0] * 8)
        for k, v in enumerate((e.it_kwh, e.facility_kwh, e.renewable_kwh, e.grid_kwh, e.export_kwh, e.carbon_kg,
                               e.covered_s, e.readings)):
            row[k] += sign * v


def _apply(db: Connection, site: str, change: dict[int, list[float]]) -> None:
    """Add `change` ({hour start µs: the eight figures of ROLL_UP}) to the site's stored roll-ups.
    Every figure is a sum of non-negative pieces, so a difference of two sums that rounds below
    zero (an hour's export replaced by import) is stored as zero."""
    if not change:
        return
    t = _HOURS
    hours = sorted(h // US for h in change)
    stored = {r[0]: r[1:] for r in db.execute(
        select(t.c.hour_s, *(t.c[f] for f in ROLL_UP)).where(t.c.site == site, t.c.hour_s >= hours[0],
                                                               t.c.hour_s <= hours[-1]))}
    rows = []
    for h in hours:
        old = stored.get(h, (0.0,) * 7 + (0,))
        d = change[h * US]
        row = {f: max(0.0, o + x) for f, o, x in zip(ROLL_UP[:7], old[:7], d[:7], strict=True)}
        row["covered_s"] = min(row["covered_s"], 3600.0)
        row["readings"] = int(old[7]) + int(round(d[7]))
        rows.append(dict(site=site, hour_s=h, **row))
    replaced = [h for h in hours if h in stored]      # the range read may hold hours this batch leaves alone
    if replaced:
        db.execute(delete(t).where(t.c.site == site, t.c.hour_s.in_(replaced)))
    db.execute(insert(t), rows)


def hourly(session: Session, site: str, start: datetime, end: datetime) -> list[HourEnergy]:
    """`site`'s stored hourly energy for the hours starting in [start, end) (aware datetimes),
    oldest first; an hour without readings is absent."""
    q = (select(MeterHour).where(MeterHour.site == site, MeterHour.hour_s >= math.ceil(to_us(start) / US),
                                 MeterHour.hour_s < math.ceil(to_us(end) / US))
         .order_by(MeterHour.hour_s))
    return [HourEnergy(from_us(r.hour_s * US), r.it_kwh, r.facility_kwh, r.renewable_kwh, r.grid_kwh, r.export_kwh,
                       r.carbon_kg, r.covered_s, r.readings) for r in session.scalars(q)]


def latest_reading(session: Session, site: str) -> Reading | None:
    """`site`'s newest stored reading (None: none, or all swept)."""
    r = session.scalars(select(MeterReading).where(MeterReading.site == site)
                        .order_by(MeterReading.at_us.desc()).limit(1)).first()
    if r is None:
        return None
    return Reading(from_us(r.at_us), r.it_kw, r.facility_kw, r.renewable_kw, r.grid_kw, r.battery_soc_kwh)


def sweep(session: Session, before: datetime) -> int:
    """Delete every site's raw readings taken before `before` (the roll-ups stay); how many."""
    return session.execute(delete(MeterReading).where(MeterReading.at_us < to_us(before))).rowcount or 0


# ----------------------------------------------------------------------------------- reading out
def hour_range(start: datetime, end: datetime, now: datetime) -> tuple[int, int]:
    """The hours of `GET /v1/sites/{site}/energy?from=&to=`: [start, end) widened to whole UTC hours,
    as hour starts in µs (first, stop: `stop` excluded). `BadRange` for an empty, reversed or
    longer-than-MAX_RANGE range, or one that reaches past FORECAST_AHEAD from now."""
    if not end > start:
        raise BadRange(f"to: {end.isoformat()} is not after from, {start.isoformat()}")
    if end - start > MAX_RANGE:
        raise BadRange(f"to: {end.isoformat()} is more than {MAX_RANGE.days} days after from, {start.isoformat()}; "
                       "ask for a year at most")
    if end > now + FORECAST_AHEAD:
        raise BadRange(f"to: {end.isoformat()} is more than {FORECAST_AHEAD.days} days ahead of now "
                       f"({now.isoformat()}): no forecast reaches that far")
    a, b = to_us(start), to_us(end)
    return a - a % HOUR_US, -((-b) // HOUR_US) * HOUR_US


# ---------------------------------------------------------------------- forecasts (both ways)
MIN_COVER_S = 1800.0          # an hour whose readings cover less than this has no mean for the nowcast


def slot_means(rows: Sequence[HourEnergy], origin_us: int, first: int, n: int) -> list[float]:
    """The mean renewable kW of slots first .. first+n-1 (slot k: [origin_us + k h, + 1 h), the
    controller's hours; NaN where unknown), from `rows`, the site's UTC-hour roll-ups around them.

    An hour's mean is its renewable kWh over the hours its readings covered (`covered_s`; a meter
    that started mid-hour does not halve the hour's output); an hour covered less than MIN_COVER_S
    has none. The service's epoch falls anywhere in an hour, so a slot overlaps two UTC hours: its
    mean is theirs weighted by the overlap, over the hours that have one, and NaN when those cover
    less than half the slot."""
    mean = {to_us(e.at): e.renewable_kwh * 3600.0 / e.covered_s for e in rows if e.covered_s >= MIN_COVER_S}
    out = []
    for k in range(first, first + n):
        a = origin_us + k * HOUR_US
        b = a + HOUR_US
        total = weight = 0.0
        u = a - a % HOUR_US
        while u < b:
            w = (min(b, u + HOUR_US) - max(a, u)) / HOUR_US
            if u in mean:
                total += w * mean[u]
                weight += w
            u += HOUR_US
        out.append(total / weight if weight >= 0.5 else math.nan)
    return out


def forecast_rows(session: Session, network: Scenario, epoch: datetime, site: str,
                  hours: Sequence[datetime]) -> list[dict[str, float] | None]:
    """The forecast of each UTC hour in `hours` (hour starts): `renewable_kw` and
    `carbon_kg_per_kwh`, the hour's mean of the site's series in `network` (each slot weighted by
    its overlap with the hour: slots start at the epoch, hours on the hour). The energy endpoint
    passes the controller's `public` view, whose series are what the scheduler plans with: the
    nowcast issued this hour from the site's readings (`Controller.live`, energy.nowcast) for a
    week ahead, the network file's model where the site has no readings and beyond the week.
    None for an hour before the epoch."""
    del session                      # the readings reach the forecasts through the controller's issue
    s = network.sites[site]
    pos = list(network.sites).index(site)
    renew = network.explicit(s.renewables.kw, f"sites[{pos}].renewables.kw")
    carbon = s.grid.carbon_kg_per_kwh
    origin = to_us(epoch)
    last = max((to_us(h) + HOUR_US - 1 - origin) // HOUR_US for h in hours) if hours else -1
    n = max(int(last) + 1, 1)
    ren_at, co2_at = renew.array(n), carbon.array(n)      # once: a nowcast series builds its array per call
    out: list[dict[str, float] | None] = []
    for hour in hours:
        b = to_us(hour) + HOUR_US
        a = max(to_us(hour), origin)
        if a >= b:
            out.append(None)
            continue
        span = b - a
        ren = co2 = 0.0
        while a < b:
            slot = (a - origin) // HOUR_US
            e = min(b, origin + (slot + 1) * HOUR_US)
            w = (e - a) / span
            ren += w * float(ren_at[slot])
            co2 += w * float(co2_at[slot])
            a = e
        out.append({"renewable_kw": ren, "carbon_kg_per_kwh": co2})
    return out


def energy_rows(session: Session, network: Scenario, epoch: datetime, site: str, start: datetime, end: datetime,
                now: datetime) -> list[dict]:
    """The rows of `GET /v1/sites/{site}/energy`: one per UTC hour of [start, end) (`hour_range`),
    `measured` from the roll-ups where the hour has readings, `forecast` (`forecast_rows`) for the
    hour in progress and those ahead; either None otherwise."""
    first, stop = hour_range(start, end, now)
    measured = {to_us(e.at): e for e in hourly(session, site, from_us(first), from_us(stop))}
    hours = range(first, stop, HOUR_US)
    current = to_us(now) - to_us(now) % HOUR_US
    ahead = [h for h in hours if h >= current]
    forecasts = dict(zip(ahead, forecast_rows(session, network, epoch, site, [from_us(h) for h in ahead]),
                         strict=True))
    rows = []
    for h in hours:
        e = measured.get(h)
        rows.append({"at": from_us(h),
                     "measured": None if e is None else {
                         "it_kwh": e.it_kwh, "facility_kwh": e.facility_kwh, "renewable_kwh": e.renewable_kwh,
                         "grid_kwh": e.grid_kwh, "export_kwh": e.export_kwh, "carbon_kg": e.carbon_kg,
                         "covered_s": e.covered_s, "readings": e.readings},
                     "forecast": forecasts.get(h)})
    return rows
