"""The REST API against a real server and database (SQLite; PostgreSQL when configured):
authentication, tenant isolation, token scoping, idempotency, validation, quotas and budgets,
pagination, the schema's migrations."""

from __future__ import annotations

import svc
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from svc import job_body

from suanli.service.models import Base

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module


def test_migrations_build_exactly_the_models_tables(service):
    engine = service.sessions.kw["bind"]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        if engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0009"


def test_every_call_needs_a_known_bearer_token(service):
    for token in (None, "sl_not-a-token"):
        with service.client(token) as c:
            for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/sites"),
                                 ("GET", "/v1/jobs/1"), ("DELETE", "/v1/jobs/1"), ("GET", "/v1/invoices?month=2026-01"),
                                 ("POST", "/v1/agent/east-1/heartbeat")):
                r = c.request(method, path, json={} if method == "POST" else None)
                assert r.status_code == 401, (method, path, r.text)


def test_another_tenants_job_answers_404_as_if_it_did_not_exist(service):
    a, b = service.client(service.tenant("acme")), service.client(service.tenant("bolt"))
    jid = a.post("/v1/jobs", json=job_body(name="secret")).json()["id"]
    missing = jid + 1000
    for c, want in ((a, 200), (b, 404)):
        assert c.get(f"/v1/jobs/{jid}").status_code == want
    assert b.get(f"/v1/jobs/{jid}").json() == {"detail": f"no job {jid}"}
    assert b.get(f"/v1/jobs/{missing}").json() == {"detail": f"no job {missing}"}   # same answer: ids do not leak
    assert b.delete(f"/v1/jobs/{jid}").status_code == 404
    assert a.get(f"/v1/jobs/{jid}").json()["state"] != "CANCELLED"
    assert [j["id"] for j in b.get("/v1/jobs").json()["jobs"]] == []
    assert [j["id"] for j in a.get("/v1/jobs").json()["jobs"]] == [jid]
    assert b.get("/v1/jobs", params={"tenant": "acme"}).status_code == 403
    admin = service.client(service.admin_token())
    assert admin.get(f"/v1/jobs/{jid}").status_code == 200
    assert [j["tenant"] for j in admin.get("/v1/jobs", params={"tenant": "acme"}).json()["jobs"]] == ["acme"]


def test_a_site_token_acts_for_its_own_site_only(service):
    east = service.client(service.site_token("east-1"))
    tenant = service.client(service.tenant("acme"))
    beat = {"executor": "local", "pools": [], "running": []}
    assert east.post("/v1/agent/east-1/heartbeat", json=beat).status_code == 200
    r = east.post("/v1/agent/west-1/heartbeat", json=beat)
    assert r.status_code == 403 and r.json()["detail"] == "this token is for site 'east-1', not 'west-1'"
    assert east.post("/v1/agent/west-1/assignments").status_code == 403
    assert east.post("/v1/agent/west-1/jobs/1/report", json={"fence": 1, "state": "RUNNING"}).status_code == 403
    assert tenant.post("/v1/agent/east-1/heartbeat", json=beat).status_code == 403
    assert tenant.post("/v1/agent/east-1/assignments").status_code == 403
    assert east.post("/v1/jobs", json=job_body()).status_code == 403          # agents do not submit
    jid = tenant.post("/v1/jobs", json=job_body()).json()["id"]
    assert east.get(f"/v1/jobs/{jid}").status_code == 404                   # nor read tenants' jobs
    assert east.get("/v1/jobs").status_code == 403
    assert east.get("/v1/invoices", params={"month": "2026-01"}).status_code == 403


def test_a_report_under_an_old_fence_is_refused(service):
    tenant = service.client(service.tenant("acme"))
    east = service.client(service.site_token("east-1"))
    west = service.client(service.site_token("west-1"))
    beat = {"executor": "local", "pools": [], "running": []}
    east.post("/v1/agent/east-1/heartbeat", json=beat)
    jid = tenant.post("/v1/jobs", json=job_body(gpu_types=["h100"])).json()["id"]
    import time
    deadline = time.monotonic() + 20
    got = []
    while not got and time.monotonic() < deadline:
        east.post("/v1/agent/east-1/heartbeat", json=beat)
        got = east.post("/v1/agent/east-1/assignments").json()
        time.sleep(0.1)
    assert [a["job_id"] for a in got] == [jid]
    fence = got[0]["fence"]
    r = east.post(f"/v1/agent/east-1/jobs/{jid}/report", json={"fence": fence - 1, "state": "RUNNING"})
    assert r.status_code == 409 and "stale" in r.json()["detail"]
    running = {"fence": fence, "state": "RUNNING"}
    assert west.post(f"/v1/agent/west-1/jobs/{jid}/report", json=running).status_code == 404
    assert east.post(f"/v1/agent/east-1/jobs/{jid}/report", json=running).status_code == 200
    # a heartbeat naming a run under another fence is told to stop it
    beat["running"] = [{"job_id": jid, "fence": fence + 1}]
    assert east.post("/v1/agent/east-1/heartbeat", json=beat).json()["cancel"] == [{"job_id": jid, "fence": fence + 1}]


def test_an_idempotency_key_never_creates_a_second_job(service):
    a, b = service.client(service.tenant("acme")), service.client(service.tenant("bolt"))
    first = a.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k-1"})
    again = a.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = b.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k-1"})     # keys are per tenant
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    fresh = a.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k-2"})
    plain = [a.post("/v1/jobs", json=job_body()).json()["id"] for _ in range(2)]       # no key: two jobs
    assert len({first.json()["id"], fresh.json()["id"], *plain}) == 4
    assert len(a.get("/v1/jobs").json()["jobs"]) == 4


def test_bad_input_answers_one_line_naming_the_field_and_value(service):
    c = service.client(service.tenant("acme"))
    cases = [
        (job_body(gpus=0), 422, "gpus: Input should be greater than or equal to 1 (got 0)"),
        (job_body(work_h="lots"), 422, "work_h: Input should be a valid number, unable to parse string as a number "
                                       "(got 'lots')"),
        (job_body(colour="red"), 422, "colour: unknown field (got 'red')"),
        ({"name": "x", "command": "true", "gpus": 1, "work_h": 1}, 422, "origin: required field is missing"),
        (job_body(origin="atlantis"), 422, "origin: unknown city 'atlantis' (cities: beijing, hami)"),
        (job_body(gpu_types=["v100"]), 422, "gpu_types: unknown GPU type 'v100' (types: h100, a800)"),
    ]
    for body, status, detail in cases:
        r = c.post("/v1/jobs", json=body)
        assert (r.status_code, r.json()) == (status, {"detail": detail})
    r = c.get("/v1/jobs", params={"state": "DONE"})
    assert r.status_code == 422 and r.json()["detail"].startswith("state: unknown state 'DONE'")
    r = c.get("/v1/invoices", params={"month": "2026-13"})
    assert r.status_code == 400 and r.json()["detail"] == "month: expected YYYY-MM, got '2026-13'"
    assert c.get("/v1/jobs/abc").json()["detail"].startswith("job_id: Input should be a valid integer")


def test_quota_and_budget_are_enforced_at_submit(service):
    q = service.client(service.tenant("small", quota={"h100": 2}))
    assert q.post("/v1/jobs", json=job_body(gpus=2)).json()["spec"]["gpu_types"] == ["h100"]  # a800: no quota
    r = q.post("/v1/jobs", json=job_body(gpus=1))
    assert r.status_code == 403
    assert r.json()["detail"] == "quota: 1 GPUs do not fit the tenant's quota (GPUs left: h100 0, a800 0)"
    poor = service.client(service.tenant("poor", budget=1.0))
    # cheapest rental: a800 at 10 CNY/GPU-h, speed 1: 4 GPUs x 1 h = 40 CNY > 1 CNY
    r = poor.post("/v1/jobs", json=job_body(gpus=4, work_h=1.0))
    assert r.status_code == 403 and r.json()["detail"].startswith("budget: 0.00 CNY spent in ")
    assert "+ this job's rental of at least 40.00 CNY > budget 1.00 CNY" in r.json()["detail"]
    assert poor.post("/v1/jobs", json=job_body(gpus=1, work_h=0.05)).status_code == 201


def test_list_filters_and_pages(service):
    c = service.client(service.tenant("acme"))
    ids = [c.post("/v1/jobs", json=job_body(name=f"j{k}", gpu_types=["h100"], gpus=8)).json()["id"]
           for k in range(5)]         # 8 > the only h100 pool's 4: rejected by the policy -> FAILED
    seen, cursor = [], None
    while True:
        page = c.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert [j["name"] for j in c.get("/v1/jobs", params={"name": "j3"}).json()["jobs"]] == ["j3"]
    import time
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(c.get("/v1/jobs", params={"state": "FAILED"}).json()["jobs"]) < 5:
        time.sleep(0.1)
    failed = c.get(f"/v1/jobs/{ids[0]}").json()
    assert failed["state"] == "FAILED" and failed["reason"].startswith("rejected:")
    assert failed["explanation"]["decision"] == "reject"
    assert [t["to_state"] for t in failed["transitions"]] == ["PENDING", "FAILED"]


def test_cancel_a_pending_job_records_the_transition(service):
    c = service.client(service.tenant("acme"))
    jid = c.post("/v1/jobs", json=job_body()).json()["id"]      # no agent: no site is up, it waits
    r = c.delete(f"/v1/jobs/{jid}")
    assert r.status_code == 200 and r.json()["state"] == "CANCELLED"
    assert [(t["from_state"], t["to_state"]) for t in r.json()["transitions"]] == [
        (None, "PENDING"), ("PENDING", "CANCELLED")]
    assert r.json()["transitions"][-1]["reason"] == "cancelled by tenant acme"
    again = c.delete(f"/v1/jobs/{jid}")
    assert again.status_code == 409 and again.json()["detail"] == f"job {jid} is already CANCELLED"


def test_openapi_describes_the_v1_api(service):
    doc = service.client(None).get("/openapi.json").json()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/sites", "/v1/invoices"):
        assert path in doc["paths"]
    assert set(doc["paths"]["/v1/jobs/{job_id}"]) == {"get", "delete"}
    props = doc["components"]["schemas"]["JobIn"]["properties"]
    assert {"name", "command", "gpus", "work_h", "origin", "deadline_h"} <= set(props)
    assert "submit_h" not in props and "tenant" not in props


def test_sites_show_pools_and_which_agents_are_up(service):
    east = service.client(service.site_token("east-1"))
    east.post("/v1/agent/east-1/heartbeat", json={"executor": "local", "pools": [], "running": []})
    sites = {s["id"]: s for s in service.client(service.tenant("acme")).get("/v1/sites").json()}
    assert sites["east-1"]["up"] and not sites["west-1"]["up"]
    assert sites["west-1"]["pools"] == [{"gpu_type": "a800", "count": 8, "free": 8, "cny_per_gpu_h": 10.0}]
    assert sites["west-1"]["renewables_kw_now"] == 2.0 and sites["east-1"]["carbon_kg_per_kwh_now"] == 0.6
