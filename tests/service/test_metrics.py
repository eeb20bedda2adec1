"""GET /metrics (docs/SERVICE.md "Metrics"): who may read it, that it parses, that each number is
the service's own after a known sequence of calls, that the site power is the model's (the
dashboard's hour) on aggregated SQL, that `suanli serve --metrics-listen` serves it without a
token to a real Prometheus server (Debian's `prometheus`), and that the Grafana dashboard in
deploy/grafana asks only for metrics the service exports (and its queries run on Prometheus).

The Prometheus test needs the `prometheus` binary: with SUANLI_TEST_PROMETHEUS=1 (.ci/run) it
fails without one; otherwise it is skipped with the reason."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import svc
import yaml
from prometheus_client.parser import text_string_to_metric_families
from svc import NETWORK, job_body, stop_all, wait_for

from suanli import accounting
from suanli.model.load import load_scenario
from suanli.model.schedule import Segment
from suanli.service import auth
from suanli.service.db import open_db
from suanli.service.metrics import SeriesCache, it_kwh_by_hour
from suanli.service.models import Job as JobRow
from suanli.service.models import Meta, MeterReading, Tenant, Usage
from suanli.service.schemas import STATES
from suanli.service.server import ThreadServer, build, load_network

db_url = svc.db_url
service = svc.service

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "suanli.json"
REQUIRED = ("suanli_jobs", "suanli_site_grid_kw", "suanli_site_renewable_kw", "suanli_site_gpus_free",
            "suanli_site_up", "suanli_controller_tick_seconds", "suanli_placement_wait_seconds",
            "suanli_decisions_total", "suanli_http_requests_total")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, by (name, labels), read by prometheus_client's own parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for x in fam.samples:
            out[(x.name, frozenset(x.labels.items()))] = x.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


# ----------------------------------------------------------------------------- the endpoint
def test_metrics_need_an_admin_token(service):
    assert service.client(None).get("/metrics").status_code == 401
    for token in (service.tenant("acme"), service.site_token("east-1")):
        r = service.client(token).get("/metrics")
        assert r.status_code == 403 and r.json()["detail"].startswith("this call is for an admin token")
    samples = scrape(service.client(service.admin_token()))
    names = {name for name, _ in samples}
    for name in REQUIRED:
        assert name in names or f"{name}_count" in names, name


def test_metrics_report_the_services_numbers_after_a_known_sequence(service):
    admin = service.client(service.admin_token())
    tenant = service.client(service.tenant("acme"))
    east = service.client(service.site_token("east-1"))
    # no site is up: every job waits, and the controller logs each one deferred once
    ids = [tenant.post("/v1/jobs", json=job_body(gpu_types=["h100"], work_h=6.0)).json()["id"] for _ in range(3)]
    wait_for(lambda: value(scrape(admin), "suanli_decisions_total", outcome="deferred") >= 3, 30)
    assert tenant.delete(f"/v1/jobs/{ids[2]}").status_code == 200
    s = scrape(admin)
    assert {st: value(s, "suanli_jobs", state=st) for st in STATES} == {
        **dict.fromkeys(STATES, 0.0), "PENDING": 2.0, "CANCELLED": 1.0}
    assert value(s, "suanli_site_up", site="east-1") == value(s, "suanli_site_up", site="west-1") == 0.0
    assert value(s, "suanli_decisions_total", outcome="placed") == 0.0
    assert value(s, "suanli_placement_wait_seconds_count") == 0.0

    # east-1's agent heartbeats: both pending jobs are placed there, then claimed (TRANSFERRING)
    assert east.post("/v1/agent/east-1/heartbeat", json={}).status_code == 200
    wait_for(lambda: [tenant.get(f"/v1/jobs/{j}").json()["state"] for j in ids[:2]] == ["PLACED"] * 2, 30)
    claimed = wait_for(lambda: east.post("/v1/agent/east-1/assignments").json(), 30)
    assert sorted(a["job_id"] for a in claimed) == ids[:2]
    jobs = [admin.get(f"/v1/jobs/{j}").json() for j in ids[:2]]
    sites = {x["id"]: x for x in admin.get("/v1/sites").json()}

    def counted():        # a request is counted as its answer goes out: the client may be a moment ahead
        x = scrape(admin)
        return x if value(x, "suanli_http_requests_total", method="POST", route="/v1/agent/{site}/assignments",
                          status="200") >= 1 else None
    s = wait_for(counted, 10)
    assert {st: value(s, "suanli_jobs", state=st) for st in STATES} == {
        **dict.fromkeys(STATES, 0.0), "TRANSFERRING": 2.0, "CANCELLED": 1.0}
    assert value(s, "suanli_site_up", site="east-1") == 1.0 and value(s, "suanli_site_up", site="west-1") == 0.0
    for sid, site in sites.items():               # GPUs free: as GET /v1/sites counts them
        for pool in site["pools"]:
            assert value(s, "suanli_site_gpus_free", site=sid, gpu_type=pool["gpu_type"]) == pool["free"]
            assert value(s, "suanli_site_gpus", site=sid, gpu_type=pool["gpu_type"]) == pool["count"]
    assert value(s, "suanli_site_gpus_free", site="east-1", gpu_type="h100") == 4 - 2
    assert value(s, "suanli_decisions_total", outcome="placed") == 2.0
    assert value(s, "suanli_placement_wait_seconds_count") == 2.0
    # each wait is at most from submit to the scrape, and at least zero
    assert 0.0 <= value(s, "suanli_placement_wait_seconds_sum") <= 2 * 120.0
    assert 1 <= value(s, "suanli_controller_tick_seconds_count") <= value(s, "suanli_controller_ticks_total")
    assert value(s, "suanli_http_requests_total", method="POST", route="/v1/jobs", status="201") == 3.0
    assert value(s, "suanli_http_requests_total", method="DELETE", route="/v1/jobs/{job_id}", status="200") == 1.0
    assert value(s, "suanli_http_request_duration_seconds_count", method="POST", route="/v1/jobs") == 3.0

    # power this hour, from the model: east-1 has no renewables and no battery, so its grid import
    # is its load: PUE 1.3 × 0.7 kW per H100 × each run's hours in this hour (runs of 3 h: past it)
    now = (datetime.now(UTC) - service.app.state.controller.epoch).total_seconds() / 3600.0
    slot = math.floor(now)
    want = sum(1.3 * 0.7 * j["gpus"] * (min(j["end_h"], slot + 1) - max(j["start_h"], slot)) for j in jobs)
    if math.floor((datetime.now(UTC) - service.app.state.controller.epoch).total_seconds() / 3600.0) != slot:
        pytest.skip("the hour turned during the test: its figures are of two hours")
    assert want > 0
    assert value(s, "suanli_site_grid_kw", site="east-1", source="model") == pytest.approx(want, rel=1e-9)
    assert value(s, "suanli_site_load_kw", site="east-1", source="model") == pytest.approx(want, rel=1e-9)
    assert value(s, "suanli_site_renewable_kw", site="east-1", source="model") == 0.0
    assert value(s, "suanli_site_renewable_kw", site="west-1", source="model") == 2.0     # the network file's
    assert value(s, "suanli_site_grid_kw", site="west-1", source="model") == 0.0
    # and the dashboard's site view says the same for this hour
    for sid in ("east-1", "west-1"):
        ser = admin.get(f"/v1/dashboard/sites/{sid}/series", params={"past_h": 0, "future_h": 1}).json()
        if ser["slot"] != slot:
            pytest.skip("the hour turned during the test")
        assert value(s, "suanli_site_grid_kw", site=sid, source="model") == pytest.approx(ser["grid_kwh"][0])
        assert value(s, "suanli_site_renewable_kw", site=sid, source="model") == ser["renewable_kw"][0]


def test_a_request_made_up_method_or_path_adds_no_series(service):
    """Routes are labelled by template and methods from a fixed set: a caller cannot make series."""
    admin = service.client(service.admin_token())
    for i in range(5):
        admin.get(f"/v1/jobs/{1000 + i}")
        admin.get(f"/no/such/path/{i}")
        admin.request("PROPFIND", "/v1/jobs")
    s = scrape(admin)
    routes = {dict(labels).get("route") for name, labels in s if name == "suanli_http_requests_total"}
    methods = {dict(labels).get("method") for name, labels in s if name == "suanli_http_requests_total"}
    assert "/v1/jobs/{job_id}" in routes and "(unmatched)" in routes
    assert not any(r.startswith("/no/") or re.search(r"/\d+$", r) for r in routes), routes
    assert "PROPFIND" not in methods and "OTHER" in methods
    assert value(s, "suanli_http_requests_total", method="GET", route="/v1/jobs/{job_id}", status="404") == 5.0


def test_a_fresh_meter_reading_is_the_sites_power_and_a_stale_one_is_not(service):
    """A site that sends meter readings (POST /v1/agent/{site}/meter) shows them, source="meter";
    one whose latest reading is older than meters.MAX_GAP_S, and one without, show the model's."""
    admin = service.client(service.admin_token())
    east = service.client(service.site_token("east-1"))
    reading = {"at": datetime.now(UTC).isoformat(), "it_kw": 2.0, "facility_kw": 2.6,
               "renewable_kw": 0.4, "grid_kw": 2.2, "battery_soc_kwh": None}
    r = east.post("/v1/agent/east-1/meter", json={"readings": [reading]})
    assert r.status_code == 202, r.text
    s = scrape(admin)
    assert value(s, "suanli_site_load_kw", site="east-1", source="meter") == 2.6
    assert value(s, "suanli_site_renewable_kw", site="east-1", source="meter") == 0.4
    assert value(s, "suanli_site_grid_kw", site="east-1", source="meter") == 2.2
    assert 0.0 <= value(s, "suanli_site_meter_age_seconds", site="east-1") < 120.0
    assert ("suanli_site_grid_kw", frozenset({"site": "east-1", "source": "model"})) not in s
    assert value(s, "suanli_site_renewable_kw", site="west-1", source="model") == 2.0      # no meter: the model
    assert ("suanli_site_meter_age_seconds", frozenset({"site": "west-1"})) not in s
    # the same meter, silent for longer than a reading holds: the model again (nothing runs: 0 kW)
    with service.sessions.begin() as db:
        db.execute(MeterReading.__table__.update().values(at_us=MeterReading.at_us - 3600 * 1_000_000))
    s = scrape(admin)
    assert value(s, "suanli_site_grid_kw", site="east-1", source="model") == 0.0
    assert value(s, "suanli_site_meter_age_seconds", site="east-1") >= 3600.0


# ----------------------------------------------------------------------------- site power from the database
def _seed(sessions, runs: list[tuple[str, str, int, float, float]], active: list[tuple] = ()) -> None:
    """Usage rows (metered runs) and active jobs (state, site, gpu_type, gpus, start_h, end_h)."""
    with sessions.begin() as s:
        t = Tenant(name="seed", quota={}, budget_cny=None)
        s.add(t)
        s.flush()
        for k, (site, g, gpus, a, b) in enumerate([*runs, *[x[1:] for x in active]]):
            state = active[k - len(runs)][0] if k >= len(runs) else "SUCCEEDED"
            job = JobRow(tenant_id=t.id, name=f"j{k}", command="true", spec={"origin": "beijing"}, gpus=gpus,
                         state=state, submit_h=0.0, remaining_work=1.0, hosted=[], site=site, gpu_type=g,
                         start_h=a, end_h=b)
            s.add(job)
            s.flush()
            if k < len(runs):
                s.add(Usage(job_id=job.id, tenant_id=t.id, fence=1, site=site, gpu_type=g, gpus=gpus, start_h=a,
                            end_h=b, month="2026-01", gpu_seconds=0.0, energy_kwh=0.0, grid_kwh=0.0,
                            renewable_kwh=0.0, carbon_kg=0.0, gpu_cny=0.0, energy_cny=0.0, transfer_cny=0.0,
                            total_cny=0.0))


def test_hourly_it_energy_summed_by_the_database_equals_the_accountings(db_url):
    """`it_kwh_by_hour` groups runs by first and last hour in SQL; `accounting.it_energy` cuts each
    run at every hour in numpy: the same kWh per site and hour."""
    net = load_network(NETWORK)
    sessions = open_db(db_url)
    rng = random.Random(7)
    now = 100.3
    runs = []
    for _ in range(400):
        site, g = rng.choice([("east-1", "h100"), ("west-1", "a800")])
        a = rng.choice([rng.uniform(20, 100), float(rng.randint(20, 99))])       # some on the hour exactly
        b = a + rng.choice([rng.uniform(0.001, 0.9), rng.uniform(1, 30), float(rng.randint(1, 5))])
        runs.append((site, g, rng.randint(1, 4), a, b))
    active = [("RUNNING", "east-1", "h100", 2, 99.5, 99.9),          # overrunning: draws until now
              ("PLACED", "west-1", "a800", 3, 98.0, 101.0),          # not picked up: starts now, 3 h
              ("PLACED", "west-1", "a800", 1, 100.5, 102.5),
              ("TRANSFERRING", "east-1", "h100", 1, 100.0, 104.0)]
    _seed(sessions, runs, active)
    slots = math.floor(now) + 1
    with sessions() as s:
        got, first = it_kwh_by_hour(s, net, now, slots)
    sessions.kw["bind"].dispose()
    kept = [r for r in runs if r[4] > now - 72]          # the dashboard's history
    segs = [Segment(f"u{i}", site, g, n, a, min(b, slots)) for i, (site, g, n, a, b) in enumerate(kept)]
    segs += [Segment("a0", "east-1", "h100", 2, 99.5, now), Segment("a1", "west-1", "a800", 3, now, now + 3.0),
             Segment("a2", "west-1", "a800", 1, 100.5, 101.0), Segment("a3", "east-1", "h100", 1, 100.0, 101.0)]
    want = accounting.it_energy(net, [x for x in segs if x.end_h > x.start_h], slots)
    for site in net.sites:
        np.testing.assert_allclose(got[site], want[site], rtol=1e-9, atol=1e-9)
        assert got[site].sum() > 10          # the check bites: real energy in it
    assert first == math.floor(min(x.start_h for x in segs))


def test_site_power_with_a_battery_and_a_day_of_history_is_the_dashboards(tmp_path):
    """A site with a battery and renewables, a service whose epoch is 30 h back, metered runs in the
    past: the hour's grid import on /metrics (battery state from idle hours cached, then the runs'
    hours) is the dashboard site view's figure for the hour."""
    spec = yaml.safe_load(Path(NETWORK).read_text())
    west = spec["sites"][1]
    west["renewables"] = {"kw": [0.5, 0.0, 3.0, 1.0, 0.2, 2.5], "cny_per_kwh": 0.1}
    west["battery"] = {"capacity_kwh": 4.0, "power_kw": 1.5, "efficiency": 0.9, "initial_soc": 0.25}
    network = tmp_path / "net.yaml"
    network.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path / 'a.db'}"
    sessions = open_db(url)
    with sessions.begin() as s:
        s.add(Meta(key="epoch", value=(datetime.now(UTC) - timedelta(hours=30.4)).isoformat()))
    now = 30.4
    rng = random.Random(27)
    # metered runs only (no agent here: the controller would take an active job off its down site)
    # from hour 12 on: the battery charges alone before (idle hours, kept by `SeriesCache.idle_soc`);
    # the last run, of 8 GPUs, loads this hour beyond what renewables and the battery's power cover,
    # and the battery, charged and drained since, has less than its power left: the hour's grid
    # import depends on its exact state of charge, and so on the idle hours before the first run
    runs = [("west-1", "a800", rng.randint(1, 3), a, a + rng.uniform(0.2, 3.0))
            for a in (rng.uniform(12.0, 29.0) for _ in range(12))]
    _seed(sessions, [*runs, ("west-1", "a800", 8, 29.6, 31.5)])
    sessions.kw["bind"].dispose()
    app = build(str(network), url, policy="fifo", tick_s=0.5, checkpoint_store=tmp_path / "store")
    with ThreadServer(app) as base:
        with app.state.controller.sessions.begin() as s:
            token = auth.create_admin_token(s)
        c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        for _ in range(3):                       # the hour may turn between the two reads: read again
            ser = c.get("/v1/dashboard/sites/west-1/series", params={"past_h": 0, "future_h": 1}).json()
            s = scrape(c)
            if c.get("/v1/dashboard/sites/west-1/series", params={"past_h": 0, "future_h": 1}).json()["slot"] \
                    == ser["slot"]:
                break
        assert ser["slot"] >= math.floor(now)
        assert 0.0 < ser["battery_discharge_kwh"][0] < 1.5 and ser["grid_kwh"][0] > 0      # the check bites
        assert value(s, "suanli_site_grid_kw", site="west-1", source="model") == pytest.approx(
            ser["grid_kwh"][0], rel=1e-9, abs=1e-9)
        assert value(s, "suanli_site_load_kw", site="west-1", source="model") == pytest.approx(
            ser["load_kwh"][0], rel=1e-9, abs=1e-9)
        assert value(s, "suanli_site_renewable_kw", site="west-1", source="model") == ser["renewable_kw"][0]
        assert ser["load_kwh"][0] > 0


def test_renewable_series_resolved_ahead_keep_the_hours_asked_for():
    """SeriesCache resolves a day ahead: a model series' first hours are the same however many are
    asked for (the example network's pvlib solar and wind models)."""
    scn = load_scenario(str(Path(__file__).parents[2] / "examples" / "east-west.yaml"))
    kinds = set()
    for i, (sid, site) in enumerate(scn.sites.items()):
        ser = scn.explicit(site.renewables.kw, f"sites[{i}].renewables.kw")
        kinds.add(type(ser).__name__)
        np.testing.assert_array_equal(ser.array(100 + SeriesCache.AHEAD)[:100], ser.array(100), err_msg=sid)
    assert "ComputedSeries" in kinds


# ----------------------------------------------------------------------------- the Grafana dashboard
def promql_exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])] + [
        v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]


def concrete(expr: str) -> str:
    """A dashboard query as Prometheus runs it: Grafana's variables replaced."""
    return expr.replace("$__rate_interval", "1m").replace("$site", ".*")


def test_the_grafana_dashboard_uses_only_exported_metrics(service):
    dash = json.loads(DASHBOARD.read_text())
    assert isinstance(dash["schemaVersion"], int) and dash["uid"] and dash["title"]
    ds = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert [v["query"] for v in ds] == ["prometheus"] and ds[0]["name"] == "datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for p in dash["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["targets"], p["title"]
        assert all(t["refId"] and t["expr"] for t in p["targets"]), p["title"]
    admin = service.client(service.admin_token())
    scrape(admin)                       # a request's series appear once it is counted: the next scrape has them
    exported = {name for name, _ in scrape(admin)}
    used = {m for e in promql_exprs(dash) for m in re.findall(r"\b(suanli_[a-z0-9_]+)", e)}
    assert {"suanli_jobs", "suanli_site_gpus_free", "suanli_site_grid_kw", "suanli_site_renewable_kw",
            "suanli_placement_wait_seconds_bucket", "suanli_decisions_total"} <= used
    assert used <= exported, sorted(used - exported)


# ----------------------------------------------------------------------------- a real Prometheus
def _prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        why = "prometheus is not installed (Debian: apt-get install prometheus; .ci/run installs it)"
        if os.environ.get("SUANLI_TEST_PROMETHEUS") == "1":
            pytest.fail(f"SUANLI_TEST_PROMETHEUS=1 but {why}")
        pytest.skip(why)
    return path


def _query(prom: str, q: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": q}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (q, r.text)
    return body["data"]["result"]


def test_a_real_prometheus_scrapes_the_service(db_url, tmp_path):
    """`suanli serve --metrics-listen` (no token) and the API's /metrics (an admin token, from a file)
    scraped every second by Debian's Prometheus: its query API answers the service's own job counts
    and free GPUs, and every query of the Grafana dashboard runs."""
    prometheus = _prometheus()
    procs: list[subprocess.Popen] = []
    try:
        port, mport, pport = _port(), _port(), _port()
        serve_log = tmp_path / "serve.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db_url,
             "--port", str(port), "--metrics-listen", f"127.0.0.1:{mport}", "--policy", "fifo", "--tick-s", "0.2",
             "--checkpoint-store", str(tmp_path / "store")], stdout=serve_log.open("wb"), stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"

        def up():
            if procs[0].poll() is not None:
                raise AssertionError(f"serve exited {procs[0].returncode}: {serve_log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 60, 0.2)
        assert httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).status_code == 200     # no token
        assert httpx.get(f"http://127.0.0.1:{mport}/v1/jobs", timeout=10).status_code == 404      # nothing else
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        sessions = open_db(db_url)
        with sessions.begin() as s:
            tenant, admin = auth.create_tenant(s, "acme", {}, None), auth.create_admin_token(s)
        sessions.kw["bind"].dispose()
        t = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant}"}, timeout=30)
        a = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        ids = [t.post("/v1/jobs", json=job_body()).json()["id"] for _ in range(4)]
        assert t.delete(f"/v1/jobs/{ids[0]}").status_code == 200

        token_file = tmp_path / "admin.token"
        token_file.write_text(admin)
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [
                      {"job_name": "suanli", "static_configs": [{"targets": [f"127.0.0.1:{mport}"]}]},
                      {"job_name": "suanli-api", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                       "authorization": {"type": "Bearer", "credentials_file": str(token_file)}}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_log = tmp_path / "prometheus.log"
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=prom_log.open("wb"), stderr=subprocess.STDOUT))
        prom = f"http://127.0.0.1:{pport}"

        listed = a.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
        assert len(listed) == 4
        want = {st: float(sum(j["state"] == st for j in listed)) for st in STATES}
        assert want["PENDING"] == 3 and want["CANCELLED"] == 1

        def seen(job: str):
            if procs[1].poll() is not None:
                raise AssertionError(f"prometheus exited {procs[1].returncode}: {prom_log.read_text()[-2000:]}")
            try:
                got = {r["metric"]["state"]: float(r["value"][1])
                       for r in _query(prom, f'suanli_jobs{{job="{job}"}}')}
            except (httpx.HTTPError, ValueError):
                return None
            return got if got == want else None
        wait_for(lambda: seen("suanli"), 90, 0.5, dump=lambda: prom_log.read_text()[-2000:])
        wait_for(lambda: seen("suanli-api"), 30, 0.5, dump=lambda: prom_log.read_text()[-2000:])
        assert {r["metric"]["job"]: r["value"][1] for r in _query(prom, "up")} == {"suanli": "1", "suanli-api": "1"}
        sites = {x["id"]: x for x in a.get("/v1/sites").json()}
        free = {(r["metric"]["site"], r["metric"]["gpu_type"]): float(r["value"][1])
                for r in _query(prom, 'suanli_site_gpus_free{job="suanli"}')}
        assert free == {(sid, p["gpu_type"]): float(p["free"]) for sid, x in sites.items() for p in x["pools"]}
        power = {r["metric"]["site"]: r["metric"]["source"] for r in _query(prom, 'suanli_site_renewable_kw')}
        assert set(power) == set(sites) and set(power.values()) == {"model"}
        # every query of the Grafana dashboard is valid PromQL that Prometheus runs
        for expr in promql_exprs(json.loads(DASHBOARD.read_text())):
            if expr.startswith("label_values("):
                assert _query(prom, 'count by (site) (suanli_site_up)')
                continue
            _query(prom, concrete(expr))
        for expr in ("max by (state) (suanli_jobs)", 'max by (site) (suanli_site_up{site=~".*"})'):
            assert _query(prom, expr)
    finally:
        stop_all(procs)


# ----------------------------------------------------------------------------- the flag
def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("bad", ["9464x", "localhost:", ":9464", "::1:9464", "127.0.0.1:0", "127.0.0.1:70000"])
def test_a_bad_metrics_address_is_one_line_and_exit_2(bad, tmp_path):
    r = _serve("--db", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(_port()), "--metrics-listen", bad)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"error: --metrics-listen: expected HOST:PORT with a port from 1 to 65535 "
                                f"(e.g. 127.0.0.1:9464), got {bad!r}")
    assert not (tmp_path / "a.db").exists()          # refused before the database is made


def test_a_metrics_address_in_use_is_named_and_exit_3(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve("--db", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(_port()),
                   "--metrics-listen", f"127.0.0.1:{port}")
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip().startswith(f"error: --metrics-listen: cannot listen on 127.0.0.1:{port}: [Errno 98]")
    assert len(r.stderr.strip().splitlines()) == 1
