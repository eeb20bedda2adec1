"""Microsoft Philly through the Pollux per-job table (`timestamp,duration,num_gpus,gpu_time,cluster`).

Mapping: `timestamp` (submit, calendar time of the trace's own undocumented zone, read as
UTC) -> submit; start = submit (the table has no start time); `duration` s -> run time;
`num_gpus` -> gpus; `cluster` (hashed virtual cluster) -> tenant `vc-<hash>`. `gpu_time` is
redundant (duration x num_gpus) and not read.
"""

from __future__ import annotations

from typing import ClassVar

from suanli.traces.reader import TraceReader
from suanli.traces.records import BadRow, Clock, TraceRecord, count, number, text
from suanli.traces.timespec import parse_datetime


class PhillyReader(TraceReader):
    kind: ClassVar[str] = "philly"
    columns: ClassVar[tuple[str, ...]] = ("timestamp", "duration", "num_gpus", "cluster")
    clock = Clock.DATETIME

    def _submit(self, cells: list[str]) -> float:
        stamp = text(cells, self.col["timestamp"], "timestamp")
        t = parse_datetime(stamp)
        if t is None:
            raise BadRow("timestamp", "not a date and time", stamp)
        return t

    def times(self, cells: list[str]) -> tuple[float, float]:
        t = self._submit(cells)
        return t, t

    def parse(self, cells: list[str], line: int) -> TraceRecord:
        c = self.col
        t = self._submit(cells)
        d = number(cells, c["duration"], "duration")
        assert d is not None
        if d < 0:
            raise BadRow("duration", "negative", cells[c["duration"]].strip())
        gpus = count(cells, c["num_gpus"], "num_gpus")
        if gpus < 1:
            raise BadRow("num_gpus", "must be at least 1", cells[c["num_gpus"]].strip())
        vc = text(cells, c["cluster"], "cluster")
        return TraceRecord(line, t, t, t + d, gpus, f"vc-{vc}")
