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
import pytest  # noqa: E402
import svc  # noqa: E402
from svc import NETWORK, ThreadServer, build, job_body, wait_for  # noqa: E402

from suanli.service.models import Job as JobRow  # noqa: E402
from suanli.service.models import Transition  # noqa: E402

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
