"""Metered energy through a real server and database (SQLite; PostgreSQL when configured):
`POST /v1/agent/{site}/meter` takes a batch whole or refuses it whole (422 naming the reading and
the field), retries are idempotent, the hourly roll-ups equal a hand computation whatever the
order the batches came in, `GET /v1/sites/{site}/energy` is the operator's alone, and the
retention sweep removes raw readings but keeps the roll-ups (service/meters.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import svc
import yaml
from sqlalchemy import func, select
from svc import NETWORK, Service, ThreadServer, build, wait_for

from suanli.service import meters
from suanli.service.db import open_db
from suanli.service.models import Meta, MeterReading

db_url = svc.db_url
CARBON = [0.5, 0.8, 0.6, 0.4, 0.3, 0.9] + [0.7] * 18       # west-1's grid factor by slot (kg/kWh)


def _network(tmp: Path) -> str:
    """The test network, west-1 with an export limit of 50 kW, a 100 kWh battery and an hourly
    carbon factor; east-1 cannot export and has no battery."""
    net = yaml.safe_load(Path(NETWORK).read_text())
    west = net["sites"][1]
    west["grid"]["export_kw"] = 50.0
    west["grid"]["carbon_kg_per_kwh"] = CARBON
    west["battery"] = {"capacity_kwh": 100.0, "power_kw": 50.0}
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


def _set_epoch(url: str, epoch: datetime) -> None:
    """A database first served at `epoch` (the service's hour 0), as one that has run since then."""
    sessions = open_db(url)
    with sessions.begin() as s:
        s.merge(Meta(key="epoch", value=epoch.isoformat()))
    sessions.kw["bind"].dispose()


@contextmanager
def _serve(url: str, tmp: Path, epoch: datetime | None = None, **kw) -> Iterator[Service]:
    if epoch is not None:
        _set_epoch(url, epoch)
    app = build(_network(tmp), url, policy="fifo", tick_s=0.2, checkpoint_store=tmp / "store", **kw)
    with ThreadServer(app) as base:
        yield Service(base, app, url)


def _hour_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


def _r(at: datetime, it, fac, ren, grid, soc=None) -> dict:
    return {"at": at.isoformat(), "it_kw": it, "facility_kw": fac, "renewable_kw": ren, "grid_kw": grid,
            "battery_soc_kwh": soc}


def _hand_readings(h0: datetime) -> list[dict]:
    """Five readings at 0, 15, 40, 55 and 70 min past h0; the third exports 30 kW."""
    m = timedelta(minutes=1)
    return [_r(h0, 100, 120, 30, 90, 50.0), _r(h0 + 15 * m, 120, 150, 0, 150, 40.0),
            _r(h0 + 40 * m, 80, 100, 130, -30, 60.0), _r(h0 + 55 * m, 60, 72, 12, 60, None),
            _r(h0 + 70 * m, 40, 48, 0, 48, 55.5)]


def _check_hand(rows: list[dict], h0: datetime) -> None:
    """The roll-ups of `_hand_readings`, by hand: holds [0,15) [15,35) (capped at the 20-min gap)
    [40,55) [55,70) [70,90) min; the epoch is h0 − 15 min, so carbon slot 0 (0.5 kg/kWh) ends and
    slot 1 (0.8) begins at h0 + 45 min."""
    by_at = {datetime.fromisoformat(r["at"]): r for r in rows}
    a, b = by_at[h0]["measured"], by_at[h0 + timedelta(hours=1)]["measured"]
    want_a = {"it_kwh": 25 + 40 + 20 + 5, "facility_kwh": 30 + 50 + 25 + 6, "renewable_kwh": 7.5 + 32.5 + 1,
              "grid_kwh": 22.5 + 50 + 5, "export_kwh": 7.5, "carbon_kg": 22.5 * 0.5 + 50 * 0.5 + 5 * 0.8,
              "covered_s": 55 * 60, "readings": 4}
    want_b = {"it_kwh": 10 + 40 / 3, "facility_kwh": 12 + 16, "renewable_kwh": 2, "grid_kwh": 26,
              "export_kwh": 0, "carbon_kg": 26 * 0.8, "covered_s": 30 * 60, "readings": 1}
    assert a == pytest.approx(want_a) and b == pytest.approx(want_b)
    assert by_at[h0]["forecast"] is None and by_at[h0 + timedelta(hours=1)]["forecast"] is None   # the past


def _energy(c, site: str, start: datetime, end: datetime):
    return c.get(f"/v1/sites/{site}/energy", params={"from": start.isoformat(), "to": end.isoformat()})


def test_readings_are_rolled_up_by_the_hour_as_computed_by_hand_and_forecast_ahead(db_url, tmp_path):
    h0 = _hour_now() - timedelta(hours=2)
    epoch = h0 - timedelta(minutes=15)
    with _serve(db_url, tmp_path, epoch) as service:
        agent, admin = service.client(service.site_token("west-1")), service.client(service.admin_token())
        r = agent.post("/v1/agent/west-1/meter", json={"readings": _hand_readings(h0)})
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 5, "duplicates": 0, "hours": 2}
        r = _energy(admin, "west-1", h0, h0 + timedelta(hours=5))
        assert r.status_code == 200, r.text
        rows = r.json()
        assert [datetime.fromisoformat(x["at"]) for x in rows] == [h0 + timedelta(hours=k) for k in range(5)]
        _check_hand(rows, h0)
        ahead = [x for x in rows if x["forecast"] is not None]
        now = datetime.now(UTC)
        first = datetime.fromisoformat(ahead[0]["at"])
        assert first <= now < first + timedelta(hours=1)         # from the hour in progress on
        for x in ahead:              # each UTC hour: 45 min of slot k, 15 min of slot k + 1 (the epoch is at :45)
            k = int((datetime.fromisoformat(x["at"]) - epoch) / timedelta(hours=1))
            assert x["forecast"] == pytest.approx({"renewable_kw": 2.0,
                                                   "carbon_kg_per_kwh": 0.75 * CARBON[k] + 0.25 * CARBON[k + 1]})
        assert all(x["measured"] is None for x in rows[2:])
        with service.sessions() as s:        # what other modules read
            last = meters.latest_reading(s, "west-1")
            assert last == meters.Reading(h0 + timedelta(minutes=70), 40.0, 48.0, 0.0, 48.0, 55.5)
            assert [e.at for e in meters.hourly(s, "west-1", h0, h0 + timedelta(hours=2))] == [
                h0, h0 + timedelta(hours=1)]
            assert meters.latest_reading(s, "east-1") is None


def test_late_and_out_of_order_batches_leave_the_same_roll_ups(db_url, tmp_path):
    h0 = _hour_now() - timedelta(hours=2)
    with _serve(db_url, tmp_path, h0 - timedelta(minutes=15)) as service:
        agent, admin = service.client(service.site_token("west-1")), service.client(service.admin_token())
        r0, r1, r2, r3, r4 = _hand_readings(h0)
        for batch in ([r4, r3], [r0], [r2, r1]):          # the newest first; r2 cuts r1's hold short, late
            r = agent.post("/v1/agent/west-1/meter", json={"readings": batch})
            assert r.status_code == 202, r.text
        _check_hand(_energy(admin, "west-1", h0, h0 + timedelta(hours=2)).json(), h0)


def test_small_batches_in_any_order_add_up_to_the_roll_ups_of_all_the_readings(db_url, tmp_path):
    """Each batch adds to the stored hours only the change its readings make (their holds and the
    holds they cut short): 600 readings over some seven hours, some further apart than the gap, some
    exporting, posted in shuffled batches of 1 to 40 with retries mixed in, leave the roll-ups that
    `integrate` computes from all of them at once."""
    import random
    rnd = random.Random(16)
    h0 = _hour_now() - timedelta(hours=10)
    epoch = h0 - timedelta(minutes=15)
    at, readings = h0 + timedelta(seconds=7), []
    for _ in range(600):
        it = rnd.uniform(0, 500)
        fac = it * rnd.uniform(1.0, 1.5)
        readings.append(_r(at, it, fac, rnd.uniform(0, 200), rnd.uniform(-50, fac)))
        at += timedelta(seconds=rnd.choice([1, 7, 13, 29, 60]) if rnd.random() > 0.01 else rnd.uniform(1300, 2500))
    order = readings[:]
    rnd.shuffle(order)
    batches = []
    while order:
        n = rnd.randint(1, 40)
        batches.append(order[:n] + rnd.sample(readings, 2) * (rnd.random() < 0.3))   # a retry now and then
        order = order[n:]
    with _serve(db_url, tmp_path, epoch) as service:
        agent, admin = service.client(service.site_token("west-1")), service.client(service.admin_token())
        accepted = 0
        for batch in batches:
            r = agent.post("/v1/agent/west-1/meter", json={"readings": batch})
            assert r.status_code == 202, r.text
            accepted += r.json()["accepted"]
        assert accepted == len(readings)
        got = {datetime.fromisoformat(x["at"]): x["measured"]
               for x in _energy(admin, "west-1", h0, at + timedelta(hours=1)).json()}
    points = [(meters.to_us(datetime.fromisoformat(x["at"])), x["it_kw"], x["facility_kw"], x["renewable_kw"],
               x["grid_kw"]) for x in readings]
    want = meters.integrate(points, carbon=lambda k: CARBON[k], origin_us=meters.to_us(epoch))
    assert len(want) >= 5 and {h: e for h, e in got.items() if e is not None}.keys() == {e.at for e in want.values()}
    for e in want.values():
        assert got[e.at] == pytest.approx({f: getattr(e, f) for f in meters.ROLL_UP}, rel=1e-9, abs=1e-9), e.at


def test_a_batch_sent_again_is_ignored_and_a_disagreeing_duplicate_refuses_its_batch(db_url, tmp_path):
    h0 = _hour_now() - timedelta(hours=2)
    with _serve(db_url, tmp_path, h0 - timedelta(minutes=15)) as service:
        agent, admin = service.client(service.site_token("west-1")), service.client(service.admin_token())
        batch = _hand_readings(h0)
        assert agent.post("/v1/agent/west-1/meter", json={"readings": batch}).status_code == 202
        again = agent.post("/v1/agent/west-1/meter", json={"readings": batch[::-1]})
        assert (again.status_code, again.json()) == (202, {"accepted": 0, "duplicates": 5, "hours": 0})
        new = _r(h0 - timedelta(minutes=10), 10, 11, 0, 11)       # holds until h0: the hour before
        other = dict(batch[1], it_kw=121.0)
        r = agent.post("/v1/agent/west-1/meter", json={"readings": [new, other]})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("readings.1.it_kw: 121.0 is not possible: the reading of west-1 at ")
        assert "stored with it_kw 120.0" in r.json()["detail"]
        twice = agent.post("/v1/agent/west-1/meter", json={"readings": [new, dict(new, grid_kw=12.0)]})
        assert twice.status_code == 422
        assert twice.json()["detail"].startswith("readings.1.grid_kw: 12.0 is not possible: reading 0 of this batch")
        same = agent.post("/v1/agent/west-1/meter", json={"readings": [new, new]})
        assert (same.status_code, same.json()["accepted"], same.json()["duplicates"]) == (202, 1, 1)
        _check_hand(_energy(admin, "west-1", h0, h0 + timedelta(hours=2)).json(), h0)   # unchanged


def test_every_impossible_value_refuses_the_whole_batch_naming_the_reading_and_field(db_url, tmp_path):
    now = datetime.now(UTC)
    epoch = now - timedelta(hours=3)
    t = now - timedelta(hours=1)
    ok = _r(t, 10, 12, 1, 11, 5.0)
    cases = [  # (site, change to reading 1, the detail's beginning)
        ("west-1", dict(it_kw=-1), "readings.1.it_kw: -1.0 is not possible: IT power is never negative"),
        ("west-1", dict(renewable_kw=-0.5), "readings.1.renewable_kw: -0.5 is not possible"),
        ("west-1", dict(facility_kw=9), "readings.1.facility_kw: 9.0 is not possible: less than it_kw 10.0"),
        ("east-1", dict(grid_kw=-0.1, battery_soc_kwh=None),
         "readings.1.grid_kw: -0.1 is not possible: the site cannot export"),
        ("west-1", dict(grid_kw=-50.5), "readings.1.grid_kw: -50.5 is not possible: exports more than"),
        ("west-1", dict(battery_soc_kwh=100.5), "readings.1.battery_soc_kwh: 100.5 is not possible: more than"),
        ("west-1", dict(battery_soc_kwh=-1), "readings.1.battery_soc_kwh: -1.0 is not possible"),
        ("west-1", dict(it_kw=float("nan")), "readings.1.it_kw: Input should be a finite number"),
        ("west-1", dict(grid_kw=float("inf")), "readings.1.grid_kw: Input should be a finite number"),
        ("west-1", dict(it_kw=1e300), "readings.1.it_kw: Input should be less than or equal to 10000000"),
        ("west-1", dict(at=(now + timedelta(minutes=10)).isoformat()), "readings.1.at: "),
        ("west-1", dict(at=(epoch - timedelta(minutes=1)).isoformat()), "readings.1.at: "),
        ("west-1", dict(at=t.replace(tzinfo=None).isoformat()), "readings.1.at: Input should have timezone info"),
        ("west-1", dict(at="yesterday"), "readings.1.at: Input should be a valid datetime"),
        ("west-1", dict(it_kw="ten"), "readings.1.it_kw: Input should be a valid number"),
        ("west-1", dict(volts=230), "readings.1.volts: unknown field"),
    ]
    with _serve(db_url, tmp_path, epoch) as service:
        admin = service.client(service.admin_token())
        agents = {s: service.client(service.site_token(s)) for s in ("east-1", "west-1")}
        for site, change, want in cases:
            bad = {**ok, "at": (t + timedelta(seconds=1)).isoformat(), **change}
            raw = json.dumps({"readings": [ok, bad]})         # NaN and Infinity as Python's json writes them
            r = agents[site].post(f"/v1/agent/{site}/meter", content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (change, r.text)
            assert r.json()["detail"].startswith(want), (change, r.json())
        future = agents["west-1"].post("/v1/agent/west-1/meter",
                                       json={"readings": [ok, dict(ok, at=(now + timedelta(minutes=10)).isoformat())]})
        assert "is not possible: in the future" in future.json()["detail"]
        early = agents["west-1"].post("/v1/agent/west-1/meter",
                                      json={"readings": [dict(ok, at=(epoch - timedelta(minutes=1)).isoformat())]})
        assert "is not possible: before the site's history starts" in early.json()["detail"]
        missing = {k: v for k, v in ok.items() if k != "grid_kw"}
        r = agents["west-1"].post("/v1/agent/west-1/meter", json={"readings": [ok, missing]})
        assert r.json()["detail"] == "readings.1.grid_kw: required field is missing"
        assert agents["west-1"].post("/v1/agent/west-1/meter", json={"readings": []}).status_code == 422
        base = epoch + timedelta(minutes=1)             # one a second: 2.8 h, all before now
        many = [dict(ok, at=(base + timedelta(seconds=k)).isoformat()) for k in range(meters.MAX_READINGS + 1)]
        r = agents["west-1"].post("/v1/agent/west-1/meter", json={"readings": many})
        assert r.status_code == 422 and r.json()["detail"].startswith("readings: List should have at most 10000 items")
        huge = b'{"readings": [' + b" " * (5 << 20) + b"]}"
        r = agents["west-1"].post("/v1/agent/west-1/meter", content=huge, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        # nothing of any refused batch was stored: not even its good first reading
        rows = _energy(admin, "west-1", epoch, now).json()
        assert [x["measured"] for x in rows] == [None] * len(rows)
        with service.sessions() as s:
            assert s.scalar(select(func.count()).select_from(MeterReading)) == 0
        # the full batch of 10,000 is taken
        r = agents["west-1"].post("/v1/agent/west-1/meter", json={"readings": many[:meters.MAX_READINGS]})
        assert (r.status_code, r.json()["accepted"]) == (202, meters.MAX_READINGS), r.text


def test_only_the_sites_agent_posts_and_only_the_operator_reads(db_url, tmp_path):
    now = datetime.now(UTC)
    with _serve(db_url, tmp_path, now - timedelta(hours=2)) as service:
        tenant, admin = service.client(service.tenant("acme")), service.client(service.admin_token())
        east, west = service.client(service.site_token("east-1")), service.client(service.site_token("west-1"))
        body = {"readings": [_r(now - timedelta(minutes=5), 10, 12, 0, 12)]}
        for who, want in ((tenant, "not a tenant token"), (admin, "not a admin token"),
                          (east, "this token is for site 'east-1', not 'west-1'")):
            r = who.post("/v1/agent/west-1/meter", json=body)
            assert r.status_code == 403 and want in r.json()["detail"], r.text
        assert west.post("/v1/agent/west-1/meter", json=body).status_code == 202
        assert west.post("/v1/agent/nowhere/meter", json=body).status_code == 403     # its token is west-1's
        start, end = now - timedelta(hours=1), now + timedelta(hours=1)
        for who in (tenant, west):
            r = _energy(who, "west-1", start, end)
            assert r.status_code == 403, r.text
        assert _energy(admin, "west-1", start, end).status_code == 200
        assert _energy(admin, "nowhere", start, end).status_code == 404
        for a, b, want in ((end, start, "to: "), (start, start + timedelta(days=367), "to: "),
                           (now, now + timedelta(days=8), "to: ")):
            r = _energy(admin, "west-1", a, b)
            assert r.status_code == 422 and r.json()["detail"].startswith(want), r.text
        r = admin.get("/v1/sites/west-1/energy", params={"from": "2026-06-01T00:00:00", "to": end.isoformat()})
        assert r.status_code == 422 and r.json()["detail"].startswith("from: Input should have timezone info")
        assert admin.get("/v1/sites/west-1/energy", params={"to": end.isoformat()}).status_code == 422


def test_the_sweep_removes_raw_readings_past_the_retention_and_keeps_the_roll_ups(db_url, tmp_path):
    now = datetime.now(UTC)
    old = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    epoch = old - timedelta(hours=10)                  # the old hour is slot 10: 0.7 kg/kWh
    with _serve(db_url, tmp_path, epoch) as service:           # retention 35 days: the old readings are taken
        west = service.client(service.site_token("west-1"))
        r = west.post("/v1/agent/west-1/meter", json={"readings": [
            _r(old + timedelta(minutes=10 * k), 60, 72, 0, 72) for k in range(6)]})
        assert r.status_code == 202, r.text
        admin_token = service.admin_token()
        site_token = service.site_token("west-1")
    with _serve(db_url, tmp_path, meter_retention_days=1) as service:
        west, admin = service.client(site_token), service.client(admin_token)

        def raw() -> int:
            with service.sessions() as s:
                return s.scalar(select(func.count()).select_from(MeterReading))
        wait_for(lambda: raw() == 0, 30)                        # swept at the first tick
        rows = _energy(admin, "west-1", old, old + timedelta(hours=1)).json()
        assert rows[0]["measured"] == pytest.approx({"it_kwh": 60.0, "facility_kwh": 72.0, "renewable_kwh": 0.0,
                                                     "grid_kwh": 72.0, "export_kwh": 0.0,
                                                     "carbon_kg": 72 * 0.7, "covered_s": 3600.0, "readings": 6})
        # 1 day less the 2-hour margin: 23 h ago is refused, 21 h ago is taken (and not swept)
        r = west.post("/v1/agent/west-1/meter", json={"readings": [_r(now - timedelta(hours=23), 1, 1, 0, 1)]})
        assert r.status_code == 422 and "older than the raw-reading retention allows" in r.json()["detail"]
        r = west.post("/v1/agent/west-1/meter", json={"readings": [_r(now - timedelta(hours=21), 1, 1, 0, 1)]})
        assert r.status_code == 202
        assert raw() == 1


def test_serve_refuses_a_bad_retention_in_one_line(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db",
                        f"sqlite:///{tmp_path / 'a.db'}", "--meter-retention-days", "0"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr.strip()) == (
        2, "error: --meter-retention-days: a number of days from 1 to 36600, got 0")
