"""The agent's meters against a real `suanli serve` and real agent processes.

The controller's meter endpoint (`POST /v1/agent/{site}/meter`) comes from another branch: the
end-to-end test asks the server first and is skipped, with its reason, while the route is missing.
That a meter which hangs never stops the agent or its jobs is checked now, endpoint or not."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import svc
from svc import agent_env, job_body, searchable, wait_for

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module


def start_agent(service, site: str, workdir: Path, *args: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    searchable(workdir)
    with open(workdir / f"agent-{site}.log", "ab") as log:
        p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", site, "--controller", service.url,
                              "--executor", "local", "--workdir", str(workdir), "--interval-s", "0.2", *args],
                             stdout=log, stderr=subprocess.STDOUT, env=agent_env(service.site_token(site)))
    service.agents.append(p)
    return p


def agent_log(workdir: Path, site: str) -> str:
    return (workdir / f"agent-{site}.log").read_text(errors="replace")


def log_saying(workdir: Path, site: str, text: str) -> str | None:
    """The agent's log once it says `text` (for wait_for)."""
    log = agent_log(workdir, site)
    return log if text in log else None


def test_a_meter_that_never_answers_stops_neither_the_agent_nor_its_jobs(service, tmp_path):
    with socket.socket() as silent:                     # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        meter = f"prometheus:http://127.0.0.1:{silent.getsockname()[1]}/metrics,pue=1.2,timeout=2"
        for site in ("east-1", "west-1"):
            start_agent(service, site, tmp_path, "--meter", meter, "--meter-interval-s", "0.2")
        tenant = service.client(service.tenant("acme"))
        ids = [tenant.post("/v1/jobs", json=job_body(command="sleep 0.5", origin=o)).json()["id"]
               for o in ("beijing", "hami", "beijing")]

        def done():
            states = [tenant.get(f"/v1/jobs/{i}").json()["state"] for i in ids]
            return states if all(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in states) else None
        assert wait_for(done, timeout=120, every=0.3) == ["SUCCEEDED"] * 3
        log = wait_for(lambda: log_saying(tmp_path, "east-1", "trying again in"), timeout=30)
        assert f"meter {meter.split(',')[0]}: cannot scrape: ReadTimeout" in log
        assert "the agent's step failed" not in log
        assert all(p.poll() is None for p in service.agents)


def meter_route_missing(service) -> bool:
    with service.client(service.site_token("east-1")) as c:
        r = c.post("/v1/agent/east-1/meter", json={"readings": []})
    return r.status_code in (404, 405) and "Not Found" in r.text + "Method Not Allowed"


def test_readings_from_a_csv_replay_reach_the_controller(service, tmp_path):
    if meter_route_missing(service):
        pytest.skip("meter endpoint not merged yet")
    csv = tmp_path / "meter.csv"
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    csv.write_text("at,it_kw,facility_kw,renewable_kw,grid_kw,battery_soc_kwh\n" + "".join(
        f"{(t0 + timedelta(seconds=i)).isoformat()},2.0,2.6,0.5,2.1,{10 + i}\n" for i in range(5)))
    start_agent(service, "east-1", tmp_path, "--meter", f"csv:{csv},shift=now", "--meter-interval-s", "0.2")
    wait_for(lambda: log_saying(tmp_path, "east-1", "the controller takes the readings"), timeout=60)
    log = agent_log(tmp_path, "east-1")
    assert "refused" not in log and "cannot post readings" not in log, log
    now = datetime.now(UTC)
    with service.client(service.admin_token()) as c:
        r = c.get("/v1/sites/east-1/energy", params={"from": (now - timedelta(hours=1)).isoformat(),
                                                     "to": (now + timedelta(hours=1)).isoformat()})
    if r.status_code == 404 and r.json().get("detail") == "Not Found":
        return                                  # the energy view is not there yet: the posts were taken (202)
    assert r.status_code == 200, r.text
    rows = r.json()
    rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
    measured = [row["measured"] for row in rows if row.get("measured")]
    assert measured and sum(m["it_kwh"] for m in measured) > 0, rows
