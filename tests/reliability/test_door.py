"""Attacks at the door (issues "Trust" 1, 6, 7 and "Trust part two" 1, 2, 8): each was answered
wrongly before `suanli.service.limits`, `schemas.JobIn` and `routes/jobs.py` refused it.

- a job field the controller cannot use (`checkpoint_h: 5e-324`, a NUL in a name) is a 422;
- an Idempotency-Key reused with a different body is a 422, not the first job;
- a big body of any type is refused before it is read whole (the server's RSS stays flat), and
  without a token it is refused before a byte of it is read;
- one tenant's burst cannot starve the database pool (503 with Retry-After, never 500 or a 30 s
  wait), and another tenant is served meanwhile;
- guessing tokens from one address is slowed to a trickle (429), a valid token from another
  address is not;
- a burst of submissions is shed (503 + Retry-After), not collapsed, and every 201 is in the
  database exactly once;
- a batch is all or nothing; requests carry ids and leave one log line each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402  (tests/service's fixtures module: real server over a real database)
from svc import job_body  # noqa: E402

from suanli.service.bearer import TokenCache  # noqa: E402
from suanli.service.limits import Admission, FailedAuth  # noqa: E402

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module
MIB = 1 << 20


def _one_line(r: httpx.Response) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 300, detail
    return detail


# ----------------------------------------------------------------------------- 1. validation
@pytest.mark.parametrize(("field", "value"), [
    ("checkpoint_h", 5e-324),            # accepted before: the controller stalled on it
    ("checkpoint_h", 0.01),              # 36 s: under a minute
    ("name", "train\x00"), ("name", "two\nlines"), ("name", "x" * 257),
    ("command", "true\x00rm -rf /"), ("command", "x" * 65537),
    ("class", "batch\x1b[31m"), ("class", ""), ("origin", "beijing\x00"), ("origin", ""),
    ("gpu_types", ["h100\x00"]), ("gpu_types", ["h100\r"]),
    ("gpus", True), ("work_h", 0),
])
def test_job_fields_are_checked_at_the_door(service, field, value):
    with service.client(service.tenant("acme")) as c:
        r = c.post("/v1/jobs", json=job_body(**{field: value}))
        assert r.status_code in (400, 422), (field, r.text)
        if r.status_code == 422:
            assert _one_line(r).startswith(f"{field}"), r.text
        assert c.get("/v1/jobs").json()["jobs"] == []


def test_a_command_may_hold_newlines_and_tabs_and_a_minute_checkpoint_is_fine(service):
    with service.client(service.tenant("acme")) as c:
        r = c.post("/v1/jobs", json=job_body(command="set -e\n\techo hi\r\n", checkpoint_h=1 / 60))
        assert r.status_code == 201, r.text
        assert r.json()["command"] == "set -e\n\techo hi\r\n"


def test_an_idempotency_key_with_a_control_character_is_422(service):
    with service.client(service.tenant("acme")) as c:
        for key in ("a\tb", "caf\u00e9", "x" * 257):
            r = c.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": key.encode("latin-1")})
            assert r.status_code == 422 and _one_line(r).lower().startswith("idempotency-key"), (key, r.text)


# ----------------------------------------------------------------------------- 2. idempotency
def test_a_key_reused_with_a_different_body_is_422_and_with_the_same_body_200(service):
    with service.client(service.tenant("acme")) as c:
        h = {"Idempotency-Key": "nightly-2026-12-05"}
        first = c.post("/v1/jobs", json=job_body(work_h=1), headers=h)
        assert first.status_code == 201, first.text
        again = c.post("/v1/jobs", json=job_body(work_h=1.0), headers=h)       # the same job, said again
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        other = c.post("/v1/jobs", json=job_body(work_h=2), headers=h)
        assert other.status_code == 422, other.text
        assert _one_line(other).startswith("Idempotency-Key: reused with a different body")
        assert len(c.get("/v1/jobs").json()["jobs"]) == 1
        assert "body_sha256" in first.json()["spec"]


# ----------------------------------------------------------------------------- 3. memory
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def served(tmp_path):
    """A real `suanli serve` process on a fresh SQLite file: (url, pid, tenant token, site token)."""
    from suanli.service import auth
    from suanli.service.db import open_db
    db = f"sqlite:///{tmp_path / 'suanli.db'}"
    with open_db(db).begin() as s:
        tenant = auth.create_tenant(s, "acme", {}, None)
        site = auth.create_site_token(s, "east-1")
    port = _port()
    p = subprocess.Popen([sys.executable, "-m", "suanli.cli_service", "serve", "--network", svc.NETWORK,
                          "--db", db, "--port", str(port), "--policy", "fifo",
                          "--checkpoint-store", str(tmp_path / "store")],
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        svc.wait_for(lambda: _up(url, p), timeout=60)
        yield url, p.pid, tenant, site
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _up(url: str, p: subprocess.Popen) -> bool:
    assert p.poll() is None, "suanli serve exited"
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stream(url: str, path: str, total: int, ctype: str, token: str | None, method: str = "POST",
            declare: bool = False) -> int | str:
    """Send `total` bytes as a streamed body; the status, or the transport error's name (a server
    that answers early may close the connection while the client still writes)."""
    chunk = b"\0" * MIB

    def body():
        for _ in range(total // MIB):
            yield chunk
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if declare:
        headers["Content-Length"] = str(total)
    try:
        r = httpx.request(method, url + path, content=body(), headers=headers, timeout=60)
        return r.status_code
    except httpx.HTTPError as e:
        return type(e).__name__


def test_a_big_body_of_any_type_is_refused_before_it_is_read(served):
    url, pid, tenant, site = served
    base = _rss_mb(pid)
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb(pid))
            time.sleep(0.01)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        big = 256 * MIB
        cases = [("/v1/jobs", "application/octet-stream", tenant, "POST", {415}),
                 ("/v1/jobs", "application/gzip", None, "POST", {401}),        # no token at all
                 ("/v1/jobs", "application/gzip", "sl_" + "x" * 43, "POST", {401}),
                 ("/v1/jobs", "application/json", tenant, "POST", {413}),
                 ("/v1/jobs", "text/plain", tenant, "POST", {415}),
                 ("/v1/agent/east-1/jobs/1/checkpoint?fence=1&at=2026-01-01T00:00:00Z", "application/gzip",
                  tenant, "PUT", {403}),                                        # an upload: site tokens only
                 ("/v1/agent/east-1/heartbeat", "application/octet-stream", site, "POST", {415})]
        for path, ctype, token, method, want in cases:
            got = _stream(url, path, big, ctype, token, method)
            assert got in want or isinstance(got, str), (path, ctype, got)
            got = _stream(url, path, big, ctype, token, method, declare=True)    # declared: refused at once
            assert got in want or isinstance(got, str), (path, ctype, got)
        # the answers themselves, with a small body (no early close to race with)
        with httpx.Client(base_url=url, timeout=10) as c:
            r = c.post("/v1/jobs", content=b"x" * 1000, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 401
            r = c.post("/v1/jobs", content=b"x" * 1000, headers={"Content-Type": "application/octet-stream",
                                                                 "Authorization": f"Bearer {tenant}"})
            assert r.status_code == 415 and "application/json" in _one_line(r)
    finally:
        stop.set()
        t.join()
    assert peak[0] - base < 64, f"server RSS grew from {base:.0f} MB to {peak[0]:.0f} MB"


def test_a_content_length_of_thousands_of_digits_is_413_not_500(service):
    import socket as _socket
    host, port = service.url.removeprefix("http://").split(":")
    with _socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + service.tenant("acme").encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
        head = sock.recv(4096).split(b"\r\n")[0]
    assert head.split()[1] in (b"400", b"413"), head


# ----------------------------------------------------------------------------- 4. the pool
def test_one_tenant_cannot_starve_the_pool_and_another_is_served(service):
    greedy, other = service.tenant("greedy"), service.tenant("other")
    with service.client(other) as c:
        assert c.get("/v1/jobs").status_code == 200

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits,
                                     headers={"Authorization": f"Bearer {greedy}"}) as a:
            return await asyncio.gather(*(a.get("/v1/sites") for _ in range(100)))

    out: list = []
    th = threading.Thread(target=lambda: out.extend(asyncio.run(flood())))
    th.start()
    time.sleep(0.05)
    with service.client(other) as c:
        t0 = time.monotonic()
        r = c.get("/v1/jobs")
        waited = time.monotonic() - t0
    th.join(timeout=120)
    assert r.status_code == 200 and waited < 5.0, (r.status_code, waited)
    codes = Counter(x.status_code for x in out)
    assert set(codes) <= {200, 503}, codes
    assert codes[200] >= 1
    for x in out:
        if x.status_code == 503:
            assert x.headers.get("Retry-After") == "1" and "overloaded" in _one_line(x)


# ----------------------------------------------------------------------------- 5. guessing tokens
def test_guessing_tokens_is_slowed_per_address_and_a_valid_token_elsewhere_still_works(service):
    good = service.tenant("acme")
    codes = []
    with httpx.Client(base_url=service.url, timeout=10) as c:
        for _ in range(40):
            r = c.get("/v1/jobs", headers={"Authorization": f"Bearer sl_{secrets.token_urlsafe(32)}"})
            codes.append(r.status_code)
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
        assert int(r.headers["Retry-After"]) >= 1 and "unknown tokens" in _one_line(r)
        # the address is refused with any token now, a valid one too: no oracle for guesses
        assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {good}"}).status_code == 429
    # another address (loopback has them all) is not affected
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=service.url, timeout=10, transport=transport,
                      headers={"Authorization": f"Bearer {good}"}) as c:
        assert c.get("/v1/jobs").status_code == 200


def test_failed_auth_bucket_refills():
    now = [0.0]
    f = FailedAuth(3, per_s=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert f.locked("a") == 0.0
        f.failed("a")
    assert f.locked("a") == pytest.approx(2.0) and f.locked("b") == 0.0
    now[0] = 2.0
    assert f.locked("a") == 0.0


def test_the_token_cache_expires_and_is_invalidated():
    from suanli.service.auth import Principal, hash_token
    now = [0.0]
    cache = TokenCache(ttl_s=5, clock=lambda: now[0])
    p = Principal("tenant", 1, "acme")
    cache.put(hash_token("sl_a"), p)
    assert cache.get(hash_token("sl_a")) == p
    cache.invalidate("sl_a")
    assert cache.get(hash_token("sl_a")) is None
    cache.put(hash_token("sl_a"), p)
    now[0] = 5.0
    assert cache.get(hash_token("sl_a")) is None


def test_admission_sheds_over_the_caller_share_at_once_and_queues_briefly_over_the_total():
    async def main():
        a = Admission(max_in_flight=2, per_caller=1, max_queue=1, queue_s=0.2)
        assert await a.enter("x") is None
        assert "this caller" in await a.enter("x")              # x's share: at once
        assert await a.enter("y") is None                        # the total is reached now
        waiter = asyncio.create_task(a.enter("z"))               # queued
        await asyncio.sleep(0)
        assert await a.enter("w") == "the server is busy"       # the queue is full
        a.leave("x")                                             # hands its place to z
        assert await waiter is None and a.in_flight == 2
        t0 = time.monotonic()
        assert await a.enter("v") == "the server is busy"       # waited queue_s, then shed
        assert 0.15 < time.monotonic() - t0 < 1.0
        assert await a.enter("agent", own_share_only=True) is None     # a site agent: past the full total
        assert "this caller" in await a.enter("agent", own_share_only=True)
        a.leave("agent", own_share_only=True)
        a.leave("y")
        a.leave("z")
        assert a.in_flight == 0 and not a.by_caller
    asyncio.run(main())


# ----------------------------------------------------------------------------- 6. a burst
def test_a_burst_of_submissions_is_shed_not_collapsed_and_every_201_is_stored_once(service):
    tokens = [service.tenant(f"t{i:02d}") for i in range(20)]
    service.app.state.rate_limiter.configure(None)

    async def burst(seconds: float = 4.0, conns: int = 100) -> list[tuple[int | str, dict, float]]:
        end = time.monotonic() + seconds
        out = []
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as a:
            async def worker(i: int) -> None:
                n = 0
                while time.monotonic() < end:
                    n += 1
                    tok = tokens[(i + n) % len(tokens)]
                    t0 = time.monotonic()
                    try:
                        r = await a.post("/v1/jobs", json=job_body(name=f"b{i}-{n}"),
                                         headers={"Authorization": f"Bearer {tok}",
                                                  "Idempotency-Key": f"k{i}-{n}"})
                        out.append((r.status_code, dict(r.headers), time.monotonic() - t0,
                                    r.json().get("id") if r.status_code == 201 else None))
                    except httpx.HTTPError as e:
                        out.append((type(e).__name__, {}, time.monotonic() - t0, None))
            await asyncio.gather(*(worker(i) for i in range(conns)))
        return out

    site = service.site_token("east-1")
    beats: list[int] = []
    stop = threading.Event()

    def heartbeats() -> None:              # a site agent meanwhile: never shed (its site would look down)
        with service.client(site) as agent:
            while not stop.is_set():
                beats.append(agent.post("/v1/agent/east-1/heartbeat", json={}).status_code)
                time.sleep(0.2)
    hb = threading.Thread(target=heartbeats)
    hb.start()
    try:
        out = asyncio.run(burst())
    finally:
        stop.set()
        hb.join()
    assert beats and set(beats) == {200}, beats
    codes = Counter(x[0] for x in out)
    assert set(codes) <= {201, 503}, codes                      # no 500, no transport error
    for status, headers, _, _ in out:
        if status == 503:
            assert headers.get("retry-after") == "1"
    ids = [x[3] for x in out if x[0] == 201]
    assert len(ids) == len(set(ids)) and len(ids) > 20, codes
    from sqlalchemy import func, select

    from suanli.service.models import Job
    with service.sessions() as s:
        stored = s.scalars(select(Job.id)).all()
        assert sorted(stored) == sorted(ids)                     # every 201 there, once; nothing else
        assert s.scalar(select(func.count(func.distinct(Job.idempotency_key)))) == len(ids)


# ----------------------------------------------------------------------------- 7. batches
def test_a_batch_is_all_or_nothing_and_its_keys_are_idempotent(service):
    with service.client(service.tenant("acme", quota={"h100": 4})) as c:
        jobs = [dict(job_body(name=f"j{i}", gpu_types=["h100"]), key=f"k{i}") for i in range(3)]
        r = c.post("/v1/jobs/batch", json={"jobs": jobs})
        assert r.status_code == 201, r.text
        first = r.json()
        assert first["created"] == 3 and [j["name"] for j in first["jobs"]] == ["j0", "j1", "j2"]
        again = c.post("/v1/jobs/batch", json={"jobs": jobs})
        assert again.status_code == 200 and again.json()["created"] == 0
        assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first["jobs"]]
        changed = [*jobs[:2], dict(jobs[2], work_h=9)]
        r = c.post("/v1/jobs/batch", json={"jobs": changed})
        assert r.status_code == 422 and _one_line(r).startswith("jobs.2.key: reused with a different body")
        # one bad job refuses the whole batch, naming it
        r = c.post("/v1/jobs/batch", json={"jobs": [job_body(name="ok"), job_body(origin="atlantis")]})
        assert r.status_code == 422 and _one_line(r).startswith("jobs.1.origin: unknown city")
        r = c.post("/v1/jobs/batch", json={"jobs": [job_body(name="ok"), job_body(checkpoint_h=5e-324)]})
        assert r.status_code == 422 and _one_line(r).startswith("jobs.1.checkpoint_h")
        # the quota is checked for the batch as a whole: 3 h100 held, 2 more do not fit
        two = [job_body(name=f"q{i}", gpu_types=["h100"]) for i in range(2)]
        r = c.post("/v1/jobs/batch", json={"jobs": two})
        assert r.status_code == 403 and "jobs.1: quota" in _one_line(r)
        dup = [dict(job_body(name="a"), key="same"), dict(job_body(name="b"), key="same")]
        r = c.post("/v1/jobs/batch", json={"jobs": dup})
        assert r.status_code == 422 and _one_line(r).startswith("jobs.1.key")
        r = c.post("/v1/jobs/batch", json={"jobs": [job_body()] * 1001})
        assert r.status_code == 422 and _one_line(r).startswith("jobs")
        assert len(c.get("/v1/jobs").json()["jobs"]) == 3                # nothing of the refused batches


# ----------------------------------------------------------------------------- 8. logs
class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_each_request_has_an_id_and_one_log_line(service):
    cap = _Capture()
    lg = logging.getLogger("suanli.api")
    old = lg.level
    lg.addHandler(cap)
    lg.setLevel(logging.INFO)
    try:
        with service.client(service.tenant("acme")) as c:
            r = c.get("/v1/jobs", params={"limit": 5}, headers={"X-Request-Id": "trace-42"})
            assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
            r2 = c.get("/v1/jobs", headers={"X-Request-Id": "bad id\twith tab"})
            rid = r2.headers["x-request-id"]
            assert rid != "bad id\twith tab" and 8 <= len(rid) <= 64
            r3 = c.post("/v1/jobs", json=job_body())
            assert r3.status_code == 201 and r3.headers["x-request-id"]
            # the line is written when the response has gone out: a moment after the client has it
            svc.wait_for(lambda: any(rec.getMessage().startswith("POST /v1/jobs 201 ") for rec in cap.records),
                         timeout=10)
    finally:
        lg.removeHandler(cap)
        lg.setLevel(old)
    lines = [rec for rec in cap.records if getattr(rec, "path", None) is not None]
    msgs = [rec.getMessage() for rec in lines]
    assert any(m.startswith("GET /v1/jobs 200 ") and m.endswith(" tenant") for m in msgs), msgs
    assert not any("limit=5" in m for m in msgs)                      # the path without its query
    assert any(m.startswith("POST /v1/jobs 201 ") for m in msgs), msgs


def test_the_request_id_is_in_the_context_while_a_request_is_served(service):
    from suanli.logs import REQUEST_ID
    seen = []
    lg = logging.getLogger("suanli.api")

    class Grab(logging.Handler):
        def emit(self, record):
            seen.append(REQUEST_ID.get())
    h = Grab(logging.INFO)
    old = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.INFO)
    try:
        with service.client(service.tenant("acme")) as c:
            c.get("/v1/jobs", headers={"X-Request-Id": "ctx-7"})
            svc.wait_for(lambda: "ctx-7" in seen, timeout=10)
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)
    assert "ctx-7" in seen



def test_suanli_submit_sends_a_file_of_many_jobs_as_a_batch(service, tmp_path):
    import json as _json
    env = {**os.environ, "SUANLI_URL": service.url, "SUANLI_TOKEN": service.tenant("acme"),
           "SUANLI_CONFIG": str(tmp_path / "no")}
    jobs = [job_body(name=f"many-{i}") for i in range(3)]
    (tmp_path / "jobs.json").write_text(_json.dumps({"jobs": jobs}))

    def cli():
        return subprocess.run([sys.executable, "-m", "suanli.cli_service", "submit", str(tmp_path / "jobs.json"),
                               "--key", "nightly"], capture_output=True, text=True, env=env, timeout=60)
    r = cli()
    assert r.returncode == 0, r.stderr
    ids = [line.split()[0] for line in r.stdout.splitlines()]
    assert len(ids) == 3 and all(line.split()[1] == "PENDING" for line in r.stdout.splitlines())
    assert [line.split()[0] for line in cli().stdout.splitlines()] == ids      # KEY-0.. : sent again, same jobs
