"""End to end: a real server, two local-executor agents (subprocesses) on loopback, jobs from
two tenants; every job finishes, and its placement, lifecycle, usage ledger row and invoice
line agree. Then a site's agent dies mid-run and its job is preempted and run elsewhere."""

from __future__ import annotations

import json
import signal
from collections import defaultdict

import pytest
import svc
from sqlalchemy import select
from svc import job_body, wait_for

from suanli.service.models import Usage

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module

POOLS = {("east-1", "h100"): 4, ("west-1", "a800"): 8}
COMMAND = ('sleep 0.2; printf "%s %s" "$SUANLI_JOB_ID" "$CUDA_VISIBLE_DEVICES" > "$SUANLI_CHECKPOINT_DIR/ran"')


def _month(service, end_h: float) -> str:
    from datetime import timedelta
    return (service.app.state.controller.epoch + timedelta(hours=end_h)).strftime("%Y-%m")


def test_fifty_jobs_from_two_tenants_all_finish_with_lifecycle_ledger_and_invoices(service, tmp_path):
    tokens = {"acme": service.tenant("acme"), "bolt": service.tenant("bolt")}
    clients = {t: service.client(tok) for t, tok in tokens.items()}
    service.start_agent("east-1", tmp_path)
    service.start_agent("west-1", tmp_path)
    submitted: dict[int, str] = {}
    for k in range(50):
        tenant = "acme" if k % 2 == 0 else "bolt"
        body = job_body(name=f"{tenant}-{k}", command=COMMAND, gpus=1 + k % 3, work_h=0.0003,
                        origin="beijing" if k % 4 < 2 else "hami")
        r = clients[tenant].post("/v1/jobs", json=body, headers={"Idempotency-Key": f"job-{k}"})
        assert r.status_code == 201, r.text
        submitted[r.json()["id"]] = tenant

    def finished():
        jobs = []
        for c in clients.values():
            jobs += c.get("/v1/jobs", params={"limit": 500}).json()["jobs"]
        return jobs if all(j["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for j in jobs) else None
    jobs = wait_for(finished, timeout=180, every=0.5)
    assert sorted(j["id"] for j in jobs) == sorted(submitted)
    assert {j["state"] for j in jobs} == {"SUCCEEDED"}

    for j in jobs:
        full = clients[submitted[j["id"]]].get(f"/v1/jobs/{j['id']}").json()
        assert full["tenant"] == submitted[j["id"]]
        assert (full["site"], full["gpu_type"]) in POOLS
        assert [t["to_state"] for t in full["transitions"]] == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING",
                                                               "SUCCEEDED"]
        at = [t["at_h"] for t in full["transitions"]]
        assert at == sorted(at)
        assert full["explanation"]["decision"] == "place" and full["explanation"]["policy"] == "fifo"
        assert full["usage"]["gpu_seconds"] > 0 and full["usage"]["total_cny"] > 0
        ran = (tmp_path / full["site"] / "checkpoints" / str(full["id"]) / "ran").read_text().split()
        assert ran[0] == str(full["id"])
        assert len(ran[1].split(",")) == full["gpus"]           # CUDA_VISIBLE_DEVICES: one index per GPU

    with service.sessions() as s:
        usage = s.scalars(select(Usage)).all()
    assert sorted(u.job_id for u in usage) == sorted(submitted)          # one ledger row per run
    by_id = {j["id"]: j for j in jobs}
    # no pool ever ran more GPUs than it has (the metered runs, swept)
    events = defaultdict(list)
    for u in usage:
        assert (u.site, u.gpu_type) == (by_id[u.job_id]["site"], by_id[u.job_id]["gpu_type"])
        assert u.gpus == by_id[u.job_id]["gpus"] and u.end_h > u.start_h
        assert u.energy_kwh > 0 and u.carbon_kg >= 0
        assert abs(u.total_cny - (u.gpu_cny + u.energy_cny + u.transfer_cny)) < 1e-12
        events[(u.site, u.gpu_type)] += [(u.start_h, u.gpus), (u.end_h, -u.gpus)]
    for pool, ev in events.items():
        used = 0
        for _, d in sorted(ev, key=lambda e: (e[0], e[1])):
            used += d
            assert used <= POOLS[pool]

    months = {_month(service, u.end_h) for u in usage}
    for tenant, c in clients.items():
        invs = [inv for m in months for inv in c.get("/v1/invoices", params={"month": m}).json()]
        assert {inv["tenant"] for inv in invs} == {tenant}
        lines = [ln for inv in invs for ln in inv["lines"]]
        mine = sorted(i for i, t in submitted.items() if t == tenant)
        assert sorted(ln["job_id"] for ln in lines) == mine
        ledger_total = sum(u.total_cny for u in usage if submitted[u.job_id] == tenant)
        assert abs(sum(inv["total_cny"] for inv in invs) - ledger_total) < 1e-9
        assert all(ln["carbon_kg"] >= 0 for ln in lines)
        csv_text = c.get("/v1/invoices", params={"month": sorted(months)[0], "format": "csv"}).text
        assert csv_text.splitlines()[0].startswith("tenant,month,job_id,name")
    admin = service.client(service.admin_token())
    assert {inv["tenant"] for inv in admin.get("/v1/invoices", params={"month": sorted(months)[0]}).json()} == \
        {"acme", "bolt"}


@pytest.mark.heartbeat_timeout(3.0)      # a test of failover through the timeout
def test_a_dead_agents_running_job_is_preempted_and_runs_again_elsewhere(service, tmp_path):
    c = service.client(service.tenant("acme"))
    east = service.start_agent("east-1", tmp_path)
    # beijing origin: fifo's tie goes to the nearest site, east-1 (west-1 is not up yet anyway)
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    cmd = 'if [ "$SUANLI_SITE" = east-1 ]; then sleep 60; fi'
    jid = c.post("/v1/jobs", json=job_body(command=cmd, work_h=0.001)).json()["id"]
    running = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "RUNNING" and j, 30)
    pid = svc.run_pid(running)
    service.start_agent("west-1", tmp_path)
    assert pid in svc.job_processes(tmp_path / "east-1")
    east.send_signal(signal.SIGKILL)           # the site vanishes: no more heartbeats
    east.wait()
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "SUCCEEDED" and j, 60)
    states = [t["to_state"] for t in done["transitions"]]
    assert states == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "PREEMPTED", "PENDING", "PLACED",
                      "TRANSFERRING", "RUNNING", "SUCCEEDED"], json.dumps(done["transitions"], indent=1)
    assert done["site"] == "west-1"
    assert "east-1 stopped heartbeating" in done["transitions"][4]["reason"]
    fences = [t["reason"] for t in done["transitions"] if t["to_state"] == "TRANSFERRING"]
    assert fences[0].endswith("(fence 1)") and fences[1].endswith("(fence 3)")
    # the dead agent's `sleep 60` runs on (its own session), and nothing will stop it: the test does
    svc.reap_jobs(tmp_path / "east-1")
    svc.no_job_left(tmp_path)


def test_cancelling_a_running_job_stops_its_process_and_bills_the_run(service, tmp_path):
    c = service.client(service.tenant("acme"))
    service.start_agent("east-1", tmp_path)
    jid = c.post("/v1/jobs", json=job_body(command="sleep 60; touch survived", work_h=0.05)).json()["id"]
    wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 30)
    r = c.delete(f"/v1/jobs/{jid}")
    assert r.status_code == 200 and r.json()["state"] == "CANCELLED"
    assert r.json()["usage"]["gpu_seconds"] > 0
    jobdir = tmp_path / "east-1" / str(jid)
    import time
    time.sleep(3)                               # the agent's next heartbeats tell it to stop the run
    assert not (jobdir / "work" / "survived").exists()          # the job's working directory
    with service.sessions() as s:
        assert [u.job_id for u in s.scalars(select(Usage))] == [jid]
