#!/usr/bin/env python3
"""GAIA's setup as a suanli scenario: its 1,000-job Alibaba PAI sample on one carbon series.

Jobs from `pai_1k.csv` (beside this file, from `umassos/GAIA`, MIT; see README.md), carbon from
Let's Wait Awhile's German 2020 series (`data/ger_ci.csv` of a clone of
`dos-group/lets-wait-awhile`, not kept here: it carries no licence), hours 7000-7719 of 2020 as
GAIA's `--start-index 7000` takes 720 hours. The mapping is `suanli.traces.carbon_shift`'s.

    PYTHONPATH=src python bench/gaia/make_scenario.py --carbon /tmp/lets-wait-awhile/data/ger_ci.csv \\
        --knowledge queue-mean --out /tmp/gaia-mean.yaml
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import yaml

from suanli.traces.carbon_shift import (
    LWA_YEAR_START,
    carbon_only_scenario,
    gaia_jobs,
    read_gaia_trace,
    read_lwa_carbon,
)

HERE = os.path.dirname(os.path.abspath(__file__))
START_INDEX = 7000
HOURS = 720


def build(carbon_csv: str, trace: str = os.path.join(HERE, "pai_1k.csv"), knowledge: str = "exact",
          checkpoint_min: float | None = None, start_index: int = START_INDEX) -> dict:
    hourly = read_lwa_carbon(carbon_csv)
    if start_index < 0 or start_index + HOURS > len(hourly):
        raise ValueError(f"--start-index {start_index}: the series has {len(hourly)} hours, {HOURS} are needed")
    cp = checkpoint_min / 60.0 if checkpoint_min else None
    jobs = gaia_jobs(read_gaia_trace(trace), knowledge=knowledge, checkpoint_h=cp)
    tag = knowledge + (f"-cp{checkpoint_min:g}min" if cp else "")
    return carbon_only_scenario(
        f"gaia-pai1k-de2020-{start_index}-{tag}", LWA_YEAR_START + dt.timedelta(hours=start_index),
        hourly[start_index:start_index + HOURS], jobs, horizon_h=HOURS,
        description=f"GAIA's pai_1k jobs, DE 2020 carbon hours {start_index}-{start_index + HOURS - 1}, "
                    f"waits 6 h / 24 h, knowledge {knowledge}")


def write(doc: dict, out: str) -> None:
    tmp = out + ".part"
    with open(tmp, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False, default_flow_style=None, width=200)
    os.replace(tmp, out)          # never a half-written scenario


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--carbon", required=True, help="LWA's data/ger_ci.csv")
    ap.add_argument("--trace", default=os.path.join(HERE, "pai_1k.csv"))
    ap.add_argument("--knowledge", choices=("exact", "queue-mean"), default="exact",
                    help="work_h: the true length, or the job's queue's mean (the truth in actual_work_h)")
    ap.add_argument("--checkpoint-min", type=float, default=None, help="checkpoint every this many minutes")
    ap.add_argument("--start-index", type=int, default=START_INDEX, help="first hour of 2020 (GAIA's -i)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        doc = build(args.carbon, args.trace, args.knowledge, args.checkpoint_min, args.start_index)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write(doc, args.out)
    print(f"wrote {args.out} ({len(doc['jobs'])} jobs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
