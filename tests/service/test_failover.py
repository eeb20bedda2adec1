"""Failover and drain with local-executor agents (fast; the Slurm versions are in
test_slurm_site.py): the heartbeat timeout, checkpoints stored by the controller and resumed
from on another site after a site's death, an agent's restart, re-placement on the dead site's
`backup`, and `suanli admin drain`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import svc
import yaml
from sites import job_command
from sqlalchemy import select
from svc import NETWORK, ThreadServer, agent_env, build, job_body, no_job_left, run_pid, searchable, wait_for

from suanli.service.controller import Controller
from suanli.service.models import Job as JobRow
from suanli.service.models import Usage

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module


def test_a_site_is_down_after_30_s_without_a_heartbeat_by_default():
    """Long enough for a loaded machine (heartbeats seconds apart): a site taken for dead while
    its agent lives runs its jobs twice. Tests of failover set a short timeout themselves."""
    net = _net()
    assert Controller(None, net, "fifo", None).heartbeat_timeout_s == 30.0
    assert Controller(None, net, "fifo", None, heartbeat_timeout_s=4.0).heartbeat_timeout_s == 4.0


def _net():
    from suanli.service.server import load_network
    return load_network(NETWORK)


def _stored_step(service, jid: int) -> int:
    """The job's step in the checkpoint archive the controller stores (the job writes `step`)."""
    with tarfile.open(service.app.state.controller.store.path(jid)) as t:
        m = next(m for m in t.getmembers() if m.name.rsplit("/", 1)[-1] == "step")
        return int(t.extractfile(m).read())


@pytest.mark.heartbeat_timeout(3.0)      # a test of failover through the timeout
def test_a_dead_site_s_job_resumes_elsewhere_from_its_stored_checkpoint(service, tmp_path):
    """The sites share no file system: east-1's agent uploads the job's checkpoints to the
    controller; east-1 dies with its disk; west-1's agent downloads the stored checkpoint and the
    job resumes from it, the move priced on the ledger."""
    c = service.client(service.tenant("acme"))
    east = _agent(service, "east-1", tmp_path)
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    n = 40
    jid = c.post("/v1/jobs", json=job_body(command=job_command(tmp_path, n, 0.2), work_h=0.004)).json()["id"]
    east_dir = tmp_path / "east-1" / "checkpoints" / str(jid)
    wait_for(lambda: (east_dir / "step").exists() and int((east_dir / "step").read_text()) >= 8, 60)
    seen = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["checkpoint_h"] is not None and j, 30)
    assert seen["checkpoint_bytes"] > 0 and seen["checkpoint_h"] > seen["start_h"]
    assert service.app.state.controller.store.has(jid)
    _agent(service, "west-1", tmp_path)
    pid = run_pid(seen)
    assert pid in svc.job_processes(tmp_path / "east-1")
    stored = _stored_step(service, jid)        # the step of the checkpoint the controller holds now
    east.send_signal(signal.SIGKILL)           # the site vanishes, and its job with it
    east.wait()
    os.killpg(pid, signal.SIGKILL)             # the machine with it (its processes outlive the agent)
    at_kill = int((east_dir / "step").read_text())
    shutil.rmtree(tmp_path / "east-1")         # its disk too
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 120)
    assert done["state"] == "SUCCEEDED" and done["site"] == "west-1", done["transitions"]
    pre = next(t for t in done["transitions"] if t["to_state"] == "PREEMPTED")
    assert "to its checkpoint at" in pre["reason"] and "kept 0.0000 h" not in pre["reason"], pre["reason"]
    moved = [t for t in done["transitions"] if t["to_state"] == "TRANSFERRING"][-1]["reason"]
    assert "resumes from the checkpoint" in moved and "made on east-1" in moved and "moved in" in moved, moved
    west_dir = tmp_path / "west-1" / "checkpoints" / str(jid)
    first, last = map(int, (west_dir / "done-west-1").read_text().split())
    # resumed from the stored checkpoint, the one held at the kill or a later upload: only the
    # steps since the last upload are redone (how many depends on how far uploads lag on a loaded
    # machine: 1 to 9 steps of 0.2 s seen, so that is not what is checked)
    assert last == n and 1 <= max(stored - 1, 1) <= first <= at_kill, (stored, first, at_kill)
    with service.sessions() as s:
        row = s.get(JobRow, jid)
        assert row.checkpoint_site == "west-1" and row.move_cny == 0.0      # billed with the west-1 run
        use = s.scalars(select(Usage).where(Usage.job_id == jid)).one()
    east_city, west_city = (_net().sites[k].city for k in ("east-1", "west-1"))
    path = _net().network.path(east_city, west_city)
    assert use.site == "west-1" and use.transfer_cny > 0 and path.cny_per_gb > 0
    no_job_left(tmp_path)


def test_an_agent_restarted_within_the_timeout_adopts_its_runs(service, tmp_path):
    """The agent is SIGKILLed and started again on its workdir before the site counts as down:
    the new agent adopts the run its predecessor left (its record and exit file), the controller
    hears a new agent instance that holds the job, and the job finishes once, never re-placed."""
    c = service.client(service.tenant("acme"))
    token = service.site_token("east-1")
    first = service.start_agent("east-1", tmp_path, token)
    jid = c.post("/v1/jobs", json=job_body(command=job_command(tmp_path, 15, 0.2), work_h=0.002)).json()["id"]
    ckpt = tmp_path / "east-1" / "checkpoints" / str(jid)
    wait_for(lambda: (ckpt / "step").exists() and int((ckpt / "step").read_text()) >= 3, 60)
    pid = run_pid(c.get(f"/v1/jobs/{jid}").json())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert pid in svc.job_processes(tmp_path)    # the job's process outlives its agent
    service.start_agent("east-1", tmp_path, token)
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 90)
    assert done["state"] == "SUCCEEDED", done["transitions"]
    assert [t["to_state"] for t in done["transitions"]] == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING",
                                                          "SUCCEEDED"]
    fences = {ln.split()[1] for ln in (ckpt / "log").read_text().splitlines()}
    assert fences == {"1"}                       # one run, start to end
    assert (ckpt / "done-east-1").read_text().split() == ["0", "15"]
    assert done["usage"]["gpu_seconds"] > 0       # billed once, by the agent that adopted it
    no_job_left(tmp_path)


def test_an_agent_restarted_gives_up_runs_it_cannot_adopt(service, tmp_path):
    """A run whose record is gone (its workdir lost with the agent) is not held by the new agent:
    the controller re-places it at once on the agent's new instance, without waiting for the
    heartbeat timeout."""
    c = service.client(service.tenant("acme"))
    token = service.site_token("east-1")
    first = service.start_agent("east-1", tmp_path / "w1", token)
    jid = c.post("/v1/jobs", json=job_body(command="sleep 30", work_h=0.002)).json()["id"]
    wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 60)
    pid = run_pid(c.get(f"/v1/jobs/{jid}").json())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert pid in svc.job_processes(tmp_path / "w1")     # left running: nothing on the new disk names it
    os.killpg(pid, signal.SIGKILL)
    service.start_agent("east-1", tmp_path / "w2", token)      # a fresh disk
    j = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "RUNNING"
                 and "PREEMPTED" in [t["to_state"] for t in j["transitions"]] and j, 30)
    pre = next(t for t in j["transitions"] if t["to_state"] == "PREEMPTED")
    assert "the agent of east-1 restarted and no longer runs it" in pre["reason"], pre
    assert "stopped heartbeating" not in str(j["transitions"])       # caught before the timeout
    c.delete(f"/v1/jobs/{jid}")
    no_job_left(tmp_path)                         # the new agent stops the cancelled run


@pytest.mark.heartbeat_timeout(3.0)      # a test of failover through the timeout
def test_a_returning_stale_agent_kills_the_run_its_predecessor_left(service, tmp_path):
    """east-1's agent is SIGKILLed; its job's processes run on (sessions of their own), east-1
    counts as down and the job runs again at west-1. When east-1's agent comes back on its workdir
    it adopts the run its predecessor left, hears that its fence is stale, and kills it: no process
    of it is left, and the job finished once, at west-1 (the local twin of test_slurm_site's)."""
    c = service.client(service.tenant("acme"))
    token = service.site_token("east-1")
    east = service.start_agent("east-1", tmp_path, token)
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    cmd = 'if [ "$SUANLI_SITE" = east-1 ]; then sleep 600; fi'        # beijing: fifo's tie goes to east-1
    jid = c.post("/v1/jobs", json=job_body(command=cmd, work_h=0.001)).json()["id"]
    pid = run_pid(wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "RUNNING" and j, 30))
    service.start_agent("west-1", tmp_path)
    east.send_signal(signal.SIGKILL)
    east.wait()
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 60)
    assert done["state"] == "SUCCEEDED" and done["site"] == "west-1", done["transitions"]
    assert pid in svc.job_processes(tmp_path / "east-1")          # nobody told it yet
    service.start_agent("east-1", tmp_path, token)
    no_job_left(tmp_path / "east-1")
    after = c.get(f"/v1/jobs/{jid}").json()
    assert after["state"] == "SUCCEEDED" and after["site"] == "west-1"
    assert [t["to_state"] for t in after["transitions"]].count("SUCCEEDED") == 1
    assert after["transitions"] == done["transitions"]            # the stale run's end changed nothing


def _agent(service, site: str, workdir: Path) -> subprocess.Popen:
    searchable(workdir)
    p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", site, "--controller", service.url,
                          "--executor", "local", "--workdir", str(workdir),
                          "--interval-s", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=agent_env(service.site_token(site)))
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
            pid = run_pid(wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] == "RUNNING" and j, 30))
            s.start_agent("west-1", tmp_path)
            s.start_agent("west-2", tmp_path)
            wait_for(lambda: sum(x["up"] for x in c.get("/v1/sites").json()) == 3, 30)
            assert pid in svc.job_processes(tmp_path / "east-1")
            east.send_signal(signal.SIGKILL)
            east.wait()
            done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED")
                            and j, 60)
            assert done["state"] == "SUCCEEDED" and done["site"] == "west-2", done
            svc.reap_jobs(tmp_path / "east-1")   # its `sleep 60`: the killed agent is not coming back to stop it
            no_job_left(tmp_path)
        finally:
            svc.stop_all(s.agents)
            svc.reap_jobs(tmp_path)
