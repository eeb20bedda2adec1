"""Hypothesis fuzzes the trace importers (reliability issue #9, part 3b): philly, alibaba-openb,
alibaba-dlrm and csv.

Inputs: real rows of each trace (a few copied from the public traces of docs/DATA.md, censored and
never-scheduled ones included) with 0 to 4 edits: a cell replaced by a hostile one (empty,
NaN, infinity, 10^400, negative, a bad date, text, quotes, a NUL), a cell dropped or added, a
row duplicated, dropped or replaced by random text, the header's columns shuffled or one
renamed; plus whole files of random bytes. Options are drawn too: --strict, --work-noise
(a truth file), --classes (a classes file), a window, a sample, --max-gpus.

Properties, each example:
- `import_trace` returns a report or raises a one-line `UserError`, never anything else;
- on a refusal the output is as it was before (absent, or an earlier file untouched) and no
  temporary file is left beside it;
- on success what it wrote is a jobs file the scenario loader accepts, with the demo network
  (east-west-explicit.yaml) and the job classes the import emitted;
- through the CLI (`suanli trace import`): exit 0 or 2, and on 2 one line `error: ...`.

`SUANLI_FUZZ_EXAMPLES` scales the example counts (default sized for CI).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzing import counter, fuzz
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from suanli.cli import app as cli_app
from suanli.errors import UserError
from suanli.model.load import load_scenario, read_document
from suanli.traces.importer import ImportOptions, import_trace
from suanli.traces.synthesis import SynthOptions

ROOT = Path(__file__).parents[2]
NETWORK = ROOT / "tests" / "data" / "east-west-explicit.yaml"

# real rows (the first of each kind of row found in the public traces), header first
SEEDS: dict[str, list[str]] = {
    "philly": ["timestamp,duration,num_gpus,gpu_time,cluster",
               "2017-10-09 07:01:55,66.0,1,66.0,11cb48",
               "2017-10-09 06:13:03,2951.0,1,2951.0,6214e9",
               "2017-09-29 07:58:32,860662.0,1,860662.0,6c71a0",
               "2017-10-09 06:16:03,2766.0,8,22128.0,6214e9"],
    "alibaba-openb": ["name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                      "deletion_time,scheduled_time",
                      "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0",
                      "openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061",
                      "openb-pod-0005,20000,65536,0,0,,LS,Running,2759674,12902960,2759676",
                      "openb-pod-0009,12000,16384,1,1000,V100M16|V100M32,LS,Running,4975773,12902960,4975773",
                      "openb-pod-0021,8000,30517,1,440,G2|P100|T4|V100M16|V100M32,LS,Running,9671707,12902960,"
                      "9671708",
                      "openb-pod-0061,11908,47104,1,1000,,BE,Pending,10001278,10001403,"],
    "alibaba-dlrm": ["instance_sn,role,app_name,cpu_request,cpu_limit,gpu_request,gpu_limit,rdma_request,rdma_limit,"
                     "memory_request,memory_limit,disk_request,disk_limit,max_instance_per_node,creation_time,"
                     "scheduled_time,deletion_time",
                     "instance_0,HN,app_0,12,12,1,1,25,25,120.0,120.0,640.0,800.0,8,,,",
                     "instance_89,CN,app_0,48,48,0,0,25,25,240.0,240.0,680.0,800.0,-1,,,",
                     "instance_7280,CN,app_22,64,64,0,0,1,1,320.0,320.0,544.0,640.0,-1,475.00000000000006,623.0,",
                     "instance_7300,HN,app_0,12,12,1,1,25,25,120.0,120.0,680.0,800.0,8,3973.0000000000005,"
                     "3973.0000000000005,5647.0",
                     "instance_7301,HN,app_0,12,12,0.5,1,25,25,120.0,120.0,680.0,800.0,8,3974.0,3974.0,5658.0"],
    "csv": ["created,minutes,n,team,rtt,types",
            "10,90,4,vision,,h100",
            "12.5,30,1,nlp,25,",
            "11,15,0,nlp,,a800;910b",
            "2026-06-01T10:00:00,60,2,ops,,"],
}
CSV_MAPS = ["submit=created,duration=minutes,gpus=n,tenant=team,max_rtt_ms=rtt,gpu_types=types",
            "submit=created,end=minutes,gpus=n",
            "submit=created,start=minutes,duration=rtt"]

HOSTILE_CELL = st.one_of(
    st.sampled_from(["1e308", "-1e308", "1e300", "1e20", "1e-300", "4e18", "99999999999999999999999"]),  # extremes
    st.sampled_from(["", " ", "0", "-1", "1", "2", "0.5", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "1e308",
                     "9" * 400, "2**31", "abc", "2017-13-45 25:61:00", "2017-10-09", "2017-10-09T07:01:55+08:00",
                     "0001-01-01", "9999-12-31 23:59:59", '"', '""', "'", "\x00", "é中", "G9", "V100M32|", "|",
                     "Running", "Pending", "HN", "CN", "a800", "h100;bogus"]),
    st.text(max_size=12),
    st.floats().map(repr),
    st.integers().map(str),
)


COUNTS, _count, _report = counter("trace fuzz")


def _quote(cell: str) -> str:
    """A cell as CSV writes it when it must (commas, quotes, newlines inside)."""
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\n\r') else cell


@st.composite
def trace_text(draw: st.DrawFn, kind: str) -> str:
    rows = [r.split(",") for r in SEEDS[kind]]
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(rows) - 1))
        op = draw(st.sampled_from(["cell", "cell", "cell", "quoted", "drop-cell", "add-cell", "dup-row",
                                   "drop-row", "raw-row", "header-rename", "header-shuffle"]))
        if op in ("cell", "quoted") and rows[i]:
            j = draw(st.integers(0, len(rows[i]) - 1))
            cell = draw(HOSTILE_CELL)
            rows[i][j] = _quote(cell) if op == "quoted" else cell.replace(",", ";").replace("\n", " ")
        elif op == "drop-cell" and rows[i]:
            rows[i].pop(draw(st.integers(0, len(rows[i]) - 1)))
        elif op == "add-cell":
            rows[i].append(draw(HOSTILE_CELL).replace(",", ";").replace("\n", " "))
        elif op == "dup-row":
            rows.insert(i, list(rows[i]))
        elif op == "drop-row" and len(rows) > 1:
            rows.pop(i)
        elif op == "raw-row":
            rows[i] = [draw(st.text(max_size=40))]
        elif op == "header-rename":
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(HOSTILE_CELL).replace(",", ";")
        elif op == "header-shuffle":
            order = draw(st.permutations(range(len(rows[0]))))
            rows = [[r[k] for k in order if k < len(r)] for r in rows]
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return bom + ending.join(",".join(r) for r in rows) + draw(st.sampled_from(["", ending, ending * 2]))


@st.composite
def options(draw: st.DrawFn, kind: str) -> ImportOptions:
    window = draw(st.sampled_from([{}, {"length": "48h"}, {"length": "2h", "at": "1h"}, {"start": "1d"},
                                   {"end": "2017-10-09T07:00:00"}, {"length": "1e400h"}, {"start": "x"}]))
    synth: dict[str, Any] = {"work_noise": draw(st.sampled_from([0.0, 0.3])), "classes": draw(st.booleans())}
    return ImportOptions(kind=kind, strict=draw(st.booleans()), sample=draw(st.sampled_from([1.0, 0.5])),
                         max_gpus=draw(st.sampled_from([None, 1, 4])), window=window,
                         column_map=draw(st.sampled_from(CSV_MAPS)) if kind == "csv" else None,
                         time_unit=draw(st.sampled_from(["s", "h"])), synth=SynthOptions(**synth))


CLI_OPTIONS = [["--strict"], ["--work-noise", "0.2"], ["--classes"], ["--window", "1h"], ["--window", "soon"],
               ["--sample", "0"], ["--max-gpus", "2"], ["--rate", "-1"],
               # extremes of every number an option takes
               ["--rate", "1e-300"], ["--rate", "1e300"], ["--from", "1e20d"], ["--from", "1e400d"],
               ["--window", "48h", "--at", "1e400h"], ["--window", "1e20h"], ["--min-duration", "1e400"],
               ["--work-noise", "1e308"], ["--slack", "1e308,1e308"], ["--min-deadline", "1e308"],
               ["--rtt-ms", "1e308"], ["--checkpoint-every", "1e308"], ["--checkpoint-after", "1e-308"],
               ["--gpu-types", "h100=1e-308,a800=1,910b=1"], ["--origins", "beijing=1e308"],
               ["--max-work-h", "1e-308"], ["--home-share", "nan"], ["--seed", "-1"], ["--seed", "1e400"]]


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _loads_as_scenario(folder: Path, report: Any) -> None:
    """What the import wrote is a jobs file the scenario loader accepts (with its job classes)."""
    doc = read_document(str(NETWORK))
    doc.pop("jobs", None)
    doc["jobs_file"] = os.path.basename(report.out)
    if report.classes_file:
        doc["job_classes"] = yaml.safe_load(Path(report.classes_file).read_text())["job_classes"]
    path = folder / "scn.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        load_scenario(str(path))
    except UserError as e:
        raise AssertionError(f"the importer wrote a jobs file the loader refuses: {e}") from None


def import_or_refuse(text: str | bytes, opts: ImportOptions, earlier: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        trace = folder / "trace.csv"
        if isinstance(text, bytes):
            trace.write_bytes(text)
        else:
            trace.write_bytes(text.encode("utf-8", "surrogatepass"))
        out_dir = folder / "out"
        out_dir.mkdir()
        out = out_dir / "jobs.csv"
        if earlier:
            out.write_text("an earlier import\n")
        try:
            report = import_trace(str(trace), str(out), opts)
        except UserError as e:
            msg = str(e)
            assert msg.strip() and len(msg.splitlines()) == 1, repr(msg)
            assert _leftovers(out_dir, {"jobs.csv"} if earlier else set()) == [], "files left behind"
            if earlier:
                assert out.read_text() == "an earlier import\n", "a refused import changed the earlier output"
            _count("(refused)")
            return
        _count("(imported)")
        written = {"jobs.csv"} | {Path(f).name for f in (report.truth_file, report.classes_file) if f}
        assert _leftovers(out_dir, written) == [], "temporary files left behind"
        assert report.jobs >= 0 and report.rows >= report.jobs
        _loads_as_scenario(out_dir, report)


@pytest.mark.parametrize("kind", sorted(SEEDS))
@fuzz(ci=100)
@given(data=st.data())
def test_mutated_traces_import_or_are_refused_in_one_line(kind: str, data: st.DataObject) -> None:
    _count(kind)
    import_or_refuse(data.draw(trace_text(kind)), data.draw(options(kind)), data.draw(st.booleans()))


@pytest.mark.parametrize("kind", sorted(SEEDS))
@fuzz(ci=25)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))),
       strict=st.booleans())
def test_random_files_are_refused_or_imported(kind: str, raw: bytes, strict: bool) -> None:
    _count(f"random bytes {kind}")
    opts = ImportOptions(kind=kind, strict=strict, column_map=CSV_MAPS[0] if kind == "csv" else None)
    import_or_refuse(raw, opts, earlier=True)


@fuzz(ci=40)
@given(kind=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_trace_import_exits_0_or_2_and_leaves_no_half_written_file(kind: str, data: st.DataObject) -> None:
    _count("suanli trace import")
    text = data.draw(trace_text(kind))
    args = data.draw(st.lists(st.sampled_from(CLI_OPTIONS), max_size=3))
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        trace = folder / "trace.csv"
        trace.write_bytes(text.encode("utf-8", "surrogatepass"))
        out = folder / "out" / "jobs.csv"
        out.parent.mkdir()
        out.write_text("an earlier import\n")
        cmd = ["trace", "import", kind, str(trace), "-o", str(out), "--quiet", *[a for arg in args for a in arg]]
        if kind == "csv":
            cmd += ["--map", CSV_MAPS[0]]
        r = CliRunner().invoke(cli_app, cmd)
        assert r.exit_code in (0, 2), (r.exit_code, r.output, r.exception)
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        assert "Traceback" not in r.output
        if r.exit_code == 2:
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
            assert out.read_text() == "an earlier import\n"
            assert sorted(p.name for p in out.parent.iterdir()) == ["jobs.csv"]
        else:
            assert out.read_text().startswith("id,")


def test_the_seeds_import() -> None:
    """Unmutated, every seed imports (else the fuzzing above would only ever test refusals)."""
    for kind in SEEDS:
        opts = ImportOptions(kind=kind, column_map=CSV_MAPS[0] if kind == "csv" else None)
        with tempfile.TemporaryDirectory() as d:
            trace = Path(d) / "t.csv"
            trace.write_text("\n".join(SEEDS[kind]) + "\n")
            report = import_trace(str(trace), str(Path(d) / "j.csv"), opts)
            assert report.jobs >= 1, kind
            _loads_as_scenario(Path(d), report)
