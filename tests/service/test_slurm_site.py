"""The `slurm` executor against a real Slurm cluster (sites.py: partitions east-1 and west-1 with
fake GPUs), through a real server and agent subprocesses: pools from Slurm's inventory, real
Python jobs that checkpoint, Slurm's job names and GRES, cancellation with scancel, and a
site's death with the job resuming at the other site from its checkpoint."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import sites
import svc
from sites import cancel_partition, job_command, slurm, slurm_jobs, start_slurm_agent
from sqlalchemy import func, select
from svc import agent_env, job_body, stop_all, wait_for

from suanli.agent.executors.slurm import SlurmExecutor, gres_gpus, parse_kv, suanli_state
from suanli.service import auth
from suanli.service.db import open_db
from suanli.service.models import SiteAgent, Transition, Usage

service = svc.service
_ = slurm


@pytest.fixture
def db_url(tmp_path):
    """SQLite only: the database is not what these tests check (PostgreSQL runs in svc's tests)."""
    return f"sqlite:///{tmp_path / 'suanli.db'}"


def test_slurm_states_map_to_the_lifecycle():
    assert suanli_state("PENDING", None) == "TRANSFERRING"
    assert suanli_state("CONFIGURING", None) == "TRANSFERRING"
    assert suanli_state("RUNNING", None) == "RUNNING"
    assert suanli_state("COMPLETING", 0) == "RUNNING"
    assert suanli_state("COMPLETED", 0) == "SUCCEEDED"
    for st in ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "CANCELLED by 0", "PREEMPTED", "UNKNOWN"):
        assert suanli_state(st, 1) == "FAILED"
    assert gres_gpus("gpu:h100:4,gpu:a800:2(S:0)") == {"h100": 4, "a800": 2}
    assert parse_kv("JobId=7 JobName=suanli-3-f2 Reason=None Dependency=(null)")["JobName"] == "suanli-3-f2"


def test_pools_are_read_from_slurms_node_inventory(slurm, service, tmp_path):
    for part, pools in sites.PARTITIONS.items():
        assert SlurmExecutor(part, str(tmp_path)).count == pools
    start_slurm_agent(service, "west-1", tmp_path)

    def registered():
        with service.sessions() as s:
            a = s.get(SiteAgent, "west-1")
            return a and a.info
    info = wait_for(registered, 30)
    assert info["executor"] == "slurm"
    assert info["pools"] == [{"gpu_type": "a800", "count": 8, "busy": 0}]


def test_jobs_run_through_slurm_with_gres_names_and_checkpoints(slurm, service, tmp_path):
    c = service.client(service.tenant("acme"))
    ckpt = tmp_path / "ckpt"
    for site in ("east-1", "west-1"):
        start_slurm_agent(service, site, tmp_path, ckpt)
    cmd = job_command(tmp_path, 4, 0.1)
    ids = []
    for k in range(6):
        body = job_body(name=f"ck-{k}", command=cmd, gpus=1 + k % 3, work_h=0.0005,
                        origin="beijing" if k % 2 == 0 else "hami")
        ids.append(c.post("/v1/jobs", json=body).json()["id"])

    def done():
        js = [c.get(f"/v1/jobs/{i}").json() for i in ids]
        return js if all(j["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for j in js) else None
    jobs = wait_for(done, 180, 0.5)
    assert {j["state"] for j in jobs} == {"SUCCEEDED"}, [(j["id"], j["state"], j["reason"]) for j in jobs]
    named = slurm_jobs()
    for j in jobs:
        fence = int(next(t for t in j["transitions"] if t["to_state"] == "TRANSFERRING")["reason"]
                    .rsplit("fence ", 1)[1].rstrip(")"))
        rec = named[f"suanli-{j['id']}-f{fence}"]
        assert rec["JobState"] == "COMPLETED" and rec["Partition"] == j["site"]
        assert rec["TresPerNode"] == f"gres:gpu:{j['gpu_type']}:{j['gpus']}"
        running = next(t for t in j["transitions"] if t["to_state"] == "RUNNING")
        assert f"Slurm job {rec['JobId']}" in running["reason"]
        assert (ckpt / str(j["id"]) / "step").read_text() == "4"
        assert (ckpt / str(j["id"]) / f"done-{j['site']}").read_text() == "0 4"
        assert j["usage"]["gpu_seconds"] > 0
    with service.sessions() as s:
        assert sorted(u.job_id for u in s.scalars(select(Usage))) == sorted(ids)


def test_cancelling_a_job_scancels_its_slurm_job(slurm, service, tmp_path):
    c = service.client(service.tenant("acme"))
    start_slurm_agent(service, "east-1", tmp_path)
    jid = c.post("/v1/jobs", json=job_body(command="sleep 120", work_h=0.05)).json()["id"]
    wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["state"] == "RUNNING", 60)
    assert slurm_jobs()[f"suanli-{jid}-f1"]["JobState"] == "RUNNING"
    assert c.delete(f"/v1/jobs/{jid}").json()["state"] == "CANCELLED"
    wait_for(lambda: slurm_jobs()[f"suanli-{jid}-f1"]["JobState"] == "CANCELLED", 30, 0.5)


@pytest.mark.heartbeat_timeout(3.0)      # a test of failover through the timeout
def test_a_dead_site_s_job_resumes_at_the_other_site_from_its_checkpoint(slurm, service, tmp_path):
    """east-1's agent is killed and its Slurm jobs and disk with it; the job is preempted,
    re-placed on west-1, whose agent downloads the checkpoint east-1's agent had stored with the
    controller (the sites share no file system), and resumes from it."""
    c = service.client(service.tenant("acme"))
    east_ckpt, west_ckpt = tmp_path / "east-disk", tmp_path / "west-disk"
    east = start_slurm_agent(service, "east-1", tmp_path, east_ckpt)
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    n = 30
    jid = c.post("/v1/jobs", json=job_body(command=job_command(tmp_path, n, 0.3), work_h=0.002)).json()["id"]
    step = east_ckpt / str(jid) / "step"
    wait_for(lambda: step.exists() and int(step.read_text()) >= 5, 60)
    wait_for(lambda: c.get(f"/v1/jobs/{jid}").json()["checkpoint_h"] is not None, 30)
    start_slurm_agent(service, "west-1", tmp_path, west_ckpt)
    east.send_signal(signal.SIGKILL)
    east.wait()
    cancel_partition("east-1")
    killed_at = time.monotonic()
    at_kill = int(step.read_text())
    shutil.rmtree(east_ckpt)
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 120)
    assert done["state"] == "SUCCEEDED" and done["site"] == "west-1", done["transitions"]
    states = [t["to_state"] for t in done["transitions"]]
    assert states == ["PENDING", "PLACED", "TRANSFERRING", "RUNNING", "PREEMPTED", "PENDING", "PLACED",
                      "TRANSFERRING", "RUNNING", "SUCCEEDED"]
    pre = done["transitions"][4]
    assert "east-1 stopped heartbeating" in pre["reason"] and "to its checkpoint at" in pre["reason"], pre
    assert "made on east-1" in done["transitions"][7]["reason"]
    resumed = done["transitions"][8]["at_h"]
    first, last = map(int, (west_ckpt / str(jid) / "done-west-1").read_text().split())
    # resumed from the stored checkpoint, not from 0: at most the steps since the agent's last
    # upload (every 0.3 s: one step) are redone, plus the kill's race
    assert last == n and at_kill - 3 <= first <= at_kill, (first, at_kill)
    print(f"failover: resumed at step {first} of {n} (killed at {at_kill}), running again "
          f"{(resumed - pre['at_h']) * 3600:.1f} s after the preemption, done {time.monotonic() - killed_at:.1f} s "
          f"after the kill")


def test_controller_sigkilled_during_a_failover_loses_no_job_and_starts_none_twice(slurm, tmp_path):
    """A real `suanli serve` process over SQLite, two Slurm sites. east-1 dies with four
    checkpointing jobs; as soon as the controller has preempted the first, it is SIGKILLed, and
    started again on the same database. Every job finishes once, at west-1, from its checkpoint."""
    db = f"sqlite:///{tmp_path / 'suanli.db'}"
    sessions = open_db(db)
    with sessions.begin() as s:
        tenant = auth.create_tenant(s, "acme", {}, None)
        tokens = {site: auth.create_site_token(s, site) for site in ("east-1", "west-1")}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def serve() -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "suanli.cli_service", "serve", "--network", svc.NETWORK,
                              "--db", db, "--port", str(port), "--policy", "fifo", "--tick-s", "0.2",
                              "--heartbeat-s", "1", "--heartbeat-timeout-s", "3",
                              "--checkpoint-store", str(tmp_path / "store")],
                             stdout=(tmp_path / f"serve-{len(procs)}.log").open("wb"), stderr=subprocess.STDOUT)
        procs.append(p)
        wait_for(lambda: _healthy(url), 60, 0.2)
        return p

    def agent(site: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", site, "--controller", url,
                              "--executor", "slurm", "--workdir", str(tmp_path),
                              "--checkpoint-dir", str(tmp_path / f"{site}-disk"), "--interval-s", "0.3"],
                             stdout=(tmp_path / f"{site}.log").open("wb"), stderr=subprocess.STDOUT,
                             env=agent_env(tokens[site]))
        procs.append(p)
        return p

    try:
        controller = serve()
        east = agent("east-1")
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant}"}, timeout=30)
        wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
        n = 30
        cmd = job_command(tmp_path, n, 0.3)
        ids = [c.post("/v1/jobs", json=job_body(name=f"ck-{k}", command=cmd, work_h=0.002)).json()["id"]
               for k in range(4)]

        def stored():
            js = [c.get(f"/v1/jobs/{i}").json() for i in ids]
            return all(j["state"] == "RUNNING" and j["checkpoint_h"] is not None for j in js)
        wait_for(stored, 90, 0.3)
        agent("west-1")
        east.send_signal(signal.SIGKILL)
        east.wait()
        cancel_partition("east-1")
        shutil.rmtree(tmp_path / "east-1-disk")
        killed_at = time.monotonic()

        def preempted():
            with sessions() as s:
                return s.scalar(select(func.count()).select_from(Transition).where(
                    Transition.to_state == "PREEMPTED"))
        wait_for(preempted, 60, 0.05)
        controller.send_signal(signal.SIGKILL)         # mid-failover
        controller.wait()
        time.sleep(1.0)
        serve()

        def finished():
            js = [c.get(f"/v1/jobs/{i}").json() for i in ids]
            return all(j["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for j in js) and js
        jobs = wait_for(finished, 180, 0.5)
        took = time.monotonic() - killed_at
        assert {j["state"] for j in jobs} == {"SUCCEEDED"}, [(j["id"], j["state"], j["reason"]) for j in jobs]
        named = slurm_jobs()
        for j in jobs:
            assert j["site"] == "west-1", j["transitions"]
            on_west = [k for k, r in named.items() if k.startswith(f"suanli-{j['id']}-") and r["Partition"] == "west-1"]
            assert len(on_west) == 1, on_west                         # started once at west-1
            assert named[on_west[0]]["JobState"] == "COMPLETED"
            first, last = map(int, (tmp_path / "west-1-disk" / str(j["id"]) / "done-west-1").read_text().split())
            assert last == n and first >= 1                            # resumed from its checkpoint
            states = [t["to_state"] for t in j["transitions"]]
            assert states.count("RUNNING") == 2 and states.count("SUCCEEDED") == 1, states
        with sessions() as s:
            assert sorted(s.scalars(select(Usage.job_id))) == sorted(ids)     # metered once each
        print(f"controller SIGKILLed mid-failover: 4 jobs finished once at west-1, {took:.1f} s after east-1 died")
    finally:
        stop_all(procs)
        cancel_partition("east-1")
        cancel_partition("west-1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.heartbeat_timeout(3.0)      # a test of failover through the timeout
def test_a_returning_stale_agent_cancels_the_slurm_job_it_no_longer_holds(slurm, service, tmp_path):
    """east-1's agent dies but its Slurm job keeps running (hung); the job is re-placed on
    west-1. When east-1's agent comes back it adopts its Slurm job, hears that the fence is
    stale, and scancels it: the job finishes once, at west-1."""
    c = service.client(service.tenant("acme"))
    ckpt = tmp_path / "ckpt"
    token = service.site_token("east-1")
    east = start_slurm_agent(service, "east-1", tmp_path, ckpt, token)
    wait_for(lambda: any(s["up"] for s in c.get("/v1/sites").json() if s["id"] == "east-1"), 30)
    jid = c.post("/v1/jobs", json=job_body(command=job_command(tmp_path, 9, 0.2, "east-1"),
                                           work_h=0.002)).json()["id"]
    step = ckpt / str(jid) / "step"
    wait_for(lambda: step.exists() and int(step.read_text()) >= 3, 60)      # hung from step 3 on
    east.send_signal(signal.SIGKILL)
    east.wait()
    start_slurm_agent(service, "west-1", tmp_path, ckpt)
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 120)
    assert done["state"] == "SUCCEEDED" and done["site"] == "west-1"
    stale = slurm_jobs()[f"suanli-{jid}-f1"]
    assert stale["JobState"] == "RUNNING"               # nobody told Slurm yet
    start_slurm_agent(service, "east-1", tmp_path, ckpt, token)
    wait_for(lambda: slurm_jobs()[f"suanli-{jid}-f1"]["JobState"] == "CANCELLED", 30, 0.5)
    assert c.get(f"/v1/jobs/{jid}").json()["state"] == "SUCCEEDED"
    assert not (ckpt / str(jid) / "done-east-1").exists()
    out = subprocess.run(["squeue", "-h", "-p", "east-1"], capture_output=True, text=True).stdout
    assert out.strip() == ""
