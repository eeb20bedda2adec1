"""The cost of a Prometheus scrape of GET /metrics (docs/SERVICE.md, "Metrics"), as the database grows.

    PYTHONPATH=src python bench/metrics_scrape.py --jobs 0,10000,50000

For each size: a fresh SQLite database whose epoch is `--age-h` hours back (the battery's state is
then carried over that many hours), the example network (examples/east-west.yaml, 7 sites, solar
and wind models, two batteries; its jobs left out), N finished jobs, each with its metered run
(rows inserted directly) ending in the last `--history-h` hours (72: every run still loads its
site's energy balance, the worst case), and 100 PENDING jobs. Then a real server (uvicorn in a
thread) is scraped `--samples` times with an admin token: the first scrape (it resolves the
renewable series for the hours so far; once an hour) and the median and p95 of the others, with
the bytes of the page.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from suanli.model.load import load_scenario
from suanli.service import auth, limits
from suanli.service.db import open_db
from suanli.service.models import Job, Meta, Tenant, Usage
from suanli.service.server import ThreadServer, build

EXAMPLE = str(Path(__file__).parents[1] / "examples" / "east-west.yaml")


def fill(sessions, net, n: int, age_h: float, history_h: float, seed: int = 1) -> None:
    rng = random.Random(seed)
    pools = [(sid, g) for sid, site in net.sites.items() for g in site.gpus]
    with sessions.begin() as s:
        t = Tenant(name="bench", quota={}, budget_cny=None)
        s.add(t)
        s.flush()
        runs = []
        for _ in range(n):
            site, g = rng.choice(pools)
            end = age_h - rng.uniform(0.0, history_h)
            runs.append((site, g, rng.choice([1, 2, 4, 8]), max(0.0, end - rng.uniform(0.05, 6.0)), end))
        jobs = [{"tenant_id": t.id, "name": f"job-{k}", "command": "true", "spec": {"origin": "beijing", "work_h": 1.0},
                 "gpus": n_, "state": "SUCCEEDED", "reason": "exit code 0", "submit_h": a, "remaining_work": 0.0,
                 "hosted": [site], "site": site, "gpu_type": g, "start_h": a, "end_h": b, "fence": 1}
                for k, (site, g, n_, a, b) in enumerate(runs)]
        if jobs:
            s.execute(Job.__table__.insert(), jobs)
        s.execute(Job.__table__.insert(), [
            {"tenant_id": t.id, "name": f"wait-{k}", "command": "true", "spec": {"origin": "beijing", "work_h": 1.0},
             "gpus": 1, "state": "PENDING", "reason": "", "submit_h": age_h, "remaining_work": 1.0, "hosted": [],
             "fence": 0}
            for k in range(100)])
        ids = [i for (i,) in s.execute(Job.__table__.select().with_only_columns(Job.id)
                                       .where(Job.state == "SUCCEEDED").order_by(Job.id))]
        if ids:
            s.execute(Usage.__table__.insert(), [
                {"job_id": i, "tenant_id": t.id, "fence": 1, "site": site, "gpu_type": g, "gpus": n_,
                 "start_h": a, "end_h": b, "month": "2026-01", "gpu_seconds": 0.0, "energy_kwh": 0.0,
                 "grid_kwh": 0.0, "renewable_kwh": 0.0, "carbon_kg": 0.0, "gpu_cny": 0.0, "energy_cny": 0.0,
                 "transfer_cny": 0.0, "total_cny": 0.0, "recorded_at": datetime.now(UTC)}
                for i, (site, g, n_, a, b) in zip(ids, runs, strict=True)])


def one(n: int, a: argparse.Namespace) -> dict:
    scn = load_scenario(a.network)
    net = replace(scn, jobs=[], job_index={})
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/bench.db"
        sessions = open_db(url)
        with sessions.begin() as s:
            s.add(Meta(key="epoch", value=(datetime.now(UTC) - timedelta(hours=a.age_h)).isoformat()))
        fill(sessions, net, n, a.age_h, a.history_h)
        sessions.kw["bind"].dispose()
        # tick_s large: the controller's own ticks do not share the cores with the scrapes being timed
        app = build(net, url, policy="fifo", tick_s=3600.0, checkpoint_store=Path(d) / "store")
        with ThreadServer(app) as base:
            with app.state.controller.sessions.begin() as s:
                token = auth.create_admin_token(s)
            c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            times, size = [], 0
            for _ in range(a.samples):
                t0 = time.perf_counter()
                r = c.get("/metrics")
                times.append((time.perf_counter() - t0) * 1000.0)
                r.raise_for_status()
                size = len(r.content)
            assert "suanli_site_grid_kw" in r.text
        rest = sorted(times[1:])
        return {"jobs": n, "first_ms": times[0], "p50_ms": statistics.median(rest),
                "p95_ms": rest[max(0, int(0.95 * len(rest)) - 1)], "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", default="0,10000", help="comma-separated numbers of finished, metered jobs")
    ap.add_argument("--samples", type=int, default=31)
    ap.add_argument("--age-h", type=float, default=24 * 30.0, help="hours since the service's epoch")
    ap.add_argument("--history-h", type=float, default=72.0, help="the runs end within this many hours of now")
    ap.add_argument("--network", default=EXAMPLE)
    a = ap.parse_args()
    limits.DEFAULT.rate_per_s = None          # one caller, faster than the default 100/s
    rows = [one(int(n), a) for n in a.jobs.split(",")]
    print(f"host: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; SQLite; "
          f"epoch {a.age_h:g} h back; {a.samples} scrapes each")
    print("| jobs in the DB | first scrape ms | p50 ms | p95 ms | page bytes |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['jobs']:,} | {r['first_ms']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['bytes']:,} |")


if __name__ == "__main__":
    main()
