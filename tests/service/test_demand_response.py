"""Demand response against metered import (service/demand.py; docs/ENERGY.md "Demand response"),
through a real server, a real agent running real processes, and readings posted to
`POST /v1/agent/{site}/meter`: a site whose metered grid import passes its cap has the
checkpointing runs of least power that cover the excess stopped at the next tick (a run without
checkpoints is never stopped), takes no new start while over, and opens an event that closes with
the kWh above the cap when a reading shows it under; a utility's signal caps a site like the
operator's notice and ends when the utility says so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import svc
import yaml
from svc import NETWORK, Service, ThreadServer, build, job_body, wait_for

from suanli.service.db import open_db
from suanli.service.models import Meta

db_url = svc.db_url
CAP_KW = 10.0
A800_KW = 0.4 * 1.2            # west-1: an A800's board power x the site's PUE


def _network(tmp: Path) -> str:
    net = yaml.safe_load(Path(NETWORK).read_text())
    net["sites"][1].pop("renewables", None)
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


def _reading(at: datetime, grid_kw: float) -> dict:
    return {"at": at.isoformat(), "it_kw": 5.0, "facility_kw": 6.0, "renewable_kw": 0.0, "grid_kw": grid_kw}


def _meter(meter: httpx.Client, at: datetime, grid_kw: float) -> None:
    """west-1's meter posts one reading: `grid_kw` of metered import at `at`."""
    r = meter.post("/v1/agent/west-1/meter", json={"readings": [_reading(at, grid_kw)]})
    assert r.status_code == 202, r.text


def _events(admin: httpx.Client) -> list[dict]:
    return admin.get("/v1/sites/west-1/demand-response").json()


def _closed(admin: httpx.Client) -> dict:
    """The first demand-response event of west-1, once it has closed."""
    return wait_for(lambda: (e := _events(admin)[0])["end"] and e, 10)


def _states(job: dict) -> list[str]:
    return [t["to_state"] for t in job["transitions"]]


def _job(tenant, name: str, gpus: int, checkpoint: bool) -> int:
    body = job_body(name=name, command="sleep 600", gpus=gpus, work_h=1.0, gpu_types=["a800"], origin="hami")
    if checkpoint:
        body["checkpoint_h"] = 1 / 60
    r = tenant.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@dataclass
class West:
    """The service with west-1's agent running: acme's, the operator's and west-1's meter's clients."""
    service: Service
    tenant: httpx.Client
    admin: httpx.Client
    meter: httpx.Client


@pytest.fixture
def west(db_url, tmp_path) -> Iterator[West]:
    """A service whose hour 0 was an hour ago (readings may be dated back to it)."""
    sessions = open_db(db_url)
    with sessions.begin() as s:
        s.merge(Meta(key="epoch", value=(datetime.now(UTC) - timedelta(hours=1)).isoformat()))
    sessions.kw["bind"].dispose()
    app = build(_network(tmp_path), db_url, policy="fifo", tick_s=0.2, checkpoint_store=tmp_path / "store")
    with ThreadServer(app) as url:
        service = Service(url, app, db_url)
        try:
            site_token = service.site_token("west-1")
            service.start_agent("west-1", tmp_path / "work", token=site_token)
            yield West(service, service.client(service.tenant("acme")), service.client(service.admin_token()),
                       service.client(site_token))
        finally:
            svc.stop_all(service.agents)


def test_over_the_cap_the_least_power_that_covers_it_stops_and_starts_wait_until_under(west):
    tenant, admin, meter = west.tenant, west.admin, west.meter
    end = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()     # before the readings below
    r = admin.post("/v1/admin/grid-caps", json={"site": "west-1", "start": start, "end": end,
                                                "max_grid_kw": CAP_KW, "reason": "evening peak"})
    assert r.status_code == 201, r.text
    # west-1: big (4 GPUs, checkpoints, 1.92 kW), plain (2, none), small (2, checkpoints, 0.96 kW)
    big, plain, small = (_job(tenant, "big", 4, True), _job(tenant, "plain", 2, False),
                         _job(tenant, "small", 2, True))
    for j in (big, plain, small):
        wait_for(lambda j=j: tenant.get(f"/v1/jobs/{j}").json()["state"] == "RUNNING", 60,
                 dump=lambda j=j: tenant.get(f"/v1/jobs/{j}").json())
    _meter(meter, datetime.now(UTC) - timedelta(seconds=120), CAP_KW - 1.0)
    time.sleep(1.0)                                      # under the cap: nothing happens
    assert _events(admin) == []

    # 0.5 kW over: the small run (0.96 kW) covers it with the least power; big would too, with more
    t0 = datetime.now(UTC) - timedelta(seconds=40)
    _meter(meter, t0, CAP_KW + 0.5)
    arrived = time.monotonic()
    stopped = wait_for(lambda: "PREEMPTED" in _states(j := tenant.get(f"/v1/jobs/{small}").json()) and j, 10)
    assert time.monotonic() - arrived < 5.0
    stop = next(t for t in stopped["transitions"] if t["to_state"] == "PREEMPTED")
    assert "demand response" in stop["reason"] and "0.960 kW" in stop["reason"], stop
    [ev] = _events(admin)
    assert ev["open"] and ev["cap_source"] == "operator" and ev["max_grid_kw"] == CAP_KW
    assert ev["peak_over_kw"] == 0.5 and [x["job_id"] for x in ev["stopped"]] == [small]
    assert abs(ev["stopped"][0]["kw"] - 2 * A800_KW) < 1e-9
    # the agent kills it; big and plain run on; nothing starts on west-1 while it is over
    late = _job(tenant, "late", 2, True)
    time.sleep(2.0)
    assert {tenant.get(f"/v1/jobs/{j}").json()["state"] for j in (big, plain)} == {"RUNNING"}
    for j in (small, late):
        got = tenant.get(f"/v1/jobs/{j}").json()
        assert got["state"] == "PENDING", got
    assert tenant.get(f"/v1/jobs/{small}").json()["usage"]["gpu_seconds"] > 0     # its run was metered

    # a reading 36 s later under the cap closes it: 0.5 kW over for 36 s = 0.005 kWh
    _meter(meter, t0 + timedelta(seconds=36), CAP_KW - 0.2)
    ev = _closed(admin)
    assert ev["end_reason"] == "under the cap" and ev["duration_s"] == 36.0
    assert abs(ev["kwh_above"] - 0.5 * 36 / 3600) < 1e-12
    # 0.2 kW of headroom: a 0.96 kW run would take it over again, so none starts
    time.sleep(1.5)
    assert {tenant.get(f"/v1/jobs/{j}").json()["state"] for j in (small, late)} <= {"PENDING", "PLACED"}
    # 1.5 kW of headroom: starts resume, one 0.96 kW run (the 2 free GPUs) on west-1
    _meter(meter, datetime.now(UTC), CAP_KW - 1.5)
    again = wait_for(lambda: [j for j in (small, late)
                              if tenant.get(f"/v1/jobs/{j}").json()["state"] == "RUNNING"], 60)
    assert tenant.get(f"/v1/jobs/{again[0]}").json()["site"] == "west-1"
    assert tenant.get("/v1/sites/west-1/demand-response").status_code == 403      # operator only


def test_a_run_without_checkpoints_is_never_stopped_and_a_utility_signal_ends_when_it_says(west):
    tenant, admin, meter = west.tenant, west.admin, west.meter
    plain = _job(tenant, "plain", 2, False)
    wait_for(lambda: tenant.get(f"/v1/jobs/{plain}").json()["state"] == "RUNNING", 60)
    signal = {"signal_id": "sgcc-jl/2026-12-05/17", "sender": "State Grid Jilin dispatch",
              "max_grid_kw": CAP_KW, "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
              "start": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()}
    assert tenant.post("/v1/sites/west-1/grid-signals", json=signal).status_code == 403
    assert west.service.client(west.service.site_token("east-1")).post("/v1/sites/west-1/grid-signals",
                                                             json=signal).status_code == 403
    bad = meter.post("/v1/sites/west-1/grid-signals", json=dict(signal, max_grid_kw=-1))
    assert bad.status_code == 422 and "max_grid_kw" in bad.text
    far = meter.post("/v1/sites/west-1/grid-signals",
                     json=dict(signal, end=(datetime.now(UTC) + timedelta(days=8)).isoformat()))
    assert far.status_code == 422 and far.json()["detail"].startswith("end: ")
    r = meter.post("/v1/sites/west-1/grid-signals", json=signal)
    assert r.status_code == 201 and r.json()["source"] == "utility", r.text
    cap = r.json()
    assert [g["id"] for g in admin.get("/v1/grid-caps").json() if g["source"] == "utility"] == [cap["id"]]

    t0 = datetime.now(UTC) - timedelta(seconds=20)
    _meter(meter, t0, CAP_KW + 3.0)
    ev = wait_for(lambda: (e := _events(admin)) and e[0]["note"] and e[0], 10)
    assert ev["note"] == "3.000 kW over, no checkpointing job to stop (1 running without checkpoints, " \
                         "left running)", ev
    assert ev["cap_source"] == "utility" and ev["cap_id"] == cap["id"] and ev["stopped"] == []
    time.sleep(1.0)
    assert tenant.get(f"/v1/jobs/{plain}").json()["state"] == "RUNNING"

    # the utility ends its signal (the same id, ending now): the event closes with the cap
    r = meter.post("/v1/sites/west-1/grid-signals", json=dict(signal, end=datetime.now(UTC).isoformat()))
    assert r.status_code == 200 and r.json()["id"] == cap["id"], r.text
    ev = _closed(admin)
    assert ev["end_reason"] == "the cap ended"
    # its only reading held for 20 min at most (meters.MAX_GAP_S): 3 kW over from t0 to the end
    held_s = ev["duration_s"]
    assert 20 <= held_s <= 1200 and abs(ev["kwh_above"] - 3.0 * held_s / 3600) < 1e-9
    assert tenant.get(f"/v1/jobs/{plain}").json()["state"] == "RUNNING"
