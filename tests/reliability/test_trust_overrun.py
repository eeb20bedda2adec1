"""A run cannot outspend its tenant's budget by under-declaring its work ("Trust part two" 3).

The budget is checked at submit against the declared `work_h`: with a 1 CNY budget, 8 GPUs
declared at work_h=0.0001 ran 61 s and were billed 2.67 CNY, because a run was never stopped at
its planned end. Now a run past its planned end is re-priced (service/overrun.py): extended by
one estimate if that fits the budget and quota, else stopped (metered up to now, FAILED, its
agent kills it at its next heartbeat); a run whose tenant's spend passes the budget once it is
past its estimate is stopped at once. `decide` is pure and tested here on its own; the end-to-end
tests run a real server and a real agent.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402
from sqlalchemy import select  # noqa: E402
from svc import job_body, wait_for  # noqa: E402

from suanli.service.models import Tenant, Usage  # noqa: E402
from suanli.service.server import ThreadServer, build  # noqa: E402

db_url = svc.db_url     # the fixture, used in this module
S = 1 / 3600.0          # one second, in hours


# ----------------------------------------------------------------------------- the decision, pure
def Rules(**kw):  # noqa: N802  (imported here: the end-to-end tests below run on code without the module too)
    from suanli.service.overrun import Rules
    return Rules(**kw)


def decide(*a, **kw):
    from suanli.service.overrun import decide
    return decide(*a, **kw)


def test_within_its_estimate_or_its_margin_a_run_goes_on():
    r = Rules(margin=0.5, min_s=60.0)
    assert decide(r, now=10.0, start_h=9.0, end_h=11.0, estimate_h=2.0, cny_per_h=100.0, budget_cny=1.0,
                  spent_cny=0.0).action == "run"              # before its planned end: the budget admitted it
    # past its end, within max(50 % of 2 h, 60 s) = 1 h, under budget: goes on
    assert decide(r, now=11.5, start_h=9.0, end_h=11.0, estimate_h=2.0, cny_per_h=1.0, budget_cny=None,
                  spent_cny=0.0).action == "run"
    # a tiny estimate: the margin is the minimum, 60 s
    assert decide(r, now=11.0 + 59 * S, start_h=11.0 - 1 * S, end_h=11.0, estimate_h=1 * S, cny_per_h=1.0,
                  budget_cny=None, spent_cny=0.0).action == "run"


def test_past_its_margin_a_run_is_extended_by_one_estimate_if_the_budget_holds_it():
    r = Rules(margin=0.5, min_s=60.0)
    d = decide(r, now=12.0, start_h=9.0, end_h=11.0, estimate_h=2.0, cny_per_h=1.0, budget_cny=10.0,
               spent_cny=2.0, month="2026-12")
    # 2 spent + 3 so far + 2 for another estimate = 7 <= 10
    assert d.action == "extend" and d.end_h == pytest.approx(14.0)
    assert "ran past its estimate; extended to 14.0000 h" in d.reason and "7.00 CNY of 10.00 CNY budget" in d.reason
    assert decide(r, now=12.0, start_h=9.0, end_h=11.0, estimate_h=2.0, cny_per_h=1.0, budget_cny=None,
                  spent_cny=1e9).action == "extend"          # no budget: always
    # 2 + 3 + 2 = 7 > 6.5: stopped, and says why
    d = decide(r, now=12.0, start_h=9.0, end_h=11.0, estimate_h=2.0, cny_per_h=1.0, budget_cny=6.5, spent_cny=2.0,
               month="2026-12")
    assert d.action == "stop" and d.reason.startswith("stopped: over budget") and "7.00 CNY > 6.50 CNY" in d.reason
    d = decide(r, now=12.0, start_h=9.0, end_h=11.0, estimate_h=2.0, cny_per_h=1.0, budget_cny=None, spent_cny=0.0,
               quota_ok=False)
    assert d.action == "stop" and d.reason.startswith("stopped: over quota")


def test_past_its_estimate_a_run_over_budget_is_stopped_without_waiting_for_its_margin():
    # the attack: 8 GPUs at ~80 CNY/h declared for 0.36 s; 1 CNY is spent after 45 s, inside the 60 s margin
    r = Rules(margin=0.5, min_s=60.0)
    run = dict(start_h=0.0, end_h=0.36 * S, estimate_h=0.36 * S, cny_per_h=80.0, budget_cny=1.0, spent_cny=0.0)
    assert decide(r, now=44 * S, **run).action == "run"
    d = decide(r, now=46 * S, **run)
    assert d.action == "stop" and "over budget" in d.reason


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def serve(db_url, tmp_path):
    made = []

    def make(**rules) -> svc.Service:
        app = build(svc.NETWORK, db_url, policy="fifo", tick_s=0.2, heartbeat_timeout_s=3.0,
                    checkpoint_store=tmp_path / "store", **rules)
        server = ThreadServer(app)
        s = svc.Service(server.__enter__(), app, db_url)
        made.append((server, s))
        return s
    yield make
    for server, s in made:
        svc.stop_all(s.agents)
        server.__exit__(None, None, None)


def _spent_before(service: svc.Service, tenant: str, cny: float) -> None:
    """A ledger row of `cny` this month for `tenant` (what it spent before this test's job)."""
    month = datetime.now(UTC).strftime("%Y-%m")
    with service.sessions.begin() as s:
        from suanli.service.models import Job
        t = s.scalar(select(Tenant).where(Tenant.name == tenant))
        j = Job(tenant_id=t.id, name="earlier", command="true", spec={"origin": "beijing", "work_h": 0.1}, gpus=1,
                state="SUCCEEDED", reason="", submit_h=0.0, remaining_work=0.0, hosted=[], fence=1)
        s.add(j)
        s.flush()
        s.add(Usage(job_id=j.id, tenant_id=t.id, fence=1, site="east-1", gpu_type="h100", gpus=1, start_h=0.0,
                    end_h=0.0, month=month, gpu_seconds=0.0, energy_kwh=0.0, grid_kwh=0.0, renewable_kwh=0.0,
                    carbon_kg=0.0, gpu_cny=cny, energy_cny=0.0, transfer_cny=0.0, total_cny=cny))


def test_an_under_declared_run_is_stopped_at_its_budget_and_its_agent_kills_it(serve, tmp_path):
    service = serve()                      # the defaults: --overrun-margin 0.5, at least 60 s
    tok = service.tenant("acme", budget=1.0)
    _spent_before(service, "acme", 0.8)    # 0.2 CNY left: ~6 s of 4 H100s (120 CNY/h and energy)
    service.start_agent("east-1", tmp_path / "east")
    acme = service.client(tok)
    beat = svc.writable(tmp_path) / "beat"
    r = acme.post("/v1/jobs", json=job_body(gpus=4, work_h=0.0001, gpu_types=["h100"],
                                            command=f"while true; do date +%s.%N >> {beat}; sleep 0.1; done"))
    assert r.status_code == 201, r.text              # 4 x 30 CNY/h x 0.0001 h / speed 2: admitted
    job_id = r.json()["id"]
    wait_for(lambda: acme.get(f"/v1/jobs/{job_id}").json()["state"] == "RUNNING", 60)
    t0 = time.monotonic()
    job = wait_for(lambda: (j := acme.get(f"/v1/jobs/{job_id}").json())["state"] == "FAILED" and j, 60)
    took = time.monotonic() - t0
    print(f"stopped {took:.1f} s after it started")
    assert took < 30, took                                       # long before its 60 s margin ran out
    assert job["reason"].startswith("stopped: over budget"), job["reason"]
    assert [t["to_state"] for t in job["transitions"]][-2:] == ["RUNNING", "FAILED"]
    # its agent kills it at its next heartbeat: the beat stops
    wait_for(lambda: beat.exists() and time.time() - beat.stat().st_mtime > 1.5, 20)
    n = len(beat.read_text().splitlines())
    time.sleep(1.0)
    assert len(beat.read_text().splitlines()) == n
    # billed up to the stop: no more than the budget and a bounded overshoot (a tick and a bit, at the run's rate)
    month = datetime.now(UTC).strftime("%Y-%m")
    inv = acme.get("/v1/invoices", params={"month": month}).json()[0]
    print(f"billed {inv['total_cny']:.4f} CNY of a 1 CNY budget")
    assert 0.99 < inv["total_cny"] <= 1.0 + 0.1, inv["total_cny"]        # 0.1 CNY: ~3 s of its 4 H100s
    assert job["usage"]["total_cny"] == pytest.approx(inv["total_cny"] - 0.8)


def test_an_overrunning_run_within_budget_is_extended_and_finishes(serve, tmp_path):
    service = serve(overrun_margin=0.5, overrun_min_s=1.0)
    acme = service.client(service.tenant("acme", budget=100.0))
    service.start_agent("east-1", tmp_path / "east")
    r = acme.post("/v1/jobs", json=job_body(gpus=1, work_h=0.0001, gpu_types=["h100"], command="sleep 4"))
    job_id = r.json()["id"]
    job = wait_for(lambda: (j := acme.get(f"/v1/jobs/{job_id}").json())["state"] == "SUCCEEDED" and j, 60)
    extended = [t for t in job["transitions"] if t["from_state"] == t["to_state"] == "RUNNING"]
    assert extended and all("ran past its estimate; extended to" in t["reason"] and "re-priced" in t["reason"]
                            and "of 100.00 CNY budget" in t["reason"] for t in extended), job["transitions"]
