"""Reading scenarios from YAML, JSON and job CSV files, with one-line errors.

Every refusal is a `ScenarioError` naming the file, the path to the field
(`jobs[17].gpus`) and the offending value. Nothing here prints.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from suanli.energy.resolve import resolve_specs
from suanli.errors import ScenarioError
from suanli.model.scenario import Scenario
from suanli.model.schema import Job, ScenarioDoc
from suanli.model.series import SpecError

_JOBS = TypeAdapter(list[Job])
_PYDANTIC_MESSAGES = {"extra_forbidden": "unknown field", "missing": "required field is missing"}


def _loc_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _first_error(file: str, exc: ValidationError, prefix: str = "", lines: list[int] | None = None,
                 offset: int = 0):
    """The first pydantic error as a ScenarioError; `lines` maps job index -> CSV line; `offset`:
    the index of the first job validated (a batch of a streamed file)."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    msg = _PYDANTIC_MESSAGES.get(err["type"], err["msg"])
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    where = file
    if lines is not None and loc and isinstance(loc[0], int) and loc[0] < len(lines):
        where = f"{file}:{lines[loc[0]]}"
    more = exc.error_count() - 1
    note = f"; and {more} more error{'s' if more > 1 else ''}" if more else ""
    value = ... if err["type"] == "missing" else err.get("input", ...)
    path = prefix + _loc_path((loc[0] + offset, *loc[1:]) if offset and loc and isinstance(loc[0], int) else loc)
    spec_error = (err.get("ctx") or {}).get("error")
    if isinstance(spec_error, SpecError):          # a field inside a spec: name it and its value
        path = f"{path}.{spec_error.path}" if spec_error.path else path
        msg, value = spec_error.message, spec_error.value
    return ScenarioError(where, path, msg, value, note)


def read_document(path: str) -> dict[str, Any]:
    """Parse a YAML or JSON file into a mapping."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise ScenarioError(path, "", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:          # found by fuzzing (tests/reliability): was a traceback
        raise ScenarioError(path, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        if path.endswith(".json"):
            raw = json.loads(text)
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            raw = yaml.load(text, Loader=loader)
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{path}:{e.lineno}", "", f"invalid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(where, "", f"invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(path, "", "the top level must be a mapping of fields", raw)
    return raw


def iter_jobs_csv(path: str, read: list[int] | None = None) -> Iterator[tuple[dict[str, Any], int]]:
    """Each row of a jobs CSV (empty cells dropped so defaults apply) with its line number, one at a
    time: memory does not grow with the file. `read`, if given, holds in `read[0]` the bytes read
    so far (for progress)."""
    try:
        fh = open(path, newline="", encoding="utf-8-sig")   # -sig: spreadsheets write a BOM
    except OSError as e:
        raise ScenarioError(path, "", f"cannot read jobs_file: {e.strerror}") from None
    n = 0
    with fh:
        reader = csv.DictReader(fh)
        # reading can fail on the bytes themselves (not UTF-8) or on the CSV (a cell over the csv
        # module's field limit): one line naming the file (and line), not a traceback (fuzzing found both)
        try:
            if not reader.fieldnames or "id" not in reader.fieldnames:
                raise ScenarioError(path, "", "a jobs CSV needs a header row with at least an 'id' column",
                                    reader.fieldnames)
            for row in reader:
                if None in row:
                    raise ScenarioError(f"{path}:{reader.line_num}", f"jobs[{n}]",
                                        "row has more cells than the header", row[None])
                cells = {k.strip(): v.strip() for k, v in row.items() if v is not None and v.strip() != ""}
                if not cells:
                    continue                      # blank line
                if read is not None and n % 4096 == 0:
                    read[0] = fh.buffer.tell()
                yield cells, reader.line_num
                n += 1
        except UnicodeDecodeError as e:
            raise ScenarioError(path, "", f"not UTF-8 text ({e.reason})") from None      # decoded ahead: no line
        except csv.Error as e:
            raise ScenarioError(f"{path}:{reader.line_num}", "", f"not a readable CSV row: {e}") from None
    if read is not None:
        read[0] = os.path.getsize(path)


def read_jobs_csv(path: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of a jobs CSV (empty cells dropped so defaults apply) and their line numbers."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for cells, line in iter_jobs_csv(path):
        rows.append(cells)
        lines.append(line)
    return rows, lines


def parse_scenario(raw: dict[str, Any], file: str) -> Scenario:
    """Validate a parsed document (and its jobs file) into a Scenario."""
    try:
        doc = ScenarioDoc.model_validate(raw)
    except ValidationError as e:
        raise _first_error(file, e) from None
    jobs_file = file
    lines: list[int] | None = None
    if doc.jobs is not None and doc.jobs_file is not None:
        raise ScenarioError(file, "jobs_file", "give jobs inline or in jobs_file, not both", doc.jobs_file)
    if doc.jobs_file is not None:
        jobs_file = os.path.join(os.path.dirname(os.path.abspath(file)), doc.jobs_file)
        if not os.path.isabs(doc.jobs_file):
            jobs_file = os.path.relpath(jobs_file)
        rows, lines = read_jobs_csv(jobs_file)
        try:
            jobs = _JOBS.validate_python(rows)
        except ValidationError as e:
            raise _first_error(jobs_file, e, prefix="jobs", lines=lines) from None
    else:
        jobs = doc.jobs or []
    scn = Scenario.build(doc, jobs, file=file, jobs_file=jobs_file, job_lines=lines)
    resolve_specs(scn)       # specs (solar, wind, tariff, province) -> series; names checked here
    return scn


def load_scenario(path: str) -> Scenario:
    """Load and validate a scenario file (YAML or JSON)."""
    return parse_scenario(read_document(path), path)
