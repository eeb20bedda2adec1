"""Alibaba's 2025 disaggregated DLRM inference services (Yang et al., NSDI'25).

Mapping: one GPU instance (`role` HN) -> one long-running job; `app_name` -> tenant;
`creation_time` -> submit; `scheduled_time` -> start (creation when missing); `deletion_time`
-> end, so the work is the instance's lifetime once placed; `gpu_request` -> gpus (rounded up).
An empty/NaN time is censoring, not an error: no creation time means the instance existed
before the trace started (submit and start 0), no deletion time means it was still alive
when the trace ended (end = the trace's last time). CPU instances (`gpu_request` 0) are
skipped and counted. The latency bound is synthesised per app (`synthesis`).
"""

from __future__ import annotations

import math
from typing import ClassVar

from suanli.traces.reader import TraceReader
from suanli.traces.records import BadRow, Clock, Skip, TraceRecord, number, text

BEFORE_TRACE = "existed before the trace started: submitted at the trace start"


class DlrmReader(TraceReader):
    kind: ClassVar[str] = "alibaba-dlrm"
    columns: ClassVar[tuple[str, ...]] = ("instance_sn", "app_name", "gpu_request", "creation_time",
                                          "scheduled_time", "deletion_time")
    clock = Clock.OFFSET
    services: ClassVar[bool] = True

    def parse(self, cells: list[str], line: int) -> TraceRecord:
        c = self.col
        text(cells, c["instance_sn"], "instance_sn")
        app = text(cells, c["app_name"], "app_name")
        g = number(cells, c["gpu_request"], "gpu_request")
        assert g is not None
        if g < 0:
            raise BadRow("gpu_request", "negative", cells[c["gpu_request"]].strip())
        if g == 0:
            raise Skip("CPU-only instance (gpu_request 0)")
        created = number(cells, c["creation_time"], "creation_time", allow_empty=True)
        started = number(cells, c["scheduled_time"], "scheduled_time", allow_empty=True)
        ended = number(cells, c["deletion_time"], "deletion_time", allow_empty=True)
        notes: tuple[str, ...] = ()
        if created is None:
            created, notes = 0.0, (BEFORE_TRACE,)
        if started is None:
            started = created
        if started < created:
            raise BadRow("scheduled_time", f"before creation_time {created:g}", started)
        if ended is not None and ended < started:
            raise BadRow("deletion_time", f"before the instance started ({started:g})", ended)
        return TraceRecord(line, created, started, ended, math.ceil(g), app, None, None, notes)
