"""An operator's own export: any CSV whose columns `--map` names.

`--map submit=created_at,duration=runtime_s,gpus=n_gpu,tenant=team` maps suanli's fields
to the file's columns. Fields: `submit` (required); `end` or `duration` (one of them);
`start` (default: submit); `gpus` (default 1; 0 = CPU-only, skipped); `tenant`;
`gpu_types` (`;`/`|`-separated, each a scenario type or a model of `--gpu-map`);
`max_rtt_ms`; `estimate` (the user's estimate of the run time, such as a requested time limit,
in `--duration-unit`: the job's `work_h` is then the estimate and its `actual_work_h` the run
time, MODEL.md §7). Times are ISO date/times or numbers in `--time-unit` from the trace start,
decided by the first row and then required of every row; durations are in `--duration-unit`.
"""

from __future__ import annotations

from typing import ClassVar

from suanli.errors import UserError
from suanli.traces.reader import TraceReader
from suanli.traces.records import MAX_SECONDS, BadRow, Clock, Skip, TraceRecord, count, number
from suanli.traces.timespec import parse_datetime

FIELDS = ("submit", "start", "end", "duration", "gpus", "tenant", "gpu_types", "max_rtt_ms", "estimate")
UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_KIND = {Clock.OFFSET: "a number", Clock.DATETIME: "a date/time"}


def parse_column_map(text: str | None) -> dict[str, str]:
    """`field=column,...` -> {field: column}; UserError naming `--map` on a mistake."""
    if not text or not text.strip():
        raise UserError("--map: required for a csv trace, e.g. --map submit=created_at,duration=runtime_s,gpus=n_gpu")
    out: dict[str, str] = {}
    for item in text.split(","):
        field, sep, column = (p.strip() for p in item.partition("="))
        if not sep or not field or not column:
            raise UserError(f"--map: not field=column like submit=created_at (got {item.strip()!r})")
        if field not in FIELDS:
            raise UserError(f"--map: unknown field {field!r}; fields are {', '.join(FIELDS)}")
        out[field] = column
    if "submit" not in out:
        raise UserError("--map: needs submit=COLUMN (the submit time)")
    if ("end" in out) == ("duration" in out):
        raise UserError("--map: needs exactly one of end=COLUMN or duration=COLUMN")
    return out


def unit_seconds(unit: str, option: str) -> float:
    if unit not in UNITS:
        raise UserError(f"{option}: unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    return UNITS[unit]


class GenericReader(TraceReader):
    kind: ClassVar[str] = "csv"
    columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, column_map: dict[str, str], time_unit_s: float, duration_unit_s: float,
                 gpu_types: list[str], gpu_map: dict[str, tuple[str, ...]]):
        super().__init__()
        self.map = column_map
        self.time_unit_s, self.duration_unit_s = time_unit_s, duration_unit_s
        self.gpu_types, self.gpu_map = gpu_types, gpu_map
        self.clock: Clock | None = None            # decided by the first row's submit cell

    def required(self) -> tuple[str, ...]:
        return tuple(self.map.values())

    def _time(self, cells: list[str], field: str) -> float:
        raw = cells[self.col[self.map[field]]].strip()
        if not raw:
            raise BadRow(field, "missing")
        try:
            value = float(raw)
            clock = Clock.OFFSET
        except ValueError:
            value = parse_datetime(raw)
            clock = Clock.DATETIME
            if value is None:
                raise BadRow(field, "not a number or an ISO date/time", raw) from None
        if self.clock is None:
            self.clock = clock
        elif clock is not self.clock:
            raise BadRow(field, f"{_KIND[clock]} where the first row had {_KIND[self.clock]}", raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise BadRow(field, "not a finite number", raw)
        seconds = value * self.time_unit_s if clock is Clock.OFFSET else value
        if abs(seconds) > MAX_SECONDS:
            raise BadRow(field, f"out of range (more than {MAX_SECONDS:g} s)", raw)
        return seconds

    def _types(self, raw: str) -> tuple[str, ...] | None:
        names = [n.strip() for n in raw.replace("|", ";").split(";") if n.strip()]
        if not names:
            return None
        allowed: set[str] = set()
        for n in names:
            if n in self.gpu_types:
                allowed.add(n)
            elif n in self.gpu_map:
                allowed.update(self.gpu_map[n])
            else:
                raise BadRow("gpu_types", "not a GPU type of --gpu-types nor a model of --gpu-map", n)
        return tuple(t for t in self.gpu_types if t in allowed)

    def times(self, cells: list[str]) -> tuple[float, float]:
        t = self._time(cells, "submit")
        return t, t

    def parse(self, cells: list[str], line: int) -> TraceRecord:
        m, c = self.map, self.col
        submit = self._time(cells, "submit")
        start = self._time(cells, "start") if "start" in m else submit
        if start < submit:
            raise BadRow("start", "before submit", cells[c[m["start"]]].strip())
        if "end" in m:
            end = self._time(cells, "end")
            if end < start:
                raise BadRow("end", "before start", cells[c[m["end"]]].strip())
        else:
            d = number(cells, c[m["duration"]], "duration")
            assert d is not None
            if d < 0:
                raise BadRow("duration", "negative", cells[c[m["duration"]]].strip())
            if abs(d * self.duration_unit_s) > MAX_SECONDS:
                raise BadRow("duration", f"out of range (more than {MAX_SECONDS:g} s)", cells[c[m["duration"]]].strip())
            end = start + d * self.duration_unit_s
        gpus = count(cells, c[m["gpus"]], "gpus") if "gpus" in m else 1
        if gpus == 0:
            raise Skip("CPU-only (gpus 0)")
        tenant = (cells[c[m["tenant"]]].strip() or None) if "tenant" in m else None
        types = self._types(cells[c[m["gpu_types"]]]) if "gpu_types" in m else None
        rtt = number(cells, c[m["max_rtt_ms"]], "max_rtt_ms", allow_empty=True) if "max_rtt_ms" in m else None
        if rtt is not None and rtt < 0:
            raise BadRow("max_rtt_ms", "negative", rtt)
        estimate = None
        if "estimate" in m:
            e = number(cells, c[m["estimate"]], "estimate", allow_empty=True)
            if e is not None:
                if not e > 0 or abs(e * self.duration_unit_s) > MAX_SECONDS:
                    raise BadRow("estimate", f"not in (0, {MAX_SECONDS:g} s]", cells[c[m["estimate"]]].strip())
                estimate = e * self.duration_unit_s
        return TraceRecord(line, submit, start, end, gpus, tenant, types, rtt, estimate_s=estimate)
