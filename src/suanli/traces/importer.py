"""`suanli trace import`: a trace file in, a scenario jobs CSV out, streaming.

Two passes over the file, each with constant memory: the first reads only the times, to
find the trace's origin (its first submit) and, for services, its end; the second selects
(window, filters, seeded sample), synthesises what the trace lacks a batch at a time
(`synthesis`) and writes the rows (`jobs_csv`) to temporary files that replace the outputs
only at the end, so `--strict`, which stops at the first bad row, leaves nothing behind. The report says what
happened to every row: written, skipped as bad (per reason, with the first line), skipped by
design (CPU-only, never run), dropped by a choice (window, sample, minimum duration), and
which written jobs were adjusted (GPUs capped, work clipped, censored lifetimes).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from suanli.errors import UserError
from suanli.traces.alibaba_dlrm import DlrmReader
from suanli.traces.alibaba_openb import OpenbReader
from suanli.traces.generic_csv import GenericReader, parse_column_map, unit_seconds
from suanli.traces.gpu_spec import parse_gpu_map
from suanli.traces.jobs_csv import AtomicFiles, fmt_all, job_rows, jobs_writer
from suanli.traces.philly import PhillyReader
from suanli.traces.reader import Tally, TraceReader, file_size, iter_records, iter_rows
from suanli.traces.records import BadRow, Clock, Skip, TraceRecord
from suanli.traces.synthesis import Synthesiser, SynthOptions
from suanli.traces.timespec import describe, parse_duration, parse_instant
from suanli.traces.uncertainty import RULES, max_wait_h, parse_start

KINDS = ("philly", "alibaba-openb", "alibaba-dlrm", "csv")
BATCH = 4096                           # jobs synthesised and written together

ALIVE_AT_END = "still alive when the trace ended: runs until the trace's last time"
CARRIED_IN = "already running when the window opened: carried in at hour 0 with its remaining lifetime"
OUTSIDE = "submitted outside the window"
NOT_SAMPLED = "not drawn by --sample"
NO_RUN = "no run time (0 s)"

Progress = Callable[[int, int], None]          # (characters read, total over both passes)


class WindowSpec(BaseModel):
    """The time window as the user wrote it; resolved once the trace's clock is known."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str | None = None           # --from
    end: str | None = None             # --to
    length: str | None = None          # --window
    at: str | None = None              # --at

    def resolve(self, clock: Clock, origin_s: float) -> tuple[float, float]:
        """[from, to) on the trace clock; the default is the whole trace from its origin."""
        if (self.length or self.at) and (self.start or self.end):
            raise UserError("--window/--at: give either --from/--to or --window with --at, not both")
        if self.at and not self.length:
            raise UserError("--at: needs --window, e.g. --window 48h --at 2017-11-20")
        if self.length:
            lo = parse_instant(self.at, "--at", clock, origin_s) if self.at else origin_s
            length = parse_duration(self.length, "--window")
            if not length > 0:
                raise UserError(f"--window: must be longer than 0 (got {self.length!r})")
            return lo, lo + length
        lo = parse_instant(self.start, "--from", clock, origin_s) if self.start else origin_s
        hi = parse_instant(self.end, "--to", clock, origin_s) if self.end else math.inf
        if not hi > lo:
            raise UserError(f"--to: must be after --from (got {self.end!r})")
        return lo, hi


class ImportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str
    window: WindowSpec = Field(default_factory=WindowSpec)
    # arrivals per hour x rate (time compressed); bounded, as submit_h = trace hours / rate must
    # stay finite (--rate 1e-300 wrote submit_h "inf", which the loader refuses: fuzzing found it)
    rate: float = Field(1.0, gt=0, le=1e6)
    sample: float = Field(1.0, gt=0, le=1)         # seeded Bernoulli sample of the jobs
    min_duration_s: float = Field(0.0, ge=0)
    max_gpus: int | None = Field(None, ge=1)
    max_work_h: float | None = Field(None, gt=0, le=1e9)
    id_prefix: str = "j-"
    strict: bool = False
    gpu_map: str | None = None                     # alibaba-openb / csv: MODEL=type,...
    column_map: str | None = None                  # csv: field=column,...
    time_unit: str = "s"                           # csv: unit of numeric times
    duration_unit: str = "s"                       # csv: unit of durations
    synth: SynthOptions = Field(default_factory=SynthOptions)
    # max_wait_h for every job by a rule of `traces.uncertainty` (gaia, next-workday, mon-thu),
    # the calendar rules reading hour 0 as `scenario_start` (the scenario's `start`)
    max_wait: str | None = None
    scenario_start: str = "2026-06-01T00:00:00+08:00"

    @field_validator("max_wait")
    @classmethod
    def _max_wait(cls, v: str | None) -> str | None:
        if v is not None and v not in RULES:
            raise ValueError(f"unknown rule {v!r}; rules are {', '.join(RULES)}")
        return v

    @field_validator("scenario_start")
    @classmethod
    def _start(cls, v: str) -> str:
        parse_start(v)
        return v

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: float) -> float:
        if v < 1e-6:
            raise ValueError("must be at least 1e-6 (a smaller rate stretches the trace past any finite hour)")
        return v


class ImportReport(BaseModel):
    kind: str
    file: str
    out: str
    rows: int = 0                                  # data rows read
    jobs: int = 0                                  # jobs written
    gpu_hours: float = 0.0                         # Σ gpus x true work_h (reference GPU-hours)
    bad: dict[str, tuple[int, int]] = {}           # reason -> (rows, first line)
    skipped: dict[str, int] = {}                   # not GPU jobs by design
    dropped: dict[str, int] = {}                   # by the user's selection
    notes: dict[str, int] = {}                     # adjustments among the written jobs
    window: tuple[str, str] = ("", "")
    submit_span_h: float = 0.0
    truth_file: str | None = None
    classes_file: str | None = None
    job_classes: dict[str, dict[str, float]] = {}
    seconds: float = 0.0


def make_reader(opts: ImportOptions) -> TraceReader:
    types = list(opts.synth.gpu_speeds)
    if opts.kind == "philly":
        return PhillyReader()
    if opts.kind == "alibaba-openb":
        return OpenbReader(parse_gpu_map(opts.gpu_map, types), types)
    if opts.kind == "alibaba-dlrm":
        return DlrmReader()
    if opts.kind == "csv":
        return GenericReader(parse_column_map(opts.column_map), unit_seconds(opts.time_unit, "--time-unit"),
                             unit_seconds(opts.duration_unit, "--duration-unit"), types,
                             parse_gpu_map(opts.gpu_map, types, base={}))
    raise UserError(f"KIND: unknown trace kind {opts.kind!r}; kinds are {', '.join(KINDS)}")


@dataclass
class Scan:
    clock: Clock
    first_submit_s: float = math.inf
    last_time_s: float = -math.inf

    @property
    def origin_s(self) -> float:
        """The trace's origin, which window offsets count from: its first submit (0 if empty)."""
        return 0.0 if math.isinf(self.first_submit_s) else self.first_submit_s


def scan(path: str, reader: TraceReader, progress: Callable[[int], None] | None = None) -> Scan:
    """Pass 1: the first submit and the last time seen (the end of censored lifetimes)."""
    first, last = math.inf, -math.inf
    width = 0
    for _, cells in iter_rows(path, progress):
        if not width:
            reader.bind(cells, path)
            width = len(cells)
            continue
        if len(cells) != width:
            continue                       # reported by pass 2
        try:
            submit, latest = reader.times(cells)
        except (BadRow, Skip):
            continue
        first, last = min(first, submit), max(last, latest)
    if not width:
        raise UserError(f"{path}: empty file: no header row")
    clock = reader.clock if reader.clock is not None else Clock.OFFSET
    return Scan(clock, first, last)


def _count(table: dict[str, int], reason: str, n: int = 1) -> None:
    """Add n to a reason's count (None, so that a filter can `return _count(...)`)."""
    table[reason] = table.get(reason, 0) + n


class _Selection:
    """Pass 2's choices for one record: window (with carry-in for services), run time filters,
    GPU cap and work clip. Returns (submit_h, work_h, gpus, notes), or None and counts why."""

    def __init__(self, opts: ImportOptions, w_from: float, w_to: float, trace_end: float, services: bool):
        self.opts, self.w_from, self.w_to, self.trace_end, self.services = opts, w_from, w_to, trace_end, services
        self.dropped: dict[str, int] = {}
        self.short = f"shorter than --min-duration ({opts.min_duration_s:g} s)"

    def __call__(self, rec: TraceRecord) -> tuple[float, float, int, tuple[str, ...]] | None:
        o = self.opts
        submit, start, end, notes = rec.submit_s, rec.start_s, rec.end_s, rec.notes
        if end is None:
            end, notes = self.trace_end, notes + (ALIVE_AT_END,)
        if submit < self.w_from:
            if not (self.services and end > self.w_from):
                return _count(self.dropped, OUTSIDE)
            submit, start, notes = self.w_from, max(start, self.w_from), notes + (CARRIED_IN,)
        elif submit >= self.w_to:
            return _count(self.dropped, OUTSIDE)
        run_s = end - start
        if run_s <= 0:
            return _count(self.dropped, NO_RUN)
        if run_s < o.min_duration_s:
            return _count(self.dropped, self.short)
        gpus, work_h = rec.gpus, run_s / 3600.0
        if o.max_gpus is not None and gpus > o.max_gpus:
            gpus, notes = o.max_gpus, notes + (f"gpus capped at --max-gpus {o.max_gpus}",)
        if o.max_work_h is not None and work_h > o.max_work_h:
            work_h, notes = o.max_work_h, notes + (f"work clipped at --max-work-h {o.max_work_h:g}",)
        return (submit - self.w_from) / 3600.0 / o.rate, work_h, gpus, notes


@dataclass
class _Batch:
    """Selected jobs waiting to be sampled, synthesised and written together."""

    submit_h: list[float] = field(default_factory=list)
    work_h: list[float] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)
    tenant: list[str | None] = field(default_factory=list)
    types: list[tuple[str, ...] | None] = field(default_factory=list)
    rtt: list[float | None] = field(default_factory=list)
    notes: list[tuple[str, ...]] = field(default_factory=list)
    estimate_h: list[float] = field(default_factory=list)    # the trace's estimate; NaN: none

    def add(self, rec: TraceRecord, submit_h: float, work_h: float, gpus: int, notes: tuple[str, ...]) -> int:
        self.estimate_h.append(math.nan if rec.estimate_s is None else rec.estimate_s / 3600.0)
        self.submit_h.append(submit_h)
        self.work_h.append(work_h)
        self.gpus.append(gpus)
        self.tenant.append(rec.tenant)
        self.types.append(rec.gpu_types)
        self.rtt.append(rec.max_rtt_ms)
        self.notes.append(notes)
        return len(self.work_h)


class _Writer:
    """Samples a batch, synthesises what it lacks and writes its rows; tallies the report."""

    def __init__(self, opts: ImportOptions, synth: Synthesiser, jobs, truth: IO[str] | None,
                 report: ImportReport, dropped: dict[str, int]):
        self.opts, self.synth, self.jobs, self.truth, self.report, self.dropped = \
            opts, synth, jobs, truth, report, dropped
        self.written = 0
        self.span = [math.inf, -math.inf]
        # the trace has the users' estimates (csv: --map estimate=...): work_h is the estimate
        self.estimates = "estimate" in parse_column_map(opts.column_map) if opts.kind == "csv" else False
        self.truthful = opts.synth.work_noise > 0 or self.estimates   # write actual_work_h

    def flush(self, batch: _Batch) -> None:
        n = len(batch.work_h)
        if not n:
            return
        keep = self.synth.sample(n, self.opts.sample)
        if not keep.all():
            _count(self.dropped, NOT_SAMPLED, int((~keep).sum()))
        idx = np.flatnonzero(keep)
        if len(idx):
            self._write(batch, idx)
        for column in vars(batch).values():
            column.clear()

    def _write(self, batch: _Batch, idx: np.ndarray) -> None:
        submit = np.asarray(batch.submit_h)[idx]
        work = np.asarray(batch.work_h)[idx]
        gpus = np.asarray(batch.gpus, dtype=np.int64)[idx]
        tenants = [batch.tenant[i] for i in idx]
        estimate = np.asarray(batch.estimate_h)[idx] if self.estimates else None
        d = self.synth.draw(submit, work, gpus, tenants, [batch.rtt[i] for i in idx], estimate)
        rows = job_rows(self.written + 1, self.opts.id_prefix, tenants, submit, gpus, d.work_h,
                        [batch.types[i] for i in idx], d.klass, d.deadline_h, d.origin, d.data_gb,
                        d.max_rtt_ms, d.checkpoint_h)
        extra = []
        if self.truthful:                           # the truth beside the estimate (MODEL.md §1)
            extra.append(fmt_all(work))
        if self.opts.max_wait is not None:
            start = parse_start(self.opts.scenario_start)
            extra.append(fmt_all(np.asarray([max_wait_h(self.opts.max_wait, float(s), float(e), start)
                                             for s, e in zip(np.round(submit, 6), d.work_h, strict=True)]), 4))
        if extra:
            rows = [r + tuple(x) for r, *x in zip(rows, *extra, strict=True)]
        self.jobs.writerows(rows)
        if self.truth is not None:
            self.truth.writelines(f"{r[0]},{w}\n" for r, w in zip(rows, fmt_all(work), strict=True))
        for i in idx:
            for note in batch.notes[i]:
                _count(self.report.notes, note)
        self.written += len(idx)
        self.report.gpu_hours += float((gpus * work).sum())
        self.span = [min(self.span[0], float(submit.min())), max(self.span[1], float(submit.max()))]


def _stem(out: str) -> str:
    return out[:-4] if out.lower().endswith(".csv") else out


def import_trace(path: str, out: str, opts: ImportOptions, progress: Progress | None = None) -> ImportReport:
    """Import `path` (a trace of `opts.kind`) into the jobs CSV `out`; nothing is written on error."""
    t0 = time.perf_counter()
    if os.path.abspath(out) == os.path.abspath(path):
        raise UserError(f"--out: {out} is the trace itself; choose another file")
    reader = make_reader(opts)
    size = file_size(path)
    total = 2 * max(size, 1)
    sc = scan(path, reader, progress=(lambda n: progress(n, total)) if progress else None)
    w_from, w_to = opts.window.resolve(sc.clock, sc.origin_s)
    report = ImportReport(kind=opts.kind, file=path, out=out,
                          window=(describe(w_from, sc.clock),
                                  describe(w_to, sc.clock) if math.isfinite(w_to) else "the trace's end"))
    select = _Selection(opts, w_from, w_to, sc.last_time_s, reader.services)
    tally = Tally()
    batch = _Batch()
    with AtomicFiles() as files:
        truth = None
        if opts.synth.work_noise > 0:
            report.truth_file = _stem(out) + ".truth.csv"
            truth = files.open(report.truth_file)
            truth.write("id,true_work_h\n")
        jobs_fh = files.open(out)
        writer = _Writer(opts, Synthesiser(opts.synth, reader.services), None, truth, report, select.dropped)
        writer.jobs = jobs_writer(jobs_fh, (("actual_work_h",) if writer.truthful else ()) + (
            ("max_wait_h",) if opts.max_wait is not None else ()))
        for rec in iter_records(path, reader, tally, strict=opts.strict,
                                progress=(lambda n: progress(size + n, total)) if progress else None):
            chosen = select(rec)
            if chosen is not None and batch.add(rec, *chosen) >= BATCH:
                writer.flush(batch)
        writer.flush(batch)
        if opts.synth.classes:
            report.job_classes = opts.synth.job_classes(reader.services)
            report.classes_file = _stem(out) + ".classes.yaml"
            fh = files.open(report.classes_file)
            fh.write(f"# job_classes for {os.path.basename(out)}: copy into the scenario "
                     "(suanli trace import, docs/TRACES.md)\n")
            yaml.safe_dump({"job_classes": report.job_classes}, fh, sort_keys=False, default_flow_style=None)
        files.commit()

    report.rows, report.jobs = tally.rows, writer.written
    report.bad = {k: (v[0], v[1]) for k, v in tally.bad.items()}
    report.skipped, report.dropped = tally.skipped, select.dropped
    report.submit_span_h = writer.span[1] - writer.span[0] if writer.written else 0.0
    report.seconds = time.perf_counter() - t0
    return report
