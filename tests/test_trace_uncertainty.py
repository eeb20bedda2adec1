"""Estimates and flexibility windows for generated and imported jobs (`suanli.traces.uncertainty`),
and the generator's options that use them. Hour 0 is Monday 2026-06-01 00:00 +08:00."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from suanli.model.load import load_scenario
from suanli.traces.uncertainty import estimates, make_uncertain, max_wait_h, parse_start

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT.parent / "shared" / "tools" / "checker.py"
START = parse_start("2026-06-01T00:00:00+08:00")     # a Monday


def test_gaia_rule():
    assert max_wait_h("gaia", 5.0, 1.5) == 6.0
    assert max_wait_h("gaia", 5.0, 2.0) == 24.0


def test_next_workday_rule():
    # Monday 10:00 (hour 10), 2 h estimated: by Tuesday 09:00 (hour 33) less the work: 21 h
    assert max_wait_h("next-workday", 10.0, 2.0, START) == 21.0
    # Friday 20:00 (hour 116), 1 h: Monday 09:00 (hour 177): 60 h
    assert max_wait_h("next-workday", 116.0, 1.0, START) == 60.0
    # submitted at Tuesday 09:00 exactly: the next one, Wednesday 09:00 (hour 57)
    assert max_wait_h("next-workday", 33.0, 4.0, START) == 20.0
    # a job longer than the time left: 0
    assert max_wait_h("next-workday", 10.0, 30.0, START) == 0.0


def test_monday_thursday_rule():
    assert max_wait_h("mon-thu", 10.0, 2.0, START) == 69.0        # Thursday 09:00 = hour 81
    # Thursday 10:00 (hour 82), 1 h: next Monday 09:00 (hour 177) less the work: 94 h
    assert max_wait_h("mon-thu", 82.0, 1.0, START) == 94.0


def test_the_calendar_rules_need_a_start_and_rules_are_checked():
    with pytest.raises(ValueError):
        max_wait_h("next-workday", 1.0, 1.0)
    with pytest.raises(ValueError):
        max_wait_h("sometime", 1.0, 1.0, START)


def test_estimates_are_log_normal_around_the_truth_and_seeded():
    true = np.full(20_000, 3.0)
    a = estimates(true, 0.5, np.random.default_rng(1))
    b = estimates(true, 0.5, np.random.default_rng(1))
    assert np.array_equal(a, b)
    logs = np.log(a / true)
    assert abs(logs.mean()) < 0.02 and abs(logs.std() - 0.5) < 0.02
    biased = estimates(true, 0.3, np.random.default_rng(2), bias=-0.3)
    assert abs(np.log(biased / true).mean() + 0.3) < 0.02
    assert np.array_equal(estimates(true, 0.0, np.random.default_rng(3)), true)


def test_make_uncertain_writes_the_estimate_the_truth_and_the_window():
    jobs = [{"id": "a", "submit_h": 10.0, "work_h": 1.0}, {"id": "b", "submit_h": 0.0, "work_h": 5.0,
                                                           "actual_work_h": 3.0}]
    out = make_uncertain(jobs, sigma=0.4, rule="gaia", start=START, seed=5)
    assert [j["actual_work_h"] for j in out] == [1.0, 3.0]              # b's truth stays its truth
    assert all(j["work_h"] != j["actual_work_h"] for j in out)
    assert [j["max_wait_h"] for j in out] == [6.0 if j["work_h"] < 2 else 24.0 for j in out]
    assert make_uncertain(jobs, sigma=0.4, rule="gaia", start=START, seed=5) == out
    assert jobs[0] == {"id": "a", "submit_h": 10.0, "work_h": 1.0}          # not changed in place
    # only windows: work untouched
    only = make_uncertain(jobs[:1], rule="next-workday", start=START)
    assert only == [{"id": "a", "submit_h": 10.0, "work_h": 1.0, "max_wait_h": 22.0}]


def _gen(tmp_path, *extra):
    out = tmp_path / "g.yaml"
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_scenario.py"), "--seed", "4", "--jobs", "30",
                    "--out", str(out), *extra], check=True, env=env, capture_output=True)
    return out, env


def test_generator_options_add_truth_windows_and_forecasts(tmp_path):
    plain, _ = _gen(tmp_path)
    before = plain.read_bytes()
    assert b"actual_work_h" not in before and b"max_wait_h" not in before and b"forecast" not in before
    out, env = _gen(tmp_path, "--work-noise", "0.5", "--max-wait", "gaia", "--forecast-error", "0.3,0.1")
    scn = load_scenario(str(out))
    assert scn.forecast is not None
    assert all(j.actual_work_h is not None and j.max_wait_h in (6.0, 24.0) for j in scn.jobs)
    if CHECKER.exists():
        res = tmp_path / "res"
        subprocess.run([sys.executable, "-m", "suanli", "sim", str(out), "--out", str(res), "--quiet"],
                       check=True, env=env)
        got = subprocess.run([sys.executable, str(CHECKER), str(out), str(res)], capture_output=True, text=True)
        assert "valid=yes metrics=match" in got.stdout, got.stdout + got.stderr


def test_import_writes_the_truth_and_windows_into_the_jobs_file(tmp_path):
    from suanli.traces.importer import ImportOptions, import_trace
    from suanli.traces.synthesis import SynthOptions
    from test_trace_synthesis import jobs, philly

    trace = philly(tmp_path / "t.csv", n=60)
    out = tmp_path / "j.csv"
    import_trace(trace, str(out), ImportOptions(kind="philly", synth=SynthOptions(work_noise=0.5), max_wait="gaia"))
    rows = jobs(out)
    truth = {t["id"]: t["true_work_h"] for t in jobs(tmp_path / "j.truth.csv")}
    assert all(r["actual_work_h"] == truth[r["id"]] for r in rows)
    assert all(float(r["max_wait_h"]) == (6.0 if float(r["work_h"]) < 2 else 24.0) for r in rows)
    plain = tmp_path / "p.csv"
    import_trace(trace, str(plain), ImportOptions(kind="philly"))
    assert "actual_work_h" not in plain.read_text().splitlines()[0]
    from suanli.model.schema import Job
    loaded = [Job.model_validate({k: v for k, v in r.items() if v != ""}) for r in rows]   # as the loader reads them
    assert all(j.actual_work_h is not None and j.max_wait_h in (6.0, 24.0) for j in loaded)
    with pytest.raises(ValueError):
        ImportOptions(kind="philly", max_wait="never")


def test_a_csv_trace_with_the_users_estimates_writes_them_as_work_h_and_the_run_as_the_truth(tmp_path):
    from suanli.traces.importer import ImportOptions, import_trace
    from test_trace_synthesis import jobs

    trace = tmp_path / "t.csv"
    # runtime and the user's time limit, in hours; the third row has no estimate
    trace.write_text("submit,runtime,limit,n\n0,1.5,2,1\n0.5,3,2,2\n1,0.25,,1\n")
    out = tmp_path / "j.csv"
    import_trace(str(trace), str(out), ImportOptions(
        kind="csv", column_map="submit=submit,duration=runtime,gpus=n,estimate=limit", time_unit="h",
        duration_unit="h", max_wait="gaia"))
    rows = jobs(out)
    assert [(r["work_h"], r["actual_work_h"], r["max_wait_h"]) for r in rows] == [
        ("2", "1.5", "24"), ("2", "3", "24"), ("0.25", "0.25", "6")]


# LWA's rules as its simulator applies them, keyed on the original finish F = submit + estimate.
# Hour 0 is Monday 00:00: Tuesday is hour 24, Wednesday 48, Thursday 72, Friday 96, Saturday 120,
# Sunday 144, the next Monday 168.
@pytest.mark.parametrize("submit_h,work_h,want", [
    (10.0, 2.0, 0.0),        # F Monday 12:00, working hours: no window
    (16.0, 2.0, 15.0),       # F Monday 18:00: Tuesday 09:00
    (15.0, 2.0, 0.0),        # F Monday 17:00 exactly: still working hours
    (112.0, 2.0, 15.0),      # F Friday 18:00: Saturday 09:00, as LWA's code has it
    (116.0, 10.0, 51.0),     # F Saturday 06:00: Monday 09:00
    (150.0, 2.0, 25.0),      # F Sunday 08:00: Monday 09:00
    (44.0, 11.0, 2.0),       # F Wednesday 07:00: 09:00 that day
    (0.0, 9.0, 0.0),         # F Monday 09:00 exactly: working hours
])
def test_lwa_next_workday_rule(submit_h, work_h, want):
    assert max_wait_h("lwa-next-workday", submit_h, work_h, START) == want


@pytest.mark.parametrize("submit_h,work_h,want", [
    (10.0, 2.0, 69.0),       # F Monday 12:00: Thursday 09:00 (hour 81)
    (0.0, 9.0, 0.0),         # F Monday 09:00 exactly: that Monday
    (0.0, 9.5, 71.5),        # F Monday 09:30: Thursday
    (70.0, 11.0, 0.0),       # F Thursday 09:00 exactly: that Thursday
    (80.0, 2.0, 95.0),       # F Thursday 10:00: the next Monday 09:00 (hour 177)
    (150.0, 6.0, 21.0),      # F Sunday 12:00: Monday 09:00
    (60.0, 11.0, 10.0),      # F Wednesday 23:00: Thursday 09:00
    (100.0, 4.0, 73.0),      # F Friday 08:00: Monday 09:00
])
def test_lwa_monday_thursday_rule(submit_h, work_h, want):
    assert max_wait_h("lwa-mon-thu", submit_h, work_h, START) == want

