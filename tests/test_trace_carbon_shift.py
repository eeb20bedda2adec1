"""GAIA's and Let's Wait Awhile's setups as scenarios (`suanli.traces.carbon_shift`, bench/gaia and
bench/lwa make_scenario.py): the jobs, windows and knowledge they write, the carbon series they
read, and runs of them that the checker accepts."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from suanli.model.load import load_scenario
from suanli.sim.outputs import write_run
from suanli.sim.run import run
from suanli.traces.carbon_shift import (
    LWA_YEAR_START,
    carbon_only_scenario,
    gaia_jobs,
    lwa_jobs,
    lwa_ml_jobs,
    queue_means,
    read_lwa_carbon,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT.parent / "shared" / "tools" / "checker.py"
ENV = os.environ | {"PYTHONPATH": str(ROOT / "src")}

# (arrival s, length s, cpus): two short jobs, one exactly 2 h (the long queue), one long
ROWS = [(0.0, 3600.0, 1), (1802.0, 1203.0, 2), (7200.0, 7200.0, 1), (3600.0, 10 * 3600.0, 4)]


def test_gaia_jobs_floor_to_its_ticks_and_take_its_waiting_caps():
    jobs = gaia_jobs(ROWS)
    assert [j["submit_h"] for j in jobs] == [0.0, 1800 / 3600, 2.0, 1.0]           # 1802 s -> 1800 s
    assert [j["work_h"] for j in jobs] == [1.0, 1200 / 3600, 2.0, 10.0]            # 1203 s -> 1200 s
    assert [j["max_wait_h"] for j in jobs] == [6.0, 6.0, 24.0, 24.0]               # under 2 h: 6 h
    assert [j["gpus"] for j in jobs] == [1, 2, 1, 4]
    assert all("actual_work_h" not in j and "checkpoint_h" not in j for j in jobs)


def test_gaia_knowledge_is_the_queues_mean_length():
    short, long_ = queue_means(ROWS)
    # GAIA: the short queue's mean over lengths up to 2 h, the long one's over 2 h and more
    assert short == pytest.approx((3600 + 1203 + 7200) / 3 / 3600, abs=5 / 3600)
    assert long_ == pytest.approx((7200 + 36000) / 2 / 3600, abs=5 / 3600)
    jobs = gaia_jobs(ROWS, knowledge="queue-mean")
    assert [j["work_h"] for j in jobs] == [short, short, long_, long_]
    assert [j["actual_work_h"] for j in jobs] == [1.0, 1200 / 3600, 2.0, 10.0]
    assert [j["class"] for j in jobs] == ["short", "short", "long", "long"]
    with pytest.raises(ValueError):
        gaia_jobs(ROWS, knowledge="psychic")


def test_gaia_checkpoint_variant_ends_within_its_wait_awhile_span():
    jobs = gaia_jobs(ROWS, checkpoint_h=1 / 60)
    assert all(j["checkpoint_h"] == 1 / 60 for j in jobs)
    assert [j["deadline_h"] for j in jobs] == [7.0, 0.5 + 6 + 1200 / 3600, 28.0, 35.0]


def test_gaia_checkpoint_variant_with_queue_means_has_no_deadline_to_leak_the_length():
    """A deadline at submit + window + true length would give the policy the true length; with
    the queue's mean as the estimate the jobs keep only their window."""
    jobs = gaia_jobs(ROWS, knowledge="queue-mean", checkpoint_h=1 / 60)
    assert all(j["checkpoint_h"] == 1 / 60 for j in jobs)
    assert all("deadline_h" not in j for j in jobs)
    assert [j["max_wait_h"] for j in jobs] == [6.0, 6.0, 24.0, 24.0]


def test_lwa_ml_jobs_are_workday_office_hour_submissions_of_half_hour_lengths():
    jobs = lwa_ml_jobs()
    assert len(jobs) == 3387 and jobs == lwa_ml_jobs()
    assert lwa_ml_jobs(seed=1) != jobs
    for submit, duration in jobs:
        day = dt.date(2020, 1, 1) + dt.timedelta(days=submit // 1440)
        assert day.year == 2020 and day.weekday() <= 4
        assert 9 * 60 <= submit % 1440 < 17 * 60 and submit % 30 == 0
        assert 240 <= duration < 5400 and duration % 30 == 0
    assert [s for s, _ in jobs] == sorted(s for s, _ in jobs)
    # LWA's first three jobs (its generate_batch_jobs, seed 0): Wednesday 1 January 2020
    assert jobs[:3] == [(570, 3180), (630, 3030), (690, 2070)]


def test_lwa_jobs_take_the_rule_and_the_code_slack():
    ml = [(570, 3180), (7 * 1440 + 960, 240)]       # Wed 09:30 for 53 h; Wed 8 Jan 16:00 for 4 h
    jobs = lwa_jobs(ml, "lwa-mon-thu")
    # F = Friday 14:30: Monday 09:00 -> 66.5 h;  F = Wednesday 20:00: Thursday 09:00 -> 13 h
    assert [j["max_wait_h"] for j in jobs] == [66.5, 13.0]
    assert [j["max_wait_h"] for j in lwa_jobs(ml, "lwa-mon-thu", slack_h=0.5)] == [67.0, 13.5]
    # next workday: Friday 14:30 is within working hours (no window); Wednesday 20:00: Thursday 09:00
    assert [j["max_wait_h"] for j in lwa_jobs(ml, "lwa-next-workday")] == [0.0, 13.0]
    assert all("max_wait_h" not in j for j in lwa_jobs(ml, None))
    cp = lwa_jobs(ml, "lwa-mon-thu", checkpoint_h=1 / 60)
    assert cp[0]["deadline_h"] == 9.5 + 66.5 + 53


def _carbon_csv(path: Path, hours: int, value=lambda h: 300.0) -> Path:
    start = dt.datetime(2019, 12, 31, 22, 0)             # two hours before 2020: skipped
    lines = ["Time,Carbon Intensity"]
    for q in range((hours + 2) * 4):
        t = start + dt.timedelta(minutes=15 * q)
        h = q // 4 - 2
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{value(h) + (q % 4) * 10.0}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lwa_carbon_is_the_hourly_mean_of_its_half_hour_samples(tmp_path):
    f = _carbon_csv(tmp_path / "ci.csv", 5, value=lambda h: 100.0 * h)
    # samples at :00 and :30 are value + 0 and value + 20; :15 and :45 are not read
    assert read_lwa_carbon(str(f)) == [10.0, 110.0, 210.0, 310.0, 410.0]
    text = f.read_text().splitlines()
    (tmp_path / "gap.csv").write_text("\n".join(t for t in text if not t.startswith("2020-01-01 02:")) + "\n")
    with pytest.raises(ValueError, match="hour 2"):
        read_lwa_carbon(str(tmp_path / "gap.csv"))


def _scenario(tmp_path, jobs, carbon):
    doc = carbon_only_scenario("t", LWA_YEAR_START, carbon, jobs, horizon_h=len(carbon))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _run(path, policy, out):
    scn = load_scenario(str(path))
    r = run(scn, policy)
    assert not r.violations
    write_run(str(out), r.result.segments, r.accounts, r.extra_metrics())
    if CHECKER.exists():
        got = subprocess.run([sys.executable, str(CHECKER), str(path), str(out)], capture_output=True, text=True)
        assert "valid=yes metrics=match" in got.stdout, got.stdout + got.stderr
    return r


def test_fifo_runs_at_submit_and_suanli_waits_for_the_clean_hours_within_the_caps(tmp_path):
    # dirty except hours 4-5 (inside the short jobs' 6 h) and 20-29 (only the long jobs reach)
    carbon = [500.0] * 48
    carbon[4:6] = [100.0, 100.0]
    carbon[20:30] = [50.0] * 10
    path = _scenario(tmp_path, gaia_jobs(ROWS), carbon)
    fifo = _run(path, "fifo", tmp_path / "fifo")
    starts = {s.job_id: s.start_h for s in fifo.result.segments}
    assert starts == {j["id"]: j["submit_h"] for j in gaia_jobs(ROWS)}
    assert fifo.accounts.metrics["wait_excess_gpu_h"] == 0
    best = _run(path, "suanli", tmp_path / "suanli")
    starts = {s.job_id: s.start_h for s in best.result.segments}
    assert starts["g-0000"] == pytest.approx(4.0)            # its clean hour, 4 h after submit
    assert starts["g-0002"] == pytest.approx(20.0)           # 18 h later, within its 24 h
    assert starts["g-0003"] == pytest.approx(20.0)
    assert best.accounts.metrics["carbon_kg"] < 0.5 * fifo.accounts.metrics["carbon_kg"]
    assert best.accounts.metrics["wait_excess_gpu_h"] == pytest.approx(0, abs=1e-6)


def test_the_queue_mean_variant_runs_the_true_lengths(tmp_path):
    path = _scenario(tmp_path, gaia_jobs(ROWS, knowledge="queue-mean"), [300.0] * 48)
    r = _run(path, "suanli", tmp_path / "out")
    ran = {s.job_id: s.end_h - s.start_h for s in r.result.segments}
    assert ran == pytest.approx({j["id"]: j["actual_work_h"] for j in gaia_jobs(ROWS, knowledge="queue-mean")})


def test_the_scripts_write_loadable_scenarios_and_refuse_bad_input_in_one_line(tmp_path):
    carbon = _carbon_csv(tmp_path / "ger_ci.csv", 8784 + 48)
    trace = tmp_path / "pai.csv"
    trace.write_text("arrival_time,length,cpus\n" + "".join(f"{a},{ln},{c}\n" for a, ln, c in ROWS))
    out = tmp_path / "g.yaml"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gaia" / "make_scenario.py"), "--carbon", str(carbon),
                    "--trace", str(trace), "--knowledge", "queue-mean", "--checkpoint-min", "1", "--out", str(out)],
                   check=True, env=ENV, capture_output=True)
    scn = load_scenario(str(out))
    assert len(scn.jobs) == 4 and scn.horizon_h == 720
    assert scn.start == dt.datetime(2020, 10, 18, 16, tzinfo=dt.UTC)          # hour 7000 of 2020
    assert all(j.actual_work_h is not None and j.checkpoint_h == pytest.approx(1 / 60) for j in scn.jobs)
    lwa = tmp_path / "l.yaml"
    subprocess.run([sys.executable, str(ROOT / "bench" / "lwa" / "make_scenario.py"), "--carbon", str(carbon),
                    "--rule", "lwa-next-workday", "--out", str(lwa)], check=True, env=ENV, capture_output=True)
    scn = load_scenario(str(lwa))
    assert len(scn.jobs) == 3387 and all(j.max_wait_h is not None for j in scn.jobs)
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "gaia" / "make_scenario.py"), "--carbon",
                          str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x.yaml")],
                         env=ENV, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope.csv" in bad.stderr
    assert not (tmp_path / "x.yaml").exists()
