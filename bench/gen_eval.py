#!/usr/bin/env python3
"""suanli against the baselines on many generated scenarios (the figures in docs/SCHEDULER.md).

    .venv/bin/python bench/gen_eval.py [--small 24] [--medium 8] [--small-from 1] [--medium-from 101]
                                       [--out-dir /tmp/suanli-gen-eval]

Writes seeded scenarios with bench/gen_scenario.py (small: 4 sites, 60 jobs, 48 h, seeds from
1; medium: 6 sites, 300 jobs, 72 h, 2 outages and 2 grid caps, seeds from 101), runs the
four baselines and variants of suanli (as it is; never preempting a running job; stopping a
job at most once, or without limit; pricing every held plan again at each arrival; without
re-planning; `--variants` picks some) on each, and
prints every objective divided by the best baseline's, then the geometric mean per variant and
how many scenarios it loses to some baseline. One bad scenario says little (gang-bound
scenarios are chaotic); the mean over many does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from suanli.accounting import account
from suanli.model.load import load_scenario
from suanli.scheduling import policies
from suanli.scheduling.policies.suanli import Suanli
from suanli.sim.engine import simulate

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINES = ("fifo", "cheapest", "greenest", "wait-awhile")
VARIANTS = {"suanli": lambda: policies.make("suanli"),
            "no preemption": lambda: Suanli(preempt=False),
            "each job stopped at most once": lambda: Suanli(preempt_max_segments=1),
            "stops without limit": lambda: Suanli(preempt_max_segments=10**9),
            "every held plan priced again": lambda: Suanli(lazy_replan=False),
            "no re-planning": lambda: Suanli(commit_within_h=None)}


def generate(out_dir: str, n_small: int, n_medium: int, small_from: int = 1, medium_from: int = 101) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    specs = [(f"small-{s}", ["--sites", "4", "--jobs", "60", "--hours", "48", "--seed", str(s)])
             for s in range(small_from, small_from + n_small)]
    specs += [(f"medium-{s}", ["--sites", "6", "--jobs", "300", "--hours", "72", "--seed", str(s),
                               "--outages", "2", "--grid-caps", "2"])
              for s in range(medium_from, medium_from + n_medium)]
    paths = []
    for name, args in specs:
        path = os.path.join(out_dir, f"{name}.yaml")
        if not os.path.exists(path):
            subprocess.run([sys.executable, os.path.join(HERE, "gen_scenario.py"), *args, "--out", path],
                           check=True, capture_output=True)
        paths.append(path)
    return paths


def objective(scn, policy) -> float:
    return account(scn, simulate(scn, policy).segments).metrics["objective_cny"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=24)
    ap.add_argument("--medium", type=int, default=8)
    ap.add_argument("--small-from", type=int, default=1, help="first seed of the small scenarios")
    ap.add_argument("--medium-from", type=int, default=101, help="first seed of the medium scenarios")
    ap.add_argument("--out-dir", default="/tmp/suanli-gen-eval")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    a = ap.parse_args()
    chosen = a.variants.split(",")
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: no variant {unknown[0]!r} (there are: {', '.join(VARIANTS)})")
    ratios: dict[tuple[str, str], list[float]] = {}
    for path in generate(a.out_dir, a.small, a.medium, a.small_from, a.medium_from):
        scn = load_scenario(path)
        best = min(objective(scn, policies.make(p)) for p in BASELINES)
        kind = os.path.basename(path).split("-")[0]
        row = []
        for name in chosen:
            r = objective(scn, VARIANTS[name]()) / best
            ratios.setdefault((kind, name), []).append(r)
            row.append(f"{name} {r:.3f}")
        print(f"{os.path.basename(path)}: " + ", ".join(row), flush=True)
    for (kind, name), rs in ratios.items():
        print(f"{kind} / {name}: geometric mean {statistics.geometric_mean(rs):.3f}, "
              f"above the best baseline on {sum(r > 1.0001 for r in rs)} of {len(rs)}")


if __name__ == "__main__":
    main()
