"""The generic importer: an operator's own export through --map."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from suanli.errors import UserError
from suanli.traces.generic_csv import parse_column_map
from suanli.traces.importer import ImportOptions, import_trace
from suanli.traces.synthesis import SynthOptions


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def jobs(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_numeric_times_and_durations_in_their_units(tmp_path):
    path = write(tmp_path / "ops.csv", "created,minutes,n,team,rtt\n"
                                       "10,90,4,vision,\n"
                                       "12.5,30,1,nlp,25\n"
                                       "11,15,0,nlp,\n")                 # CPU-only
    opts = ImportOptions(kind="csv", column_map="submit=created,duration=minutes,gpus=n,tenant=team,max_rtt_ms=rtt",
                         time_unit="h", duration_unit="min")
    r = import_trace(path, str(tmp_path / "j.csv"), opts)
    rows = jobs(tmp_path / "j.csv")
    assert [(float(j["submit_h"]), float(j["work_h"]), int(j["gpus"]), j["tenant"], j["max_rtt_ms"])
            for j in rows] == [(0.0, 1.5, 4, "vision", ""), (2.5, 0.5, 1, "nlp", "25")]
    assert r.skipped == {"CPU-only (gpus 0)": 1}


def test_iso_start_and_end_columns_and_gpu_types_through_the_map(tmp_path):
    path = write(tmp_path / "ops.csv",
                 "sub,begin,fin,types\n"
                 "2026-03-01T08:00:00+08:00,2026-03-01T08:30:00+08:00,2026-03-01T10:30:00+08:00,A100|a800\n"
                 "2026-03-01T09:00:00+08:00,2026-03-01T09:00:00+08:00,2026-03-01T09:45:00+08:00,\n"
                 "2026-03-01T09:10:00+08:00,2026-03-01T09:00:00+08:00,2026-03-01T09:45:00+08:00,\n"  # start < submit
                 "3600,3600,7200,\n"                                                                # other clock
                 "2026-03-01T09:20:00+08:00,2026-03-01T09:20:00+08:00,2026-03-01T09:45:00+08:00,K80\n")
    opts = ImportOptions(kind="csv", column_map="submit=sub,start=begin,end=fin,gpu_types=types",
                         gpu_map="A100=h100", synth=SynthOptions(gpu_speeds={"h100": 2.0, "a800": 1.0}))
    r = import_trace(path, str(tmp_path / "j.csv"), opts)
    rows = jobs(tmp_path / "j.csv")
    assert [(float(j["submit_h"]), float(j["work_h"]), j["gpu_types"], j["gpus"]) for j in rows] == \
        [(0.0, 2.0, "h100;a800", "1"), (1.0, 0.75, "", "1")]
    assert r.bad == {"start: before submit": (1, 4), "submit: a number where the first row had a date/time": (1, 5),
                     "gpu_types: not a GPU type of --gpu-types nor a model of --gpu-map": (1, 6)}


@pytest.mark.parametrize("text, message", [
    (None, "--map: required for a csv trace"),
    ("submit=a", "--map: needs exactly one of end=COLUMN or duration=COLUMN"),
    ("submit=a,end=b,duration=c", "--map: needs exactly one of end=COLUMN or duration=COLUMN"),
    ("duration=c", "--map: needs submit=COLUMN"),
    ("submit=a,duration=b,user=c", "--map: unknown field 'user'"),
    ("submit", "--map: not field=column like submit=created_at (got 'submit')"),
])
def test_column_map_mistakes_name_the_option(text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_column_map(text)


def test_a_mapped_column_missing_from_the_header_refuses_the_file(tmp_path):
    path = write(tmp_path / "ops.csv", "created,secs\n1,2\n")
    with pytest.raises(UserError, match=r"ops\.csv: the header lacks column 'gpu' that a csv trace has"):
        import_trace(path, str(tmp_path / "j.csv"),
                     ImportOptions(kind="csv", column_map="submit=created,duration=secs,gpus=gpu"))
    with pytest.raises(UserError, match="--time-unit: unknown unit 'hours'"):
        import_trace(path, str(tmp_path / "j.csv"),
                     ImportOptions(kind="csv", column_map="submit=created,duration=secs", time_unit="hours"))
