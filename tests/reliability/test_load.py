"""A short load test (reliability issue, part 2): open-loop arrivals at 30 requests per second
for 5 s against a real `suanli serve` process with two local agents, 20 tenants submitting jobs
(an Idempotency-Key each) and polling them; over SQLite, and PostgreSQL when `SUANLI_TEST_PG_URL`
is set. Correctness, not speed: no 5xx, no transport error, and every submit acknowledged with
201 is in the database exactly once. The full measurement is `bench/loadtest.py`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("suanli_loadtest", Path(__file__).parents[2] / "bench" / "loadtest.py")
loadtest = importlib.util.module_from_spec(_spec)
sys.modules["suanli_loadtest"] = loadtest
_spec.loader.exec_module(loadtest)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_short_load_loses_no_acknowledged_job_and_answers_no_5xx(db):
    if db == "postgresql" and not os.environ.get("SUANLI_TEST_PG_URL"):
        pytest.skip("PostgreSQL: set SUANLI_TEST_PG_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB")
    r = loadtest.run_rate(db, rate=30, duration_s=5, tenants=20, seed=1, drain_s=0)
    detail = {k: r[k] for k in ("status_codes", "kinds", "check", "server_log_tail")}
    assert r["requests"] == 150, detail
    assert r["errors_5xx"] == 0 and r["errors_transport"] == 0, detail     # no 5xx, nothing cut off or refused
    assert set(r["status_codes"]) <= {"200", "201"}, detail                 # nor any 4xx: all requests were valid
    c = r["check"]
    assert c["acknowledged"] > 30, detail                                   # ~40 % of the requests submit
    assert c["lost"] == 0, detail                                           # every 201 is in the database ...
    assert c["acked_twice"] == 0 and c["keys_stored_twice"] == 0, detail    # ... exactly once
    assert c["acked_ids_distinct"] == c["acknowledged"], detail
    assert c["jobs_in_db"] == c["acknowledged"], detail                     # and nothing else was created
    assert r["server_alive"], detail
