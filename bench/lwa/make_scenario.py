#!/usr/bin/env python3
"""Let's Wait Awhile's ML-jobs scenario as a suanli scenario: 3,387 jobs over 2020, one site.

The jobs are LWA's own draws (`suanli.traces.carbon_shift.lwa_ml_jobs`, the same jobs as its
`generate_batch_jobs` with seed 0), each with the window of LWA's rule (`lwa-mon-thu`: results
by the next Monday or Thursday 09:00; `lwa-next-workday`; or `none`, the ad-hoc baseline; with `--window code`, the
default, 30 minutes more, as LWA's simulator allows: see `carbon_shift.lwa_jobs`);
carbon is `data/<country>_ci.csv` of a clone of `dos-group/lets-wait-awhile` (not kept here:
the repository carries no licence), from 2020-01-01 00:00 to its end, hourly.

    PYTHONPATH=src python bench/lwa/make_scenario.py --carbon /tmp/lets-wait-awhile/data/ger_ci.csv \\
        --rule lwa-mon-thu --out /tmp/lwa-monthu.yaml
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from suanli.traces.carbon_shift import (
    LWA_CODE_SLACK_H,
    LWA_YEAR_START,
    carbon_only_scenario,
    lwa_jobs,
    lwa_ml_jobs,
    read_lwa_carbon,
)

RULES = ("lwa-mon-thu", "lwa-next-workday", "none")
YEAR_H = 8784.0     # 2020 (a leap year): jobs are submitted within it


def build(carbon_csv: str, rule: str = "lwa-mon-thu", checkpoint_min: float | None = None,
          window: str = "code") -> dict:
    if rule not in RULES:
        raise ValueError(f"--rule: {rule!r} is not one of {', '.join(RULES)}")
    hourly = read_lwa_carbon(carbon_csv)
    cp = checkpoint_min / 60.0 if checkpoint_min else None
    if window not in ("code", "paper"):
        raise ValueError(f"--window: {window!r} is not code or paper")
    slack = LWA_CODE_SLACK_H if window == "code" and rule != "none" else 0.0
    jobs = lwa_jobs(lwa_ml_jobs(), None if rule == "none" else rule, checkpoint_h=cp, slack_h=slack)
    tag = rule + (f"-{window}" if rule != "none" else "") + (f"-cp{checkpoint_min:g}min" if cp else "")
    country = os.path.basename(carbon_csv).split("_")[0]
    return carbon_only_scenario(f"lwa-ml-{country}2020-{tag}", LWA_YEAR_START, hourly, jobs, horizon_h=YEAR_H,
                                description=f"Let's Wait Awhile's ML jobs, {country} 2020 carbon, rule {rule}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--carbon", required=True, help="LWA's data/ger_ci.csv (or another country's)")
    ap.add_argument("--rule", choices=RULES, default="lwa-mon-thu")
    ap.add_argument("--window", choices=("code", "paper"), default="code",
                    help="code: the rule's window plus the 30 minutes LWA's simulator allows beyond it; "
                         "paper: the rule's window")
    ap.add_argument("--checkpoint-min", type=float, default=None, help="checkpoint every this many minutes")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        doc = build(args.carbon, args.rule, args.checkpoint_min, args.window)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tmp = args.out + ".part"
    with open(tmp, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False, default_flow_style=None, width=200)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(doc['jobs'])} jobs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
