"""The site view's metered energy (`GET /v1/dashboard/sites/{site}/meters`, service/dashboard.py)
through a real server and database: measured from the readings posted through
`POST /v1/agent/{site}/meter`, forecast as `GET /v1/sites/{site}/energy` gives it (hours ahead
only), the model as the site view's series gives it, each on UTC hours; the operator's alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import svc
import yaml
from svc import NETWORK, Service, ThreadServer, build

from suanli.service.db import open_db
from suanli.service.models import Meta

db_url = svc.db_url
REN = [float(k) for k in range(24)]          # west-1's modelled renewables by slot (kW): slot k gives k kW


def _network(tmp: Path) -> str:
    net = yaml.safe_load(Path(NETWORK).read_text())
    net["sites"][1]["renewables"]["kw"] = REN
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


@contextmanager
def _serve(url: str, tmp: Path, epoch: datetime) -> Iterator[Service]:
    sessions = open_db(url)
    with sessions.begin() as s:
        s.merge(Meta(key="epoch", value=epoch.isoformat()))
    sessions.kw["bind"].dispose()
    app = build(_network(tmp), url, policy="fifo", tick_s=0.2, checkpoint_store=tmp / "store")
    with ThreadServer(app) as base:
        yield Service(base, app, url)


def test_measured_forecast_and_model_by_utc_hour_for_the_operator_only(db_url, tmp_path):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    epoch = hour - timedelta(hours=6, minutes=15)          # at :45: an hour is 3/4 of slot k, 1/4 of slot k + 1
    with _serve(db_url, tmp_path, epoch) as service:
        agent = service.client(service.site_token("west-1"))
        admin = service.client(service.admin_token())
        tenant = service.client(service.tenant("acme"))
        # readings every 10 min from the epoch's next hour to now: 7 kW of renewables, 3 kW from the grid
        first = hour - timedelta(hours=5)
        step = timedelta(minutes=10)
        at = [first + k * step for k in range(int((datetime.now(UTC) - first) / step))]
        body = {"readings": [{"at": t.isoformat(), "it_kw": 8.0, "facility_kw": 10.0, "renewable_kw": 7.0,
                              "grid_kw": 3.0, "battery_soc_kwh": None} for t in at]}
        r = agent.post("/v1/agent/west-1/meter", json=body)
        assert r.status_code == 202, r.text

        url = "/v1/dashboard/sites/west-1/meters"
        assert service.client(None).get(url).status_code == 401
        assert tenant.get(url).status_code == 403                              # as GET /v1/sites/{site}/energy
        assert agent.get(url).status_code == 403
        assert admin.get("/v1/dashboard/sites/nowhere-1/meters").status_code == 404
        assert admin.get(url, params={"past_h": 500}).status_code == 422

        r = admin.get(url, params={"past_h": 8, "future_h": 4})
        assert r.status_code == 200, r.text
        d = r.json()
        hours = [datetime.fromisoformat(h) for h in d["hours"]]
        assert hours == [hour + timedelta(hours=k) for k in range(-8, 4)]
        now = d["now_index"]
        assert hours[now] == hour and d["readings"] is True
        for k, h in enumerate(hours):
            a = (h - epoch) / timedelta(hours=1)
            if first <= h < hour:                                               # every past hour the readings cover
                assert d["measured_renewable_kw"][k] == pytest.approx(7.0)
                assert d["measured_grid_kw"][k] == pytest.approx(3.0)
            elif h < first:
                assert d["measured_renewable_kw"][k] is None
            if a < 0:                                                            # before the service's hour 0
                assert d["model_renewable_kw"][k] is None
            else:
                j = int(a)
                assert d["model_renewable_kw"][k] == pytest.approx(0.75 * REN[j % 24] + 0.25 * REN[(j + 1) % 24])
                assert d["model_grid_kw"][k] == 0.0                              # no run there: no modelled load
        # the forecast: the energy endpoint's rows, for the hour in progress and those ahead only
        rows = admin.get("/v1/sites/west-1/energy", params={"from": hours[0].isoformat(),
                                                            "to": (hours[-1] + timedelta(hours=1)).isoformat()}).json()
        assert d["forecast_renewable_kw"] == [x["forecast"]["renewable_kw"] if x["forecast"] else None for x in rows]
        assert all(f is None for f in d["forecast_renewable_kw"][:now])
        assert all(f is not None for f in d["forecast_renewable_kw"][now:])
        assert d["forecast_from"] in ("model", "readings")

        # another site, no readings: nothing measured, the model still drawn
        e = admin.get("/v1/dashboard/sites/east-1/meters").json()
        assert e["readings"] is False and set(e["measured_renewable_kw"]) == {None}
        assert e["forecast_from"] == "model"
        # polled again with its ETag: 304 while nothing changed (the same hour: a new one moves the rows)
        again = admin.get(url, params={"past_h": 8, "future_h": 4}, headers={"If-None-Match": r.headers["etag"]})
        if datetime.now(UTC).replace(minute=0, second=0, microsecond=0) == hour:
            assert again.status_code == 304 and not again.content
