#!/usr/bin/env python3
"""How much pricing a start by the expected run (docs/SCHEDULER.md) gains on GAIA's queue-mean
setup, beyond GAIA's one draw of lengths: redraw each job's true length from its queue's sample
(same jobs, arrivals and windows; seeds 0..N-1) and run suanli with starts priced by the
booking (`expect_lengths=False`) and by the expected run, carbon saved against fifo.

    PYTHONPATH=src python bench/gaia/length_redraws.py /tmp/gaia-lwa-repro/gaia-queue-mean.yaml --redraws 6

With `--compare plan-stops` (on the one-minute checkpoint scenario, gaia-queue-mean-cp1min.yaml),
it compares suanli without planned stops (`plan_stops=False`) and with them instead.

(the scenario is written by bench/reproduce_gaia_lwa.py).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from suanli.accounting import account, validate
from suanli.model.load import load_scenario
from suanli.scheduling.policies import make
from suanli.scheduling.policies.suanli import Suanli
from suanli.sim.engine import simulate


def carbon(scn, policy) -> float:
    result = simulate(scn, policy)
    violations, outcomes = validate(scn, result.segments)
    assert not violations, violations[:3]
    return account(scn, result.segments, outcomes=outcomes).metrics["carbon_kg"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--redraws", type=int, default=6)
    ap.add_argument("--compare", choices=("expect-lengths", "plan-stops"), default="expect-lengths")
    args = ap.parse_args()
    base = load_scenario(args.scenario)
    sample: dict[str | None, list[float]] = {}
    for j in base.jobs:
        sample.setdefault(j.class_, []).append(j.actual_work_h)
    for seed in [None, *range(args.redraws)]:
        if seed is None:
            scn, name = base, "GAIA's lengths"
        else:
            rng = np.random.default_rng(seed)
            jobs = [j.model_copy(update={"actual_work_h": float(rng.choice(sample[j.class_]))}) for j in base.jobs]
            scn, name = replace(base, jobs=jobs), f"redraw {seed}"
        fifo = carbon(scn, make("fifo"))
        if args.compare == "plan-stops":
            before, after = carbon(scn, Suanli(plan_stops=False)), carbon(scn, Suanli())
            print(f"{name}: without planned stops {100 * (1 - before / fifo):.2f} %, "
                  f"with them {100 * (1 - after / fifo):.2f} %", flush=True)
            continue
        booked, expected = carbon(scn, Suanli(expect_lengths=False)), carbon(scn, Suanli())
        print(f"{name}: priced by the booking {100 * (1 - booked / fifo):.2f} %, "
              f"by the expected run {100 * (1 - expected / fifo):.2f} %", flush=True)


if __name__ == "__main__":
    main()
