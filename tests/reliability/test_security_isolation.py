"""Tenants and sites are isolated through every endpoint (reliability issue #9, part 4).

One world per database engine: tenant `acme` has a finished, metered job (billed), a running
job on `east-1` (with a dispatch fence) and a pending one; tenant `rival` and the agent of
`west-1` then try every endpoint, with every query parameter that names a tenant, a job or a
site, to read, cancel, report on, be billed for or act for what is not theirs. The markers in
acme's job names and commands must never appear in what they get back.

`ISOLATION` maps each route of the app to its check; `test_every_route_has_an_isolation_check`
enumerates `app.routes`, so a new endpoint without a check here fails the suite.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402  (tests/service's fixtures module: real server over a real database)

from suanli.service import auth  # noqa: E402
from suanli.service.server import ThreadServer, build  # noqa: E402

SECRET = "acme-secret-" + uuid.uuid4().hex[:8]     # in acme's job names and commands
# the framework's own pages: no data behind them
FRAMEWORK = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}


@dataclass
class World:
    url: str
    app: object
    tok: dict[str, str] = field(default_factory=dict)
    done: int = 0              # acme's finished, metered job
    running: int = 0           # acme's job running on east-1
    fence: int = 0             # its dispatch
    pending: int = 0           # acme's job that is not placed (no agent for its GPU type)
    month: str = ""

    def c(self, who: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tok[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def job(self, job_id: int) -> dict:
        with self.c("admin") as c:
            r = c.get(f"/v1/jobs/{job_id}")
            assert r.status_code == 200, r.text
            return r.json()


def _wait(fn: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('iso') / 'suanli.db'}"
    elif not svc.PG_URL:
        pytest.skip(svc.PG_SKIP)
    else:
        import psycopg
        schema = "t_" + uuid.uuid4().hex[:12]
        plain = svc.PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        request.addfinalizer(lambda: psycopg.connect(plain, autocommit=True).execute(f"DROP SCHEMA {schema} CASCADE"))
        url = f"{svc.PG_URL}{'&' if '?' in svc.PG_URL else '?'}options=-csearch_path%3D{schema}"
    # the agents here are this test's own HTTP calls, slower than a real agent's beat: a long timeout
    app = build(svc.NETWORK, url, policy="fifo", tick_s=0.1, heartbeat_timeout_s=3600.0)
    with ThreadServer(app) as base:
        w = World(base, app, month=datetime.now(UTC).strftime("%Y-%m"))
        sessions = app.state.controller.sessions
        with sessions.begin() as s:
            w.tok["acme"] = auth.create_tenant(s, "acme", {}, None)
            w.tok["rival"] = auth.create_tenant(s, "rival", {}, None)
            w.tok["admin"] = auth.create_admin_token(s)
            w.tok["east"] = auth.create_site_token(s, "east-1")
            w.tok["west"] = auth.create_site_token(s, "west-1")
        with w.c("acme") as a, w.c("east") as e:
            def submit(name: str, **over) -> int:
                r = a.post("/v1/jobs", json=svc.job_body(name=f"{SECRET}-{name}", command=f"echo {SECRET}",
                                                         **over), headers={"Idempotency-Key": f"{SECRET}-{name}"})
                assert r.status_code == 201, r.text
                return r.json()["id"]

            # west-1 (the only a800 pool) is down for now, so an a800 job stays PENDING
            w.pending = submit("pending", gpu_types=["a800"])
            assert e.post("/v1/agent/east-1/heartbeat", json={}).status_code == 200
            fences: dict[str, int] = {}
            for name in ("done", "running"):
                job_id = submit(name, gpu_types=["h100"])
                _wait(lambda j=job_id: w.job(j)["state"] == "PLACED")
                claimed = _wait(lambda: e.post("/v1/agent/east-1/assignments").json())
                (fence,) = [x["fence"] for x in claimed if x["job_id"] == job_id]
                r = e.post(f"/v1/agent/east-1/jobs/{job_id}/report", json={"fence": fence, "state": "RUNNING"})
                assert r.status_code == 200, r.text
                setattr(w, name, job_id)
                fences[name] = fence
            w.fence = fences["running"]
            time.sleep(0.05)          # some run time to meter
            r = e.post(f"/v1/agent/east-1/jobs/{w.done}/report",
                       json={"fence": fences["done"], "state": "SUCCEEDED", "exit_code": 0, "gpu_seconds": 1.0})
            assert r.status_code == 200, r.text
        acme_inv = w.c("acme").get("/v1/invoices", params={"month": w.month}).json()
        assert acme_inv[0]["lines"] and acme_inv[0]["total_cny"] > 0      # acme was billed: the test can bite
        yield w


# ----------------------------------------------------------------------------- the checks, one per route
def _clean(r: httpx.Response) -> None:
    """Nothing of acme's jobs in a response to someone else."""
    assert SECRET not in r.text, f"{r.request.method} {r.request.url} leaked acme's job: {r.text[:300]}"


def _refused(r: httpx.Response, *codes: int) -> None:
    assert r.status_code in codes, (r.request.method, str(r.request.url), r.status_code, r.text)
    _clean(r)


def submit_job(w: World) -> None:
    with w.c("rival") as b:
        # the idempotency key of acme's job: rival gets a job of its own, never acme's
        r = b.post("/v1/jobs", json=svc.job_body(name="mine"), headers={"Idempotency-Key": f"{SECRET}-done"})
        assert r.status_code == 201 and r.json()["tenant"] == "rival" and r.json()["id"] != w.done, r.text
        _clean(r)
        _refused(b.post("/v1/jobs", json=svc.job_body(tenant="acme")), 422)     # no field names a tenant
    with w.c("west") as s:
        _refused(s.post("/v1/jobs", json=svc.job_body()), 403)


def quote(w: World) -> None:
    with w.c("rival") as b:
        # a quote prices the body it is given on the shared ledger: nothing of acme's jobs in it
        r = b.post("/v1/quotes", json=svc.job_body(name="mine"))
        assert r.status_code == 200 and r.json()["options"], r.text
        _clean(r)
        _refused(b.post("/v1/quotes", json=svc.job_body(tenant="acme")), 422)     # no field names a tenant
    with w.c("west") as s:
        _refused(s.post("/v1/quotes", json=svc.job_body()), 403)


def submit_batch(w: World) -> None:
    with w.c("rival") as b:
        # acme's key in a batch: rival gets a job of its own, never acme's
        r = b.post("/v1/jobs/batch", json={"jobs": [dict(svc.job_body(name="mine"), key=f"{SECRET}-done")]})
        assert r.status_code in (200, 201) and r.json()["jobs"][0]["tenant"] == "rival", r.text
        assert r.json()["jobs"][0]["id"] != w.done
        _clean(r)
        _refused(b.post("/v1/jobs/batch", json={"jobs": [svc.job_body(tenant="acme")]}), 422)
    with w.c("west") as s:
        _refused(s.post("/v1/jobs/batch", json={"jobs": [svc.job_body()]}), 403)


def list_jobs(w: World) -> None:
    with w.c("rival") as b:
        for params in ({}, {"name": f"{SECRET}-done"}, {"site": "east-1"}, {"state": "RUNNING"},
                       {"state": "SUCCEEDED"}, {"cursor": 0}, {"limit": 500}, {"tenant": "rival"}):
            r = b.get("/v1/jobs", params=params)
            assert r.status_code == 200, r.text
            assert {j["tenant"] for j in r.json()["jobs"]} <= {"rival"}
            _clean(r)
        _refused(b.get("/v1/jobs", params={"tenant": "acme"}), 403)
    with w.c("west") as s:
        _refused(s.get("/v1/jobs"), 403)


def _missing_job_like(r: httpx.Response, job_id: int) -> None:
    """Another's job answers exactly as a job that does not exist (no oracle of ids)."""
    assert r.status_code == 404 and r.json() == {"detail": f"no job {job_id}"}, r.text


def get_job(w: World) -> None:
    for who in ("rival", "west", "east"):
        with w.c(who) as c:
            for job_id in (w.done, w.running, w.pending):
                _missing_job_like(c.get(f"/v1/jobs/{job_id}"), job_id)


def cancel_job(w: World) -> None:
    before = {j: w.job(j)["state"] for j in (w.running, w.pending)}
    for who in ("rival", "west", "east"):
        with w.c(who) as c:
            for job_id in (w.running, w.pending):
                _missing_job_like(c.delete(f"/v1/jobs/{job_id}"), job_id)
    after = {j: w.job(j)["state"] for j in (w.running, w.pending)}
    assert "CANCELLED" not in after.values() and after[w.running] == before[w.running] == "RUNNING"


def list_sites(w: World) -> None:
    for who in ("rival", "west"):
        with w.c(who) as c:
            r = c.get("/v1/sites")
            assert r.status_code == 200
            _clean(r)
            assert "acme" not in r.text


def invoices(w: World) -> None:
    with w.c("rival") as b:
        for params in ({"month": w.month}, {"month": w.month, "tenant": "rival"},
                       {"month": w.month, "format": "csv"}):
            r = b.get("/v1/invoices", params=params)
            assert r.status_code == 200, r.text
            _clean(r)
            assert "acme" not in r.text
        inv = b.get("/v1/invoices", params={"month": w.month}).json()
        assert [i["tenant"] for i in inv] == ["rival"] and inv[0]["lines"] == [] and inv[0]["total_cny"] == 0
        _refused(b.get("/v1/invoices", params={"month": w.month, "tenant": "acme"}), 403)
    with w.c("west") as s:
        _refused(s.get("/v1/invoices", params={"month": w.month}), 403)


def heartbeat(w: World) -> None:
    with w.c("rival") as b:
        _refused(b.post("/v1/agent/east-1/heartbeat", json={}), 403)
    with w.c("west") as s:
        _refused(s.post("/v1/agent/east-1/heartbeat", json={}), 403)         # another site's
        # west-1 claims acme's run on east-1, with its fence and a checkpoint: told to stop it, nothing changes
        before = w.job(w.running)
        r = s.post("/v1/agent/west-1/heartbeat", json={"running": [
            {"job_id": w.running, "fence": w.fence, "checkpoint_at": datetime.now(UTC).isoformat(),
             "checkpoint_bytes": 123}]})
        assert r.status_code == 200 and r.json()["cancel"] == [{"job_id": w.running, "fence": w.fence}], r.text
        _clean(r)
        after = w.job(w.running)
        assert (after["state"], after["checkpoint_h"], after["checkpoint_bytes"]) == \
            (before["state"], before["checkpoint_h"], before["checkpoint_bytes"])


def assignments(w: World) -> None:
    with w.c("rival") as b:
        _refused(b.post("/v1/agent/east-1/assignments"), 403)
    with w.c("west") as s:
        _refused(s.post("/v1/agent/east-1/assignments"), 403)
        r = s.post("/v1/agent/west-1/assignments")       # only what the controller placed on west-1
        assert r.status_code == 200 and all(w.job(a["job_id"])["site"] == "west-1" for a in r.json()), r.text
        assert w.running not in [a["job_id"] for a in r.json()]


def report(w: World) -> None:
    body = {"fence": w.fence, "state": "SUCCEEDED", "exit_code": 0, "gpu_seconds": 1e6}
    with w.c("rival") as b:
        _refused(b.post(f"/v1/agent/east-1/jobs/{w.running}/report", json=body), 403)
    with w.c("west") as s:
        _refused(s.post(f"/v1/agent/east-1/jobs/{w.running}/report", json=body), 403)
        _refused(s.post(f"/v1/agent/west-1/jobs/{w.running}/report", json=body), 404)
    assert w.job(w.running)["state"] == "RUNNING"


def run_energy(w: World) -> None:
    """Only the run's own site may give a stopped run's GPU energy (which weights its bill)."""
    body = {"fence": w.fence, "gpu_kw": 0.0}
    with w.c("rival") as b:
        _refused(b.post(f"/v1/agent/east-1/jobs/{w.done}/energy", json=body), 403)
    with w.c("west") as s:
        _refused(s.post(f"/v1/agent/east-1/jobs/{w.done}/energy", json=body), 403)
        _refused(s.post(f"/v1/agent/west-1/jobs/{w.done}/energy", json=body), 404)


def put_checkpoint(w: World) -> None:
    params = {"fence": w.fence, "at": datetime.now(UTC).isoformat()}
    headers = {"Content-Type": "application/gzip"}
    with w.c("rival") as b:
        _refused(b.put(f"/v1/agent/east-1/jobs/{w.running}/checkpoint", params=params, content=b"x",
                       headers=headers), 403)
    with w.c("west") as s:
        _refused(s.put(f"/v1/agent/east-1/jobs/{w.running}/checkpoint", params=params, content=b"x",
                       headers=headers), 403)
        _refused(s.put(f"/v1/agent/west-1/jobs/{w.running}/checkpoint", params=params, content=b"x",
                       headers=headers), 404)
    assert w.job(w.running)["checkpoint_bytes"] != 1


def get_checkpoint(w: World) -> None:
    with w.c("rival") as b:
        _refused(b.get(f"/v1/agent/east-1/jobs/{w.running}/checkpoint", params={"fence": w.fence}), 403)
    with w.c("west") as s:
        _refused(s.get(f"/v1/agent/east-1/jobs/{w.running}/checkpoint", params={"fence": w.fence}), 403)
        _refused(s.get(f"/v1/agent/west-1/jobs/{w.running}/checkpoint", params={"fence": w.fence}), 404)


def get_logs(w: World) -> None:
    """A job's output: another tenant and the sites' agents get the 404 of a job that does not exist."""
    for who in ("rival", "west", "east"):
        with w.c(who) as c:
            for job_id in (w.done, w.running, w.pending):
                _missing_job_like(c.get(f"/v1/jobs/{job_id}/logs"), job_id)


def put_output(w: World) -> None:
    """A run's output is written by its own site's agent only: a tenant 403 (at the door), another
    site's token 403 on this site's route and 404 on its own; nothing of theirs is stored."""
    params = {"fence": w.fence, "size": 5, "path": "/planted"}
    headers = {"Content-Type": "application/octet-stream"}
    with w.c("rival") as b:
        _refused(b.put(f"/v1/agent/east-1/jobs/{w.running}/output", params=params, content=b"owned",
                       headers=headers), 403)
    with w.c("acme") as a:
        _refused(a.put(f"/v1/agent/east-1/jobs/{w.running}/output", params=params, content=b"owned",
                       headers=headers), 403)
    with w.c("west") as s:
        _refused(s.put(f"/v1/agent/east-1/jobs/{w.running}/output", params=params, content=b"owned",
                       headers=headers), 403)
        _refused(s.put(f"/v1/agent/west-1/jobs/{w.running}/output", params=params, content=b"owned",
                       headers=headers), 404)
    with w.c("acme") as a:
        assert "owned" not in a.get(f"/v1/jobs/{w.running}/logs").text
    assert all(o["path"] != "/planted" for o in w.job(w.running)["outputs"])


def health(w: World) -> None:
    with w.c(None) as c:
        r = c.get("/v1/health")
        assert r.status_code == 200
        _clean(r)
        assert "acme" not in r.text


def grid_caps(w: World) -> None:
    for who in ("rival", "west"):
        with w.c(who) as c:
            r = c.get("/v1/grid-caps")
            assert r.status_code in (200, 403), r.text
            _clean(r)
            assert "acme" not in r.text


def announce_grid_cap(w: World) -> None:
    """A tenant or a site agent cannot curb a site for everyone (an operator's notice)."""
    body = {"site": "east-1", "end": datetime(2100, 1, 1, tzinfo=UTC).isoformat(), "max_grid_kw": 0}
    for who in ("rival", "acme", "west", "east"):
        with w.c(who) as c:
            _refused(c.post("/v1/admin/grid-caps", json=body), 403)
    with w.c("admin") as a:
        assert all(g["max_grid_kw"] != 0 for g in a.get("/v1/grid-caps").json())        # none was made


def post_meter(w: World) -> None:
    """Only a site's own agent posts its meter readings: a tenant, the operator and another site's
    agent are refused (the door answers before reading the body), and nothing is stored."""
    at = datetime.now(UTC).isoformat()
    body = {"readings": [{"at": at, "it_kw": 1.0, "facility_kw": 1.0, "renewable_kw": 0.0, "grid_kw": 1.0}]}
    for who in ("rival", "acme", "admin", "west"):
        with w.c(who) as c:
            _refused(c.post("/v1/agent/east-1/meter", json=body), 403)
    with w.c("admin") as a:
        rows = a.get("/v1/sites/east-1/energy", params={"from": at, "to": datetime.now(UTC).isoformat()}).json()
        assert all(r["measured"] is None for r in rows)


def site_energy(w: World) -> None:
    """A site's metered energy is the operator's: a tenant and a site agent are refused."""
    now = datetime.now(UTC)
    params = {"from": now.replace(minute=0, second=0, microsecond=0).isoformat(), "to": now.isoformat()}
    for who in ("rival", "acme", "west", "east"):
        with w.c(who) as c:
            _refused(c.get("/v1/sites/east-1/energy", params=params), 403)
    with w.c("admin") as a:
        assert a.get("/v1/sites/east-1/energy", params=params).status_code == 200


def grid_signal(w: World) -> None:
    """A utility's signal for a site is sent by that site's agent or an operator: a tenant or
    another site's agent cannot curb east-1 for everyone, and nothing is made."""
    body = {"signal_id": "evil-1", "sender": "not the grid", "max_grid_kw": 0,
            "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    for who in ("rival", "acme", "west"):
        with w.c(who) as c:
            _refused(c.post("/v1/sites/east-1/grid-signals", json=body), 403)
    with w.c("admin") as a:
        assert all(g["max_grid_kw"] != 0 for g in a.get("/v1/grid-caps").json())        # none was made


def demand_events(w: World) -> None:
    """A site's demand-response events are the operator's: tenants and site agents are refused."""
    for who in ("rival", "acme", "west", "east"):
        with w.c(who) as c:
            _refused(c.get("/v1/sites/east-1/demand-response"), 403)
    with w.c("admin") as a:
        r = a.get("/v1/sites/east-1/demand-response")
        assert r.status_code == 200 and r.json() == []
        _clean(r)


def dashboard_me(w: World) -> None:
    with w.c("rival") as b:
        r = b.get("/v1/dashboard/me")
        assert r.status_code == 200 and r.json()["tenant"] == "rival"
        _clean(r)
    with w.c("west") as s:
        _refused(s.get("/v1/dashboard/me"), 403)


def _flows(net: dict) -> int:
    return sum(f["jobs"] for f in net["flows"])


def dashboard_network(w: World) -> None:
    """The data flows of active jobs (origin, site, jobs, GB): a tenant sees its own and the network's
    total, never another tenant's (nor on the links or cities); an admin sees all."""
    with w.c("rival") as b:
        r = b.get("/v1/dashboard/network")
        assert r.status_code == 200
        _clean(r)
        assert "acme" not in r.text
        own = [j for j in b.get("/v1/jobs").json()["jobs"] if j["site"] and j["state"] in
               ("PLACED", "TRANSFERRING", "RUNNING")]
        net = r.json()
        assert _flows(net) == len(own), net["flows"]               # acme's running job is not among them
        assert sum(lk["jobs"] for lk in net["links"]) <= sum(len(f["path"]) - 1 for f in net["flows"] if f["path"])
        assert sum(c["active_jobs_from"] for c in net["cities"]) == len(own)
    with w.c("acme") as a:
        net = a.get("/v1/dashboard/network").json()
        assert _flows(net) >= 1 and net["flows_scope"] == "own"
        assert net["flows_total"]["jobs"] >= _flows(net)
    with w.c("admin") as a:
        net = a.get("/v1/dashboard/network").json()
        assert _flows(net) == net["flows_total"]["jobs"] >= 1 and net["flows_scope"] == "all"
    with w.c("west") as s:
        _refused(s.get("/v1/dashboard/network"), 403)


def dashboard_series(w: World) -> None:
    with w.c("rival") as b:
        r = b.get("/v1/dashboard/sites/east-1/series")
        assert r.status_code == 200
        _clean(r)
        assert "acme" not in r.text
    with w.c("west") as s:
        _refused(s.get("/v1/dashboard/sites/west-1/series"), 403)


def dashboard_meters(w: World) -> None:
    """A site's metered energy is the operator's, as GET /v1/sites/{site}/energy: no tenant, no site."""
    for who in ("rival", "acme", "west", "east"):
        with w.c(who) as c:
            for site in ("east-1", "west-1"):
                _refused(c.get(f"/v1/dashboard/sites/{site}/meters"), 403)
    with w.c("admin") as a:
        assert a.get("/v1/dashboard/sites/east-1/meters").status_code == 200


def dashboard_tenants(w: World) -> None:
    with w.c("rival") as b:
        for params in ({"month": w.month}, {"month": w.month, "tenant": "rival"}):
            r = b.get("/v1/dashboard/tenants", params=params)
            assert r.status_code == 200, r.text
            _clean(r)
            assert "acme" not in r.text
        _refused(b.get("/v1/dashboard/tenants", params={"month": w.month, "tenant": "acme"}), 403)
    with w.c("west") as s:
        _refused(s.get("/v1/dashboard/tenants", params={"month": w.month}), 403)


def dashboard_page(w: World) -> None:
    with w.c(None) as c:
        r = c.get("/")
        assert r.status_code in (200, 404)        # 404: the web assets are not built here
        _clean(r)


def dashboard_asset(w: World) -> None:
    """The built files hold no data: every one the page links to is served without a token, and
    nothing else (a path out of the assets, the SQLite file, a name outside the build) is."""
    with w.c(None) as c:
        page = c.get("/")
        for name in re.findall(r'/assets/([A-Za-z0-9._-]+)"', page.text if page.status_code == 200 else ""):
            r = c.get(f"/assets/{name}")
            assert r.status_code == 200, name
            _clean(r)
        for name in ("..%2F..%2Fservice%2Fdb.py", "%2Fetc%2Fpasswd", "suanli.db", ".hidden"):
            assert c.get(f"/assets/{name}").status_code == 404, name


def metrics(w: World) -> None:
    """The operator's figures (docs/SERVICE.md "Metrics"): an admin token only; and even that page
    names no tenant and no job (counts by state, pools and sites, route templates)."""
    with w.c(None) as c:
        _refused(c.get("/metrics"), 401)
    for who in ("rival", "acme", "west", "east"):
        with w.c(who) as c:
            _refused(c.get("/metrics"), 403)
    with w.c("admin") as a:
        r = a.get("/metrics")
        assert r.status_code == 200 and "suanli_jobs{" in r.text
        _clean(r)
        assert "acme" not in r.text and "rival" not in r.text


ISOLATION: dict[tuple[str, str], Callable[[World], None]] = {
    ("POST", "/v1/jobs"): submit_job,
    ("POST", "/v1/jobs/batch"): submit_batch,
    ("POST", "/v1/quotes"): quote,
    ("GET", "/v1/jobs"): list_jobs,
    ("GET", "/v1/jobs/{job_id}"): get_job,
    ("DELETE", "/v1/jobs/{job_id}"): cancel_job,
    ("GET", "/v1/sites"): list_sites,
    ("GET", "/v1/grid-caps"): grid_caps,
    ("POST", "/v1/admin/grid-caps"): announce_grid_cap,
    ("GET", "/v1/invoices"): invoices,
    ("POST", "/v1/agent/{site}/heartbeat"): heartbeat,
    ("POST", "/v1/agent/{site}/assignments"): assignments,
    ("POST", "/v1/agent/{site}/jobs/{job_id}/report"): report,
    ("POST", "/v1/agent/{site}/jobs/{job_id}/energy"): run_energy,
    ("PUT", "/v1/agent/{site}/jobs/{job_id}/checkpoint"): put_checkpoint,
    ("GET", "/v1/agent/{site}/jobs/{job_id}/checkpoint"): get_checkpoint,
    ("GET", "/v1/jobs/{job_id}/logs"): get_logs,
    ("PUT", "/v1/agent/{site}/jobs/{job_id}/output"): put_output,
    ("GET", "/v1/health"): health,
    ("POST", "/v1/agent/{site}/meter"): post_meter,
    ("GET", "/v1/sites/{site}/energy"): site_energy,
    ("POST", "/v1/sites/{site}/grid-signals"): grid_signal,
    ("GET", "/v1/sites/{site}/demand-response"): demand_events,
    ("GET", "/v1/dashboard/me"): dashboard_me,
    ("GET", "/v1/dashboard/network"): dashboard_network,
    ("GET", "/v1/dashboard/sites/{site}/series"): dashboard_series,
    ("GET", "/v1/dashboard/sites/{site}/meters"): dashboard_meters,
    ("GET", "/v1/dashboard/tenants"): dashboard_tenants,
    ("GET", "/"): dashboard_page,
    ("GET", "/assets/{name}"): dashboard_asset,
    ("GET", "/metrics"): metrics,
}


def _routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route: the app's own, those of included routers (FastAPI keeps an
    included router as one entry of `app.routes`, its routes inside), and the OpenAPI schema's
    operations as a safety net should the walk miss a kind of entry."""
    out: set[tuple[str, str]] = set()

    def walk(routes, prefix: str) -> None:
        for r in routes:
            if isinstance(r, Mount):
                continue                           # static files (/assets): no data
            inner = getattr(r, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + getattr(getattr(r, "include_context", None), "prefix", ""))
                continue
            for m in (getattr(r, "methods", None) or set()) - {"HEAD", "OPTIONS"}:
                out.add((m, prefix + r.path))

    walk(app.routes, "")
    for path, ops in app.openapi()["paths"].items():
        out.update((m.upper(), path) for m in ops if m.upper() not in ("HEAD", "OPTIONS", "PARAMETERS"))
    return out - FRAMEWORK


def test_every_route_has_an_isolation_check(tmp_path) -> None:
    app = build(svc.NETWORK, f"sqlite:///{tmp_path / 'routes.db'}", policy="fifo")
    try:
        routes = _routes(app)
        assert ("GET", "/v1/jobs/{job_id}") in routes and len(routes) > 10       # the walk finds routes
        missing = sorted(routes - set(ISOLATION))
        assert not missing, f"routes without a tenant/site isolation check in {__file__}: {missing}"
        stale = sorted(set(ISOLATION) - routes)
        assert not stale, f"isolation checks for routes that no longer exist: {stale}"
    finally:
        app.state.controller.sessions.kw["bind"].dispose()


@pytest.mark.parametrize("route", list(ISOLATION), ids=[f"{m} {p}" for m, p in ISOLATION])
def test_isolation(world: World, route: tuple[str, str]) -> None:
    ISOLATION[route](world)


def test_acme_still_sees_its_own(world: World) -> None:
    """The checks above refuse; this shows the same calls work for the owner (they are not
    refusing everybody)."""
    with world.c("acme") as a:
        assert a.get(f"/v1/jobs/{world.done}").json()["state"] == "SUCCEEDED"
        assert {j["id"] for j in a.get("/v1/jobs").json()["jobs"]} >= {world.done, world.running, world.pending}
        assert SECRET in a.get("/v1/invoices", params={"month": world.month}).text
