"""Suspend and resume against single runs, on a single-site, carbon-only network.

Writes a scenario (one site of ample GPUs, no rental, no tariff, carbon at 1 CNY/kg, a carbon
series of a daily swing, a 7.3-hour ripple and noise; jobs of log-normal length with one-minute
checkpoints and GAIA's windows: 6 h for jobs under 2 h, else 24 h) and runs fifo, suanli without
suspend-resume and suanli, printing carbon, its saving against fifo, lateness, wait-excess,
segments and the policy's time. With `--scenario FILE` it runs an existing scenario instead (any
scenario; suspend-resume applies to its checkpointing jobs).

    PYTHONPATH=src python bench/suspend.py --jobs 1000 --seed 2 --out /tmp/suspend-carbon.yaml
"""

from __future__ import annotations

import argparse
import math
import random
import time

import yaml

from suanli.accounting import account, validate
from suanli.model.load import load_scenario
from suanli.scheduling import policies
from suanli.scheduling.policies.suanli import Suanli
from suanli.sim.engine import simulate


def carbon_doc(jobs: int, seed: int, days: int = 10) -> dict:
    rng = random.Random(seed)
    hours = 24 * days
    carbon = [round(0.5 + 0.3 * math.sin(2 * math.pi * t / 24) + 0.12 * math.sin(2 * math.pi * t / 7.3)
                    + rng.uniform(-0.08, 0.08), 4) for t in range(hours)]
    rows = []
    for i in range(jobs):
        work = round(rng.lognormvariate(0.3, 0.9), 3)
        rows.append({"id": f"j{i:04d}", "submit_h": round(rng.uniform(0, 168), 3),
                     "gpus": rng.choice([1, 1, 2, 4, 8]), "work_h": work, "origin": "de",
                     "checkpoint_h": round(1 / 60, 12), "max_wait_h": 6 if work < 2 else 24})
    return {"name": f"suspend-carbon-{jobs}-s{seed}", "start": "2020-10-19T00:00:00+00:00", "horizon_h": 168,
            "gpu_types": {"v100": {"power_kw": 0.3, "speed": 1.0}},
            "cities": {"de": {"lat": 50.1, "lon": 8.7}}, "links": [],
            "sites": [{"id": "de-1", "city": "de", "pue": 1.0,
                       "gpus": {"v100": {"count": 100000, "cny_per_gpu_h": 0.0}},
                       "grid": {"carbon_kg_per_kwh": carbon, "cny_per_kwh": 0.0}, "renewables": {"kw": 0}}],
            "jobs": rows,
            "objective": {"carbon_cny_per_kg": 1.0, "late_cny_per_gpu_h": 50, "unfinished_cny": 100000,
                          "dr_cny_per_kwh": 0, "wait_cny_per_gpu_h": 50}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", default="/tmp/suspend-carbon.yaml", help="where the generated scenario is written")
    ap.add_argument("--scenario", default=None, help="run this scenario instead of generating one")
    args = ap.parse_args()
    path = args.scenario
    if path is None:
        path = args.out
        with open(path, "w") as f:
            yaml.safe_dump(carbon_doc(args.jobs, args.seed), f, sort_keys=False)
    scn = load_scenario(path)
    simulate(scn, Suanli(suspend=False))        # warm-up: compile and load the pricing kernels
    rows, base = [], None
    for name, make in (("fifo", lambda: policies.make("fifo")), ("suanli, single runs", lambda: Suanli(suspend=False)),
                       ("suanli, suspend-resume", lambda: Suanli(suspend=True))):
        t0 = time.perf_counter()
        res = simulate(scn, make())
        wall = time.perf_counter() - t0
        violations, outcomes = validate(scn, res.segments)
        m = account(scn, res.segments, outcomes=outcomes).metrics
        base = m["carbon_kg"] if base is None else base
        rows.append(f"| {name} | {m['carbon_kg']:,.2f} | {100 * (1 - m['carbon_kg'] / base):.1f} % | "
                    f"{m['objective_cny']:,.2f} | {m['late_gpu_h']:.1f} | {m['wait_excess_gpu_h']:.1f} | "
                    f"{m['jobs_finished']} | {len(res.segments)} | {len(violations)} | {wall:.2f} |")
    print(f"{scn.name}: {len(scn.jobs)} jobs ({path})\n")
    print("| policy | carbon kg | saved vs fifo | objective | late GPU-h | wait-excess GPU-h | finished | segments "
          "| violations | policy s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
