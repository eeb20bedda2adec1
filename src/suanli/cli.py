"""The `suanli` command line: thin commands that parse, call the library and render.

A user's mistake (bad scenario, bad option, unwritable folder) is one line on stderr and
exit code 2; a bug keeps its traceback.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from suanli.cli_service import admin_app, register_service_commands
from suanli.cli_trace import trace_app
from suanli.errors import UserError
from suanli.model.load import load_scenario
from suanli.model.validate import check
from suanli.progress import Reporter
from suanli.scheduling import policies
from suanli.sim.outputs import read_explanations, write_run
from suanli.sim.run import Run, run

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="suanli (算力): place GPU jobs across a compute-power network by cost and carbon.")
app.add_typer(trace_app, name="trace")
app.add_typer(admin_app, name="admin")
out = Console()
if not out.is_terminal:          # piped or captured: wide enough for the tables, no colour codes
    out = Console(width=110, color_system=None)
err = Console(stderr=True)


def _fail(e: UserError) -> typer.Exit:
    err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _simulate(path: str, policy: str, p: Reporter) -> Run:
    p.phase("loading the scenario")
    scn = load_scenario(path)
    policies.make(policy)                          # refuse an unknown name before any work
    p.phase(f"simulating {scn.name} with {policy}", total=len(scn.jobs), unit="jobs")
    return run(scn, policy, progress=lambda done, total: p.update(done))


def _check_own(r: Run) -> None:
    if r.violations:
        for v in r.violations[:10]:
            err.print(f"internal error: invalid schedule: {v}", markup=False)
        raise RuntimeError(f"policy {r.policy} produced an invalid schedule ({len(r.violations)} violations)")


def _report_paths(path: str, lang: str) -> list[tuple[str, str]]:
    from suanli.sim.report import report_paths
    try:
        return report_paths(path, lang)
    except ValueError as e:
        raise UserError(f"--lang: {e}") from None


def _write_report(path: str, r: Run, lang: str = "en") -> None:
    import os

    from suanli.sim.outputs import write_files
    from suanli.sim.report import render_report

    page = render_report(r.scenario, r.policy, r.result.segments, r.accounts, lang=lang)
    write_files(os.path.dirname(os.path.abspath(path)), {os.path.basename(path): page})


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _summary(r: Run, outdir: str | None, wrote: list[str] | None = None) -> None:
    m = r.accounts.metrics
    scn = r.scenario
    share = m["renewable_used_kwh"] / m["energy_kwh"] if m["energy_kwh"] > 0 else 0.0
    t = Table(title=f"{scn.name}: {len(scn.sites)} sites, {m['jobs_total']} jobs, policy {r.policy}",
              show_header=False, title_justify="left")
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("objective", f"{_money(m['objective_cny'])} CNY")
    t.add_row("total cost", f"{_money(m['total_cost_cny'])} CNY  (GPU {_money(m['gpu_cost_cny'])}, "
              f"energy {_money(m['energy_cost_cny'])}, transfer {_money(m['transfer_cost_cny'])})")
    t.add_row("energy", f"{m['energy_kwh']:,.0f} kWh  (grid {m['grid_kwh']:,.0f}, renewable "
              f"{m['renewable_used_kwh']:,.0f} = {share:.1%}, curtailed {m['curtailed_kwh']:,.0f})")
    c = r.accounts.carbon
    origin = c.get("carbon_origin_grid_kg")
    t.add_row("carbon", f"{m['carbon_kg']:,.0f} kg CO2e (grid average where it ran)")
    if origin is not None:
        saved = c["carbon_avoided_vs_origin_kg"]
        t.add_row("vs origin grids", f"{origin:,.0f} kg had each job run on its origin's grid: "
                  f"{abs(saved):,.0f} kg {'avoided' if saved >= 0 else 'added'} by moving")
    t.add_row("jobs finished", f"{m['jobs_finished']} of {m['jobs_total']}  ({m['jobs_unfinished']} unfinished)")
    t.add_row("late", f"{m['deadline_misses']} deadline misses, {m['late_gpu_h']:,.1f} late GPU-h")
    t.add_row("job completion time", f"mean {m['mean_jct_h']:.2f} h, p95 {m['p95_jct_h']:.2f} h")
    t.add_row("demand response", f"{m['dr_violation_kwh']:,.1f} kWh above grid caps")
    t.add_row("GPU utilisation", f"{m['gpu_utilization']:.1%} of GPU-hours in [0, {scn.horizon_h:g} h)")
    if r.result.cuts:
        t.add_row("outages", f"{r.result.cuts} running segments cut and re-placed")
    if r.result.overruns:
        t.add_row("overruns", f"runs past their estimate: bookings lengthened {r.result.overruns} times, "
                  f"{r.result.voided} placement(s) voided and offered again")
    if m["wait_excess_gpu_h"]:
        t.add_row("waiting", f"{m['wait_excess_gpu_h']:,.1f} GPU-h of first starts past max_wait_h")
    if r.result.preemptions:
        n = r.result.preemptions
        t.add_row("preempted", f"{n} run{'s' if n != 1 else ''} stopped for jobs that would be late "
                  "(checkpoints kept)")
    t.add_row("policy time", f"{r.policy_wall_s:.2f} s")
    out.print(t)
    s = Table(title="per site", title_justify="left")
    for col in ("site", "city", "GPUs", "utilisation", "energy kWh", "renewable", "carbon kg", "energy CNY"):
        s.add_column(col, justify="left" if col in ("site", "city") else "right", no_wrap=True)
    for sid, site in scn.sites.items():
        sm = r.accounts.site_metrics[sid]
        ren = sm["renewable_used_kwh"] / sm["energy_kwh"] if sm["energy_kwh"] > 0 else 0.0
        s.add_row(sid, site.city, str(sum(p.count for p in site.gpus.values())), f"{sm['gpu_utilization']:.1%}",
                  f"{sm['energy_kwh']:,.0f}", f"{ren:.0%}", f"{sm['carbon_kg']:,.0f}", _money(sm["energy_cost_cny"]))
    out.print(s)
    if wrote:
        out.print("wrote " + ", ".join(wrote), markup=False, highlight=False, soft_wrap=True)
    elif outdir:
        out.print(f"wrote {outdir}/schedule.csv, metrics.json, series.csv")


@app.command()
def sim(scenario: str = typer.Argument(..., help="Scenario file (YAML or JSON)."),
        policy: str = typer.Option("suanli", "--policy", "-p", help="Policy: " + ", ".join(policies.names())),
        outdir: str = typer.Option("out", "--out", "-o", help="Folder for schedule.csv, metrics.json, series.csv."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary."),
        report: str | None = typer.Option(None, "--report", help="Also write a self-contained HTML report here."),
        lang: str = typer.Option("en", "--lang", help="The report's language: en, zh-CN (Chinese names, ¥, "
                                 "Beijing time), or both (FILE and FILE.zh-CN.html).")
        ) -> None:
    """Simulate SCENARIO with a policy and write its outputs (MODEL.md §6)."""
    try:
        reports = _report_paths(report, lang) if report else []
        with Reporter("sim", err, enabled=not quiet) as p:
            r = _simulate(scenario, policy, p)
            _check_own(r)
            p.phase(f"writing {outdir}")
            wrote = write_run(outdir, r.result.segments, r.accounts, r.extra_metrics(), r.result.explanations)
            for path, language in reports:
                p.phase(f"writing {path}")
                _write_report(path, r, language)
                wrote.append(path)
    except UserError as e:
        raise _fail(e) from None
    if not quiet:
        _summary(r, outdir, wrote)


@app.command()
def validate(scenario: str = typer.Argument(..., help="Scenario file (YAML or JSON).")) -> None:
    """Check SCENARIO against the model (MODEL.md §1–§2) without running it. A jobs file is
    read a batch at a time (memory flat in its rows); a long check shows its progress on stderr."""
    try:
        with Reporter("validate", err) as p:
            got = check(scenario, p.phase, p.update)
    except UserError as e:
        raise _fail(e) from None
    scn = got.scenario
    pools = sum(len(s.gpus) for s in scn.sites.values())
    gpus = sum(p.count for s in scn.sites.values() for p in s.gpus.values())
    out.print(f"ok: {scenario}: '{scn.name}', {len(scn.cities)} cities, {len(scn.sites)} sites, {pools} pools "
              f"({gpus} GPUs), {got.jobs} jobs, {len(scn.events)} events, horizon {scn.horizon_h:g} h",
              markup=False, highlight=False, soft_wrap=True)
    for job_id, why in got.homeless:
        err.print(f"warning: job {job_id}: no site can ever host it: {why}", markup=False, highlight=False,
                  soft_wrap=True)
    if got.homeless_count > len(got.homeless):
        err.print(f"warning: {got.homeless_count - len(got.homeless)} more jobs no site can ever host", highlight=False)


@app.command()
def explain(outdir: str = typer.Argument(..., help="A folder written by `suanli sim`."),
            job_id: str = typer.Argument(..., help="The job to explain.")) -> None:
    """Why JOB_ID went where it went: the candidates weighed, their price parts, and the sites
    left out with the filter and value that ruled them out."""
    try:
        records = read_explanations(outdir, job_id)
    except UserError as e:
        raise _fail(e) from None
    for rec in records:
        chosen = rec["chosen"]
        head = (f"{job_id} at {rec['at_h']:.2f} h ({rec['policy']}): {rec['decision']}"
                + (f" on {chosen['site']}/{chosen['gpu_type']} from {chosen['start_h']:.2f} to "
                   f"{chosen['end_h']:.2f} h" if chosen else "") + (f"; {rec['note']}" if rec["note"] else ""))
        out.print(head, markup=False, highlight=False)
        if rec["candidates"]:
            parts = sorted({p for c in rec["candidates"] for p in c["parts"]})
            t = Table(title="candidates, best first (CNY)", title_justify="left")
            for col in ("site", "type", "start h", "end h", *parts, "total"):
                t.add_column(col, justify="left" if col in ("site", "type") else "right", no_wrap=True)
            for c in rec["candidates"]:
                t.add_row(c["site"], c["gpu_type"], f"{c['start_h']:.2f}", f"{c['end_h']:.2f}",
                          *(f"{c['parts'].get(p, 0.0):,.2f}" for p in parts), f"{c['total']:,.2f}")
            out.print(t)
        if rec["rejected"]:
            t = Table(title="sites left out", title_justify="left")
            t.add_column("site", no_wrap=True)
            t.add_column("filter: why")
            for site, why in rec["rejected"].items():
                t.add_row(site, why)
            out.print(t)


@app.command()
def bound(scenario: str = typer.Argument(..., help="Scenario file (YAML or JSON)."),
          time_limit: float = typer.Option(120.0, "--time-limit", help="Seconds for HiGHS, both LPs together.")
          ) -> None:
    """The LP lower bounds of SCENARIO's objective: one for every valid schedule, one for
    schedules that meet every deadline (docs/BOUNDS.md says why each is a bound)."""
    from suanli.scheduling.bound import lower_bound
    try:
        scn = load_scenario(scenario)
    except UserError as e:
        raise _fail(e) from None
    b = lower_bound(scn, time_limit_s=time_limit)
    t = Table(title=f"{scn.name}: lower bounds (CNY)", title_justify="left")
    for col in ("bound", "value", "status", "time s", "columns", "rows"):
        t.add_column(col, justify="left" if col in ("bound", "status") else "right", no_wrap=True)
    for name, part in (("every valid schedule", b.plain), ("meeting every deadline", b.deadline)):
        t.add_row(name, "–" if part.value is None else f"{part.value:,.2f}", part.status, f"{part.time_s:.2f}",
                  str(part.columns), str(part.rows))
    out.print(t)
    if b.plain.parts:
        out.print("parts of the first: " + ", ".join(f"{k} {v:,.2f}" for k, v in b.plain.parts.items()),
                  highlight=False)


@app.command()
def energy(site: str = typer.Argument(..., help="Site id."),
           scenario: str = typer.Option(..., "--scenario", help="Scenario file (YAML or JSON)."),
           days: float = typer.Option(1.0, "--days", min=0.05, help="How many days from hour 0."),
           png: str | None = typer.Option(None, "--png", help="Also plot the series into this PNG file.")
           ) -> None:
    """A site's load-independent supply per hour: renewable power (solar, wind or explicit),
    grid tariff and grid carbon intensity, as the scenario resolves them."""
    import os
    import tempfile
    from datetime import timedelta

    try:
        scn = load_scenario(scenario)
        if site not in scn.sites:
            raise UserError(f"SITE: unknown site {site!r} (sites: {', '.join(scn.sites)})")
    except UserError as e:
        raise _fail(e) from None
    i = list(scn.sites).index(site)
    s = scn.sites[site]
    slots = max(1, round(days * 24))
    fields = ("renewables.kw", "grid.cny_per_kwh", "grid.carbon_kg_per_kwh")
    specs = {f: scn.specs.get(f"sites[{i}].{f}") for f in fields}
    label = {f: "explicit" if v is None else type(v).__name__.removesuffix("Spec").lower()
             for f, v in specs.items()}
    ren = s.renewables.kw.array(slots)
    tar = s.grid.cny_per_kwh.array(slots)
    car = s.grid.carbon_kg_per_kwh.array(slots)
    t = Table(title=f"{site} ({s.city}): renewables {label['renewables.kw']}, tariff {label['grid.cny_per_kwh']}, "
              f"carbon {label['grid.carbon_kg_per_kwh']}", title_justify="left")
    for col in ("slot", "local time", "renewable kW", "tariff CNY/kWh", "carbon kg/kWh"):
        t.add_column(col, justify="right", no_wrap=True)
    for k in range(slots):
        when = (scn.start + timedelta(hours=k)).strftime("%m-%d %H:%M") if scn.start else "–"
        t.add_row(str(k), when, f"{ren[k]:,.1f}", f"{tar[k]:.4f}", f"{car[k]:.4f}")
    out.print(t)
    out.print(f"renewable energy {ren.sum():,.0f} kWh over {slots} h; mean tariff {tar.mean():.4f} CNY/kWh; "
              f"mean carbon {car.mean():.4f} kg/kWh", highlight=False)
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True)
        for ax, ys, name in zip(axes, (ren, tar, car), ("renewable kW", "tariff CNY/kWh", "carbon kg/kWh"),
                                strict=True):
            ax.step(range(slots), ys, where="post")
            ax.set_ylabel(name, fontsize=8)
        axes[-1].set_xlabel(f"hour from {scn.start.isoformat() if scn.start else 'hour 0'}")
        axes[0].set_title(f"{scn.name}: {site} ({s.city})")
        fig.tight_layout()
        try:
            fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(png)))
            os.close(fd)
            fig.savefig(tmp, dpi=100)
            os.chmod(tmp, 0o644)
            os.replace(tmp, png)
        except OSError as e:
            raise _fail(UserError(f"--png: cannot write {png!r}: {e.strerror}")) from None
        finally:
            plt.close(fig)
        out.print(f"wrote {png}", highlight=False)


BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"


def ray_mapper(address: str):
    """`run_bench`'s mapper on a Ray cluster: one task per (scenario, policy) cell, paths made
    absolute (the workers' directory is not ours); the workers import suanli from their Python."""
    def mapper(fn, args):
        import os

        if address.split(":")[0] in ("127.0.0.1", "localhost"):     # else Ray swaps in eth0's address
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise UserError("--ray-address: Ray is not installed (pip install 'ray[default]')") from None
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as e:
            raise UserError(f"--ray-address: cannot join the Ray cluster at {address}: {e}") from None
        try:
            task = ray.remote(num_cpus=1)(fn)
            return ray.get([task.remote(os.path.abspath(a[0]), *a[1:]) for a in args])
        finally:
            ray.shutdown()
    return mapper


@app.command()
def bench(scenarios: list[str] = typer.Option(None, "--scenario", "-s",
                                              help="Scenario files (default: the demo and bench/scenarios/*)."),
          policy_names: list[str] = typer.Option(None, "--policy", "-p", help="Policies (default: all)."),
          doc: str = typer.Option("docs/BENCHMARKS.md", "--doc", help="Markdown file whose generated section "
                                  f"(between {BENCH_START} and {BENCH_END}) is rewritten."),
          chart: str = typer.Option("docs/bench.png", "--chart", help="PNG chart to write."),
          results: str = typer.Option("bench/results.json", "--results", help="JSON results to write."),
          reports: str = typer.Option("docs/reports", "--reports", help="Folder for one HTML report per scenario "
                                      "(policies side by side), linked from the markdown; '' for none."),
          lang: str = typer.Option("en", "--lang", help="The reports' language: en, zh-CN (Chinese names, ¥, "
                                   "Beijing times), or both (NAME.html and NAME.zh-CN.html)."),
          no_bound: bool = typer.Option(False, "--no-bound", help="Skip the LP lower bound."),
          bound_time: float = typer.Option(120.0, "--bound-time", help="Seconds for each scenario's bound."),
          ray_address: str = typer.Option(None, "--ray-address", help="Fan the simulations out as Ray tasks on "
                                          "this cluster (ray.init's address, e.g. 127.0.0.1:6379)."),
          information: bool = typer.Option(False, "--information", help="Instead: print the price of "
                                           "information (each policy with perfect information, forecasts, "
                                           "estimates, both; default scenario bench/scenarios/small-uncertain.yaml)")
          ) -> None:
    """Run policies × scenarios and write the results, ratios to the lower bound and the best
    baseline, into docs/BENCHMARKS.md, a PNG chart and a JSON file."""
    import json
    import os
    import tempfile

    if information:
        from suanli.bench import ONLINE_POLICIES, price_of_information
        paths = scenarios or ["bench/scenarios/small-uncertain.yaml"]
        try:
            for p in paths:
                if not os.path.exists(p):
                    raise UserError(f"--scenario: no such file {p!r}")
            for name in policy_names or ():
                policies.make(name)
            typer.echo(price_of_information(paths, policy_names or ONLINE_POLICIES,
                                            progress=lambda msg: err.print(f"bench: {msg}", highlight=False)))
        except UserError as e:
            raise _fail(e) from None
        return

    from suanli.bench import DEFAULT_POLICIES, render_chart, render_markdown, results_json, run_bench, write_reports
    from suanli.sim.outputs import write_files

    paths = scenarios or [str(demo_scenario())] + [
        f"bench/scenarios/{n}.yaml" for n in ("philly-48h-a", "philly-48h-b", "outage-backup", "gridcap-battery",
                                               "west-does-not-pay")]
    pols = policy_names or list(DEFAULT_POLICIES)
    try:
        _report_paths("x.html", lang)                  # a bad --lang before minutes of simulation
        for name in pols:
            policies.make(name)
        for p in paths:
            if not os.path.exists(p):
                raise UserError(f"--scenario: no such file {p!r}")
        res = run_bench(paths, pols, bound=not no_bound, bound_time_s=bound_time,
                        progress=lambda msg: err.print(f"bench: {msg}", highlight=False),
                        mapper=ray_mapper(ray_address) if ray_address else None)
        command = "suanli bench" + "".join(f" -s {p}" for p in scenarios or []) + "".join(
            f" -p {p}" for p in policy_names or [])
        link = None
        if reports:
            err.print(f"bench: reports in {reports}/", highlight=False)
            write_reports(res, pols, reports, lang)
            link = os.path.relpath(reports, os.path.dirname(doc) or ".")
        section = render_markdown(res, pols, command, link, lang)
        old = open(doc, encoding="utf-8").read() if os.path.exists(doc) else "# Benchmarks\n"
        if BENCH_START in old and BENCH_END in old:
            head, rest = old.split(BENCH_START, 1)
            new = head + BENCH_START + "\n" + section + "\n" + BENCH_END + rest.split(BENCH_END, 1)[1]
        else:
            new = old.rstrip("\n") + f"\n\n## suanli bench\n\n{BENCH_START}\n{section}\n{BENCH_END}\n"
        write_files(os.path.dirname(doc) or ".", {os.path.basename(doc): new})
        write_files(os.path.dirname(results) or ".",
                    {os.path.basename(results): json.dumps(results_json(res), indent=1) + "\n"})
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(chart) or ".")
        os.close(fd)
        render_chart(res, pols, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, chart)
    except UserError as e:
        raise _fail(e) from None
    out.print(section, markup=False, highlight=False)


def demo_scenario() -> Path:
    return Path(str(resources.files("suanli") / "examples" / "east-west.yaml"))


@app.command()
def demo(outdir: str = typer.Option("demo-out", "--out", "-o", help="Folder for the run's outputs."),
         policy: str = typer.Option("suanli", "--policy", "-p", help="Policy: " + ", ".join(policies.names()))
         ) -> None:
    """Run the built-in East Data, West Computing demo network and print a summary."""
    path = demo_scenario()
    try:
        with Reporter("demo", err) as p:
            r = _simulate(str(path), policy, p)
        _check_own(r)
        wrote = write_run(outdir, r.result.segments, r.accounts, r.extra_metrics(), r.result.explanations)
    except UserError as e:
        raise _fail(e) from None
    out.print("East Data, West Computing (东数西算) demo: jobs from the eastern cities, hubs in the west "
              f"({path.name}).", highlight=False)
    _summary(r, outdir, wrote)


register_service_commands(app)      # serve, agent, submit, jobs, job, cancel, bill: after the simulator's


def main() -> None:  # pragma: no cover
    app()
