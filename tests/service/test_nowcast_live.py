"""The live policy plans on forecasts made from readings (issue 16, item 3): a solar site whose
meters read far less sun than its model forecasts far less sun on `GET /v1/sites/{site}/energy`,
and the `suanli` policy stops sending a job there to chase that sun; with no readings the model
serves, as before meters. Real server (restarted on the same database), real endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import svc
import yaml
from svc import Service, ThreadServer, build, job_body, wait_for

from suanli.service import meters
from suanli.service.db import open_db
from suanli.service.models import Meta

db_url = svc.db_url
CAPACITY_KW = 10.0


def _network(tmp: Path, epoch: datetime) -> str:
    """Two sites in one equatorial city whose solar noon is half an hour from now: sun-1 with a
    10 kW solar plant (cloud_cover 0: the model is clear sky) and dear grid power (3 CNY/kWh),
    grid-1 with cheaper grid power (1 CNY/kWh) and no renewables; the same GPUs, rent and grid
    carbon. The network's hour 0 is the service's epoch, so the model's slots are the
    controller's."""
    now = datetime.now(UTC)
    hours = now.hour + now.minute / 60 + 0.5
    lon = ((12.0 - hours) * 15.0 + 180.0) % 360.0 - 180.0
    pool = {"a800": {"count": 8, "cny_per_gpu_h": 10.0}}
    net = {
        "name": "nowcast-live", "start": epoch.isoformat(), "horizon_h": 24,
        "gpu_types": {"a800": {"power_kw": 0.4, "speed": 1.0}},
        "cities": {"sunny": {"lat": 0.0, "lon": round(lon, 3)}},
        "links": [],
        "sites": [
            {"id": "sun-1", "city": "sunny", "pue": 1.0, "gpus": pool,
             "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 3.0},
             "renewables": {"kw": {"model": "solar", "capacity_kw": CAPACITY_KW, "cloud_cover": 0.0, "seed": 1},
                            "cny_per_kwh": 0.0}},
            {"id": "grid-1", "city": "sunny", "pue": 1.0, "gpus": pool,
             "grid": {"carbon_kg_per_kwh": 0.5, "cny_per_kwh": 1.0}},
        ],
        "objective": {"carbon_cny_per_kg": 0.1},
    }
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


@contextmanager
def _serve(url: str, network: str, tmp: Path) -> Iterator[Service]:
    app = build(network, url, policy="suanli", tick_s=0.2, checkpoint_store=tmp / "store")
    with ThreadServer(app) as base:
        yield Service(base, app, url)


def _up(service: Service, tokens: dict[str, str]) -> None:
    for site, token in tokens.items():
        r = service.client(token).post(f"/v1/agent/{site}/heartbeat", json={"executor": "local"})
        assert r.status_code == 200, r.text


def _ahead(service: Service, admin, site: str) -> list[dict]:
    """The forecast rows of the hour in progress and the next one."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    r = admin.get(f"/v1/sites/{site}/energy", params={"from": start.isoformat(),
                                                      "to": (start + timedelta(hours=2)).isoformat()})
    assert r.status_code == 200, r.text
    return [row["forecast"] for row in r.json()]


def _placed(service: Service, tenant, sites: dict[str, str]) -> dict:
    _up(service, sites)
    body = job_body(command="true", gpus=8, work_h=1.0, origin="sunny")
    jid = tenant.post("/v1/jobs", json=body).json()["id"]
    return wait_for(lambda: (j := tenant.get(f"/v1/jobs/{jid}").json())["state"] == "PLACED" and j, 30,
                    dump=lambda: tenant.get(f"/v1/jobs/{jid}").json())


def test_readings_of_little_sun_lower_the_forecast_and_move_the_job_that_chased_it(db_url, tmp_path):
    now = datetime.now(UTC)
    epoch = now - timedelta(hours=50, minutes=17)        # not on the hour: slots straddle UTC hours
    sessions = open_db(db_url)
    with sessions.begin() as s:
        s.merge(Meta(key="epoch", value=epoch.isoformat()))
    sessions.kw["bind"].dispose()
    network = _network(tmp_path, epoch)

    # 1. no readings: the model serves; the job goes where the model's sun is
    with _serve(db_url, network, tmp_path) as service:
        tokens = {site: service.site_token(site) for site in ("sun-1", "grid-1")}
        tenant_token = service.tenant("acme")
        admin, tenant = service.client(service.admin_token()), service.client(tenant_token)
        c = service.app.state.controller
        wait_for(lambda: c.live.issue_h is not None, 30)
        assert c.live.current == {}                                          # nothing read: every site its model
        model = _ahead(service, admin, "sun-1")
        want = meters.forecast_rows(None, c.network, c.epoch, "sun-1",
                                    [now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=k)
                                     for k in range(2)])
        assert model == want                                                 # exactly the network file's model
        assert min(f["renewable_kw"] for f in model) > 0.5 * CAPACITY_KW      # midday, clear sky
        first = _placed(service, tenant, tokens)
        assert first["site"] == "sun-1", first["explanation"]["chosen"]
        assert tenant.delete(f"/v1/jobs/{first['id']}").status_code in (200, 202)

        # 2. two days of readings: 0.1 kW of sun all along (an inverter that is mostly off)
        agent = service.client(tokens["sun-1"])
        at = [epoch + timedelta(minutes=10 * k + 20) for k in range(int((now - epoch).total_seconds() // 600) - 2)]
        body = {"readings": [{"at": t.isoformat(), "it_kw": 1.0, "facility_kw": 1.2, "renewable_kw": 0.1,
                              "grid_kw": 1.1} for t in at]}
        r = agent.post("/v1/agent/sun-1/meter", json=body)
        assert r.status_code == 202 and r.json()["accepted"] == len(at), r.text

    # 3. the next issue (here: a restart on the same database) plans on the readings
    with _serve(db_url, network, tmp_path) as service:
        c = service.app.state.controller
        admin = service.client(service.admin_token())
        tenant = service.client(tenant_token)
        wait_for(lambda: c.live.issue_h is not None, 60)
        f = c.live.current["sun-1"]
        assert f.renewable_from == "readings" and "grid-1" not in c.live.current
        seen = f.history.renewable_kw[np.isfinite(f.history.renewable_kw)]
        assert len(seen) >= 40 and seen == pytest.approx(0.1)               # slot means of the readings
        ahead = _ahead(service, admin, "sun-1")
        for got, was in zip(ahead, model, strict=True):
            assert got["renewable_kw"] < 0.3 * was["renewable_kw"], (ahead, model)
            assert got["carbon_kg_per_kwh"] == pytest.approx(was["carbon_kg_per_kwh"])   # no carbon feed
        assert _ahead(service, admin, "grid-1") == [{"renewable_kw": 0.0, "carbon_kg_per_kwh": 0.5}] * 2
        second = _placed(service, tenant, tokens)
        assert second["site"] == "grid-1", second["explanation"]["chosen"]
