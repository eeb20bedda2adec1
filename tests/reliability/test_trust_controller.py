"""Trust (issue "Trust", controller side): one tenant's job cannot stop the scheduler for every
tenant, nor take the sites down one after another.

- A job whose numbers make the controller fail (`checkpoint_h = 5e-324`: its preemption overflows),
  whose row cannot be read as a job, or for which the policy raises, is FAILED alone, with the
  reason; the tick goes on for everyone else, and /v1/health stays ok.
- A job that kills every agent that claims it (the agent dies and restarts: a new instance that no
  longer holds it) is quarantined after `max_agent_losses` such losses: FAILED, never dispatched
  again; a job lost beside it once is not.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import httpx  # noqa: E402
import svc  # noqa: E402
from sqlalchemy import select  # noqa: E402
from svc import NETWORK, ThreadServer, build, job_body, wait_for  # noqa: E402

from suanli.service.models import Job as JobRow  # noqa: E402
from suanli.service.models import SiteAgent, Tenant, Transition  # noqa: E402

db_url, service = svc.db_url, svc.service


def _agent(service, site: str) -> httpx.Client:
    return service.client(service.site_token(site))


def _beat(agent: httpx.Client, site: str, instance: str, running=()) -> dict:
    r = agent.post(f"/v1/agent/{site}/heartbeat", json={"instance": instance, "running": [
        {"job_id": j, "fence": f} for j, f in running]})
    assert r.status_code == 200, r.text
    return r.json()


def _claim(agent: httpx.Client, site: str, *jids: int, timeout: float = 30) -> dict[int, dict]:
    """Claim assignments until all of `jids` were among them; their assignments by job id."""
    got: dict[int, dict] = {}

    def claimed():
        got.update({a["job_id"]: a for a in agent.post(f"/v1/agent/{site}/assignments").json()})
        return set(jids) <= set(got)
    wait_for(claimed, timeout, 0.1)
    return got


def _row(sessions, tenant: str, **over) -> int:
    """A job row written straight into the database (what the API would refuse, or a row left by
    an older version): PENDING unless `over` says otherwise."""
    with sessions.begin() as s:
        tid = s.scalar(select(Tenant.id).where(Tenant.name == tenant))
        row = JobRow(tenant_id=tid, name="direct", command="true", gpus=1, state="PENDING", reason="submitted",
                     submit_h=0.0, remaining_work=0.01, hosted=[], fence=0,
                     spec={"work_h": 0.01, "origin": "beijing"})
        for k, v in over.items():
            setattr(row, k, v)
        s.add(row)
        s.flush()
        s.add(Transition(job_id=row.id, from_state=None, to_state=row.state, at_h=0.0, reason="written directly"))
        return row.id


def _transitions(sessions, jid: int) -> list[tuple[str, str]]:
    with sessions() as s:
        return [(t.to_state, t.reason) for t in s.scalars(select(Transition).where(Transition.job_id == jid)
                                                          .order_by(Transition.id))]


# ----------------------------------------------------------------------------- one job stalls the loop
def test_a_job_whose_preemption_overflows_fails_alone_and_the_loop_goes_on(service, tmp_path):
    """`checkpoint_h = 5e-324` (> 0, so the API took it before the door was tightened): when its
    site dies, the work it kept is floor(run / 5e-324) checkpoints, an OverflowError. That job is
    FAILED with the reason; every other tenant's job is still placed and runs; health is ok."""
    c = service.client(service.tenant("acme"))
    service.tenant("mallory")
    ctl = service.app.state.controller
    poison = _row(service.sessions, "mallory", state="RUNNING", site="east-1", gpu_type="h100", fence=1,
                  start_h=ctl.now_h() - 0.01, end_h=ctl.now_h() + 1.0,
                  spec={"work_h": 1.0, "origin": "beijing", "checkpoint_h": 5e-324})
    service.start_agent("west-1", tmp_path)             # east-1 has no agent: it is down, its job preempted
    jid = c.post("/v1/jobs", json=job_body(gpu_types=["a800"])).json()["id"]
    done = wait_for(lambda: (j := c.get(f"/v1/jobs/{jid}").json())["state"] in ("SUCCEEDED", "FAILED") and j, 60,
                    dump=lambda: c.get("/v1/health").json())
    assert done["state"] == "SUCCEEDED", done["transitions"]
    trs = _transitions(service.sessions, poison)
    assert trs[-1][0] == "FAILED" and "OverflowError" in trs[-1][1] and "taking it off its site" in trs[-1][1], trs
    health = c.get("/v1/health").json()
    assert health["ok"] and health["error"] is None and health["ticks"] > 0, health


def _quiet_service(tmp_path, **kw):
    """A built service whose loop does not run: the test calls `tick()` itself; both sites up."""
    app = build(NETWORK, f"sqlite:///{tmp_path / 'db.sqlite'}", policy="fifo", tick_s=0.2, heartbeat_timeout_s=30.0,
                checkpoint_store=tmp_path / "store", **kw)
    ctl = app.state.controller
    s = svc.Service("", app, "")
    s.tenant("acme")
    s.tenant("mallory")
    with ctl.sessions.begin() as x:
        for site in ("east-1", "west-1"):
            x.add(SiteAgent(site=site, info={"instance": "i"}))
    return ctl


def _state(ctl, jid: int) -> tuple[str, str]:
    with ctl.sessions() as s:
        row = s.get(JobRow, jid)
        return row.state, row.reason


def test_a_row_that_is_not_a_job_fails_alone(tmp_path):
    ctl = _quiet_service(tmp_path)
    bad = _row(ctl.sessions, "mallory", spec={"work_h": "a lot", "origin": "beijing"})
    good = _row(ctl.sessions, "acme")
    ctl.tick()
    assert _state(ctl, good)[0] == "PLACED"
    state, why = _state(ctl, bad)
    assert state == "FAILED" and why.startswith("controller error while reading it as a job: ValidationError"), why
    ctl.tick()                                          # and the next tick is quiet
    assert ctl.ticks == 2 and ctl.job_errors == 1


def test_a_job_the_policy_raises_for_fails_alone(tmp_path):
    """The policy raises whenever one job is among those offered: the batch is offered again one
    job at a time, the culprit FAILED, the others decided as usual."""
    ctl = _quiet_service(tmp_path)
    first = _row(ctl.sessions, "acme")
    bad = _row(ctl.sessions, "mallory")
    last = _row(ctl.sessions, "acme")
    inner = ctl.policy

    class Fragile:
        name = inner.name

        def decide(self, view, jobs):
            if any(p.job.id == str(bad) for p in jobs):
                raise ZeroDivisionError("float division by zero")
            return inner.decide(view, jobs)
    ctl.policy = Fragile()
    ctl.tick()
    assert _state(ctl, first)[0] == "PLACED" and _state(ctl, last)[0] == "PLACED"
    state, why = _state(ctl, bad)
    assert state == "FAILED" and "policy fifo raised ZeroDivisionError" in why, why
    nxt = _row(ctl.sessions, "acme")
    ctl.tick()                                          # the batch works again
    assert _state(ctl, nxt)[0] == "PLACED" and ctl.job_errors == 1


def test_a_failed_run_whose_retry_overflows_fails_alone(service):
    """An agent reports a failed attempt of the poisoned job: its retry (a preemption) overflows.
    The report is answered (the job FAILED, with the reason), not a 500 the agent would resend
    forever, blocking its later reports."""
    c = service.client(service.tenant("acme"))
    service.tenant("mallory")
    east = _agent(service, "east-1")
    _beat(east, "east-1", "a1")
    ctl = service.app.state.controller
    poison = _row(service.sessions, "mallory", spec={"work_h": 1.0, "origin": "beijing", "checkpoint_h": 5e-324,
                                                     "gpu_types": ["h100"]})
    a = _claim(east, "east-1", poison)[poison]
    r = east.post(f"/v1/agent/east-1/jobs/{poison}/report", json={"fence": a["fence"], "state": "RUNNING"})
    assert r.status_code == 200, r.text
    time.sleep(0.05)
    r = east.post(f"/v1/agent/east-1/jobs/{poison}/report", json={"fence": a["fence"], "state": "FAILED",
                                                                   "exit_code": 1})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "FAILED" and "OverflowError" in r.json()["reason"], r.json()
    jid = c.post("/v1/jobs", json=job_body(gpu_types=["h100"])).json()["id"]
    assert _claim(east, "east-1", jid)[jid]
    assert ctl.last_error is None


# ----------------------------------------------------------------------------- quarantine
def test_a_job_that_kills_every_agent_that_claims_it_is_quarantined(service):
    c = service.client(service.tenant("acme"))
    east = _agent(service, "east-1")
    _beat(east, "east-1", "a1")
    bad = c.post("/v1/jobs", json=job_body(name="poison", gpu_types=["h100"])).json()["id"]
    good = c.post("/v1/jobs", json=job_body(name="bystander", gpu_types=["h100"])).json()["id"]
    claims = _claim(east, "east-1", bad, good)
    assert claims[bad]["fence"] == 1 and claims[good]["fence"] == 1
    # agent a1 died on `bad` and was restarted (a2): it holds neither run (the bystander's
    # process died with it), so both are lost once and placed again
    _beat(east, "east-1", "a2")
    for jid in (bad, good):
        j = c.get(f"/v1/jobs/{jid}").json()
        pre = [t["reason"] for t in j["transitions"] if t["to_state"] == "PREEMPTED"]
        assert len(pre) == 1 and "restarted and no longer runs it (agent loss 1 of 2)" in pre[0], j["transitions"]
    # a job lost with an agent restart is claimed alone: the next loss is its own
    first = wait_for(lambda: east.post("/v1/agent/east-1/assignments").json(), 30, 0.1)
    assert [a["job_id"] for a in first] == [bad], first
    second = _claim(east, "east-1", good)[good]
    assert second["fence"] > claims[good]["fence"]
    # a2 dies on `bad` again; a3 adopts the bystander's run, which goes on
    _beat(east, "east-1", "a3", [(good, second["fence"])])
    j = c.get(f"/v1/jobs/{bad}").json()
    assert j["state"] == "FAILED" and j["reason"].startswith("quarantined: lost with 2 agent restarts (on east-1)"), j
    reply = _beat(east, "east-1", "a3", [(good, second["fence"]), (bad, first[0]["fence"])])
    assert {"job_id": bad, "fence": first[0]["fence"]} in reply["cancel"]      # a zombie run of it is stopped
    assert c.get(f"/v1/jobs/{good}").json()["state"] == "TRANSFERRING"
    r = east.post(f"/v1/agent/east-1/jobs/{good}/report", json={"fence": second["fence"], "state": "SUCCEEDED",
                                                                 "exit_code": 0})
    assert r.status_code == 200 and r.json()["state"] == "SUCCEEDED", r.text
    time.sleep(1.0)                                 # ticks: the quarantined job is never offered again
    assert east.post("/v1/agent/east-1/assignments").json() == []
    j = c.get(f"/v1/jobs/{bad}").json()
    assert j["state"] == "FAILED" and [t["to_state"] for t in j["transitions"]].count("TRANSFERRING") == 2


def test_max_agent_losses_is_configurable(tmp_path):
    app = build(NETWORK, f"sqlite:///{tmp_path / 'db.sqlite'}", policy="fifo", tick_s=0.2, heartbeat_timeout_s=30.0,
                max_agent_losses=3, checkpoint_store=tmp_path / "store")
    with ThreadServer(app) as url:
        s = svc.Service(url, app, "")
        c = s.client(s.tenant("acme"))
        east = _agent(s, "east-1")
        _beat(east, "east-1", "a0")
        jid = c.post("/v1/jobs", json=job_body(gpu_types=["h100"])).json()["id"]
        for k in range(1, 4):
            _claim(east, "east-1", jid)
            _beat(east, "east-1", f"a{k}")
            state = c.get(f"/v1/jobs/{jid}").json()["state"]
            assert state == ("FAILED" if k == 3 else "PENDING") or (k < 3 and state == "PLACED"), (k, state)
        assert c.get(f"/v1/jobs/{jid}").json()["reason"].startswith("quarantined: lost with 3 agent restarts")


def test_a_heartbeat_that_waited_in_the_service_does_not_lose_a_later_claim(service):
    """A heartbeat that reached the service before a claim (it waited for a thread or the lock
    while the agent, tired of waiting, claimed new work) cannot list that claim: the claim is not
    taken for lost, even when the heartbeat is from a new instance."""
    from suanli.service.models import utcnow
    c = service.client(service.tenant("acme"))
    east = _agent(service, "east-1")
    _beat(east, "east-1", "a1")
    jid = c.post("/v1/jobs", json=job_body(gpu_types=["h100"])).json()["id"]
    before = utcnow()
    time.sleep(0.05)
    a = _claim(east, "east-1", jid)[jid]
    ctl = service.app.state.controller
    with ctl.lock, service.sessions.begin() as s:
        ctl.lost_runs(s, "east-1", set(), True, before)     # a restarted agent's heartbeat from before the claim
    assert c.get(f"/v1/jobs/{jid}").json()["state"] == "TRANSFERRING"
    with ctl.lock, service.sessions.begin() as s:
        ctl.lost_runs(s, "east-1", {(jid, a["fence"])}, True, utcnow())      # held: not lost
    assert c.get(f"/v1/jobs/{jid}").json()["state"] == "TRANSFERRING"


# ----------------------------------------------------------------------------- logs
def test_serve_logs_its_start_and_each_decision_as_json(tmp_path):
    """`suanli serve --log-format json`: the start line says where it listens and how it runs
    (database URL, network, policy, heartbeat timeout), and the controller logs each decision with
    the job's id, tenant, site and reason; every line is one JSON object."""
    import json
    import socket
    import subprocess

    from suanli.service import auth
    from suanli.service.db import open_db
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    sessions = open_db(db)
    with sessions.begin() as s:
        tenant = auth.create_tenant(s, "acme", {}, None)
        site = auth.create_site_token(s, "east-1")
    err = tmp_path / "serve.log"
    p = subprocess.Popen([sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db,
                          "--port", str(port), "--policy", "fifo", "--tick-s", "0.2", "--heartbeat-timeout-s", "45",
                          "--log-format", "json", "--log-level", "info"],
                         stdout=subprocess.DEVNULL, stderr=err.open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        def up():
            assert p.poll() is None, err.read_text()
            try:
                return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 60, 0.1)
        agent = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {site}"}, timeout=30)
        assert agent.post("/v1/agent/east-1/heartbeat", json={"instance": "a1"}).status_code == 200
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tenant}"}, timeout=30)
        jid = c.post("/v1/jobs", json=job_body(gpu_types=["h100"])).json()["id"]

        def lines():
            return [json.loads(ln) for ln in err.read_text().splitlines() if ln.strip()]   # each line is JSON
        placed = wait_for(lambda: next((r for r in lines() if r.get("job_id") == jid
                                        and r.get("decision") == "placed"), None), 30, 0.2, dump=lambda: lines())
    finally:
        p.terminate()
        p.wait(timeout=30)
    assert placed["level"] == "info" and placed["logger"] == "suanli.controller", placed
    assert placed["tenant"] == "acme" and placed["site"] == "east-1" and placed["reason"], placed
    assert f"job {jid} of acme placed on east-1" in placed["message"], placed
    start = next(r for r in lines() if r["message"].startswith("suanli serve listening"))
    assert start["host"] == "127.0.0.1" and start["port"] == port and start["database"] == db, start
    assert start["network"] == NETWORK and start["policy"] == "fifo" and start["heartbeat_timeout_s"] == 45.0, start
    assert f"http://127.0.0.1:{port}" in start["message"]
    assert tenant not in err.read_text() and site not in err.read_text()          # no token in the log


def test_a_site_whose_agent_calls_is_alive_without_a_recent_heartbeat(tmp_path):
    """An agent that reports and claims one call at a time on a loaded machine can go longer than
    the timeout between two heartbeats: its calls show it alive, and its jobs are not re-placed
    (they would run twice)."""
    from datetime import timedelta

    from suanli.service.models import utcnow
    ctl = _quiet_service(tmp_path)
    old = utcnow() - timedelta(seconds=100)
    ctl.started_at = old
    with ctl.sessions.begin() as s:
        for a in s.scalars(select(SiteAgent)):
            a.last_seen_at = old
    with ctl.sessions() as s:
        assert ctl.up_sites(s) == set()
        ctl.saw("east-1", utcnow() - timedelta(seconds=5))       # a claim or a report, 5 s ago
        assert ctl.up_sites(s) == {"east-1"}
        ctl.saw("east-1", old)                                   # an older call changes nothing
        assert ctl.up_sites(s) == {"east-1"}
