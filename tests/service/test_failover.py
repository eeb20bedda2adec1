"""Failover and drain with local-executor agents (fast; the Slurm versions are in
test_slurm_site.py): the heartbeat timeout, checkpoints reported and kept across a site's
death, re-placement on the dead site's `backup`, and `suanli admin drain`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import svc
import yaml
from sites import job_command
from svc import NETWORK, ThreadServer, build, job_body, wait_for

from suanli.service.controller import Controller

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module


def test_a_site_is_down_after_three_missed_heartbeats_by_default():
    net = _net()
    assert Controller(None, net, "fifo", None).heartbeat_timeout_s == 3.0
    assert Controller(None, net, "fifo", None, heartbeat_interval_s=2.0).heartbeat_timeout_s == 6.0
    assert Controller(None, net, "fifo", None, heartbeat_interval_s=2.0, missed_heartbeats=5).heartbeat_timeout_s == 10
    assert Controller(None, net, "fifo", None, heartbeat_timeout_s=4.0).heartbeat_timeout_s == 4.0


def _net():
    from suanli.service.server import load_network
    return load_network(NETWORK)


def test_checkpoints_are_reported_and_kept_when_the_site_dies(service, tmp_path):
    c = service.client(service.tenant("acme"))
    ckpt = tmp_path / "ckpt"
    east = _agent(service, "east-1", tmp_path, ckpt)     # both sites share one checkpoint directory
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    n = 40
    jid = c.post("/v1/jobs", json=job_body(command=job_command(tmp_path, n, 0.2), work_h=0.004)).json()["id"]
    step = ckpt / str(jid) / "step"
    wait_for(lambda: step.exists() and int(step.read_text()) >= 8, 60)
    seen = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["checkpoint_h"] is not None and j, 30)
    assert seen["checkpoint_bytes"] > 0 and seen["checkpoint_h"] > seen["start_h"]
    _agent(service, "west-1", tmp_path, ckpt)
    running = next(t for t in seen["transitions"] if t["to_state"] == "RUNNING")["reason"]
    pid = int(running.split()[1].rstrip(","))          # "pid N, GPUs [...]"
    east.send_signal(signal.SIGKILL)           # the site vanishes, and its job with it
    east.wait()
    os.killpg(pid, signal.SIGKILL)
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 120)
    assert done["state"] == "SUCCEEDED" and done["site"] == "west-1", done["transitions"]
    pre = next(t for t in done["transitions"] if t["to_state"] == "PREEMPTED")
    assert "to its checkpoint at" in pre["reason"] and "kept 0.0000 h" not in pre["reason"], pre["reason"]
    first, last = map(int, (ckpt / str(jid) / "done-west-1").read_text().split())
    assert last == n and first >= 8


def _agent(service, site: str, workdir: Path, ckpt: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", site, "--controller", service.url,
                          "--token", service.site_token(site), "--executor", "local", "--workdir", str(workdir),
                          "--checkpoint-dir", str(ckpt), "--interval-s", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    service.agents.append(p)
    return p


def test_a_drained_site_takes_no_new_job_and_finishes_its_running_one(service, tmp_path):
    c = service.client(service.tenant("acme"))
    service.start_agent("east-1", tmp_path)
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    first = c.post("/v1/jobs", json=job_body(command="sleep 2", work_h=0.001)).json()["id"]
    wait_for(lambda: c.get(f"/v1/jobs/{first}").json()["state"] == "RUNNING", 30)
    r = subprocess.run([sys.executable, "-m", "suanli.cli_service", "admin", "drain", "east-1", "--db",
                        service.db_url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "east-1\tdrained", r.stderr
    assert next(s for s in c.get("/v1/sites").json() if s["id"] == "east-1")["drained"]
    second = c.post("/v1/jobs", json=job_body(command="true", gpus=1, gpu_types=["h100"])).json()["id"]
    wait_for(lambda: c.get(f"/v1/jobs/{first}").json()["state"] == "SUCCEEDED", 30)
    import time
    time.sleep(1.5)
    j = c.get(f"/v1/jobs/{second}").json()
    assert j["state"] == "PENDING" and j["site"] is None, j
    r = subprocess.run([sys.executable, "-m", "suanli.cli_service", "admin", "drain", "east-1", "--undo", "--db",
                        service.db_url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "east-1\tundrained"
    wait_for(lambda: c.get(f"/v1/jobs/{second}").json()["state"] == "SUCCEEDED", 30)


def test_work_cut_by_an_outage_goes_to_the_dead_sites_backup(tmp_path):
    """Two equal western sites; east-1's backup is the second. The suanli policy re-places the
    preempted job there (it would take the first on a tie otherwise)."""
    net = yaml.safe_load(Path(NETWORK).read_text())
    twin = dict(net["sites"][1], id="west-2")
    net["sites"].append(twin)
    net["sites"][0]["backup"] = "west-2"
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    app = build(str(path), f"sqlite:///{tmp_path / 'db.sqlite'}", policy="suanli", tick_s=0.2,
                heartbeat_timeout_s=3.0)
    with ThreadServer(app) as url:
        s = svc.Service(url, app, "")
        try:
            c = s.client(s.tenant("acme"))
            east = s.start_agent("east-1", tmp_path)
            wait_for(lambda: any(x["up"] for x in c.get("/v1/sites").json() if x["id"] == "east-1"), 30)
            cmd = 'if [ "$SUANLI_SITE" = east-1 ]; then sleep 60; fi'
            jid = c.post("/v1/jobs", json=job_body(command=cmd, work_h=0.001, deadline_h=0.05)).json()["id"]
            wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 30)
            s.start_agent("west-1", tmp_path)
            s.start_agent("west-2", tmp_path)
            wait_for(lambda: sum(x["up"] for x in c.get("/v1/sites").json()) == 3, 30)
            east.send_signal(signal.SIGKILL)
            east.wait()
            done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED")
                            and j, 60)
            assert done["state"] == "SUCCEEDED" and done["site"] == "west-2", done
        finally:
            for p in s.agents:
                if p.poll() is None:
                    p.kill()
                    p.wait()
