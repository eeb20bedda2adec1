"""Demand response in the live service: grid caps from the network file (known `notice_h` ahead)
and announced by the operator (`suanli admin grid-cap`, `POST /v1/admin/grid-caps`) reach the
policy's StateView, are listed by `GET /v1/grid-caps`, and the `suanli` policy plans around
them: it does not run a job on a capped site during the cap when the objective prices grid
excess dearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import svc
import yaml
from svc import NETWORK, Service, ThreadServer, build, job_body, stop_all, wait_for

db_url = svc.db_url


def _network(tmp: Path, **objective) -> str:
    net = yaml.safe_load(Path(NETWORK).read_text())
    net["sites"][1].pop("renewables", None)             # west-1 draws all its power from the grid
    net["objective"] = {"carbon_cny_per_kg": 0.1, **objective}
    net["events"] = [{"type": "grid_cap", "site": "east-1", "start_h": 500.0, "end_h": 501.0,
                      "max_grid_kw": 1.0, "notice_h": 2.0}]
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


def test_network_file_caps_are_known_notice_h_ahead_and_operator_caps_at_once(db_url, tmp_path):
    app = build(_network(tmp_path), db_url, policy="fifo", tick_s=0.2, checkpoint_store=tmp_path / "st")
    c = app.state.controller
    with c.sessions() as s:
        assert c.grid_caps(s, 497.9) == []
        (e, source, _, _), = c.grid_caps(s, 498.0)          # 500 - notice 2
        assert (source, e.site, e.max_grid_kw) == ("network", "east-1", 1.0)
        assert c.grid_caps(s, 501.0) == []                  # ended
    r = subprocess.run([sys.executable, "-m", "suanli.cli_service", "admin", "grid-cap", "west-1", "--max-kw", "0",
                        "--hours", "2", "--reason", "provincial peak", "--db", db_url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cap_id, site, start_h, end_h, _ = r.stdout.strip().split("\t")
    assert site == "west-1" and float(end_h) - float(start_h) == 2.0
    with c.sessions() as s:
        now = c.now_h()
        (e, source, got_id, reason), = c.grid_caps(s, now)
        assert (source, got_id, reason, e.max_grid_kw) == ("operator", int(cap_id), "provincial peak", 0.0)
        assert e.start_h <= now < e.end_h
    bad = subprocess.run([sys.executable, "-m", "suanli.cli_service", "admin", "grid-cap", "west-1", "--max-kw", "-1",
                          "--hours", "2", "--db", db_url], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --max-kw: must be >= 0, got -1.0"


def test_the_suanli_policy_does_not_run_on_a_capped_site_during_the_cap(db_url, tmp_path):
    """Without a cap the 4-GPU job goes to west-1 (cheaper A800s); with west-1 capped at 0 kW
    for two hours and grid excess at 1,000 CNY/kWh, a 2-hour job runs on east-1 or after the
    cap. (A cap that starts now covers the slots from the next whole hour, MODEL.md §4, so the
    job must reach past it to be charged.)"""
    app = build(_network(tmp_path, dr_cny_per_kwh=1000.0), db_url, policy="suanli", tick_s=0.2,
                heartbeat_timeout_s=5.0, checkpoint_store=tmp_path / "st")
    with ThreadServer(app) as url:
        svc_ = Service(url, app, db_url)
        try:
            tenant, admin = svc_.client(svc_.tenant("acme")), svc_.client(svc_.admin_token())
            svc_.start_agent("east-1", tmp_path)
            svc_.start_agent("west-1", tmp_path)
            wait_for(lambda: all(s["up"] for s in tenant.get("/v1/sites").json()), 30)
            body = job_body(command="sleep 0.2", gpus=4, work_h=0.001, origin="hami")
            free = tenant.post("/v1/jobs", json=body).json()["id"]
            placed = wait_for(lambda: (j := tenant.get(f"/v1/jobs/{free}").json())["site"] and j, 30)
            assert placed["site"] == "west-1"
            now = app.state.controller.now_h()
            from datetime import timedelta
            end = (app.state.controller.wall(now) + timedelta(hours=2)).isoformat()
            r = admin.post("/v1/admin/grid-caps", json={"site": "west-1", "end": end, "max_grid_kw": 0.0,
                                                        "reason": "evening peak"})
            assert r.status_code == 201, r.text
            cap = r.json()
            assert tenant.post("/v1/admin/grid-caps", json={"site": "west-1", "end": end,
                                                            "max_grid_kw": 0}).status_code == 403
            assert [g["id"] for g in tenant.get("/v1/grid-caps").json() if g["source"] == "operator"] == [cap["id"]]
            capped = tenant.post("/v1/jobs", json=dict(body, work_h=2.0)).json()["id"]
            j = wait_for(lambda: (j := tenant.get(f"/v1/jobs/{capped}").json())["site"] and j, 30)
            assert j["site"] == "east-1" or j["start_h"] >= cap["end_h"] - 1e-6, j["explanation"]["chosen"]
        finally:
            stop_all(svc_.agents)
