"""Reads of a big month (docs/RELIABILITY.md, "Unbounded reads"): a tenant with N metered jobs
(rows inserted directly: jobs and usage), then

- GET /v1/invoices and GET /v1/dashboard/tenants for that month: seconds and bytes (every page,
  following `next_cursor` where the answer has one, and the first page alone);
- another tenant's GET /v1/jobs p50, alone and while 4 callers read the big month in a loop.

    PYTHONPATH=src python bench/big_invoices.py --jobs 50000

Measured (dev, 2 cores, load average ~17, SQLite), before -> after paging:
  /v1/invoices              2.9 s, 9.7 MB      -> first page 0.15 s, 0.19 MB (all 50 pages: 5.6 s)
  /v1/dashboard/tenants    11.4 s, 16.8 MB     -> first page 0.20 s, 0.33 MB (all 50 pages: 4.8 s)
  another tenant's GET /v1/jobs p50 with 4 callers reading the big month: 399 ms -> 66 ms
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from suanli.service import auth, limits
from suanli.service.models import Job, Tenant, Usage
from suanli.service.server import ThreadServer, build

NETWORK = str(Path(__file__).parents[1] / "tests" / "service" / "data" / "network.yaml")


def fill(sessions, tenant_id: int, n: int, month: str) -> None:
    with sessions.begin() as s:
        jobs = [{"tenant_id": tenant_id, "name": f"job-{k}", "command": "true", "spec": {"origin": "beijing",
                 "work_h": 0.1}, "gpus": 1, "state": "SUCCEEDED", "reason": "exit code 0", "submit_h": 0.0,
                 "remaining_work": 0.1, "hosted": ["east-1"], "site": "east-1", "gpu_type": "h100",
                 "start_h": 0.0, "end_h": 0.1, "fence": 1} for k in range(n)]
        s.execute(Job.__table__.insert(), jobs)
        ids = [i for (i,) in s.execute(Job.__table__.select().with_only_columns(Job.id)
                                       .where(Job.tenant_id == tenant_id).order_by(Job.id))]
        s.execute(Usage.__table__.insert(), [
            {"job_id": i, "tenant_id": tenant_id, "fence": 1, "site": "east-1", "gpu_type": "h100", "gpus": 1,
             "start_h": 0.0, "end_h": 0.1, "month": month, "gpu_seconds": 360.0, "energy_kwh": 0.09,
             "grid_kwh": 0.09, "renewable_kwh": 0.0, "carbon_kg": 0.054, "gpu_cny": 3.0, "energy_cny": 0.07,
             "transfer_cny": 0.0, "total_cny": 3.07, "recorded_at": datetime.now(UTC)} for i in ids])


def read_all(c: httpx.Client, path: str, params: dict, first_only: bool = False) -> tuple[float, int]:
    """(seconds, bytes) of reading `path`, following each tenant's `next_cursor` unless `first_only`."""
    t, size = time.perf_counter(), 0
    r = c.get(path, params=params)
    r.raise_for_status()
    size += len(r.content)
    body = r.json()
    invs = body if isinstance(body, list) else [t_["invoice"] for t_ in body.get("tenants", [])]
    for inv in invs:
        cur = inv.get("next_cursor")
        while cur is not None and not first_only:
            r = c.get("/v1/invoices", params={**params, "tenant": inv["tenant"], "cursor": cur, "limit": 1000})
            r.raise_for_status()
            size += len(r.content)
            cur = r.json()[0].get("next_cursor")
    return time.perf_counter() - t, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=50_000)
    ap.add_argument("--samples", type=int, default=40)
    a = ap.parse_args()
    month = datetime.now(UTC).strftime("%Y-%m")
    limits.DEFAULT.rate_per_s = None           # the callers here are one token each, faster than 100/s
    with tempfile.TemporaryDirectory() as d:
        app = build(NETWORK, f"sqlite:///{d}/bench.db", policy="fifo", checkpoint_store=Path(d) / "store")
        sessions = app.state.controller.sessions
        with sessions.begin() as s:
            big = auth.create_tenant(s, "big", {}, None)
            small = auth.create_tenant(s, "small", {}, None)
            big_id = s.scalar(select(Tenant.id).where(Tenant.name == "big"))
        fill(sessions, big_id, a.jobs, month)
        with ThreadServer(app) as url:
            hb = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {big}"}, timeout=120)
            hs = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {small}"}, timeout=120)
            for path in ("/v1/invoices", "/v1/dashboard/tenants"):
                read_all(hb, path, {"month": month})            # warm
                secs, size = read_all(hb, path, {"month": month})
                print(f"{path}: all lines {secs:.2f} s, {size / 1e6:.1f} MB")
                secs, size = read_all(hb, path, {"month": month}, first_only=True)
                print(f"{path}: first page {secs:.3f} s, {size / 1e6:.2f} MB")

            def p50() -> float:
                out = []
                for _ in range(a.samples):
                    t = time.perf_counter()
                    hs.get("/v1/jobs").raise_for_status()
                    out.append(time.perf_counter() - t)
                return statistics.median(out) * 1000
            print(f"another tenant's GET /v1/jobs p50 alone: {p50():.1f} ms")
            stop = threading.Event()

            def hammer(path: str) -> None:
                c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {big}"}, timeout=120)
                while not stop.is_set():
                    c.get(path, params={"month": month})
            threads = [threading.Thread(target=hammer, args=(p,), daemon=True)
                       for p in ("/v1/invoices", "/v1/dashboard/tenants") * 2]
            for t in threads:
                t.start()
            time.sleep(1.0)
            print(f"another tenant's GET /v1/jobs p50 with 4 callers reading the big month: {p50():.1f} ms")
            stop.set()
            for t in threads:
                t.join(timeout=120)


if __name__ == "__main__":
    main()
