#!/usr/bin/env python3
"""How policy time grows with sites and with jobs.

    .venv/bin/python bench/scaling.py [--sites 10,50,100,1000] [--jobs 2000] [--policies fifo,suanli] [--repeat 1]

Builds seeded synthetic networks in memory: N sites in N cities on a ring with chords, every
site with all four GPU types (h100, a800, 910b, l40s), hourly tariffs and renewables, and M
jobs arriving over 72 hours at about half the network's capacity; then times the simulator
with each policy (`sim_wall_s`: the event loop and the policy, not loading or accounting) and
prints jobs placed per second. One core: the simulator is single-threaded. With `--repeat N`
each run is timed N times and the fastest kept (on a shared machine the others are noise);
every run builds a fresh policy, and the network's paths are computed once per scenario.
"""

from __future__ import annotations

import argparse
import random
import time

from suanli.model.load import parse_scenario
from suanli.scheduling import policies
from suanli.sim.engine import simulate

TYPES = {"h100": (0.7, 2.0, 16.0), "a800": (0.4, 1.0, 7.0), "910b": (0.4, 0.9, 5.0), "l40s": (0.35, 0.8, 4.0)}


def network(n_sites: int, n_jobs: int, seed: int = 1, hours: float = 72.0) -> dict:
    rng = random.Random(seed)
    cities = {f"c{i}": {"lat": 20 + (i % 25), "lon": 90 + (i % 30)} for i in range(n_sites)}
    links = [{"a": f"c{i}", "b": f"c{(i + 1) % n_sites}", "gbps": 100, "latency_ms": rng.randint(2, 9),
              "cny_per_gb": 0.01} for i in range(n_sites)] if n_sites > 1 else []
    links += [{"a": f"c{i}", "b": f"c{(i + n_sites // 3) % n_sites}", "gbps": 40, "latency_ms": rng.randint(5, 15),
               "cny_per_gb": 0.02} for i in range(0, n_sites, 5) if n_sites > 3]
    work_per_job = 2.0 * 3.0            # mean gpus (~3) x mean work (2 h)
    per_pool = max(8, round(n_jobs * work_per_job / (0.5 * hours * n_sites * 4 * 1.2)))
    sites = []
    for i in range(n_sites):
        sites.append({
            "id": f"s{i}", "city": f"c{i}", "pue": 1.2,
            "gpus": {g: {"count": per_pool, "cny_per_gpu_h": round(p * rng.uniform(0.8, 1.2), 2)}
                     for g, (_, _, p) in TYPES.items()},
            "grid": {"carbon_kg_per_kwh": round(rng.uniform(0.3, 0.7), 3),
                     "cny_per_kwh": [0.3] * 7 + [0.6] * 11 + [0.9] * 6},
            "renewables": {"kw": [0.0] * 7 + [per_pool * 0.5] * 10 + [0.0] * 7, "cny_per_kwh": 0.15},
            "battery": {"capacity_kwh": per_pool, "power_kw": per_pool / 4, "efficiency": 0.9, "initial_soc": 0.5}
            if i % 2 == 0 else None,
        })
        if sites[-1]["battery"] is None:
            del sites[-1]["battery"]
    jobs = []
    for j in range(n_jobs):
        submit = round(rng.uniform(0, hours), 4)
        work = round(min(24.0, rng.lognormvariate(0.4, 0.9)), 3)
        job = {"id": f"j{j}", "submit_h": submit, "gpus": rng.choice([1, 1, 1, 2, 4, 8]), "work_h": work,
               "origin": f"c{rng.randrange(n_sites)}", "data_gb": rng.choice([0, 10, 100])}
        if rng.random() < 0.7:
            job["deadline_h"] = round(submit + work * rng.uniform(1.5, 4) + 0.5, 3)
        if rng.random() < 0.5:
            job["checkpoint_h"] = 1.0
        jobs.append(job)
    return {"name": f"scale-{n_sites}x{n_jobs}", "start": "2026-06-01T00:00:00+08:00", "horizon_h": hours,
            "gpu_types": {g: {"power_kw": kw, "speed": sp} for g, (kw, sp, _) in TYPES.items()},
            "cities": cities, "links": links, "sites": sites, "jobs": jobs,
            "objective": {"carbon_cny_per_kg": 0.1, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                          "dr_cny_per_kwh": 10}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", default="10,50,100,1000")
    ap.add_argument("--jobs", default="2000")
    ap.add_argument("--policies", default="fifo,suanli")
    ap.add_argument("--repeat", type=int, default=1, help="time each run N times, keep the fastest")
    a = ap.parse_args()
    print("| policy | sites | pools | jobs | sim s | jobs/s |")
    print("|---|---|---|---|---|---|")
    for n in (int(x) for x in a.sites.split(",")):
        for m in (int(x) for x in a.jobs.split(",")):
            scn = parse_scenario(network(n, m), f"scale-{n}x{m}")
            for p in a.policies.split(","):
                dt = float("inf")
                for _ in range(max(1, a.repeat)):
                    t0 = time.perf_counter()
                    simulate(scn, policies.make(p))
                    dt = min(dt, time.perf_counter() - t0)
                print(f"| {p} | {n} | {4 * n} | {m} | {dt:.2f} | {m / dt:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
