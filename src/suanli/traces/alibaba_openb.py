"""Alibaba's 2023 heterogeneous GPU cluster (`openb_pod_list_*.csv`, Weng et al., ATC'23).

Mapping: `creation_time` (s from the trace start) -> submit; `scheduled_time` -> start;
`deletion_time` -> end, so the work is the run time, not the queueing before it;
`num_gpu` -> gpus; `gpu_spec` -> allowed GPU types through `gpu_spec.DEFAULT_GPU_MAP`.
No tenant. Not GPU jobs (skipped and counted): CPU-only tasks (`num_gpu` 0) and pods
never scheduled (`Pending`, no `scheduled_time`). A GPU share (`gpu_milli` < 1000) is
rounded up to a whole GPU: the model has no fractional GPUs, and packing several tasks
into one job would invent co-location the trace does not show.
"""

from __future__ import annotations

from typing import ClassVar

from suanli.traces.gpu_spec import map_spec
from suanli.traces.reader import TraceReader
from suanli.traces.records import BadRow, Clock, Skip, TraceRecord, count, number, text

FRACTIONAL = "fractional GPU share rounded up to a whole GPU"
STILL_RUNNING = "pod_phase Running: its deletion_time may be the trace's end, so its run time a lower bound"


class OpenbReader(TraceReader):
    kind: ClassVar[str] = "alibaba-openb"
    columns: ClassVar[tuple[str, ...]] = ("name", "num_gpu", "gpu_milli", "gpu_spec", "creation_time",
                                          "scheduled_time", "deletion_time")
    optional: ClassVar[tuple[str, ...]] = ("pod_phase",)
    clock = Clock.OFFSET

    def __init__(self, gpu_map: dict[str, tuple[str, ...]], type_order: list[str]):
        super().__init__()
        self.gpu_map, self.type_order = gpu_map, type_order

    def times(self, cells: list[str]) -> tuple[float, float]:
        t = number(cells, self.col["creation_time"], "creation_time")
        assert t is not None
        return t, t

    def parse(self, cells: list[str], line: int) -> TraceRecord:
        c = self.col
        text(cells, c["name"], "name")
        gpus = count(cells, c["num_gpu"], "num_gpu")
        milli = count(cells, c["gpu_milli"], "gpu_milli")
        if gpus == 0:
            raise Skip("CPU-only task (num_gpu 0)")
        if milli > 1000:
            raise BadRow("gpu_milli", "above 1000 (a whole GPU)", cells[c["gpu_milli"]].strip())
        spec = cells[c["gpu_spec"]].strip()
        try:
            types = map_spec(spec, self.gpu_map, self.type_order)
        except KeyError as e:
            raise BadRow("gpu_spec", f"GPU model {e.args[0]!r} is not in the mapping (--gpu-map)", spec) from None
        created = number(cells, c["creation_time"], "creation_time")
        started = number(cells, c["scheduled_time"], "scheduled_time", allow_empty=True)
        ended = number(cells, c["deletion_time"], "deletion_time")
        assert created is not None and ended is not None
        if started is None:
            raise Skip("never scheduled (no scheduled_time)")
        if started < created:
            raise BadRow("scheduled_time", f"before creation_time {created:g}", started)
        if ended < started:
            raise BadRow("deletion_time", f"before scheduled_time {started:g}", ended)
        notes: tuple[str, ...] = ()
        if milli < 1000:
            notes += (FRACTIONAL,)
        if "pod_phase" in c and cells[c["pod_phase"]].strip() == "Running":
            notes += (STILL_RUNNING,)
        return TraceRecord(line, created, started, ended, gpus, None, types, None, notes)
