#!/usr/bin/env python3
"""Build two 48-hour Philly windows into complete scenarios on a 6-site network.

For each window this imports the Philly trace with `suanli.traces` (the library behind
`suanli trace import`) and copies the network of the public scenario
bench/scenarios/public/outages-gridcaps/scenario.yaml (gpu_types, cities, links, sites,
objective; not its jobs, classes or events): a read-only file with explicit hourly series,
so the result does not move when the demo network is edited. It adds the Gavel-derived job
classes the import emits and scales every site by one factor k (pool counts, renewable kW,
battery size) so that the offered load

    Σ gpus · work_h  /  (Σ count · speed · horizon_h)        (reference GPU-hours)

is --load (default 0.5). Work is clipped at the 48-h horizon and gangs are capped at the
largest pool, so every job fits somewhere and can finish. Job origins are the network's
seven consumer cities, weighted as bench/gen_scenario.py weights them. Writes, per window,
bench/scenarios/philly-48h-{a,b}.yaml and .jobs.csv. Deterministic: the same arguments give
the same bytes. docs/TRACES.md gives the command and the resulting figures.

    .venv/bin/python bench/philly_scenario.py
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile

import yaml

from suanli.errors import UserError
from suanli.traces.importer import ImportOptions, WindowSpec, import_trace
from suanli.traces.synthesis import SynthOptions

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_NETWORK = os.path.join(HERE, "scenarios", "public", "outages-gridcaps", "scenario.yaml")
DEFAULT_TRACE = os.path.join(ROOT, "data", "traces", "philly_pollux_jobs.csv")   # scripts/fetch_traces.sh
# consumer cities of the network, weighted as in bench/gen_scenario.py (ORIGINS)
ORIGINS = {"beijing": 0.22, "shanghai": 0.22, "shenzhen": 0.14, "guangzhou": 0.12, "hangzhou": 0.12,
           "chengdu": 0.09, "zhengzhou": 0.09}
HORIZON_H = 48.0
START = "2026-06-01T00:00:00+08:00"       # hour 0 = local midnight, as in the demo
# (name, trace time of hour 0, what the window is)
WINDOWS = (("a", "2017-10-23 00:00:00", "Monday-Tuesday in late October, the trace's busiest month"),
           ("b", "2017-11-20 00:00:00", "Monday-Tuesday before US Thanksgiving, the demo's week"))


def network(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {k: doc[k] for k in ("gpu_types", "cities", "links", "sites", "objective")}


def read_jobs(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def capacity(sites: list[dict], speeds: dict[str, float]) -> float:
    return sum(p["count"] * speeds[g] for s in sites for g, p in s["gpus"].items()) * HORIZON_H


def _times(x, k: float):
    """A number or an hourly list times k (renewable kW), rounded to 0.01."""
    return [round(v * k, 2) for v in x] if isinstance(x, list) else round(x * k, 2)


def scaled(sites: list[dict], k: float) -> list[dict]:
    """Every site k times as big: pools, its renewables and its battery (prices, PUE, grid kept)."""
    out = []
    for s in sites:
        s = dict(s)
        s["gpus"] = {g: dict(p, count=max(1, round(p["count"] * k))) for g, p in s["gpus"].items()}
        if "renewables" in s:
            s["renewables"] = dict(s["renewables"], kw=_times(s["renewables"]["kw"], k))
        if s.get("battery"):
            s["battery"] = dict(s["battery"], capacity_kwh=round(s["battery"]["capacity_kwh"] * k, 2),
                                power_kw=round(s["battery"]["power_kw"] * k, 2))
        out.append(s)
    return out


def build(trace: str, net_path: str, outdir: str, tag: str, at: str, about: str, load: float, seed: int) -> str:
    net = network(net_path)
    speeds = {g: float(t.get("speed", 1.0)) for g, t in net["gpu_types"].items()}
    largest = max(p["count"] for s in net["sites"] for p in s["gpus"].values())
    base = f"philly-48h-{tag}"
    jobs_csv = os.path.join(outdir, base + ".jobs.csv")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_csv = os.path.join(tmp, "jobs.csv")
        for _ in range(5):         # the cap on gangs depends on the pools, which depend on the load
            opts = ImportOptions(kind="philly", window=WindowSpec(length=f"{HORIZON_H:g}h", at=at),
                                 max_gpus=largest, max_work_h=HORIZON_H,
                                 synth=SynthOptions(seed=seed, origins=ORIGINS, gpu_speeds=speeds,
                                                    classes=True))
            report = import_trace(trace, tmp_csv, opts)
            jobs = read_jobs(tmp_csv)
            demand = sum(int(j["gpus"]) * float(j["work_h"]) for j in jobs)
            k = demand / (load * capacity(net["sites"], speeds))
            sites = scaled(net["sites"], k)
            new_largest = max(p["count"] for s in sites for p in s["gpus"].values())
            if new_largest >= largest:
                break
            largest = new_largest
        os.replace(tmp_csv, jobs_csv)
    offered = demand / capacity(sites, speeds)
    gpus = sum(p["count"] for s in sites for p in s["gpus"].values())
    doc = {
        "name": base,
        "description": (f"Philly trace, 48 h from {at} ({about}): {len(jobs)} jobs, {demand:,.0f} reference "
                        f"GPU-hours on the network of bench/scenarios/public/outages-gridcaps, every site scaled by "
                        f"{k:.3f} ({gpus} GPUs): offered load {offered:.1%}. Made by bench/philly_scenario.py."),
        "start": START,
        "horizon_h": HORIZON_H,
        "jobs_file": os.path.basename(jobs_csv),
        "gpu_types": net["gpu_types"],
        "job_classes": report.job_classes,
        "cities": net["cities"],
        "links": net["links"],
        "sites": sites,
        "objective": net["objective"],
    }
    path = os.path.join(outdir, base + ".yaml")
    tmp_yaml = path + ".tmp"
    with open(tmp_yaml, "w", encoding="utf-8") as fh:
        fh.write(f"# {base}: made by bench/philly_scenario.py (docs/TRACES.md); do not edit by hand.\n")
        yaml.dump(doc, fh, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                  default_flow_style=None, width=200, allow_unicode=True)
    os.replace(tmp_yaml, path)
    clipped = sum(n for note, n in report.notes.items() if note.startswith("work clipped"))
    capped = sum(n for note, n in report.notes.items() if note.startswith("gpus capped"))
    return (f"{os.path.relpath(path)}: {len(jobs)} jobs, {demand:,.0f} ref GPU-h, pools x{k:.3f} = {gpus} GPUs, "
            f"load {offered:.1%}, {clipped} clipped at 48 h, {capped} capped at {largest} GPUs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=DEFAULT_TRACE, help="philly_pollux_jobs.csv")
    ap.add_argument("--network", default=DEFAULT_NETWORK, help="scenario whose network to copy")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "scenarios"))
    ap.add_argument("--load", type=float, default=0.5, help="offered load to scale the pools to (0.3-0.7)")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args(argv)
    if not 0 < a.load <= 1:
        ap.error("--load must be in (0, 1]")
    if not os.path.isfile(a.trace):
        print(f"philly_scenario: --trace: {a.trace} not found (scripts/fetch_traces.sh downloads it; docs/DATA.md)",
              file=sys.stderr)
        return 2
    try:
        for tag, at, about in WINDOWS:
            print(build(a.trace, a.network, a.out_dir, tag, at, about, a.load, a.seed), file=sys.stderr)
    except (UserError, OSError, KeyError) as e:
        print(f"philly_scenario: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
