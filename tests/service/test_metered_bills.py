"""Bills from meters through a real server and database (SQLite; PostgreSQL when configured): the
test is west-1's agent (heartbeats, claims, reports over HTTP) and its meter (readings posted to
`POST /v1/agent/west-1/meter`); runs there are billed from the meter once the readings cover them,
shared by GPU power; what no run takes is the idle share of `GET /v1/sites/west-1/energy`, and the
runs' lines plus the idle share are the meter; east-1 has no readings and its lines stay modelled;
a run of a closed month is trued up by a line of its own (service/bills.py)."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import svc
from sqlalchemy import select, update
from svc import job_body, wait_for

from suanli.service import bills
from suanli.service.models import Job as JobRow
from suanli.service.models import Usage

db_url, service = svc.db_url, svc.service
A800_KW, CARBON, TARIFF, REN_CNY = 0.4, 0.5, 0.3, 0.1       # west-1 in tests/service/data/network.yaml
BEAT = {"executor": "local", "pools": [], "running": []}
STEP = timedelta(milliseconds=250)                            # the meter's reading interval


class Site:
    """The test as a site's agent: heartbeats listing its runs, claims, reports."""

    def __init__(self, service, site: str):
        self.site, self.c = site, service.client(service.site_token(site))
        self.running: dict[int, int] = {}
        self.claimed: dict[int, int] = {}        # job -> fence: claimed, not yet reported RUNNING

    def beat(self) -> None:
        running = [{"job_id": j, "fence": f} for j, f in (self.running | self.claimed).items()]
        assert self.c.post(f"/v1/agent/{self.site}/heartbeat", json={**BEAT, "running": running}).status_code == 200

    def start(self, job_id: int) -> None:
        def claimed():
            self.beat()
            for a in self.c.post(f"/v1/agent/{self.site}/assignments").json():
                self.claimed[a["job_id"]] = a["fence"]
            return job_id in self.claimed
        wait_for(claimed, timeout=30)
        fence = self.running[job_id] = self.claimed.pop(job_id)
        r = self.c.post(f"/v1/agent/{self.site}/jobs/{job_id}/report", json={"fence": fence, "state": "RUNNING"})
        assert r.status_code == 200, r.text

    def finish(self, job_id: int, **extra) -> dict:
        fence = self.running.pop(job_id)
        r = self.c.post(f"/v1/agent/{self.site}/jobs/{job_id}/report",
                        json={"fence": fence, "state": "SUCCEEDED", "exit_code": 0, **extra})
        assert r.status_code == 200, r.text
        return r.json()

    def readings(self, start: datetime, end: datetime, it_kw, facility_kw: float, grid_kw: float) -> None:
        """Readings every STEP over [start, end] (it_kw: a number, or a function of the time)."""
        out, t = [], start
        while t <= end:
            it = it_kw(t) if callable(it_kw) else it_kw
            out.append({"at": t.isoformat(), "it_kw": it, "facility_kw": facility_kw,
                        "renewable_kw": max(facility_kw - grid_kw, 0.0), "grid_kw": grid_kw})
            t += STEP
        for k in range(0, len(out), 5000):
            r = self.c.post(f"/v1/agent/{self.site}/meter", json={"readings": out[k:k + 5000]})
            assert r.status_code == 202, r.text


def _submit(client, gpus: int, gpu_type: str) -> int:
    r = client.post("/v1/jobs", json=job_body(gpus=gpus, gpu_types=[gpu_type], work_h=0.05))
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def _run_on_west(service, gpus: int, run_s: float) -> tuple[httpx.Client, Site, datetime, int]:
    """acme's client; west-1, the test as its agent; the time before; acme's job of `gpus` A800s,
    started on west-1 and left running for `run_s` seconds."""
    ca = service.client(service.tenant("acme"))
    west = Site(service, "west-1")
    west.beat()
    t0 = datetime.now(UTC)
    ja = _submit(ca, gpus, "a800")
    west.start(ja)
    time.sleep(run_s)
    return ca, west, t0, ja


def _no_true_up_left(service) -> None:
    """A true-up is applied once: a second pass finds nothing to do."""
    c = service.app.state.controller
    with c.sessions.begin() as s:
        assert bills.true_up(s, c.network, c.epoch, c.now_h()) == []


def _span(service, job_id: int) -> tuple[datetime, datetime]:
    """The run's [start, end) as the ledger holds it (wall clock)."""
    with service.sessions() as s:
        u = s.scalar(select(Usage).where(Usage.job_id == job_id, Usage.kind == "run"))
        c = service.app.state.controller
        return c.wall(u.start_h), c.wall(u.end_h)


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    """Hours the two spans share."""
    return max(0.0, (min(a[1], b[1]) - max(a[0], b[0])).total_seconds() / 3600.0)


def _hours(a: tuple[datetime, datetime]) -> float:
    return (a[1] - a[0]).total_seconds() / 3600.0


def _lines(client, month: str) -> dict[int, list[dict]]:
    (inv,) = client.get("/v1/invoices", params={"month": month}).json()
    out: dict[int, list[dict]] = {}
    for ln in inv["lines"]:
        out.setdefault(ln["job_id"], []).append(ln)
    return out


def _metered(client, month: str, *jobs: int) -> dict[int, dict]:
    """Wait until each job's run line is metered; its line."""
    def done():
        lines = _lines(client, month)
        got = {j: lines[j][0] for j in jobs if j in lines and lines[j][0]["energy_basis"] == "metered"}
        return got if len(got) == len(jobs) else None
    return wait_for(done, timeout=30)


def _energy(admin, start: datetime, end: datetime) -> list[dict]:
    r = admin.get("/v1/sites/west-1/energy", params={"from": start.isoformat(), "to": end.isoformat()})
    assert r.status_code == 200, r.text
    return [{**row["measured"], **row["billed"]} for row in r.json() if row["measured"] is not None]


def _month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_runs_share_the_meter_by_gpu_power_and_with_the_idle_share_add_up_to_it(service):
    """Constant readings, IT 3 kW > the runs' 0.4 + 1.2 kW: each run pays its GPUs' power times
    the measured PUE (facility 4 / IT 3) over its run, its grid share (2.5 of 4 kW) at the slot's
    carbon factor and tariff; east-1's run, without readings, stays modelled; the runs' lines and
    the hours' idle share add up to the meter, to rounding."""
    acme, bolt = service.tenant("acme"), service.tenant("bolt")
    ca, cb, admin = service.client(acme), service.client(bolt), service.client(service.admin_token())
    west, east = Site(service, "west-1"), Site(service, "east-1")
    west.beat()
    east.beat()
    t0 = datetime.now(UTC)
    ja, jb, jc = _submit(ca, 1, "a800"), _submit(cb, 3, "a800"), _submit(ca, 1, "h100")
    west.start(ja)
    west.start(jb)
    east.start(jc)
    time.sleep(1.0)
    west.finish(ja)
    time.sleep(0.5)
    west.finish(jb)
    east.finish(jc)
    month = _month()
    before = _lines(ca, month)
    assert [ln["energy_basis"] for ln in before[ja]] == ["modelled"]       # priced when it ended
    west.readings(t0, datetime.now(UTC) + timedelta(seconds=1), 3.0, 4.0, 2.5)
    got = {**_metered(ca, month, ja), **_metered(cb, month, jb)}
    pue, grid_share = 4.0 / 3.0, 2.5 / 4.0
    for job, gpus in ((ja, 1), (jb, 3)):
        kw = gpus * A800_KW
        h = _hours(_span(service, job))
        ln = got[job]
        assert ln["energy_kwh"] == pytest.approx(kw * pue * h, rel=1e-9)
        assert ln["carbon_kg"] == pytest.approx(kw * pue * h * grid_share * CARBON, rel=1e-9)
        assert ln["energy_cny"] == pytest.approx(kw * pue * h * (grid_share * TARIFF + (1 - grid_share) * REN_CNY),
                                                 rel=1e-9)
        assert ln["total_cny"] == pytest.approx(ln["gpu_cny"] + ln["energy_cny"] + ln["transfer_cny"], rel=1e-12)
        assert ln["kind"] == "run"
    # tenant isolation: each tenant's invoice holds its own jobs' lines only
    assert set(_lines(ca, month)) == {ja, jc} and set(_lines(cb, month)) == {jb}
    assert cb.get("/v1/invoices", params={"month": month, "tenant": "acme"}).status_code == 403
    # east-1 has no meter: its line stays modelled (a true-up pass has run since: ja is metered)
    service.app.state.controller.true_ups.nudge()
    time.sleep(1.0)
    assert [ln["energy_basis"] for ln in _lines(ca, month)[jc]] == ["modelled"]
    rows = list(csv.DictReader(io.StringIO(ca.get("/v1/invoices", params={"month": month, "format": "csv"}).text)))
    assert {r["job_id"]: r["energy_basis"] for r in rows[:-1]} == {str(ja): "metered", str(jc): "modelled"}
    # the meter = the runs' lines + the idle share, hour by hour summed (kWh and kg)
    hours = _energy(admin, t0 - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))
    meter_kwh = sum(m["facility_kwh"] for m in hours)
    lines = [got[ja], got[jb]]
    assert sum(ln["energy_kwh"] for ln in lines) + sum(m["idle_kwh"] for m in hours) == pytest.approx(meter_kwh,
                                                                                                    rel=1e-12)
    assert sum(ln["carbon_kg"] for ln in lines) + sum(m["idle_carbon_kg"] for m in hours) == pytest.approx(
        sum(m["carbon_kg"] for m in hours), rel=1e-12)
    assert all(m["settled"] for m in hours)
    assert all(m["idle_kwh"] > 0 for m in hours)          # the site drew 3 kW of IT, the runs 1.6 at most
    # a true-up is applied once: a second pass finds nothing to do and changes no line
    _no_true_up_left(service)
    assert _lines(ca, month)[ja] == [got[ja]]


def test_runs_drawing_more_than_the_meter_share_all_of_it_and_a_run_still_going_keeps_its_share(service):
    """IT 1 kW < the runs' 0.4 + 1.2 kW: while both run they share the whole facility power 1:3;
    alone, a run takes 0.4/1 (run a) or 1.2/1.2 (run b) of it. Run a is trued up while run b still
    runs (b's share is kept for it), b after it ends: together with the idle share, the meter."""
    admin = service.client(service.admin_token())
    ca, west, t0, ja = _run_on_west(service, 1, 0.5)
    jb = _submit(ca, 3, "a800")
    west.start(jb)
    time.sleep(1.0)
    west.finish(ja)
    time.sleep(0.3)
    month = _month()
    west.readings(t0, datetime.now(UTC), 1.0, 1.5, 1.0)
    got_a = _metered(ca, month, ja)[ja]
    assert jb not in _lines(ca, month)                          # still running: no line yet
    time.sleep(0.5)
    west.finish(jb)
    last = datetime.now(UTC) + timedelta(seconds=1)
    west.readings(t0 + ((datetime.now(UTC) - t0) // STEP - 8) * STEP, last, 1.0, 1.5, 1.0)
    got_b = _metered(ca, month, jb)[jb]
    a, b = _span(service, ja), _span(service, jb)
    both = _overlap(a, b)
    assert got_a["energy_kwh"] == pytest.approx(1.5 * (0.25 * both + 0.4 * (_hours(a) - both)), rel=1e-9)
    assert got_b["energy_kwh"] == pytest.approx(1.5 * (0.75 * both + 1.0 * (_hours(b) - both)), rel=1e-9)
    hours = _energy(admin, t0 - timedelta(hours=1), last + timedelta(hours=1))
    total = got_a["energy_kwh"] + got_b["energy_kwh"] + sum(m["idle_kwh"] for m in hours)
    assert total == pytest.approx(sum(m["facility_kwh"] for m in hours), rel=1e-12)


def test_a_run_of_a_closed_month_is_trued_up_by_a_line_of_its_own_in_the_current_month(service):
    """The run's row says it ended last month (as a run that ended just before midnight on the
    last day would): once the readings cover it, last month's line is left as it was, and this
    month gets a true-up line of the difference, metered; together they are the metered energy."""
    ca, west, t0, ja = _run_on_west(service, 2, 1.0)
    west.finish(ja)
    month = _month()
    last_month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    with service.sessions.begin() as s:
        s.execute(update(Usage).where(Usage.job_id == ja).values(month=last_month))
    (closed,) = _lines(ca, last_month)[ja]
    assert closed["energy_basis"] == "modelled"
    west.readings(t0, datetime.now(UTC) + timedelta(seconds=1), 3.0, 4.0, 2.5)
    (up,) = wait_for(lambda: _lines(ca, month).get(ja), timeout=30)
    assert _lines(ca, last_month)[ja] == [closed]               # the closed month is as it was
    metered = 2 * A800_KW * (4.0 / 3.0) * _hours(_span(service, ja))
    assert (up["kind"], up["energy_basis"], up["gpu_h"], up["gpu_cny"]) == ("true-up", "metered", 0.0, 0.0)
    assert closed["energy_kwh"] + up["energy_kwh"] == pytest.approx(metered, rel=1e-9)
    assert up["total_cny"] == pytest.approx(up["energy_cny"], rel=1e-12)
    _no_true_up_left(service)                                   # once only
    assert len(_lines(ca, month)[ja]) == 1


def test_a_run_whose_gpu_energy_was_measured_shares_the_meter_by_its_measured_power(service):
    """The agent reports the run's GPU energy (NVML): the run draws that energy over its length,
    here half its GPUs' rating, so it takes half the meter the rating would give it. A report of
    more than its GPUs could draw at 5 kW each since the dispatch is refused, 422 naming gpu_kwh."""
    ca, west, t0, ja = _run_on_west(service, 2, 1.0)
    fence = west.running[ja]
    r = west.c.post(f"/v1/agent/west-1/jobs/{ja}/report", json={"fence": fence, "state": "SUCCEEDED", "gpu_kwh": 1.0})
    assert r.status_code == 422 and r.json()["detail"].startswith("gpu_kwh: 1.0") and "at most" in r.json()["detail"]
    with service.sessions() as s:
        length_h = service.app.state.controller.now_h() - s.get(JobRow, ja).start_h
    west.finish(ja, gpu_kwh=2 * A800_KW * 0.5 * length_h)        # about half the rating: the exact power below
    west.readings(t0, datetime.now(UTC) + timedelta(seconds=1), 3.0, 4.0, 2.5)
    ln = _metered(ca, _month(), ja)[ja]
    with service.sessions() as s:
        u = s.scalar(select(Usage).where(Usage.job_id == ja, Usage.kind == "run"))
        measured_kw = u.gpu_kwh / (u.end_h - u.start_h)
    assert measured_kw < 2 * A800_KW * 0.6
    assert ln["energy_kwh"] == pytest.approx(measured_kw * (4.0 / 3.0) * _hours(_span(service, ja)), rel=1e-9)
