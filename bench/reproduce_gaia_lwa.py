#!/usr/bin/env python3
"""GAIA's and Let's Wait Awhile's setups, run by suanli, side by side with their own figures.

Builds the scenarios of bench/gaia and bench/lwa (`suanli.traces.carbon_shift`), runs `fifo`
(every job at its submission) and `suanli` on each variant, checks every run with the shared
checker (`valid=yes metrics=match`), and prints carbon saved against `fifo` beside the figures
GAIA's and LWA's own code give on the same jobs and carbon:

- GAIA (pai_1k, DE 2020 hours 7000-7719, waits 6 h / 24 h): suanli with exact lengths, with each
  job's length estimated as its queue's mean (GAIA's knowledge; the truth runs), and with
  one-minute checkpoints (suspend-resume where the checkout's suanli has it), exact and with the
  queue's mean; the best single start per job (exact, by enumeration: the optimum without
  checkpoints); and the best single start per job chosen by its expected carbon over its queue's
  true lengths (hindsight: the most a non-preemptive start rule that knows the queue can expect);
- LWA (3,387 ML jobs, DE 2020): next Monday/Thursday and next-workday windows, as LWA's code
  allows them (its rule plus one 30-minute step) and as its paper states them.

Their figures are the ones measured first-hand with their code (see THEIRS), or measured again
now with `--their-code` (their Python in venvs of your own, run on a temporary copy: nothing of
theirs is kept here).

    git clone https://github.com/dos-group/lets-wait-awhile /tmp/lets-wait-awhile
    PYTHONPATH=src python bench/reproduce_gaia_lwa.py --lwa-repo /tmp/lets-wait-awhile
"""

from __future__ import annotations

import argparse
import collections
import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

from suanli.model.load import load_scenario
from suanli.sim.outputs import write_run
from suanli.sim.run import run

HERE = os.path.dirname(os.path.abspath(__file__))

CHECKER = os.path.join(HERE, "..", "..", "shared", "tools", "checker.py")

# Their figures, % carbon saved against running every job at once. GAIA: measured with GAIA's
# code (commit 62a5efc, `python src/run.py -c DE ... -i 7000`, pandas 3.1.1) on LWA's DE 2020
# series averaged per hour (DE.csv: 17,544 rows of padding, then 2020's hours, as its loader
# skips that many); LWA: measured with LWA's code (commit 5e0d155, `simulate.ad_hoc_experiment`
# for "ger" without forecast error, pandas 1.5.3, leafsim 0.4.2, vessim 0.3.0). Issue #15 quotes
# 14.25 % for LWA's ML next-Mon/Thu DE; its code gives 14.13 % here.
THEIRS = {
    "gaia-wait-awhile": 22.54, "gaia-lowest-window": 19.01, "gaia-lowest-window-oracle": 20.86,
    "gaia-lowest-slot": 16.74, "gaia-carbon-time": 16.94,
    "lwa-mon-thu": 14.13, "lwa-mon-thu-i": 18.50, "lwa-next-workday": 5.93, "lwa-next-workday-i": 8.16,
}
GAIA_POLICIES = {   # ours -> (their --scheduling-policy, --carbon-policy, -w)
    "gaia-no-wait": ("carbon", "oracle", "0x0"), "gaia-lowest-window": ("carbon", "waiting", "6x24"),
    "gaia-lowest-window-oracle": ("carbon", "oracle", "6x24"), "gaia-lowest-slot": ("carbon", "lowest", "6x24"),
    "gaia-carbon-time": ("carbon", "cst_average", "6x24"), "gaia-wait-awhile": ("suspend-resume", "oracle", "6x24"),
}


def _script(name: str, path: str):
    """One of the make_scenario.py scripts, as a module (both have the same file name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- the yardstick

def _carbon(ci: list[float], s: float, length: float) -> float:
    """kg of one 1 kW GPU run over [s, s + length) on hourly carbon `ci` (MODEL.md §4)."""
    e, t, tot = s + length, math.floor(s), 0.0
    while t < e - 1e-12:
        tot += (min(e, t + 1) - max(s, t)) * ci[t % len(ci)]
        t += 1
    return tot


def best_single_starts(doc: dict) -> float:
    """Carbon (kg) when every job starts at its best moment within its window, in one piece:
    the run's carbon is piecewise linear in its start, so the best is at the window's ends or
    where the start or the end meets a whole hour."""
    ci = doc["sites"][0]["grid"]["carbon_kg_per_kwh"]
    power = doc["gpu_types"]["core"]["power_kw"]
    total = 0.0
    for j in doc["jobs"]:
        s0, w, length = j["submit_h"], j.get("max_wait_h", 0.0), j.get("actual_work_h", j["work_h"])
        cands = {s0, s0 + w}
        for k in range(math.floor(s0), math.ceil(s0 + w + length) + 1):     # k: a start's or an end's hour
            cands.update(s for s in (k, k - length) if s0 <= s <= s0 + w)
        total += min(_carbon(ci, s, length) for s in cands) * j["gpus"] * power
    return total


def best_expected_single_starts(doc: dict, step_h: float = 1 / 12) -> float:
    """Carbon (kg) when every job starts, in one piece, where its EXPECTED carbon is least over
    the true lengths of all the jobs of its queue (`class`; the whole sample, so in hindsight),
    then runs its own true length. Starts weighed: every `step_h` from the submission, every
    whole hour and the window's end. No single start chosen from the queue's lengths alone does
    better in expectation, so this is the ceiling of GAIA's queue-mean knowledge without
    checkpoints (up to the grid of starts)."""
    ci = np.asarray(doc["sites"][0]["grid"]["carbon_kg_per_kwh"], dtype=float)
    power = doc["gpu_types"]["core"]["power_kw"]
    jobs = doc["jobs"]
    true = [j.get("actual_work_h", j["work_h"]) for j in jobs]
    reach = max(j["submit_h"] + j.get("max_wait_h", 0.0) for j in jobs) + max(true) + 2
    ci = np.tile(ci, math.ceil(reach / len(ci)))              # a series repeats (MODEL.md §2)
    cum = np.concatenate(([0.0], np.cumsum(ci)))

    def integral(x: np.ndarray) -> np.ndarray:                # kg of 1 kW over [0, x)
        i = np.floor(x).astype(int)
        return cum[i] + (x - i) * ci[i]

    queues: dict[object, np.ndarray] = {}
    for j, length in zip(jobs, true, strict=True):
        queues.setdefault(j.get("class"), []).append(length)
    queues = {k: np.asarray(v) for k, v in queues.items()}
    total = 0.0
    for j, length in zip(jobs, true, strict=True):
        s0, w = j["submit_h"], j.get("max_wait_h", 0.0)
        starts = np.unique(np.concatenate((np.arange(s0, s0 + w + 1e-9, step_h), [s0 + w],
                                           np.arange(math.ceil(s0), s0 + w + 1e-9, 1.0))))
        expected = (integral(starts[:, None] + queues[j.get("class")][None, :]).mean(axis=1) - integral(starts))
        best = starts[int(np.argmin(expected))]               # ties: the earliest
        total += float(integral(np.asarray(best + length)) - integral(np.asarray(best))) * j["gpus"] * power
    return total


# ---------------------------------------------------------------- our runs

def _write(doc: dict, path: str) -> None:
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False, default_flow_style=None, width=200)


def simulate(path: str, policy: str, out: str, checker: str | None) -> dict:
    scn = load_scenario(path)
    t0 = time.perf_counter()
    r = run(scn, policy)
    wall = time.perf_counter() - t0
    if r.violations:
        raise RuntimeError(f"{policy} on {path}: invalid schedule: {r.violations[0]}")
    write_run(out, r.result.segments, r.accounts, r.extra_metrics())
    check = "not run"
    if checker:
        got = subprocess.run([sys.executable, checker, path, out], capture_output=True, text=True)
        check = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else got.stderr.strip()[-200:]
        if "valid=yes metrics=match" not in got.stdout:
            raise RuntimeError(f"checker refused {policy} on {path}: {check}")
    per_job = collections.Counter(s.job_id for s in r.result.segments)
    m = r.accounts.metrics
    return {"carbon_kg": m["carbon_kg"], "wait_excess_gpu_h": m["wait_excess_gpu_h"], "late_gpu_h": m["late_gpu_h"],
            "jobs_unfinished": m["jobs_unfinished"], "split_jobs": sum(1 for n in per_job.values() if n > 1),
            "wall_s": round(wall, 2), "check": check}


# ---------------------------------------------------------------- their runs (optional)

def gaia_first_hand(gaia_repo: str, python: str, hourly: list[float], work: str) -> dict[str, float]:
    """GAIA's run.py on a temporary copy of its src/ with the DE series as traces/DE.csv."""
    src = os.path.join(work, "gaia")
    shutil.copytree(os.path.join(gaia_repo, "src"), os.path.join(src, "src"))
    os.makedirs(os.path.join(src, "src", "traces"), exist_ok=True)
    with open(os.path.join(src, "src", "traces", "DE.csv"), "w") as fh:
        fh.write("carbon_intensity_avg\n" + "0.0\n" * 17544 + "".join(f"{g!r}\n" for g in hourly))
    carbon = {}
    for name, (sched, cpol, w) in GAIA_POLICIES.items():
        subprocess.run([python, "src/run.py", "-c", "DE", "--scheduling-policy", sched, "--carbon-policy", cpol,
                        "-w", w, "-i", "7000"], cwd=src, check=True, capture_output=True)
        res = os.path.join(src, "results", "simulation", "pai_1k", f"{sched}-7000-{cpol}-DE-0-{w}.csv")
        with open(res) as fh:
            carbon[name] = float(next(csv.DictReader(fh))["carbon_cost"])
    base = carbon.pop("gaia-no-wait")
    return {k: round(100 * (1 - v / base), 2) for k, v in carbon.items()}


LWA_DRIVER = """
import sys, pandas as pd, simulate as S
jobs = S.generate_batch_jobs(n=3387, min_duration=4*60, max_duration=90*60, workday_start=9*60,
                             workday_end=17*60, workdays_only=True)
ci = S._load_dataset("data/ger_ci.csv"); ci = ci[ci.index.minute % S.MEASUREMENT_INTERVAL == 0]
import os; os.makedirs("results", exist_ok=True)
for m, i in [(0, False), ("semi_weekly", False), ("semi_weekly", True),
             ("next_workday", False), ("next_workday", True)]:
    S.ad_hoc_experiment("ml", "ger", jobs, ci, forecast_method=m, interruptible=i, error=False)
"""


def lwa_first_hand(lwa_repo: str, python: str, work: str) -> dict[str, float]:
    """LWA's simulate.py (its ML experiment for Germany, no forecast error) on a temporary copy."""
    src = os.path.join(work, "lwa")
    os.makedirs(os.path.join(src, "data"))
    for f in ("simulate.py", "strategy.py"):
        shutil.copy(os.path.join(lwa_repo, f), src)
    shutil.copy(os.path.join(lwa_repo, "data", "ger_ci.csv"), os.path.join(src, "data"))
    with open(os.path.join(src, "drive.py"), "w") as fh:
        fh.write(LWA_DRIVER)
    subprocess.run([python, "drive.py"], cwd=src, check=True, capture_output=True)

    def emitted(name):
        with open(os.path.join(src, "results", f"ml_{name}_ger.csv")) as fh:
            return sum(float(r["emissions"]) for r in csv.DictReader(fh))
    base = emitted("0")
    return {f"lwa-{k.replace('semi_weekly', 'mon-thu').replace('_', '-')}": round(100 * (1 - emitted(k) / base), 2)
            for k in ("semi_weekly", "semi_weekly_i", "next_workday", "next_workday_i")}


# ---------------------------------------------------------------- the table

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lwa-repo", default=os.environ.get("LWA_REPO"),
                    help="a clone of dos-group/lets-wait-awhile (its data/ger_ci.csv is the carbon of both setups)")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "gaia-lwa-repro"))
    ap.add_argument("--checker", default=CHECKER if os.path.exists(CHECKER) else None)
    ap.add_argument("--skip", default="", help="comma-separated: gaia, lwa, next-workday, checkpoints")
    ap.add_argument("--their-code", action="store_true", help="also run GAIA's and LWA's own code now")
    ap.add_argument("--gaia-repo", help="a clone of umassos/GAIA (with --their-code)")
    ap.add_argument("--gaia-python", default="python3", help="a Python with pandas and numpy, for GAIA's code")
    ap.add_argument("--lwa-python", default="python3",
                    help="a Python with numpy, pandas<2, simpy, leafsim==0.4.2, vessim==0.3.0, for LWA's code")
    args = ap.parse_args(argv)
    if not args.lwa_repo or not os.path.exists(os.path.join(args.lwa_repo, "data", "ger_ci.csv")):
        print("error: --lwa-repo: no data/ger_ci.csv there; clone it first: git clone "
              "https://github.com/dos-group/lets-wait-awhile /tmp/lets-wait-awhile", file=sys.stderr)
        return 2
    gaia_scenario = _script("gaia_scenario", os.path.join(HERE, "gaia", "make_scenario.py"))
    lwa_scenario = _script("lwa_scenario", os.path.join(HERE, "lwa", "make_scenario.py"))

    skip = set(filter(None, args.skip.split(",")))
    carbon_csv = os.path.join(args.lwa_repo, "data", "ger_ci.csv")
    os.makedirs(args.out, exist_ok=True)
    theirs = dict(THEIRS)
    source = {k: "their code, measured before (THEIRS)" for k in THEIRS}
    if args.their_code:
        with tempfile.TemporaryDirectory() as work:
            if "gaia" not in skip and args.gaia_repo:
                from suanli.traces.carbon_shift import read_lwa_carbon
                got = gaia_first_hand(args.gaia_repo, args.gaia_python, read_lwa_carbon(carbon_csv), work)
                theirs.update(got)
                source.update({k: "their code, now" for k in got})
            if "lwa" not in skip:
                got = lwa_first_hand(args.lwa_repo, args.lwa_python, work)
                theirs.update(got)
                source.update({k: "their code, now" for k in got})

    rows: list[tuple[str, str, str, dict]] = []    # (setup, ours, theirs key, result)
    results: dict[str, dict] = {}

    def ours(tag: str, doc: dict, policy: str) -> dict:
        path = os.path.join(args.out, f"{tag}.yaml")
        _write(doc, path)
        res = simulate(path, policy, os.path.join(args.out, f"{tag}-{policy}"), args.checker)
        results[f"{tag}:{policy}"] = res
        print(f"  {tag} {policy}: {res['carbon_kg']:.3f} kg in {res['wall_s']} s ({res['check']})", file=sys.stderr)
        return res

    def saved(res: dict, base: dict) -> float:
        return round(100 * (1 - res["carbon_kg"] / base["carbon_kg"]), 2)

    def best(tag: str, doc: dict) -> dict:
        res = {"carbon_kg": best_single_starts(doc)}
        print(f"  {tag} best single starts: {res['carbon_kg']:.3f} kg (enumerated)", file=sys.stderr)
        return res

    if "gaia" not in skip:
        exact = gaia_scenario.build(carbon_csv)
        base = ours("gaia-exact", exact, "fifo")
        opt = best("gaia-exact", exact)
        rows.append(("GAIA", "best single start per job (exact enumeration)", "gaia-lowest-window-oracle",
                     {"saved": saved(opt, base)}))
        res = ours("gaia-exact", exact, "suanli")
        rows.append(("GAIA", "suanli, exact lengths", "gaia-lowest-window-oracle", res | {"saved": saved(res, base)}))
        qmean = gaia_scenario.build(carbon_csv, knowledge="queue-mean")
        opt = {"carbon_kg": best_expected_single_starts(qmean)}
        rows.append(("GAIA", "best single start per job by expected carbon over its queue's true lengths "
                     "(hindsight: the ceiling without checkpoints)", "gaia-lowest-window", {"saved": saved(opt, base)}))
        res = ours("gaia-queue-mean", qmean, "suanli")
        rows.append(("GAIA", "suanli, estimate = queue's mean", "gaia-lowest-window",
                     res | {"saved": saved(res, base)}))
        if "checkpoints" not in skip:
            res = ours("gaia-exact-cp1min", gaia_scenario.build(carbon_csv, checkpoint_min=1), "suanli")
            label = "suanli, exact, 1-min checkpoints" + (
                "" if res["split_jobs"] else " (no job split: no suspend-resume here)")
            rows.append(("GAIA", label, "gaia-wait-awhile", res | {"saved": saved(res, base)}))
            res = ours("gaia-queue-mean-cp1min", gaia_scenario.build(carbon_csv, knowledge="queue-mean",
                                                                     checkpoint_min=1), "suanli")
            rows.append(("GAIA", "suanli, queue's mean, 1-min checkpoints (no deadline)", "gaia-wait-awhile",
                         res | {"saved": saved(res, base)}))
    if "lwa" not in skip:
        for rule, key in (("lwa-mon-thu", "lwa-mon-thu"), ("lwa-next-workday", "lwa-next-workday")):
            if rule == "lwa-next-workday" and "next-workday" in skip:
                continue
            code = lwa_scenario.build(carbon_csv, rule)
            base = ours(f"{rule}-code", code, "fifo")
            name = "next Mon/Thu" if rule == "lwa-mon-thu" else "next workday"
            opt = best(f"{rule}-code", code)
            rows.append(("LWA", f"{name}: best single start (code's window)", key, {"saved": saved(opt, base)}))
            res = ours(f"{rule}-code", code, "suanli")
            rows.append(("LWA", f"{name}: suanli, code's window (rule + 30 min)", key,
                         res | {"saved": saved(res, base)}))
            paper = lwa_scenario.build(carbon_csv, rule, window="paper")
            rows.append(("LWA", f"{name}: best single start (paper's window)", key,
                         {"saved": saved(best(f"{rule}-paper", paper), base)}))
            res = ours(f"{rule}-paper", paper, "suanli")
            rows.append(("LWA", f"{name}: suanli, paper's window (rule)", key, res | {"saved": saved(res, base)}))
            if "checkpoints" not in skip:
                res = ours(f"{rule}-code-cp1min", lwa_scenario.build(carbon_csv, rule, checkpoint_min=1), "suanli")
                label = f"{name}: suanli, 1-min checkpoints" + ("" if res["split_jobs"] else " (no job split)")
                rows.append(("LWA", label, key + "-i", res | {"saved": saved(res, base)}))

    names = {"gaia-lowest-window-oracle": "Lowest-Window* (exact lengths)", "gaia-lowest-window": "Lowest-Window",
             "gaia-wait-awhile": "Wait Awhile", "lwa-mon-thu": "non-interrupting", "lwa-mon-thu-i": "interrupting",
             "lwa-next-workday": "non-interrupting", "lwa-next-workday-i": "interrupting"}
    print("| setup | ours | carbon saved vs fifo | theirs | their figure |")
    print("|---|---|---:|---|---:|")
    for setup, what, key, res in rows:
        print(f"| {setup} | {what} | {res['saved']:.2f} % | {names[key]} | {theirs[key]:.2f} % |")
    print(f"their figures: {sorted(set(source[k] for _, _, k, _ in rows))}", file=sys.stderr)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump({"rows": [{"setup": s, "ours": w, "theirs": names[k], "their_saved": theirs[k], **r}
                            for s, w, k, r in rows], "their_source": source}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
