"""`suanli bench`: policies × scenarios, measured against the baselines and the lower bound.

For every scenario it runs every policy through the simulator (checking each schedule with
the project's own validator), solves the LP lower bound once, and reports each policy's
objective, its parts, carbon, lateness, completion times and run time, with its ratio to the
lower bound and to the best baseline. `render_markdown` and `render_chart` turn the results
into docs/BENCHMARKS.md's generated section and a PNG.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from suanli.errors import UserError
from suanli.model.load import load_scenario
from suanli.sim.run import run

BASELINES = ("fifo", "cheapest", "greenest", "wait-awhile")
DEFAULT_POLICIES = (*BASELINES, "suanli", "optimal")
OPTIMAL_MAX_JOBS = 400        # the MIP is for small scenarios only (the policy refuses more)


@dataclass
class Cell:
    scenario: str
    policy: str
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    jobs_per_s: float = 0.0
    note: str = ""
    segments: list = field(default_factory=list, repr=False)     # the schedule, for the reports


@dataclass
class ScenarioResult:
    scenario: str
    path: str
    jobs: int
    sites: int
    bound: float | None = None
    deadline_bound: float | None = None
    bound_status: str = "not solved"
    bound_s: float = 0.0
    cells: dict[str, Cell] = field(default_factory=dict)

    def best_baseline(self) -> float | None:
        vals = [c.objective for p, c in self.cells.items() if p in BASELINES and c.objective is not None]
        return min(vals) if vals else None


def run_cell(path: str, policy: str) -> Cell:
    """One simulation; a policy that refuses the scenario (too big) gives a cell with a note."""
    scn = load_scenario(path)
    if policy == "optimal" and len(scn.jobs) > OPTIMAL_MAX_JOBS:
        return Cell(scn.name, policy, note=f"skipped: {len(scn.jobs)} jobs > {OPTIMAL_MAX_JOBS}")
    try:
        r = run(scn, policy)
    except UserError as e:
        return Cell(scn.name, policy, note=f"refused: {e}")
    if r.violations:
        raise RuntimeError(f"{policy} on {path}: invalid schedule: {r.violations[0]}")
    m = dict(r.accounts.metrics)
    m["runs_preempted"] = r.result.preemptions
    return Cell(scn.name, policy, m["objective_cny"], m, r.policy_wall_s,
                len(scn.jobs) / r.policy_wall_s if r.policy_wall_s > 0 else math.inf,
                segments=list(r.result.segments))


def run_bench(paths: Sequence[str], policies: Sequence[str], *, bound: bool = True, bound_time_s: float = 120.0,
              progress: Callable[[str], None] | None = None,
              mapper: Callable[[Callable, list[tuple]], list] | None = None) -> list[ScenarioResult]:
    """The whole matrix. `mapper(fn, args)` may fan the cells out (Ray, processes); default: in order."""
    from suanli.scheduling.bound import lower_bound  # HiGHS: imported only when benchmarking

    results = []
    for path in paths:
        scn = load_scenario(path)
        res = ScenarioResult(scn.name, path, len(scn.jobs), len(scn.sites))
        if bound:
            if progress:
                progress(f"{scn.name}: lower bound")
            t0 = time.perf_counter()
            b = lower_bound(scn, time_limit_s=bound_time_s)
            res.bound, res.deadline_bound, res.bound_status = b.value, b.deadline_value, b.status
            res.bound_s = time.perf_counter() - t0
        results.append(res)
    cells = [(r.path, p) for r in results for p in policies]
    if progress:
        progress(f"{len(cells)} simulations")
    outs = mapper(run_cell, cells) if mapper else [run_cell(*c) for c in cells]
    by_path = {r.path: r for r in results}
    for (path, policy), cell in zip(cells, outs, strict=True):
        by_path[path].cells[policy] = cell
    return results


INFORMATION = ("perfect information", "forecasts only", "estimates only", "forecasts and estimates")
ONLINE_POLICIES = (*BASELINES, "suanli")


def information_variants(scn):
    """The scenario as each level of information sees it (MODEL.md §7): `perfect information`
    (every job's true work as its `work_h`, no forecast: `Scenario.with_true_work`), `forecasts
    only` (true work, the scenario's forecast), `estimates only` (the users' estimates, exact
    series) and `forecasts and estimates` (the scenario itself). The accounting is the same in
    all four: the truth."""
    from dataclasses import replace

    truth = scn.with_true_work()
    return dict(zip(INFORMATION, (truth, replace(truth, forecast=scn.forecast), replace(scn, forecast=None), scn),
                    strict=True))


def price_of_information(paths: Sequence[str], policies: Sequence[str] = ONLINE_POLICIES,
                         progress: Callable[[str], None] | None = None) -> str:
    """A markdown table per scenario: each policy's objective (and wait-excess, overruns' voided
    placements) at each level of information, and what losing it costs (both ÷ perfect)."""
    out = []
    for path in paths:
        scn = load_scenario(path)
        variants = information_variants(scn)
        rows = [f"**{scn.name}** (`{_shown(path)}`, {len(scn.jobs)} jobs): objective CNY "
                "(wait-excess GPU-h)", "",
                "| policy | " + " | ".join(INFORMATION) + " | both ÷ perfect |",
                "|---|" + "---:|" * (len(INFORMATION) + 1)]
        for policy in policies:
            cells, values = [], []
            for name, v in variants.items():
                if progress:
                    progress(f"{scn.name}: {policy}, {name}")
                r = run(v, policy)
                if r.violations:
                    raise RuntimeError(f"{policy} on {path} ({name}): invalid schedule: {r.violations[0]}")
                m = r.accounts.metrics
                values.append(m["objective_cny"])
                cells.append(f"{m['objective_cny']:,.0f} ({m.get('wait_excess_gpu_h', 0.0):,.1f})")
            ratio = values[-1] / values[0] if values[0] else math.nan
            rows.append(f"| {policy} | " + " | ".join(cells) + f" | {ratio:.3f} |")
        out.append("\n".join(rows))
    return "\n\n".join(out) + "\n"


def _shown(path: str) -> str:
    """A path as a reader of the docs can follow it: relative to here when it is below here."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def report_name(r: ScenarioResult) -> str:
    return os.path.splitext(os.path.basename(r.path))[0] + ".html"


def write_reports(results: Sequence[ScenarioResult], policies: Sequence[str], folder: str,
                  lang: str = "en") -> list[str]:
    """One HTML page per scenario with its policies side by side (`sim.report.render_comparison`),
    and Plotly's JavaScript once beside them: the folder opens from disk, with no server and no
    network. The accounts are the accounting's, recomputed from each cell's schedule. `lang`: en,
    zh-CN or both (`sim.report.report_paths`: NAME.html and NAME.zh-CN.html)."""
    from plotly.offline import get_plotlyjs

    from suanli.accounting import account, validate
    from suanli.sim.outputs import write_files
    from suanli.sim.report import Words, render_comparison, report_paths

    files = {"plotly.min.js": get_plotlyjs()}
    for r in results:
        scn = load_scenario(r.path)
        runs = {}
        for p in policies:
            c = r.cells.get(p)
            if c is not None and c.objective is not None:
                _, outcomes = validate(scn, c.segments)
                runs[p] = (c.segments, account(scn, c.segments, outcomes=outcomes))
        for name, language in report_paths(report_name(r), lang) if runs else ():
            w = Words(language, scn)
            note = w("Lower bound {bound} ({status}); from `suanli bench`.",
                     bound=_fmt(r.bound) if _fmt(r.bound) == "–" else w.money(r.bound), status=r.bound_status)
            files[name] = render_comparison(scn, runs, plotlyjs="directory", note=note, lang=language)
    write_files(folder, files)
    return sorted(files)


def render_markdown(results: Sequence[ScenarioResult], policies: Sequence[str], command: str,
                    reports: str | None = None, lang: str = "en") -> str:
    """docs/BENCHMARKS.md's generated section; `reports`: the folder of `write_reports` (in `lang`),
    relative to the markdown, to link each scenario's page."""
    from suanli.sim.report import report_paths
    lines = [
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}). Objective and costs in CNY; `÷LB` is the objective divided "
        "by the LP lower bound (every valid schedule costs at least the bound, docs/BOUNDS.md); `÷best` "
        "divides by the best baseline's objective (fifo, cheapest, greenest, wait-awhile). Time is the "
        "simulator and policy alone; `stops` counts the runs the policy preempted (docs/SCHEDULER.md).", ""]
    for r in results:
        best = r.best_baseline()
        pages = report_paths(report_name(r), lang) if reports else []
        link = "".join(f" {'Policies side by side' if k == 0 else '中文'}: [{name}]({reports}/{name})."
                       for k, (name, _) in enumerate(pages))
        lines += [f"### {r.scenario}", "",
                  f"`{_shown(r.path)}`: {r.jobs} jobs, {r.sites} sites. Lower bound {_fmt(r.bound)} "
                  f"({r.bound_status}, {r.bound_s:.1f} s); meeting every deadline: {_fmt(r.deadline_bound)}.{link}",
                  "",
                  "| policy | objective | ÷LB | ÷best | GPU | energy | transfer | carbon kg | late GPU-h "
                  "| misses | unfinished | stops | mean JCT h | p95 JCT h | time s | jobs/s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in policies:
            c = r.cells.get(p)
            if c is None:
                continue
            if c.objective is None:
                lines.append(f"| {p} | {c.note} |" + " |" * 14)
                continue
            m = c.metrics
            lb = f"{c.objective / r.bound:.3f}" if r.bound and r.bound > 0 else "–"
            vs = f"{c.objective / best:.3f}" if best else "–"
            lines.append(
                f"| {p} | {_fmt(c.objective)} | {lb} | {vs} | {_fmt(m['gpu_cost_cny'])} | {_fmt(m['energy_cost_cny'])} "
                f"| {_fmt(m['transfer_cost_cny'])} | {_fmt(m['carbon_kg'])} | {_fmt(m['late_gpu_h'], 1)} "
                f"| {int(m['deadline_misses'])} | {int(m['jobs_unfinished'])} | {int(m.get('runs_preempted', 0))} "
                f"| {m['mean_jct_h']:.2f} "
                f"| {m['p95_jct_h']:.2f} | {c.wall_s:.2f} | {_fmt(c.jobs_per_s)} |")
        lines.append("")
    return "\n".join(lines)


def render_chart(results: Sequence[ScenarioResult], policies: Sequence[str], path: str) -> None:
    """Grouped bars: each policy's objective divided by the lower bound, per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / max(1, len(policies))
    for k, p in enumerate(policies):
        xs, ys = [], []
        for i, r in enumerate(results):
            c = r.cells.get(p)
            base = r.bound if r.bound and r.bound > 0 else r.best_baseline()
            if c is not None and c.objective is not None and base:
                xs.append(i + (k - (len(policies) - 1) / 2) * width)
                ys.append(c.objective / base)
        ax.bar(xs, ys, width, label=p)
    ax.set_xticks(range(len(results)), [r.scenario for r in results], rotation=15, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("objective ÷ lower bound (log)")
    ax.set_title("suanli bench: policies against the LP lower bound")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_json(results: Sequence[ScenarioResult]) -> list[dict]:
    """Every figure; each scenario's path as the docs show it (not this machine's absolute path)."""
    return [{**asdict(r), "path": _shown(r.path)} for r in results]
