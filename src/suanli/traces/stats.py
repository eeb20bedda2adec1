"""`suanli trace stats`: the figures that characterise a GPU workload, for comparing with papers.

Jobs, the GPU-size mix, run-time percentiles (nearest rank, as MODEL.md's p95 and the traces
README use), the share of GPU time in multi-GPU jobs, the top 1 % of jobs' share, and
arrivals per hour. It reads a raw trace through the importer's readers (every GPU job, no
window, no filter) or an imported jobs CSV (`work_h` is then the run time at reference speed).
Memory: three numbers per job, held to compute exact percentiles.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from suanli.errors import UserError, short_repr
from suanli.traces.importer import ImportOptions, make_reader, scan
from suanli.traces.reader import Tally, TraceReader, iter_records, iter_rows
from suanli.traces.records import BadRow, Clock, TraceRecord, count, number

STATS_KINDS = ("jobs", "philly", "alibaba-openb", "alibaba-dlrm")
PERCENTILES = (10, 50, 90, 99)


class JobsReader(TraceReader):
    """An imported jobs CSV, read for its statistics: submit_h, gpus, work_h."""

    kind: ClassVar[str] = "jobs"
    columns: ClassVar[tuple[str, ...]] = ("submit_h", "gpus", "work_h")
    clock = Clock.OFFSET

    def parse(self, cells: list[str], line: int) -> TraceRecord:
        c = self.col
        submit = number(cells, c["submit_h"], "submit_h")
        work = number(cells, c["work_h"], "work_h")
        gpus = count(cells, c["gpus"], "gpus")
        assert submit is not None and work is not None
        if submit < 0:
            raise BadRow("submit_h", "negative", submit)
        if not work > 0:
            raise BadRow("work_h", "must be above 0", work)
        if gpus < 1:
            raise BadRow("gpus", "must be at least 1", gpus)
        return TraceRecord(line, submit * 3600, submit * 3600, (submit + work) * 3600, gpus)


class Durations(BaseModel):
    p10: float
    p50: float
    mean: float
    p90: float
    p99: float
    max: float


class Arrivals(BaseModel):
    mean: float          # jobs / hours spanned (first to last submit, whole hours)
    median: float        # of the hourly counts, empty hours included
    p95: float
    max: int


class TraceStats(BaseModel):
    file: str
    kind: str
    rows: int
    jobs: int
    bad_rows: int
    skipped: dict[str, int]
    gpu_mix: dict[int, int]              # GPUs per job -> jobs
    single_gpu_share: float              # of jobs
    multi_gpu_time_share: float          # of GPU time
    top1pct_time_share: float            # of GPU time, in the 1 % of jobs with most GPU time
    gpu_hours: float
    duration_s: Durations
    span_h: float
    arrivals_per_hour: Arrivals


def detect_kind(path: str) -> str:
    """The kind of file from its header (a jobs CSV or one of the raw traces)."""
    for _, cells in iter_rows(path):
        names = {c.strip() for c in cells}
        if {"submit_h", "gpus", "work_h"} <= names:
            return "jobs"
        if {"timestamp", "duration", "num_gpus"} <= names:
            return "philly"
        if {"num_gpu", "gpu_milli"} <= names:
            return "alibaba-openb"
        if {"instance_sn", "gpu_request"} <= names:
            return "alibaba-dlrm"
        raise UserError(f"{path}: cannot tell the trace's kind from its header {short_repr(','.join(cells))}; "
                        f"give --kind ({', '.join(STATS_KINDS)})")
    raise UserError(f"{path}: empty file: no header row")


def _reader(kind: str) -> TraceReader:
    if kind == "jobs":
        return JobsReader()
    if kind not in STATS_KINDS:
        raise UserError(f"--kind: stats reads {', '.join(STATS_KINDS)} files (got {kind!r})")
    return make_reader(ImportOptions(kind=kind))


def trace_stats(path: str, kind: str | None = None, progress: Callable[[int], None] | None = None) -> TraceStats:
    kind = kind or detect_kind(path)
    reader = _reader(kind)
    trace_end = scan(path, reader).last_time_s if reader.services else math.nan
    tally = Tally()
    submit, duration, gpus = array("d"), array("d"), array("q")
    for rec in iter_records(path, reader, tally, progress=progress):
        end = rec.end_s if rec.end_s is not None else trace_end
        submit.append(rec.submit_s)
        duration.append(end - rec.start_s)
        gpus.append(rec.gpus)
    n = len(submit)
    if n == 0:
        raise UserError(f"{path}: no jobs to describe ({tally.rows} rows, {tally.bad_rows} bad)")
    t, d, g = np.frombuffer(submit), np.frombuffer(duration), np.frombuffer(gpus, dtype=np.int64)
    gt = d * g
    total = float(gt.sum())
    top = max(1, math.ceil(0.01 * n))
    sizes, counts = np.unique(g, return_counts=True)
    p = np.percentile(d, PERCENTILES, method="inverted_cdf")
    hours = np.bincount(((t - t.min()) // 3600).astype(np.int64))
    return TraceStats(
        file=path, kind=kind, rows=tally.rows, jobs=n, bad_rows=tally.bad_rows, skipped=tally.skipped,
        gpu_mix={int(s): int(c) for s, c in zip(sizes, counts, strict=True)},
        single_gpu_share=float((g == 1).mean()),
        multi_gpu_time_share=float(gt[g > 1].sum() / total) if total > 0 else 0.0,
        top1pct_time_share=float(np.sort(gt)[-top:].sum() / total) if total > 0 else 0.0,
        gpu_hours=total / 3600.0,
        duration_s=Durations(p10=p[0], p50=p[1], mean=float(d.mean()), p90=p[2], p99=p[3], max=float(d.max())),
        span_h=float(t.max() - t.min()) / 3600.0,
        arrivals_per_hour=Arrivals(mean=n / len(hours), median=float(np.percentile(hours, 50, method="inverted_cdf")),
                                   p95=float(np.percentile(hours, 95, method="inverted_cdf")), max=int(hours.max())),
    )
