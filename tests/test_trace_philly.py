"""The Philly importer: mapping, windows, rate scaling, adjustments, bad rows and --strict."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.errors import UserError
from suanli.traces.importer import ImportOptions, WindowSpec, import_trace

HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"


def write(path: Path, rows: list[str], header: str = HEADER) -> str:
    path.write_text(header + "".join(r + "\n" for r in rows) + "\n")    # Philly's file ends with a blank line
    return str(path)


def jobs(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def trace_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from suanli.cli_trace import trace_app; trace_app()", *args],
                          capture_output=True, text=True, env=os.environ | {"COLUMNS": "120"})


@pytest.fixture
def philly(tmp_path: Path) -> str:
    return write(tmp_path / "philly.csv", [
        "2017-10-01 02:00:00,7200.0,8,57600.0,aaa111",
        "2017-10-01 00:00:00,90.0,1,90.0,bbb222",       # the earliest: hour 0 of the import
        "2017-10-01 01:30:00,1800.0,2,3600.0,aaa111",
        "2017-10-01 04:00:00,36000.0,16,576000.0,bbb222",
    ])


def test_rows_become_jobs_in_file_order_with_hours_from_the_first_submit(philly, tmp_path):
    r = import_trace(philly, str(tmp_path / "jobs.csv"), ImportOptions(kind="philly"))
    rows = jobs(tmp_path / "jobs.csv")
    assert [j["id"] for j in rows] == ["j-000001", "j-000002", "j-000003", "j-000004"]
    assert [float(j["submit_h"]) for j in rows] == [2.0, 0.0, 1.5, 4.0]
    assert [float(j["work_h"]) for j in rows] == [2.0, 0.025, 0.5, 10.0]
    assert [int(j["gpus"]) for j in rows] == [8, 1, 2, 16]
    assert [j["tenant"] for j in rows] == ["vc-aaa111", "vc-bbb222", "vc-aaa111", "vc-bbb222"]
    assert {j["gpu_types"] for j in rows} == {""} and {j["max_rtt_ms"] for j in rows} == {""}
    assert r.rows == 4 and r.jobs == 4 and r.bad == {} and r.dropped == {}
    assert r.gpu_hours == pytest.approx(16 + 0.025 + 1 + 160)
    assert r.window[0] == "2017-10-01 00:00:00"


def test_window_at_keeps_submits_in_the_half_open_window_and_makes_its_start_hour_0(philly, tmp_path):
    opts = ImportOptions(kind="philly", window=WindowSpec(length="2.5h", at="2017-10-01T01:30"))
    r = import_trace(philly, str(tmp_path / "w.csv"), opts)
    rows = jobs(tmp_path / "w.csv")
    assert [float(j["submit_h"]) for j in rows] == [0.5, 0.0]       # 02:00 and 01:30; 04:00 is the end: out
    assert r.dropped == {"submitted outside the window": 2}


def test_from_and_to_may_be_offsets_from_the_first_submit(philly, tmp_path):
    import_trace(philly, str(tmp_path / "w.csv"),
                 ImportOptions(kind="philly", window=WindowSpec(start="90m", end="4h")))
    assert [float(j["submit_h"]) for j in jobs(tmp_path / "w.csv")] == [0.5, 0.0]


def test_rate_scaling_compresses_arrival_times_but_not_work(philly, tmp_path):
    import_trace(philly, str(tmp_path / "r.csv"), ImportOptions(kind="philly", rate=2.0))
    rows = jobs(tmp_path / "r.csv")
    assert [float(j["submit_h"]) for j in rows] == [1.0, 0.0, 0.75, 2.0]
    assert [float(j["work_h"]) for j in rows] == [2.0, 0.025, 0.5, 10.0]


def test_gpu_cap_work_clip_and_minimum_duration_are_counted(philly, tmp_path):
    opts = ImportOptions(kind="philly", max_gpus=8, max_work_h=3.0, min_duration_s=60.0 * 2)
    r = import_trace(philly, str(tmp_path / "a.csv"), opts)
    rows = jobs(tmp_path / "a.csv")
    assert [(int(j["gpus"]), float(j["work_h"])) for j in rows] == [(8, 2.0), (2, 0.5), (8, 3.0)]
    assert r.dropped == {"shorter than --min-duration (120 s)": 1}
    assert r.notes == {"gpus capped at --max-gpus 8": 1, "work clipped at --max-work-h 3": 1}


def test_bad_rows_are_skipped_and_counted_per_reason_with_their_first_line(tmp_path):
    path = write(tmp_path / "bad.csv", [
        "2017-10-01 00:00:00,60.0,1,60.0,aaa",          # line 2: good
        "2017-10-01 00:10:00,-5.0,1,-5.0,aaa",          # line 3: negative duration
        "yesterday,60.0,1,60.0,aaa",                     # line 4: unparsable time
        "2017-10-01 00:20:00,60.0,,60.0,aaa",            # line 5: missing num_gpus
        "2017-10-01 00:30:00,-1.0,1,-1.0,aaa",           # line 6: negative again
        "2017-10-01 00:40:00,60.0,1,60.0",               # line 7: a cell short
        "2017-10-01 00:50:00,abc,1,60.0,aaa",            # line 8: not a number
        "2017-10-01 01:00:00,120.0,2,240.0,bbb",         # line 9: good
    ])
    r = import_trace(path, str(tmp_path / "out.csv"), ImportOptions(kind="philly"))
    assert r.rows == 8 and r.jobs == 2
    assert r.bad == {"duration: negative": (2, 3), "timestamp: not a date and time": (1, 4),
                     "num_gpus: missing": (1, 5), "row: has 4 cells where the header has 5": (1, 7),
                     "duration: not a number": (1, 8)}
    assert [float(j["submit_h"]) for j in jobs(tmp_path / "out.csv")] == [0.0, 1.0]


def test_strict_refuses_the_file_at_its_first_bad_row_and_writes_nothing(tmp_path):
    path = write(tmp_path / "bad.csv", ["2017-10-01 00:00:00,60.0,1,60.0,aaa", "2017-10-01 00:10:00,-5.0,1,-5.0,aaa",
                                        "2017-10-01 00:20:00,60.0,0,0,aaa"])
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    with pytest.raises(UserError, match=r"bad\.csv:3: bad row: duration: negative \(got '-5\.0'\)"):
        import_trace(path, str(out), ImportOptions(kind="philly", strict=True))
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.csv"]


def test_cli_strict_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path / "bad.csv", ["2017-10-01 00:00:00,60.0,1,60.0,aaa", "2017-10-01 00:10:00,60.0,x,60,aaa"])
    r = trace_cli("import", "philly", path, "--out", str(tmp_path / "o.csv"), "--strict")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {path}:3: bad row: num_gpus: not a number (got 'x') "
                                             "(--strict refuses the file)"]
    assert not (tmp_path / "o.csv").exists()


def test_cli_reports_skipped_bad_rows_on_stderr_even_when_quiet(tmp_path):
    path = write(tmp_path / "bad.csv", ["2017-10-01 00:00:00,60.0,1,60.0,aaa", "2017-10-01 00:10:00,-1,1,-1,aaa"])
    r = trace_cli("import", "philly", path, "--out", str(tmp_path / "o.csv"), "-q")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.strip() == f"warning: {path}: skipped 1 bad row: duration: negative (first at line 3)"
    assert len(jobs(tmp_path / "o.csv")) == 1


def test_cli_summary_names_what_happened_to_the_rows(philly, tmp_path):
    r = trace_cli("import", "philly", philly, "--out", str(tmp_path / "o.csv"), "--window", "2.5h", "--at",
                  "2017-10-01 01:30")
    assert r.returncode == 0, r.stderr
    assert "2 of 4 rows" in r.stdout and "2  submitted outside the window" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "error: --rate: Input should be greater than 0 (got '0')"),
    (["--window", "5x"], "error: --window: not a duration like 48h, 90m, 2d or 3600s (got '5x')"),
    (["--window", "2h", "--from", "1h"], "error: --window/--at: give either --from/--to or --window with --at, "
                                         "not both"),
    (["--at", "1h"], "error: --at: needs --window, e.g. --window 48h --at 2017-11-20"),
    (["--origins", "beijing"], "error: --origins: not NAME=VALUE like beijing=0.3 (got 'beijing')"),
    (["--sample", "1.5"], "error: --sample: Input should be less than or equal to 1 (got '1.5')"),
    (["--slack", "3,2"], "error: --slack: needs 0 < LOW <= HIGH (got ['3', '2'])"),
])
def test_cli_bad_options_are_one_line_naming_the_option(philly, tmp_path, args, message):
    r = trace_cli("import", "philly", philly, "--out", str(tmp_path / "o.csv"), *args)
    assert r.returncode == 2 and r.stderr.strip() == message
    assert not (tmp_path / "o.csv").exists()


def test_cli_unknown_kind_missing_file_wrong_header_and_folder_as_out(philly, tmp_path):
    r = trace_cli("import", "phily", philly, "--out", str(tmp_path / "o.csv"))
    assert r.returncode == 2 and "KIND: unknown trace kind 'phily'" in r.stderr
    r = trace_cli("import", "philly", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o.csv"))
    assert r.returncode == 2 and "none.csv: cannot read: No such file or directory" in r.stderr
    other = write(tmp_path / "other.csv", ["1,2"], header="a,b\n")
    r = trace_cli("import", "philly", other, "--out", str(tmp_path / "o.csv"))
    assert r.returncode == 2 and "the header lacks column 'timestamp' that a philly trace has" in r.stderr
    r = trace_cli("import", "philly", philly, "--out", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --out: {tmp_path} is a folder; give a file name like " \
                                                     f"{tmp_path}/jobs.csv"
