"""`suanli trace import | stats`: real workloads in, scenario jobs out (docs/TRACES.md).

Thin commands: options are parsed into `ImportOptions` (pydantic does the conversions),
the library in `suanli.traces` does the work, Rich renders. A user's mistake is one line on
stderr naming the option or the file (and line) and exit code 2; nothing is written then.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from suanli.errors import UserError, short_repr
from suanli.traces.importer import KINDS, ImportOptions, ImportReport, import_trace
from suanli.traces.stats import STATS_KINDS, TraceStats, trace_stats
from suanli.traces.synthesis import SynthOptions
from suanli.traces.timespec import parse_duration

trace_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        help="Import GPU-cluster traces as scenario jobs, and describe them.")
out = Console()
if not out.is_terminal:          # piped or captured: wide enough for the tables, no colour codes
    out = Console(width=110, color_system=None)
err = Console(stderr=True)
_D = SynthOptions()          # the defaults, for the help texts


def _pairs_text(d: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in d.items())


def _list_text(xs: tuple[float, ...]) -> str:
    return ",".join(f"{x:g}" for x in xs)


# where a pydantic error's location points, as the option the user typed
_OPTION = {"rate": "--rate", "sample": "--sample", "min_duration_s": "--min-duration", "max_gpus": "--max-gpus",
           "max_work_h": "--max-work-h", "seed": "--seed", "origins": "--origins", "home_share": "--home-share",
           "deadline_share": "--deadline-share", "slack": "--slack", "checkpoint_after_h": "--checkpoint-after",
           "checkpoint_choices_h": "--checkpoint-every", "rtt_choices_ms": "--rtt-ms", "class_names": "--class-names",
           "gpu_speeds": "--gpu-types", "work_noise": "--work-noise", "min_deadline_h": "--min-deadline",
           "max_wait": "--max-wait", "scenario_start": "--scenario-start"}


def _fail(e: UserError) -> typer.Exit:
    err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _pairs(text: str | None, option: str) -> dict[str, str] | None:
    """'a=1,b=2' -> {'a': '1', 'b': '2'} (values converted later, by the options model)."""
    if text is None:
        return None
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not key or not value:
            raise UserError(f"{option}: not NAME=VALUE like beijing=0.3 (got {item.strip()!r})")
        pairs[key] = value
    return pairs


def _list(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",")]


def _options(raw: dict[str, Any], synth: dict[str, Any]) -> ImportOptions:
    try:
        return ImportOptions.model_validate(raw | {"synth": {k: v for k, v in synth.items() if v is not None}})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = [str(p) for p in first["loc"] if p != "synth"]
        option = _OPTION.get(loc[0], loc[0]) if loc else "options"
        where = f"{option}: {'.'.join(loc[1:])}: " if len(loc) > 1 else f"{option}: "
        msg = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}{msg} (got {short_repr(first.get('input'))})") from None


def _summary(r: ImportReport, quiet: bool) -> None:
    bad = sum(c for c, _ in r.bad.values())
    if bad:      # never silent, even with --quiet
        for reason, (n, line) in sorted(r.bad.items(), key=lambda kv: -kv[1][0]):
            err.print(f"warning: {r.file}: skipped {n:,} bad row{'s' if n > 1 else ''}: {reason} "
                      f"(first at line {line})", markup=False, highlight=False, soft_wrap=True)
    if quiet:
        return
    t = Table(title=f"{r.kind} trace {r.file} -> {r.out}", show_header=False, title_justify="left")
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("jobs written", f"{r.jobs:,} of {r.rows:,} rows, {r.gpu_hours:,.0f} reference GPU-hours, "
              f"submits over {r.submit_span_h:,.1f} h")
    t.add_row("window", f"[{r.window[0]}, {r.window[1]}): hour 0 = {r.window[0]}")
    for label, table in (("bad rows skipped", {k: v[0] for k, v in r.bad.items()}),
                         ("not GPU jobs", r.skipped), ("dropped", r.dropped), ("adjusted", r.notes)):
        for reason, n in sorted(table.items(), key=lambda kv: -kv[1]):
            t.add_row(label, f"{n:,}  {reason}")
            label = ""
    if r.truth_file:
        t.add_row("true work", f"{r.truth_file} (work_h is the noisy estimate)")
    if r.classes_file:
        t.add_row("job_classes", f"{r.classes_file} (the scenario must define them)")
    t.add_row("time", f"{r.seconds:.2f} s")
    out.print(t)


@trace_app.command("import")
def import_(
    kind: str = typer.Argument(..., help="Trace kind: " + ", ".join(KINDS) + "."),
    file: str = typer.Argument(..., help="The trace file (CSV)."),
    out_file: str = typer.Option(..., "--out", "-o", help="Jobs CSV to write (a scenario's jobs_file)."),
    start: str = typer.Option(None, "--from", help="Window start: ISO time or offset from the first submit (30d)."),
    end: str = typer.Option(None, "--to", help="Window end (exclusive), as --from."),
    window: str = typer.Option(None, "--window", help="Window length, e.g. 48h (with --at)."),
    at: str = typer.Option(None, "--at", help="Window start for --window (default: the first submit)."),
    rate: str = typer.Option("1", "--rate", help="Arrival-rate factor: submit_h = trace hours / rate."),
    sample: str = typer.Option("1", "--sample", help="Keep each job with this probability (seeded)."),
    seed: str = typer.Option("2026", "--seed", help="Seed of every random draw."),
    work_noise: str = typer.Option("0", "--work-noise",
                                   help="Sigma of ln(estimate/true): work_h becomes the estimate, the truth "
                                        "goes to actual_work_h and OUT.truth.csv."),
    max_wait: str = typer.Option(None, "--max-wait",
                                 help="Give every job a max_wait_h: gaia (6 h under 2 h, else 24 h), "
                                      "next-workday or mon-thu (by 09:00 of the next one, less the work), "
                                      "lwa-next-workday or lwa-mon-thu (LWA's code: from the original finish)."),
    scenario_start: str = typer.Option("2026-06-01T00:00:00+08:00", "--scenario-start",
                                       help="Wall-clock time of hour 0 (the scenario's start), for --max-wait."),
    min_duration: str = typer.Option("0", "--min-duration",
                                     help="Drop jobs that ran less, e.g. 60s (a bare number is hours)."),
    max_gpus: str = typer.Option(None, "--max-gpus", help="Cap gpus (the network's largest pool)."),
    max_work_h: str = typer.Option(None, "--max-work-h", help="Clip work_h (hours)."),
    origins: str = typer.Option(None, "--origins",
                                help=f"Consumer cities and weights (default {_pairs_text(_D.origins)})."),
    home_share: str = typer.Option(None, "--home-share",
                                   help=f"Share of a tenant's jobs from its home city (default {_D.home_share:g})."),
    gpu_types: str = typer.Option(None, "--gpu-types",
                                  help=f"The network's GPU types and speeds (default {_pairs_text(_D.gpu_speeds)})."),
    gpu_map: str = typer.Option(None, "--gpu-map", help="GPU model -> types: T4=910b,V100M32=a800;h100,..."),
    classes: bool = typer.Option(False, "--classes", help="Emit job classes (GPU-time buckets; service)."),
    class_names: str = typer.Option(None, "--class-names", help="Rename classes: S=small,M=..,L=..,XL=..,service=.."),
    deadline_share: str = typer.Option(None, "--deadline-share",
                                       help=f"Share of training jobs with a deadline (default {_D.deadline_share:g})."),
    slack: str = typer.Option(None, "--slack",
                              help=f"Deadline slack range LOW,HIGH, x work_h (default {_list_text(_D.slack)})."),
    min_deadline: str = typer.Option(None, "--min-deadline",
                                     help=f"Shortest deadline after submit, h (default {_D.min_deadline_h:g})."),
    checkpoint_after: str = typer.Option(None, "--checkpoint-after",
                                         help="Training jobs longer than this (h) checkpoint "
                                              f"(default {_D.checkpoint_after_h:g})."),
    checkpoint_every: str = typer.Option(None, "--checkpoint-every",
                                         help=f"Intervals to draw, h (default {_list_text(_D.checkpoint_choices_h)})."),
    rtt_ms: str = typer.Option(None, "--rtt-ms",
                               help=f"Services' latency bounds, ms (default {_list_text(_D.rtt_choices_ms)})."),
    column_map: str = typer.Option(None, "--map", help="csv: field=column,... (submit, duration|end, gpus, ...)."),
    time_unit: str = typer.Option("s", "--time-unit", help="csv: unit of numeric times (ms, s, min, h, d)."),
    duration_unit: str = typer.Option("s", "--duration-unit", help="csv: unit of durations."),
    id_prefix: str = typer.Option("j-", "--id-prefix", help="Job id prefix."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the file at its first bad row."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Import a trace FILE of KIND as a scenario jobs CSV (docs/TRACES.md)."""
    try:
        if kind not in KINDS:
            raise UserError(f"KIND: unknown trace kind {kind!r}; kinds are {', '.join(KINDS)}")
        slack_pair = _list(slack)
        if slack_pair is not None and len(slack_pair) != 2:
            raise UserError(f"--slack: needs LOW,HIGH like 1.5,4 (got {slack!r})")
        opts = _options(
            {"kind": kind, "rate": rate, "sample": sample,
             "min_duration_s": parse_duration(min_duration, "--min-duration"), "max_gpus": max_gpus,
             "max_work_h": max_work_h, "id_prefix": id_prefix, "strict": strict,
             "gpu_map": gpu_map, "column_map": column_map, "time_unit": time_unit, "duration_unit": duration_unit,
             "max_wait": max_wait, "scenario_start": scenario_start,
             "window": {"start": start, "end": end, "length": window, "at": at}},
            {"seed": seed, "work_noise": work_noise, "origins": _pairs(origins, "--origins"), "home_share": home_share,
             "gpu_speeds": _pairs(gpu_types, "--gpu-types"), "classes": classes,
             "class_names": _pairs(class_names, "--class-names"), "deadline_share": deadline_share,
             "slack": slack_pair, "min_deadline_h": min_deadline, "checkpoint_after_h": checkpoint_after,
             "checkpoint_choices_h": _list(checkpoint_every), "rtt_choices_ms": _list(rtt_ms)})
        if quiet or not sys.stderr.isatty():
            report = import_trace(file, out_file, opts)
        else:
            with Progress(TextColumn("[bold]importing[/] {task.description}"), BarColumn(), DownloadColumn(),
                          TextColumn("(two passes)"), TimeElapsedColumn(), console=err, transient=True) as bar:
                task = bar.add_task(file, total=None)
                report = import_trace(file, out_file, opts,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total))
    except UserError as e:
        raise _fail(e) from None
    _summary(report, quiet)


def _render_stats(s: TraceStats) -> None:
    d, a = s.duration_s, s.arrivals_per_hour
    t = Table(title=f"{s.file} ({s.kind}): {s.jobs:,} jobs", show_header=False, title_justify="left")
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    skipped = sum(s.skipped.values())
    t.add_row("jobs", f"{s.jobs:,} of {s.rows:,} rows ({s.bad_rows:,} bad, {skipped:,} not GPU jobs)")
    t.add_row("GPUs per job", "  ".join(f"{g}: {n:,} ({n / s.jobs:.1%})" for g, n in s.gpu_mix.items()))
    t.add_row("single-GPU jobs", f"{s.single_gpu_share:.1%} of jobs")
    t.add_row("multi-GPU GPU time", f"{s.multi_gpu_time_share:.1%} of {s.gpu_hours:,.0f} GPU-hours")
    t.add_row("top 1% of jobs", f"{s.top1pct_time_share:.1%} of GPU time")
    t.add_row("run time (s)", f"p10 {d.p10:,.0f}, median {d.p50:,.0f}, mean {d.mean:,.0f}, p90 {d.p90:,.0f}, "
              f"p99 {d.p99:,.0f}, max {d.max:,.0f} ({d.max / 86400:.1f} d)")
    t.add_row("arrivals per hour", f"mean {a.mean:,.1f}, median {a.median:,.0f}, p95 {a.p95:,.0f}, max {a.max:,} "
              f"over {s.span_h:,.1f} h")
    out.print(t)


@trace_app.command("stats")
def stats(file: str = typer.Argument(..., help="A raw trace or an imported jobs CSV."),
          kind: str = typer.Option(None, "--kind", help="File kind: " + ", ".join(STATS_KINDS) + " (default: "
                                   "from the header)."),
          as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON.")) -> None:
    """Print a workload's characteristic figures: jobs, GPU mix, run times, arrivals."""
    try:
        s = trace_stats(file, kind)
    except UserError as e:
        raise _fail(e) from None
    if as_json:
        print(s.model_dump_json(indent=2))
    else:
        _render_stats(s)
