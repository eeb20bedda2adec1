"""Oversized bodies, deep JSON, huge numbers, secrets in URLs and request floods are refused
with a 4xx and one line (reliability issue #9, parts 3c and 4; `suanli.service.limits`).

Against a real server over SQLite (and PostgreSQL when `SUANLI_TEST_PG_URL` is set), plus the
token bucket's arithmetic on a fake clock and `suanli serve --rate-limit` as a user types it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402  (tests/service's fixtures module: real server over a real database)
from svc import job_body  # noqa: E402

from suanli.errors import UserError  # noqa: E402
from suanli.service.limits import Limits, RateLimiter, json_problem, parse_rate  # noqa: E402

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module
MIB = 1 << 20


def _post_raw(c: httpx.Client, path: str, body: bytes | str, **kw) -> httpx.Response:
    return c.post(path, content=body, headers={"Content-Type": "application/json"}, **kw)


def _one_line(r: httpx.Response) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 300, detail
    return detail


def test_an_oversized_body_is_413_whether_declared_or_streamed(service):
    limit = service.app.state.limits.max_body_bytes
    big = json.dumps(job_body(command="x" * (limit + 10)))
    with service.client(service.tenant("acme")) as c:
        r = _post_raw(c, "/v1/jobs", big)                       # Content-Length declared
        assert r.status_code == 413 and "limit" in _one_line(r)

        def chunks():                                           # chunked: no Content-Length
            for i in range(0, len(big), 64 * 1024):
                yield big[i:i + 64 * 1024].encode()
        r = c.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit" in _one_line(r)
        # under the limit, the same kind of body reaches the validator and its field bound
        r = _post_raw(c, "/v1/jobs", json.dumps(job_body(command="x" * (limit // 2))))
        assert r.status_code == 422 and _one_line(r).startswith("command: ")
        assert c.post("/v1/jobs", json=job_body()).status_code == 201     # an ordinary job still goes in


def test_deep_json_is_400_and_brackets_inside_strings_do_not_count(service):
    depth = service.app.state.limits.max_json_depth
    with service.client(service.tenant("acme")) as c:
        for body in ("[" * 100_000 + "]" * 100_000,                       # the parser would recurse
                     json.dumps(job_body(gpu_types=json.loads("[" * depth + "]" * depth)))):
            r = _post_raw(c, "/v1/jobs", body)
            assert r.status_code == 400 and "nested deeper" in _one_line(r)
        r = c.post("/v1/jobs", json=job_body(command="echo '" + "[{" * 5000 + "'"))
        assert r.status_code == 201, r.text


def test_huge_numbers_are_4xx_never_5xx(service):
    with service.client(service.tenant("acme")) as c, service.client(service.site_token("east-1")) as agent:
        literal = "9" * 5000                                  # Python refuses > 4,300 digits; slow below
        r = _post_raw(c, "/v1/jobs", json.dumps(job_body(gpus=0)).replace('"gpus": 0', f'"gpus": {literal}'))
        assert r.status_code == 400 and "number longer" in _one_line(r)
        for field, value in (("gpus", 10**30), ("gpus", 2**31), ("work_h", 1e308), ("deadline_h", 1e300),
                             ("data_gb", 1e300), ("checkpoint_h", 1e300), ("max_rtt_ms", 1e300)):
            r = c.post("/v1/jobs", json=job_body(**{field: value}))
            assert r.status_code == 422 and _one_line(r).startswith(f"{field}: "), (field, r.text)
        for text in ("1e400", "-1e400", "NaN", "Infinity"):  # not JSON numbers, or infinite: 4xx
            r = _post_raw(c, "/v1/jobs", json.dumps(job_body(work_h=1)).replace('"work_h": 1', f'"work_h": {text}'))
            assert 400 <= r.status_code < 500, (text, r.text)
        for path in ("/v1/jobs/100000000000000000000", "/v1/jobs/-1", "/v1/jobs?cursor=100000000000000000000",
                     "/v1/jobs?limit=100000000000000000000"):
            r = c.get(path)
            assert r.status_code == 422, (path, r.text)
        r = c.delete("/v1/jobs/100000000000000000000")
        assert r.status_code == 422
        for ref in ({"job_id": 2**63, "fence": 1}, {"job_id": 1, "fence": -(2**63) - 1},
                    {"job_id": 1, "fence": 1, "checkpoint_bytes": 2**64}):
            r = agent.post("/v1/agent/east-1/heartbeat", json={"running": [ref]})
            assert r.status_code == 422, (ref, r.text)
        r = agent.post("/v1/agent/east-1/jobs/1/report", json={"fence": 1, "state": "FAILED", "exit_code": 2**40})
        assert r.status_code == 422 and _one_line(r).startswith("exit_code: ")


def test_a_token_in_the_query_string_is_refused_and_not_echoed(service):
    token = service.tenant("acme")
    with service.client(None) as anon, service.client(token) as c:
        for name in ("token", "access_token", "TOKEN"):
            r = anon.get("/v1/jobs", params={name: token})
            assert r.status_code == 400 and "Authorization header" in _one_line(r)
            assert token not in r.text
        # even with a valid header: the URL may be logged anywhere on the way, so it is refused too
        r = c.get("/v1/jobs", params={"token": token})
        assert r.status_code == 400 and token not in r.text
        assert c.get("/v1/jobs", params={"name": "token"}).status_code == 200      # a value is no secret


def test_rate_limit_answers_429_with_retry_after_per_tenant(service):
    acme, rival = service.tenant("acme"), service.tenant("rival")
    service.app.state.rate_limiter.configure(2.0, burst=4)       # 2 requests/s, 4 at once
    try:
        with service.client(acme) as a, service.client(rival) as b:
            codes = [a.get("/v1/jobs") for _ in range(8)]
            refused = [r for r in codes if r.status_code == 429]
            assert len(refused) >= 3, [r.status_code for r in codes]
            assert {r.status_code for r in codes} <= {200, 429}
            retry = int(refused[0].headers["Retry-After"])
            assert 1 <= retry <= 2 and "rate limit" in _one_line(refused[0])
            assert b.get("/v1/jobs").status_code == 200              # another tenant's bucket is full
            time.sleep(retry)
            assert a.get("/v1/jobs").status_code == 200              # refilled at the promised time
    finally:
        service.app.state.rate_limiter.configure(None)


def test_the_token_bucket_refills_at_its_rate():
    now = [0.0]
    lim = RateLimiter(10.0, burst=5, clock=lambda: now[0])
    assert [lim.take("a") for _ in range(5)] == [0.0] * 5          # the burst
    assert lim.take("a") == pytest.approx(0.1)                       # empty: one token in 0.1 s
    assert lim.take("b") == 0.0                                      # buckets are per key
    now[0] += 0.25                                                   # 2.5 tokens back, at most 5
    assert lim.take("a") == 0.0 and lim.take("a") == 0.0 and lim.take("a") > 0
    now[0] += 100.0
    assert sum(lim.take("a") == 0.0 for _ in range(10)) == 5          # the bucket holds no more than its burst
    assert RateLimiter(None).take("a") == 0.0                       # off


def test_parse_rate():
    assert parse_rate("20/s") == 20 and parse_rate("600/min") == 10 and parse_rate("3600/h") == 1
    assert parse_rate("5") == 5 and parse_rate("off") is None
    for bad in ("fast", "10/day", "-1/s", "nan/s", "inf"):
        with pytest.raises(UserError, match="--rate-limit"):
            parse_rate(bad)


def test_json_problem_is_exact_at_the_limits():
    lim = Limits(max_json_depth=3, max_number_chars=5)
    assert json_problem(b"[[[1]]]", lim) is None
    assert json_problem(b"[[[[1]]]]", lim) is not None
    assert json_problem(b'["[[[[[[[[", "\\"[[[[[["]', lim) is None   # inside strings, escaped quotes too
    assert json_problem(b"[12345, -1e3]", lim) is None
    assert json_problem(b"[123456]", lim) is not None


def test_serve_rejects_a_bad_rate_limit_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "suanli.cli_service", "serve", "--network", svc.NETWORK,
                        "--db", f"sqlite:///{tmp_path / 'a.db'}", "--rate-limit", "lots"],
                       capture_output=True, text=True, timeout=60, env={**os.environ})
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --rate-limit:"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
