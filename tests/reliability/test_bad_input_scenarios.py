"""Hypothesis fuzzes the scenario loader (reliability issue #9, part 3b): whatever the file holds,
`load_scenario` returns a Scenario or raises a one-line `UserError` (a `ScenarioError` naming
file, field and value), never anything else; `suanli validate` exits 0 or 2, and on 2 prints
one line, `error: ...`, and no traceback.

Inputs: arbitrary text as YAML and as JSON; and structured mutations of the valid scenarios the
project ships (tests/data/*.yaml, the service's network, the built-in demo with its jobs CSV):
1 to 3 edits, each replacing a value anywhere in the document with a hostile one (wrong type,
NaN, infinity, 10^400, negative, empty, a long list), deleting a key, wrapping a value in a
list, duplicating a list item or adding a key; and a jobs CSV (`jobs_file`) with 1 to 3 row and
cell edits (hostile cells, rows of random text or bytes, a cell over the csv module's limit,
an unterminated quote).

`SUANLI_FUZZ_EXAMPLES` scales every test's example count (default sized for CI).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
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

ROOT = Path(__file__).parents[2]
BASES = {p.name: p for p in [*sorted((ROOT / "tests" / "data").glob("*.yaml")),
                              ROOT / "tests" / "service" / "data" / "network.yaml"]}
DEMO = ROOT / "src" / "suanli" / "examples" / "east-west.yaml"
COUNTS, _count, _report = counter("scenario fuzz")   # examples run per test, printed with -s


def load_or_refuse(path: str) -> UserError | None:
    """None if the file loads; the UserError if refused (one line); anything else propagates."""
    try:
        load_scenario(path)
    except UserError as e:
        msg = str(e)
        assert msg.strip() and len(msg.splitlines()) == 1, repr(msg)
        _count("(refused)")
        return e
    _count("(loaded)")
    return None


# ----------------------------------------------------------------------------- hostile values
HOSTILE_NUMBERS = st.sampled_from([0, -1, 1, -0.0, 0.5, 2**31, 2**63, -(2**63), 10**400, 1e308, -1e308, 5e-324,
                                   math.nan, math.inf, -math.inf])
HOSTILE_TEXT = st.sampled_from(["", " ", "x", "h100", "a800", "beijing", "gansu-2021", "Gansu", "1e999", "nan",
                                "-1", "2026-13-01T25:00:00", "2026-06-01T00:00:00+08:00", "jobs.csv", "../../etc",
                                "\x00", "é中文", "{a: 1}", "[1, 2]", "~", "null", "true"])
LEAF = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, st.integers(), st.floats(), HOSTILE_TEXT,
                 st.text(max_size=12))
HOSTILE = st.one_of(
    LEAF,
    st.lists(st.one_of(HOSTILE_NUMBERS, st.floats(), st.integers(-5, 5)), max_size=40),   # hourly series
    st.lists(LEAF, max_size=4),
    st.dictionaries(st.one_of(HOSTILE_TEXT, st.text(max_size=6)), LEAF, max_size=3),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _at(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _at(doc, path[:-1]), path[-1]
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "wrap", "dup", "add"]))
        if op == "replace":
            parent[key] = draw(HOSTILE)
        elif op == "delete":
            del parent[key]
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "dup" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.one_of(HOSTILE_TEXT, st.text(max_size=8)))] = draw(HOSTILE)
    return doc


def _write(doc: Any, folder: Path, as_json: bool, name: str = "scn") -> str:
    path = folder / f"{name}.{'json' if as_json else 'yaml'}"
    if as_json:
        path.write_text(json.dumps(doc, default=str), encoding="utf-8")     # NaN and Infinity as Python writes them
    else:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------- the tests
@fuzz(ci=150)
@given(text=st.one_of(st.text(max_size=400),
                      st.text(alphabet=st.sampled_from(list("{}[]:,-\"'#&*!|>%@` \n\t0123456789.eE")), max_size=200)),
       as_json=st.booleans())
def test_any_text_loads_or_is_refused_in_one_line(text: str, as_json: bool) -> None:
    _count("any text")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"s.{'json' if as_json else 'yaml'}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        load_or_refuse(str(path))


@fuzz(ci=60)
@given(data=st.binary(max_size=300))
def test_any_bytes_load_or_are_refused_in_one_line(data: bytes) -> None:
    _count("any bytes")
    with tempfile.TemporaryDirectory() as d:
        for ext in ("yaml", "json"):
            path = Path(d) / f"s.{ext}"
            path.write_bytes(data)
            load_or_refuse(str(path))


@pytest.mark.parametrize("base", sorted(BASES), ids=sorted(BASES))
@fuzz(ci=120)
@given(data=st.data(), as_json=st.booleans())
def test_mutated_scenarios_load_or_are_refused_in_one_line(base: str, data: st.DataObject, as_json: bool) -> None:
    _count(f"mutated {base}")
    doc = data.draw(mutated(read_document(str(BASES[base]))))
    with tempfile.TemporaryDirectory() as d:
        load_or_refuse(_write(doc, Path(d), as_json))


CELL = st.one_of(HOSTILE_TEXT, st.text(max_size=10), st.sampled_from(["1", "0", "-3", "1.5", "1e400", "nan", "inf"]))
# tiny.yaml's jobs as a jobs CSV (MODEL.md §1 `jobs_file`), all of its columns used
JOBS_CSV = [b"id,tenant,submit_h,gpus,work_h,gpu_types,class,deadline_h,origin,data_gb,max_rtt_ms,checkpoint_h",
            b"j1,a,0,2,2,,,,shanghai,,,",
            b"j2,a,0.5,4,3,a800,,4,shanghai,45,,1",
            b"j3,b,1,1,1,h100;a800,train,3,qingyang,9,20,"]


@st.composite
def jobs_csv(draw: st.DrawFn) -> bytes:
    rows = list(JOBS_CSV)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(rows) - 1))
        cells = rows[i].split(b",")
        op = draw(st.sampled_from(["cell", "cell", "cell", "drop-cell", "add-cell", "drop-row", "dup-row", "text",
                                   "bytes", "huge-cell", "quote"]))
        if op == "cell":
            cells[draw(st.integers(0, len(cells) - 1))] = draw(CELL).replace(",", ";").encode()
        elif op == "drop-cell" and len(cells) > 1:
            cells.pop(draw(st.integers(0, len(cells) - 1)))
        elif op == "add-cell":
            cells.append(b"x")
        elif op == "drop-row":
            cells = []
        elif op == "dup-row":
            rows.insert(i, rows[i])
        elif op == "text":
            cells = [draw(st.text(max_size=30)).encode()]
        elif op == "bytes":                       # not UTF-8, perhaps
            cells = [draw(st.binary(min_size=1, max_size=30))]
        elif op == "huge-cell":                   # over the csv module's 128 KiB field limit
            cells[-1] = b'"' + b"x" * 140_000 + b'"'
        else:                                     # an unterminated quote swallows the rest
            cells[0] = b'"' + cells[0]
        rows[i] = b",".join(cells)
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + b"\n".join(rows) + b"\n"


@fuzz(ci=150)
@given(csv_bytes=jobs_csv(), as_json=st.booleans())
def test_mutated_jobs_csv_loads_or_is_refused_in_one_line(csv_bytes: bytes, as_json: bool) -> None:
    _count("mutated jobs CSV")
    doc = read_document(str(BASES["tiny.yaml"]))
    doc.pop("jobs")
    doc["jobs_file"] = "jobs.csv"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "jobs.csv").write_bytes(csv_bytes)
        load_or_refuse(_write(doc, Path(d), as_json))


@fuzz(ci=30)
@given(data=st.data(), as_json=st.booleans())
def test_mutated_demo_loads_or_is_refused(data: st.DataObject, as_json: bool) -> None:
    """The built-in demo: pvlib and windpowerlib specs, tariffs, provinces, a jobs CSV."""
    _count("mutated demo")
    doc = data.draw(mutated(read_document(str(DEMO))))
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(DEMO.parent / "east-west.jobs.csv", d)
        load_or_refuse(_write(doc, Path(d), as_json))


# ----------------------------------------------------------------------------- through the CLI
def _validate(path: str) -> None:
    r = CliRunner().invoke(cli_app, ["validate", path])
    assert r.exit_code in (0, 2), (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    if r.exit_code == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert "Traceback" not in r.output
    else:
        assert r.stdout.startswith("ok: "), r.stdout


@fuzz(ci=40)
@given(data=st.data(), base=st.sampled_from(sorted(BASES)), as_json=st.booleans())
def test_validate_exits_0_or_2_with_one_line(data: st.DataObject, base: str, as_json: bool) -> None:
    _count("suanli validate")
    doc = data.draw(mutated(read_document(str(BASES[base]))))
    with tempfile.TemporaryDirectory() as d:
        _validate(_write(doc, Path(d), as_json))


# What the fuzzing above found escaping as a traceback, kept as plain regressions: edits of
# tests/data/tiny.yaml (path, value), and jobs CSVs.
FOUND_EDITS: list[tuple[tuple, Any]] = [
    (("sites", 0, "grid", "carbon_kg_per_kwh"), 10**400),          # OverflowError: int too large for a float
    (("sites", 1, "renewables", "kw"), [0, 10**400]),               # the same, in a list
    (("sites", 1, "renewables", "kw"), {"model": ["pvwatts"]}),     # TypeError: unhashable spec model
    (("sites", 1, "renewables", "kw"), {"model": {"a": 1}}),
    (("cities", "a\nb"), -5.9e16),                                 # a two-line message (a key with a newline)
]
FOUND_JOBS_CSV: list[bytes] = [
    b"id,submit_h,gpus,work_h,origin\nj1,0,1,1,shanghai\n\xff\xfe,1,1,1,shanghai\n",   # UnicodeDecodeError
    b"id,submit_h,gpus,work_h,origin\nj1,0,1,1,\"" + b"x" * 140_000 + b"\"\n",         # csv.Error: field limit
]


def test_validate_refuses_what_the_fuzz_found(tmp_path: Path) -> None:
    base = read_document(str(BASES["tiny.yaml"]))
    files = []
    for i, (path, value) in enumerate(FOUND_EDITS):
        doc = copy.deepcopy(base)
        _at(doc, path[:-1])[path[-1]] = value
        (tmp_path / f"e{i}").mkdir()
        files.append(_write(doc, tmp_path / f"e{i}", as_json=False))
    for i, body in enumerate(FOUND_JOBS_CSV):
        doc = copy.deepcopy(base)
        doc.pop("jobs")
        doc["jobs_file"] = "jobs.csv"
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "jobs.csv").write_bytes(body)
        files.append(_write(doc, tmp_path / f"c{i}", as_json=False))
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))     # UnicodeDecodeError
    files.append(str(tmp_path / "latin1.yaml"))
    for f in files:
        assert isinstance(load_or_refuse(f), UserError), f
        _validate(f)


def test_the_bases_are_valid() -> None:
    """The mutations start from valid scenarios (else every example would be a refusal)."""
    for p in [*BASES.values(), DEMO]:
        assert load_or_refuse(str(p)) is None, p
    with tempfile.TemporaryDirectory() as d:
        doc = read_document(str(BASES["tiny.yaml"]))
        doc.pop("jobs")
        doc["jobs_file"] = "jobs.csv"
        (Path(d) / "jobs.csv").write_bytes(b"\n".join(JOBS_CSV) + b"\n")
        assert load_or_refuse(_write(doc, Path(d), as_json=False)) is None
