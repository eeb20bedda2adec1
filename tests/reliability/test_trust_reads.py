"""Reads of a big month are bounded ("Trust part two" 7).

Invoices and GET /v1/dashboard/tenants read every ledger row of the month in Python: at 50,000
jobs they took seconds and megabytes, and four concurrent callers slowed everyone else's reads
(bench/big_invoices.py measures it; docs/RELIABILITY.md has the figures). Now the totals are
summed by the database and the lines come in pages (`limit` <= 1000, `cursor`); the CSV export
streams every line.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import svc  # noqa: E402
from big_invoices import fill  # noqa: E402
from sqlalchemy import select  # noqa: E402

from suanli.service.models import Tenant  # noqa: E402

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module
N = 2_500


def test_a_big_month_is_summed_in_the_database_and_read_in_pages(service):
    month = datetime.now(UTC).strftime("%Y-%m")
    big, small = service.client(service.tenant("big")), service.client(service.tenant("small"))
    with service.sessions() as s:
        big_id = s.scalar(select(Tenant.id).where(Tenant.name == "big"))
    fill(service.sessions, big_id, N, month)           # N finished jobs, 3.07 CNY and 0.054 kg each

    r = big.get("/v1/invoices", params={"month": month})
    assert r.status_code == 200
    (inv,) = r.json()
    assert len(inv["lines"]) == 1000 and inv["line_count"] == N and inv["next_cursor"] is not None
    assert inv["total_cny"] == pytest.approx(N * 3.07) and inv["gpu_h"] == pytest.approx(N * 0.1)
    seen = [ln["job_id"] for ln in inv["lines"]]
    while inv["next_cursor"] is not None:
        inv = big.get("/v1/invoices", params={"month": month, "cursor": inv["next_cursor"], "limit": 700}).json()[0]
        assert len(inv["lines"]) <= 700 and inv["total_cny"] == pytest.approx(N * 3.07)
        seen += [ln["job_id"] for ln in inv["lines"]]
    assert len(seen) == len(set(seen)) == N and seen == sorted(seen)
    assert big.get("/v1/invoices", params={"month": month, "limit": 1001}).status_code == 422

    rows = list(csv.reader(io.StringIO(big.get("/v1/invoices", params={"month": month, "format": "csv"}).text)))
    assert rows[0][:4] == ["tenant", "month", "job_id", "name"] and len(rows) == N + 2
    total = rows[0].index("total_cny")           # by name: the basis and kind columns follow it
    assert rows[-1][2] == "total" and float(rows[-1][total]) == pytest.approx(N * 3.07)
    assert sorted(int(x[2]) for x in rows[1:-1]) == sorted(seen)

    d = big.get("/v1/dashboard/tenants", params={"month": month}).json()["tenants"][0]
    assert len(d["invoice"]["lines"]) == 1000 and d["invoice"]["next_cursor"] is not None
    assert d["carbon"]["kg"] == pytest.approx(N * 0.054) and d["carbon"]["unknown_origin_jobs"] in (0, N)
    if d["carbon"]["unknown_origin_jobs"] == 0:          # beijing's province factor, where the network has one
        assert d["carbon"]["avoided_kg"] == pytest.approx(d["carbon"]["origin_grid_kg"] - d["carbon"]["kg"])
    assert [j["job_id"] for j in d["jobs"]] == [ln["job_id"] for ln in d["invoice"]["lines"]]
    nxt = big.get("/v1/dashboard/tenants", params={"month": month, "cursor": d["invoice"]["next_cursor"],
                                                   "limit": 10}).json()["tenants"][0]
    assert [ln["job_id"] for ln in nxt["invoice"]["lines"]] == seen[1000:1010]

    (other,) = small.get("/v1/invoices", params={"month": month}).json()       # another tenant: its own, empty
    assert other["lines"] == [] and other["line_count"] == 0 and other["total_cny"] == 0
