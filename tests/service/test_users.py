"""For the people who use it: a job starts as soon as it can unless its owner said it may wait
(`max_wait_h`, default 0 or the tenant's), and a quote says beforehand what a job would cost and
when it would start, now and if it may wait (POST /v1/quotes), from the policy the controller
runs, booking nothing. A real server with the `suanli` policy on the shared small network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import svc
from svc import NETWORK, Service, job_body, wait_for

from suanli.service import auth
from suanli.service.server import ThreadServer, build

db_url = svc.db_url            # the fixture, used in this module

SECONDS_4 = 4 / 3600          # a 4-second job


@pytest.fixture
def suanli_service(db_url, tmp_path) -> Iterator[Service]:
    app = build(NETWORK, db_url, policy="suanli", tick_s=0.2, checkpoint_store=tmp_path / "checkpoint-store")
    with ThreadServer(app) as url:
        s = Service(url, app, db_url)
        for site in ("east-1", "west-1"):       # both sites up (registered; no agent claims: jobs stay PLACED)
            beat = {"executor": "local", "pools": [], "running": []}
            assert s.client(s.site_token(site)).post(f"/v1/agent/{site}/heartbeat", json=beat).status_code == 200
        wait_for(lambda: all(x["up"] for x in s.client(s.tenant("watcher")).get("/v1/sites").json()), 30)
        yield s


def _placed(c, jid: int) -> dict:
    return wait_for(lambda: (lambda j: j if j["state"] != "PENDING" else None)(c.get(f"/v1/jobs/{jid}").json()),
                    timeout=60)


def test_a_job_that_may_not_wait_starts_at_once(suanli_service):
    c = suanli_service.client(suanli_service.tenant("acme"))
    r = c.post("/v1/jobs", json=job_body(work_h=SECONDS_4))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["max_wait_h"] == 0.0          # none asked, none by the tenant: 0
    j = _placed(c, r.json()["id"])
    assert j["state"] == "PLACED", j
    # placed within a tick or so of its submission, not hours later for a few fen of electricity
    assert j["start_h"] - j["submit_h"] < 0.01, j


def test_a_job_that_may_wait_is_placed_within_its_window(suanli_service):
    c = suanli_service.client(suanli_service.tenant("acme"))
    r = c.post("/v1/jobs", json=job_body(work_h=SECONDS_4, max_wait_h=6))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["max_wait_h"] == 6
    j = _placed(c, r.json()["id"])
    assert j["state"] == "PLACED", j
    assert j["submit_h"] <= j["start_h"] <= j["submit_h"] + 6 + 0.01, j


def test_the_tenant_s_default_window(suanli_service):
    with suanli_service.sessions.begin() as s:
        token = auth.create_tenant(s, "patient", {}, None, max_wait_h=6)
    c = suanli_service.client(token)
    r = c.post("/v1/jobs", json=job_body(work_h=SECONDS_4))
    assert r.status_code == 201 and r.json()["spec"]["max_wait_h"] == 6.0
    r = c.post("/v1/jobs", json=job_body(work_h=SECONDS_4, max_wait_h=0))      # the job's own wins
    assert r.status_code == 201 and r.json()["spec"]["max_wait_h"] == 0


@pytest.mark.parametrize("bad", [-1, 1e6, True, "soon"])
def test_max_wait_h_is_checked(suanli_service, bad):
    c = suanli_service.client(suanli_service.tenant("acme"))
    r = c.post("/v1/jobs", json=job_body(max_wait_h=bad))
    assert r.status_code == 422, r.text
    assert "max_wait_h" in r.text


def test_a_quote_is_where_a_submit_goes_and_waiting_is_never_dearer(suanli_service):
    c = suanli_service.client(suanli_service.tenant("acme"))
    job = {"gpus": 1, "work_h": 0.5, "origin": "beijing"}          # no name, no command: a quote
    r = c.post("/v1/quotes", json=job)
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["policy"] == "suanli" and q["refused"] is None
    assert [o["max_wait_h"] for o in q["options"]] == [0, 6, 24]
    now, *later = q["options"]
    assert all(o["placed"] for o in q["options"]), q
    assert now["start_h"] - q["now_h"] < 0.01                        # now: at once
    assert now["cost_cny"] > 0 and now["carbon_kg"] >= 0 and now["parts"]["rental"] > 0
    assert now["start"].endswith(("+00:00", "Z"))
    for o in later:
        assert o["cost_cny"] <= now["cost_cny"] + 1e-9, q
        assert o["start_h"] <= q["now_h"] + o["max_wait_h"] + 1e-6
    assert c.get("/v1/jobs").json()["jobs"] == []                    # nothing booked, nothing made
    # the same job submitted: placed where the quote's "now" said
    r = c.post("/v1/jobs", json={**job, "name": "same", "command": "true"})
    assert r.status_code == 201, r.text
    j = _placed(c, r.json()["id"])
    assert (j["site"], j["gpu_type"]) == (now["site"], now["gpu_type"]), (j, q)
    assert abs(j["start_h"] - now["start_h"]) < 0.02


def test_quote_windows_are_bounded_and_the_job_s_own_is_one(suanli_service):
    c = suanli_service.client(suanli_service.tenant("acme"))
    r = c.post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "hami", "windows": [12, 0]})
    assert r.status_code == 200 and [o["max_wait_h"] for o in r.json()["options"]] == [0, 12]
    r = c.post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "hami", "max_wait_h": 3})
    assert [o["max_wait_h"] for o in r.json()["options"]] == [0, 3, 6, 24]
    r = c.post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "hami", "windows": [0, 1, 2, 3, 4]})
    assert r.status_code == 422
    r = c.post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "mars"})
    assert r.status_code == 422 and "origin" in r.text
    r = c.post("/v1/quotes", json={"gpus": 100, "work_h": 0.1, "origin": "hami"})      # no pool is that large
    assert r.status_code == 200 and not any(o["placed"] for o in r.json()["options"])
    assert all(o["reason"] for o in r.json()["options"])


def test_quotes_are_for_tenants_and_their_own_limits(suanli_service):
    svc_ = suanli_service
    for token in (svc_.site_token("east-1"), svc_.admin_token()):
        r = svc_.client(token).post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "hami"})
        assert r.status_code == 403, r.text
    assert svc_.client(None).post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "hami"}).status_code == 401
    # another tenant's jobs, quota and budget are not this tenant's
    other = svc_.client(svc_.tenant("other", quota={"h100": 1, "a800": 1}, budget=0.0))
    assert other.post("/v1/jobs", json=job_body(name="others-secret-job", work_h=SECONDS_4)).status_code in (201, 403)
    acme = svc_.client(svc_.tenant("acme"))
    r = acme.post("/v1/quotes", json={"gpus": 2, "work_h": 0.1, "origin": "hami"})
    assert r.status_code == 200 and r.json()["refused"] is None
    assert "others-secret-job" not in r.text
    # this tenant's own limits: a submit would be refused, and the quote says why
    r = other.post("/v1/quotes", json={"gpus": 2, "work_h": 0.1, "origin": "hami"})
    assert r.status_code == 200 and r.json()["refused"].startswith("quota:"), r.text
    r = other.post("/v1/quotes", json={"gpus": 1, "work_h": 0.1, "origin": "hami"})
    assert r.status_code == 200 and r.json()["refused"].startswith("budget:"), r.text
