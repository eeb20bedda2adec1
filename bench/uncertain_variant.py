#!/usr/bin/env python3
"""A scenario's variant under uncertainty (MODEL.md §7): estimates, windows, forecasts.

Reads a scenario (jobs inline or in a `jobs_file`) and writes it with its jobs inline and, as
asked: each job's `work_h` taken as its true work (`actual_work_h`) and replaced by a
log-normal estimate (`--work-noise S`, `--estimate-bias M`: true x exp(M + S Z)); a
`max_wait_h` by GAIA's or LWA's rule (`--max-wait gaia|next-workday|mon-thu`, from the
scenario's `start`); a `forecast:` block (`--forecast-error R,C`). Seeded; the rules and the
noise model are `suanli.traces.uncertainty`'s.

    PYTHONPATH=src python bench/uncertain_variant.py bench/scenarios/public/small/scenario.yaml \\
        --work-noise 0.5 --max-wait gaia --forecast-error 0.3,0.1 --out /tmp/small-noisy.yaml
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from suanli.model.load import read_jobs_csv
from suanli.traces.uncertainty import RULES, make_uncertain, parse_start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--work-noise", type=float, default=0.0)
    ap.add_argument("--estimate-bias", type=float, default=0.0)
    ap.add_argument("--max-wait", choices=RULES, default=None)
    ap.add_argument("--forecast-error", default=None, metavar="R,C")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    with open(args.scenario) as fh:
        scen = yaml.safe_load(fh)
    jobs = scen.get("jobs")
    if jobs is None:
        rows, _ = read_jobs_csv(os.path.join(os.path.dirname(os.path.abspath(args.scenario)), scen.pop("jobs_file")))
        jobs = rows
    for j in jobs:
        for k in ("submit_h", "work_h", "actual_work_h"):
            if k in j:
                j[k] = float(j[k])
    jobs = make_uncertain(jobs, sigma=args.work_noise, bias=args.estimate_bias, rule=args.max_wait,
                         start=parse_start(scen["start"]), seed=args.seed)
    tail = {k: scen.pop(k) for k in ("objective", "events") if k in scen}
    scen.pop("jobs", None)
    if args.forecast_error:
        r, c = (float(x) for x in args.forecast_error.split(","))
        scen["forecast"] = {"renewables": {"error": r, "seed": args.seed},
                            "carbon": {"error": c, "seed": args.seed + 1}}
    scen["name"] = f"{scen.get('name', 'scenario')}-uncertain"
    scen["jobs"] = jobs
    scen.update(tail)
    with open(args.out, "w") as fh:
        yaml.safe_dump(scen, fh, sort_keys=False, default_flow_style=None, width=200)
    print(f"wrote {args.out} ({len(jobs)} jobs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
