#!/usr/bin/env python3
"""Build the whole Philly trace (82,247 jobs, 108 days) into a 10-site scenario, for timing.

    .venv/bin/python bench/philly_full.py [--sites 10] [--out-dir /tmp/philly-full]

Imports data/traces/philly_pollux_jobs.csv (scripts/fetch_traces.sh downloads it; --trace for another
copy) with `suanli trace import` defaults
(gangs capped at 64), takes a seeded 10-site network from bench/gen_scenario.py and scales its
pools so that the offered load (reference GPU-hours / speed-weighted capacity) is about 0.5.
The files are large and derived, so they are written outside the repository.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# where scripts/fetch_traces.sh puts it
TRACE = os.path.normpath(os.path.join(HERE, "..", "data", "traces", "philly_pollux_jobs.csv"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--out-dir", default="/tmp/philly-full")
    ap.add_argument("--load", type=float, default=0.5)
    ap.add_argument("--trace", default=TRACE,
                    help="philly_pollux_jobs.csv (default: the one scripts/fetch_traces.sh fetches)")
    a = ap.parse_args()
    if not os.path.isfile(a.trace):
        print(f"philly_full: --trace: {a.trace} not found (scripts/fetch_traces.sh downloads it; docs/DATA.md)",
              file=sys.stderr)
        return 2
    os.makedirs(a.out_dir, exist_ok=True)
    jobs = os.path.join(a.out_dir, "philly-full.jobs.csv")
    net = os.path.join(a.out_dir, "network.yaml")
    subprocess.run([sys.executable, "-m", "suanli", "trace", "import", "philly", a.trace, "--out", jobs,
                    "--max-gpus", "64"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, os.path.join(HERE, "gen_scenario.py"), "--sites", str(a.sites), "--jobs", "1",
                    "--hours", "24", "--seed", "82247", "--out", net], check=True)
    with open(net) as fh:
        raw = yaml.safe_load(fh)
    demand = 0.0
    last = 0.0
    with open(jobs) as fh:
        head = fh.readline().strip().split(",")
        g, w, s = head.index("gpus"), head.index("work_h"), head.index("submit_h")
        for line in fh:
            cells = line.rstrip("\n").split(",")
            demand += int(cells[g]) * float(cells[w])
            last = max(last, float(cells[s]))
    horizon = float(int(last) + 48)
    speed = {k: v["speed"] for k, v in raw["gpu_types"].items()}
    capacity = sum(p["count"] * speed[t] for site in raw["sites"] for t, p in site["gpus"].items()) * horizon
    k = demand / a.load / capacity
    for site in raw["sites"]:
        for p in site["gpus"].values():
            p["count"] = max(64, round(p["count"] * k))      # every gang (<= 64) fits every pool
    raw.update(name=f"philly-full-{a.sites}-sites", horizon_h=horizon, jobs_file="philly-full.jobs.csv", events=[])
    raw.pop("jobs", None)
    out = os.path.join(a.out_dir, "philly-full.yaml")
    with open(out, "w") as fh:
        yaml.safe_dump(raw, fh, sort_keys=False, width=120)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
