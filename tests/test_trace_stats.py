"""`trace stats`: hand-computed figures on a raw trace and on the jobs CSV imported from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.errors import UserError
from suanli.traces.importer import ImportOptions, import_trace
from suanli.traces.stats import detect_kind, trace_stats

# 10 jobs: run times 10..90 s and 1000 s; the last two on 2 and 4 GPUs; 6 arrive in hour 0, 4 in hour 2
ROWS = [("00:00:00", 10, 1), ("00:10:00", 20, 1), ("00:20:00", 30, 1), ("00:30:00", 40, 1), ("00:40:00", 50, 1),
        ("00:50:00", 60, 1), ("02:00:00", 70, 1), ("02:10:00", 80, 1), ("02:20:00", 90, 2), ("02:30:00", 1000, 4)]


@pytest.fixture
def trace(tmp_path: Path) -> str:
    path = tmp_path / "philly.csv"
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n" + "".join(
        f"2017-10-02 {t},{d}.0,{g},{d * g}.0,vc\n" for t, d, g in ROWS))
    return str(path)


def check(s, tol_s: float = 0.0) -> None:
    """The hand-computed figures; `tol_s`: rounding of work_h to 6 decimals of an hour (< 1.8 ms)."""
    assert s.jobs == 10 and s.gpu_mix == {1: 8, 2: 1, 4: 1}
    assert s.single_gpu_share == 0.8
    assert s.multi_gpu_time_share == pytest.approx((180 + 4000) / 4540, rel=1e-5)
    assert s.top1pct_time_share == pytest.approx(4000 / 4540, rel=1e-5)
    assert s.gpu_hours == pytest.approx(4540 / 3600, rel=1e-5)
    d = s.duration_s                                   # nearest rank: the ceil(p * n)-th smallest
    assert (d.p10, d.p50, d.p90, d.p99, d.max) == pytest.approx((10, 50, 90, 1000, 1000), abs=tol_s, rel=1e-12)
    assert d.mean == pytest.approx(145, abs=tol_s)
    a = s.arrivals_per_hour                            # hourly counts 6, 0, 4
    assert (a.mean, a.median, a.p95, a.max) == pytest.approx((10 / 3, 4, 6, 6))
    assert s.span_h == pytest.approx(2.5)


def test_stats_of_a_raw_philly_file(trace):
    s = trace_stats(trace)
    assert s.kind == "philly" and s.rows == 10 and s.bad_rows == 0
    check(s)


def test_stats_of_the_imported_jobs_csv_agree_with_the_raw_trace(trace, tmp_path):
    import_trace(trace, str(tmp_path / "jobs.csv"), ImportOptions(kind="philly"))
    s = trace_stats(str(tmp_path / "jobs.csv"))
    assert s.kind == "jobs"
    check(s, tol_s=0.002)


def test_kind_comes_from_the_header_or_is_refused(tmp_path):
    (tmp_path / "dlrm.csv").write_text("instance_sn,role,app_name,gpu_request\n")
    (tmp_path / "pods.csv").write_text("name,num_gpu,gpu_milli\n")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert detect_kind(str(tmp_path / "dlrm.csv")) == "alibaba-dlrm"
    assert detect_kind(str(tmp_path / "pods.csv")) == "alibaba-openb"
    with pytest.raises(UserError, match="cannot tell the trace's kind from its header 'a,b'; give --kind"):
        detect_kind(str(tmp_path / "other.csv"))


def test_cli_stats_prints_the_figures_and_json(trace):
    run = [sys.executable, "-c", "from suanli.cli_trace import trace_app; trace_app()", "stats", trace]
    env = os.environ | {"COLUMNS": "120"}
    r = subprocess.run(run, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "80.0% of jobs" in r.stdout and "92.1% of 1 GPU-hours" in r.stdout and "median 50," in r.stdout
    r = subprocess.run([*run, "--json"], capture_output=True, text=True, env=env)
    assert json.loads(r.stdout)["duration_s"]["p50"] == 50
    r = subprocess.run([*run[:-1], trace + ".missing"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
