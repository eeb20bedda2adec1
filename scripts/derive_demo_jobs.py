#!/usr/bin/env python3
"""Derive the demo's job list (src/suanli/examples/east-west.jobs.csv) from the Philly trace.

Input: the Pollux per-job table of the Microsoft Philly trace (columns
`timestamp,duration,num_gpus,gpu_time,cluster`; docs/DATA.md says where it comes from, and
scripts/fetch_traces.sh downloads it to data/traces/).
Output: a MODEL.md jobs CSV (`id,tenant,submit_h,gpus,work_h,gpu_types,class,deadline_h,
origin,data_gb,max_rtt_ms,checkpoint_h`; an empty cell means "not set").

Steps (docs/DEMO.md describes them for readers):
1. Window: jobs submitted in [--window-start, +72 h); submit_h = hours since the window start.
2. Filters: drop jobs shorter than 60 s (as Pollux's generator does).
3. work_h = duration in hours, read as reference-GPU (speed 1.0) hours, clipped to --clip-h.
   gpus = num_gpus, capped at the largest pool of the demo network.
4. Size class by clipped GPU-hours (Pollux's buckets): S < 1, M 1-10, L 10-100, XL > 100.
   A seeded stratified sample takes --quota jobs of each class (all of a class if it has fewer).
5. Synthetic attributes, all drawn from one numpy Generator seeded with --seed, in job order:
   tenant, origin, gpu_types, class, deadline_h, data_gb, max_rtt_ms, checkpoint_h.

Standard library + numpy only. The same arguments always give the same bytes.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import sys
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TRACE = os.path.normpath(os.path.join(HERE, "..", "data", "traces",       # scripts/fetch_traces.sh
                                              "philly_pollux_jobs.csv"))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "src", "suanli", "examples",
                                            "east-west.jobs.csv"))

# Must match the pools in src/suanli/examples/east-west.yaml: the largest pool of each GPU
# type, so that a job restricted to some types still fits somewhere.
MAX_POOL = {"h100": 32, "a800": 64, "910b": 64}

# Consumer cities (eastern demand) and their weights in the draw of a tenant's home city.
CITY_WEIGHTS = {"beijing": 0.28, "shanghai": 0.22, "shenzhen": 0.15,
                "hangzhou": 0.12, "guangzhou": 0.11, "zhengzhou": 0.12}
HOME_SHARE = 0.6                 # share of a tenant's jobs that come from its home city

SIZE_EDGES = (1.0, 10.0, 100.0)  # GPU-hour bucket edges: S | M | L | XL
SIZE_NAMES = ("S", "M", "L", "XL")
DATA_GB = {"S": (5, 50), "M": (20, 300), "L": (100, 1500), "XL": (500, 5000)}  # log-uniform

P_NO_DEADLINE = 0.2              # share of jobs without a deadline
SLACK = (1.5, 4.0)               # deadline = submit + max(slack * work_h, MIN_DEADLINE_H)
MIN_DEADLINE_H = 0.5
P_CUDA_ONLY = 0.20               # gpu_types h100;a800
P_ASCEND_ONLY = 0.06             # gpu_types 910b
P_LLM = 0.5                      # share of big jobs (>= 8 GPUs, >= 4 h) in class llm-train
N_INFERENCE = 15                 # latency-bound, inference-like jobs
RTT_CHOICES = (20, 30, 40)       # ms
CHECKPOINT_CHOICES = (0.5, 0.75, 1.0)
CHECKPOINT_MIN_WORK_H = 2.0

COLUMNS = ["id", "tenant", "submit_h", "gpus", "work_h", "gpu_types", "class", "deadline_h",
           "origin", "data_gb", "max_rtt_ms", "checkpoint_h"]


def fmt(x: float, nd: int = 4) -> str:
    """A short decimal: at most nd decimals, no trailing zeros."""
    s = f"{x:.{nd}f}".rstrip("0").rstrip(".")
    return s if s else "0"


def read_trace(path: str) -> list[dict]:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("timestamp")]
    for r in rows:
        r["t"] = dt.datetime.fromisoformat(r["timestamp"])
        r["duration"] = float(r["duration"])
        r["num_gpus"] = int(r["num_gpus"])
    return rows


def tenant_names(rows: list[dict]) -> dict[str, str]:
    """Hashed VC id -> vc01..vc15, by job count over the whole trace (ties: the hash)."""
    counts = Counter(r["cluster"] for r in rows)
    order = sorted(counts, key=lambda c: (-counts[c], c))
    return {c: f"vc{i + 1:02d}" for i, c in enumerate(order)}


def derive(rows: list[dict], window_start: dt.datetime, window_h: float, clip_h: float,
           quota: dict[str, int], seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    vc = tenant_names(rows)
    max_gpus = max(MAX_POOL.values())
    end = window_start + dt.timedelta(hours=window_h)

    # 1-3: window, filter, units
    win = []
    for r in rows:
        if not (window_start <= r["t"] < end) or r["duration"] < 60.0:
            continue
        work = min(r["duration"] / 3600.0, clip_h)
        gpus = min(r["num_gpus"], max_gpus)
        size = SIZE_NAMES[int(np.searchsorted(SIZE_EDGES, work * gpus, side="right"))]
        win.append(dict(t=r["t"], cluster=r["cluster"], work=work, gpus=gpus, size=size))
    # a stable order before sampling: submit time, then the trace's own fields
    win.sort(key=lambda j: (j["t"], j["cluster"], j["work"], j["gpus"]))

    # 4: stratified sample
    chosen = []
    for size in SIZE_NAMES:
        idx = [i for i, j in enumerate(win) if j["size"] == size]
        k = min(quota[size], len(idx))
        pick = rng.choice(len(idx), size=k, replace=False) if k < len(idx) else range(len(idx))
        chosen.extend(idx[i] for i in pick)
    jobs = [win[i] for i in sorted(chosen)]

    # 5: synthetic attributes
    cities = list(CITY_WEIGHTS)
    w = np.array([CITY_WEIGHTS[c] for c in cities])
    w = w / w.sum()
    homes = {}
    for name in sorted(set(vc.values())):            # every tenant gets a home city
        homes[name] = cities[int(rng.choice(len(cities), p=w))]

    small = [i for i, j in enumerate(jobs) if j["gpus"] <= 2 and j["work"] <= 2.0]
    inference = set(int(i) for i in rng.choice(small, size=min(N_INFERENCE, len(small)),
                                                replace=False))

    out = []
    for i, j in enumerate(jobs):
        submit = (j["t"] - window_start).total_seconds() / 3600.0
        tenant = vc[j["cluster"]]
        origin = homes[tenant] if rng.random() < HOME_SHARE else \
            cities[int(rng.choice(len(cities), p=w))]

        u = rng.random()
        if i in inference:
            types = None
        elif u < P_CUDA_ONLY:
            types = ("h100", "a800")
        elif u < P_CUDA_ONLY + P_ASCEND_ONLY:
            types = ("910b",)
        else:
            types = None
        allowed = types or tuple(MAX_POOL)
        gpus = min(j["gpus"], max(MAX_POOL[g] for g in allowed))

        big = gpus >= 8 and j["work"] >= 4.0
        llm = rng.random() < P_LLM
        cls = "inference" if i in inference else ("llm-train" if big and llm else None)

        has_dl = rng.random() >= P_NO_DEADLINE
        slack = rng.uniform(*SLACK)
        deadline = submit + max(slack * j["work"], MIN_DEADLINE_H) if has_dl else None

        lo, hi = DATA_GB["S"] if i in inference else DATA_GB[j["size"]]
        data_gb = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

        rtt = int(rng.choice(RTT_CHOICES)) if i in inference else None
        ck = float(rng.choice(CHECKPOINT_CHOICES))
        ck = ck if j["work"] > CHECKPOINT_MIN_WORK_H else None

        submit_s, work_s = fmt(submit), fmt(j["work"])
        if deadline is not None:
            deadline = max(deadline, float(submit_s) + MIN_DEADLINE_H)
        out.append({
            "id": f"j-{i + 1:04d}",
            "tenant": tenant,
            "submit_h": submit_s,
            "gpus": str(gpus),
            "work_h": work_s,
            "gpu_types": ";".join(types) if types else "",
            "class": cls or "",
            "deadline_h": fmt(deadline, 3) if deadline is not None else "",
            "origin": origin,
            "data_gb": str(int(round(data_gb))),
            "max_rtt_ms": str(rtt) if rtt is not None else "",
            "checkpoint_h": fmt(ck) if ck is not None else "",
        })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=DEFAULT_TRACE, help="philly_pollux_jobs.csv")
    ap.add_argument("--out", default=DEFAULT_OUT, help="jobs CSV to write ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--window-start", default="2017-11-20 00:00:00",
                    help="trace time of hour 0 (the trace's own clock)")
    ap.add_argument("--window-h", type=float, default=72.0)
    ap.add_argument("--clip-h", type=float, default=48.0, help="longest work_h kept")
    ap.add_argument("--quota", default="70,80,81,69",
                    help="jobs sampled from the S,M,L,XL size classes")
    a = ap.parse_args(argv)

    q = [int(x) for x in a.quota.split(",")]
    if len(q) != 4:
        ap.error("--quota needs four comma-separated integers (S,M,L,XL)")
    try:
        rows = read_trace(a.trace)
    except OSError as e:
        print(f"derive_demo_jobs: cannot read {a.trace}: {e} (scripts/fetch_traces.sh downloads it)", file=sys.stderr)
        return 2
    jobs = derive(rows, dt.datetime.fromisoformat(a.window_start), a.window_h, a.clip_h,
                  dict(zip(SIZE_NAMES, q, strict=True)), a.seed)

    f = sys.stdout if a.out == "-" else open(a.out, "w", newline="")
    try:
        wr = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        wr.writeheader()
        wr.writerows(jobs)
    finally:
        if f is not sys.stdout:
            f.close()
    gpu_h = sum(int(j["gpus"]) * float(j["work_h"]) for j in jobs)
    print(f"derive_demo_jobs: {len(jobs)} jobs, {gpu_h:.0f} reference GPU-hours -> {a.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
