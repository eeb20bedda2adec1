"""Overload (issue "Trust", shedding): a backlog of pending jobs that no site can take yet is not
read, modelled and answered again at every controller tick. Before, every tick offered every
PENDING job to the policy and rewrote each one's explanation: with a few thousand waiting, the
controller's thread took a third of the server's time and submissions slowed as the backlog
grew (bench/wrk_submit.py: 328 accepted/s over 5 s, 181/s over 30 s).

Now a job the policy answered is offered again only when the world it was answered in changes
(a site comes up or goes down, the ledger changes, a grid cap) or every `full_offer_s`; a new
job is offered at the next tick, alone.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import svc  # noqa: E402
from svc import job_body, wait_for  # noqa: E402

db_url, service = svc.db_url, svc.service


def _count_offers(controller) -> list[str]:
    """Every job id the controller offers its (real) policy, in order."""
    offered: list[str] = []
    decide = controller.policy.decide

    def counting(view, pending):
        offered.extend(p.job.id for p in pending)
        return decide(view, pending)
    controller.policy.decide = counting
    return offered


def test_a_waiting_backlog_is_not_offered_again_at_every_tick(service):
    c = service.app.state.controller
    c.full_offer_s = 3600.0                    # only a change of the world offers them all again here
    offered = _count_offers(c)
    acme = service.client(service.tenant("acme"))
    ids = [acme.post("/v1/jobs", json=job_body(name=f"b{i}")).json()["id"] for i in range(30)]
    # no agent: every site is down, every job deferred once, with its reason
    wait_for(lambda: all("down" in acme.get(f"/v1/jobs/{j}").json()["reason"] or
                         "no site" in acme.get(f"/v1/jobs/{j}").json()["reason"] for j in ids), 30)
    ticks0, n0 = c.ticks, len(offered)
    wait_for(lambda: c.ticks >= ticks0 + 5, 30)          # five more ticks (0.2 s each)
    assert len(offered) == n0, f"{len(offered) - n0} offers of jobs already answered in an unchanged world"
    assert sorted(set(map(int, offered))) == sorted(ids)

    # a new job is offered at the next tick, alone
    new = acme.post("/v1/jobs", json=job_body(name="late")).json()["id"]
    wait_for(lambda: str(new) in offered, 30)
    assert offered[n0:] == [str(new)]

    # a site comes up: the world changed, every waiting job is offered again and placed
    agent = service.client(service.site_token("east-1"))
    assert agent.post("/v1/agent/east-1/heartbeat", json={"instance": "i1", "running": []}).status_code == 200
    wait_for(lambda: all(acme.get(f"/v1/jobs/{j}").json()["state"] != "PENDING" for j in [*ids, new][:4]), 30)
    assert len(offered) > n0 + 1


def test_the_backlog_is_offered_again_after_full_offer_s(service):
    """Time alone can change an answer (a deadline passes, the look-ahead moves): all of them are
    offered again every `full_offer_s` even in a world that did not change."""
    c = service.app.state.controller
    c.full_offer_s = 1.0
    offered = _count_offers(c)
    acme = service.client(service.tenant("acme"))
    ids = [acme.post("/v1/jobs", json=job_body(name=f"b{i}")).json()["id"] for i in range(5)]
    t0 = time.monotonic()
    wait_for(lambda: sum(o == str(ids[0]) for o in offered) >= 3, 30)
    assert time.monotonic() - t0 >= 1.5          # three offers: the first, and two after a full second each


def test_a_deferral_that_cannot_be_written_fails_its_job_alone(service):
    """Deferrals are written together in one savepoint; a row among them that the database refuses
    (here: an UPDATE hook raising for one job, as a value a database cannot store would) fails that
    job alone, and the others are deferred with their reason."""
    from sqlalchemy import event

    from suanli.service.models import Job as JobRow

    def refuse(mapper, connection, target):
        if target.name == "poison" and target.state == "PENDING" and target.explanation:
            raise ValueError("this row cannot be stored")
    event.listen(JobRow, "before_update", refuse)
    try:
        acme = service.client(service.tenant("acme"))
        ids = [acme.post("/v1/jobs", json=job_body(name=n)).json()["id"] for n in ("a", "poison", "b", "c")]
        wait_for(lambda: acme.get(f"/v1/jobs/{ids[1]}").json()["state"] == "FAILED", 30)
        bad = acme.get(f"/v1/jobs/{ids[1]}").json()
        assert "this row cannot be stored" in bad["reason"]
        for j in (ids[0], ids[2], ids[3]):
            wait_for(lambda j=j: "down" in acme.get(f"/v1/jobs/{j}").json()["reason"], 30)
            assert acme.get(f"/v1/jobs/{j}").json()["state"] == "PENDING"
    finally:
        event.remove(JobRow, "before_update", refuse)
