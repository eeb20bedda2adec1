"""PostgreSQL restarted under load (reliability issue, part 1): while the database is away the
API answers 503 with Retry-After (never a 500, never a hang), and once it is back the service
recovers by itself: requests succeed, the controller's loop places and finishes jobs again, and
every submission it acknowledged exists.

Needs the test server's control command: `SUANLI_TEST_PG_CTL` (.ci/run sets it to its
`pg_ctl -D DATA` as the postgres user); without it the test is skipped, unless
`SUANLI_TEST_PG_URL` is set by .ci/run (`SUANLI_TEST_PG_REQUIRED=1`), where it fails."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import httpx  # noqa: E402
import pytest  # noqa: E402
from svc import NETWORK, ThreadServer, agent_env, build, job_body, pg_schema, searchable, wait_for  # noqa: E402

from suanli.service import auth  # noqa: E402
from suanli.service.models import Job as JobRow  # noqa: E402

PG_CTL = os.environ.get("SUANLI_TEST_PG_CTL")


def test_postgresql_restart_under_load_answers_503_then_recovers(tmp_path):
    if not PG_CTL:
        if os.environ.get("SUANLI_TEST_PG_REQUIRED") == "1":
            pytest.fail("SUANLI_TEST_PG_CTL is not set: cannot restart the test PostgreSQL server")
        pytest.skip("set SUANLI_TEST_PG_CTL to the test server's `pg_ctl -D DATA` command (.ci/run does)")
    with pg_schema() as url:
        app = build(NETWORK, url, policy="fifo", tick_s=0.2, heartbeat_timeout_s=5.0,
                    checkpoint_store=tmp_path / "store")
        with ThreadServer(app) as base:
            with app.state.controller.sessions.begin() as s:
                token = auth.create_tenant(s, "acme", {}, None)
                site = auth.create_site_token(s, "east-1")
            agent = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", base,
                                      "--executor", "local", "--workdir", str(searchable(tmp_path / "a")),
                                      "--interval-s", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=agent_env(site))
            try:
                statuses: Counter[int] = Counter()
                acked: list[int] = []
                stop = threading.Event()

                def load(k: int) -> None:
                    c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=15)
                    i = 0
                    while not stop.is_set():
                        i += 1
                        r = c.post("/v1/jobs", json=job_body(name=f"l{k}-{i}"), headers={"Idempotency-Key": f"{k}-{i}"})
                        statuses[r.status_code] += 1
                        if r.status_code == 201:
                            acked.append(r.json()["id"])
                        else:
                            assert r.status_code == 503 and r.headers.get("retry-after"), (r.status_code, r.text)
                        statuses[c.get("/v1/jobs", params={"limit": 5}).status_code] += 1
                        time.sleep(0.05)
                threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
                for t in threads:
                    t.start()
                time.sleep(1.5)
                t0 = time.monotonic()
                # no pipes: the restarted server inherits pg_ctl's output and would hold them open
                r = subprocess.run([*shlex.split(PG_CTL), "restart", "-m", "fast", "-w", "-t", "60"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=120)
                assert r.returncode == 0, "pg_ctl restart failed"
                restart_s = time.monotonic() - t0
                time.sleep(3.0)
                stop.set()
                for t in threads:
                    t.join(timeout=60)
                assert not any(t.is_alive() for t in threads)
                assert set(statuses) <= {200, 201, 503}, statuses           # no 500 while it was away
                assert statuses[503] > 0, statuses                         # it was away, and said so
                # recovered by itself: new requests succeed, and the loop runs every job to its end
                c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=15)
                after = c.post("/v1/jobs", json=job_body(name="after")).json()["id"]
                wait_for(lambda: c.get(f"/v1/jobs/{after}").json()["state"] == "SUCCEEDED", 90, 0.3)
                with app.state.controller.sessions() as s:
                    assert all(s.get(JobRow, i) is not None for i in acked)    # every acknowledged job
                print(f"PostgreSQL restart ({restart_s:.1f} s) under load: {dict(statuses)}; recovered")
            finally:
                agent.terminate()
                agent.wait(timeout=15)
