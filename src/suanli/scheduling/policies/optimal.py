"""`optimal`: the offline reference policy (MODEL.md §7: the only one that sees everything).

Before the run, `prepare(scn)` receives the whole scenario, outages and grid caps included,
and solves a time-indexed mixed-integer model with HiGHS:

- one binary per job × pool × start time: starts on a grid (`grid_h`, chosen from 0.25, 0.5,
  1 and 2 h so that the model stays under `max_runs` start variables) from the job's data
  arrival on that site (submit + transfer), plus the arrival itself, each outage's end, and
  the start the outage-aware fifo plan gives the job; no run overlaps an outage of its site;
  the window runs to `window_h` after arrival, or to the latest on-time start if later;
- one continuous "unfinished" variable per job: each job runs once or is left unfinished at
  `unfinished_cny`;
- pool capacity checked exactly at every candidate start (GPUs in use only rise at starts),
  written as running sums so each run touches two rows;
- IT energy per site and slot from the runs' exact overlaps with each slot (running sums of
  fully covered slots plus the two partial ones), then the site energy block the lower bound
  uses (renewables, battery within its limits, grid, DR violation above grid caps);
- cost: GPU rental, transfer, exact lateness for the chosen start, energy, carbon, DR,
  unfinished.

Big gangs (at least a quarter of the biggest pool they may use) get long windows, to a window
past the horizon (or their latest on-time start), so that one that can wait may leave the only
pool some other gang fits to it.

It is solved from the best heuristic plan (α-point roundings of the LP relaxation, a cost
greedy, every online policy's schedule): a short branch and bound for small models, then
large-neighbourhood search (all jobs over the relaxation's support; all big gangs at once on
any of their runs; each late job with the jobs in its way; time windows sized so the
sub-models solve in seconds; pairs of sites) while it improves, then branch and bound again.

The battery is dispatched optimally inside the model, whereas MODEL.md §4 prescribes a greedy
rule; so the model's objective for a plan can be a little below what `account` charges for
it. The policy therefore keeps the better, by the real accounting, of the solver's plan and
the outage-aware fifo plan (which the model also contains as its starting solution).

`decide` answers each offered job with its planned `Place`, `Defer` while its planned site is
down (the simulator voids placements on a site when an outage starts, and offers them again
when it ends), or `Reject` when the plan leaves it unfinished.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from suanli.accounting import account, resolve_series, validate
from suanli.errors import UserError
from suanli.model.scenario import Scenario
from suanli.model.schedule import TIME_TOL, Segment
from suanli.scheduling import policies
from suanli.scheduling.bound import INF, ModelBuilder, Option, Problem, add_energy, build_problem
from suanli.scheduling.calendar import PoolCalendar
from suanli.scheduling.policies import register
from suanli.scheduling.state import Decision, Defer, PendingJob, Place, Reject, StateView

# (start grid h, window h, most start variables for it at the default target): finer grids make
# harder models, so a fine grid is taken only for small ones. Models over `bb_runs` are solved by
# the neighbourhood search, whose sub-models stay small, so a 1 h grid with 12 h windows may be big
# (the demo: 62k start variables; from the same start the search ended 131,285-131,395 CNY on
# it against 131,490-131,630 on the 2 h grid)
GRIDS = ((0.25, 24.0, 3_000), (0.5, 24.0, 6_000), (1.0, 24.0, 12_000), (1.0, 12.0, 80_000),
         (2.0, 24.0, 12_000), (2.0, 12.0, 100_000))


@dataclass(frozen=True)
class PlannedRun:
    site: str
    gpu_type: str
    start_h: float
    end_h: float


@register("optimal")
class Optimal:
    name = "optimal"
    offline = True

    def __init__(self, time_limit_s: float = 60.0, grid_h: float | None = None, window_h: float | None = None,
                 max_jobs: int = 400, target_runs: int = 12_000, max_runs: int = 100_000,
                 mip_rel_gap: float = 1e-4, threads: int | None = None):
        self.time_limit_s = time_limit_s
        self.grid_h = grid_h
        self.window_h = window_h
        self.max_jobs = max_jobs
        self.target_runs = target_runs
        self.max_runs = max_runs
        self.mip_rel_gap = mip_rel_gap
        self.threads = threads
        self.plan: dict[str, PlannedRun | None] | None = None
        self.status = "not prepared"
        self.gap: float | None = None
        self.mip_objective: float | None = None     # the model's objective of its best plan
        self.mip_bound: float | None = None         # the model's dual bound
        self.objective: float | None = None         # accounted objective of the plan kept
        self.source = ""                            # the plan kept: "mip", "cost greedy", "policy fifo", ...
        self.heuristics: dict[str, float] = {}      # accounted objective of every other plan weighed
        self.runs = 0
        self.solve_s = 0.0
        self.timings: dict[str, float] = {}         # seconds spent per phase of prepare
        # per neighbourhood searched: (seconds into prepare, kind, window start, sites, free runs,
        # seconds, gain of the model's objective; nan when its answer failed the whole model)
        self.lns_log: list[tuple] = []
        self.caps_without_battery = True            # no battery discharge counted against grid caps
        self.lns_runs = 3000                        # most free start variables in a time window
        self.bb_runs = 5000                         # bigger models go to the neighbourhood search first
        self.bb_share = 0.1                         # of the solve budget, for the first branch and bound
        self.long_share = 0.25                      # gangs of at least this share of their biggest pool...
        self.long_budget = 0.25                     # ...get long windows, adding at most this share of runs
        self.gang_runs = 6000                       # most free start variables in a neighbourhood of gangs
        self.long_jobs = 0                          # jobs given long windows
        self.alternatives = 8                       # the search's last incumbents also weighed by the accounting
        self._trail: list[np.ndarray] = []          # the incumbents the search replaced (their runs)
        self._alternatives: list[dict[int, tuple[int, float]]] = []   # the last of them, as plans
        self._outages: dict[str, list[tuple[float, float]]] = {}
        self._lp_support: np.ndarray | None = None    # per run: used by the LP relaxation
        self._share: np.ndarray | None = None         # per job: its gang's share of its biggest pool
        self._deadline: np.ndarray | None = None      # per job: its deadline (inf: none)
        self._site_of_run = np.zeros(0, dtype=np.int64)
        self._delegate = None                       # an online policy whose own run beat every plan

    # ------------------------------------------------------------------ offline planning
    def prepare(self, scn: Scenario) -> None:
        import highspy

        t0 = time.perf_counter()
        if len(scn.jobs) > self.max_jobs:
            raise UserError(f"--policy optimal: {len(scn.jobs)} jobs is too many for the offline mixed-integer "
                            f"model (at most {self.max_jobs}); use a smaller scenario")
        self.timings = {}
        self.lns_log = []
        mark = [t0]

        def lap(name: str) -> None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - mark[0]
            mark[0] = now

        self._lap = lap
        self._t0 = t0
        problem = build_problem(scn)
        self._outages = problem.outages
        fifo = _fifo_plan(problem)
        extra = {j: [run] for j, run in fifo.items()}
        # the finest start grid (and widest window) whose model stays small enough
        choices = [(g, w, lim) for g, w, lim in GRIDS
                   if (self.grid_h is None or g == self.grid_h) and (self.window_h is None or w == self.window_h)]
        if not choices:
            choices = [(self.grid_h or 1.0, self.window_h or 24.0, self.max_runs)]
        runs = None
        for dt, w, limit in choices:
            if (dt, w, limit) != choices[-1] and _count_runs(problem, dt, w) > 1.5 * limit * self.target_runs / 12_000:
                continue                        # far too many: no need to list them
            runs = _candidate_runs(problem, extra, dt, w)
            if len(runs.job) <= limit * self.target_runs / 12_000:
                break
        if len(runs.job) > self.max_runs:
            raise UserError(f"--policy optimal: the time-indexed model would need {len(runs.job)} start variables "
                            f"even on a {dt:g} h grid (at most {self.max_runs}); use a smaller scenario")
        self.grid_h, self.window_h = dt, w
        T = math.ceil(runs.end.max()) + 2 if len(runs.job) else 1
        cost = _run_costs(problem, runs, _price_curves(problem, T))
        cheap = _cost_greedy(problem, runs, cost)
        plans = {"fifo plan": fifo, "cost greedy": cheap}
        lap("grid and greedy")
        online = _policy_runs(problem)             # every online policy's own schedule of the scenario
        lap("online policies")
        for name, (_, plan) in online.items():
            if plan is not None:                    # one segment per job: the model can hold it
                plans[f"policy {name}"] = plan
        for plan in plans.values():
            for j, run in plan.items():
                extra.setdefault(j, []).append(run)
        # windows reach as far as fifo's or the cost greedy's start (other policies' starts are
        # candidates too, but a policy that waits long should not widen every window)
        reach = {j: max(p[j][1] for p in (fifo, cheap) if j in p) for j in set(fifo) | set(cheap)}
        runs = _candidate_runs(problem, extra, dt, w, reach)
        # big gangs may wait past the others: their windows reach on to a window after the horizon
        # (runs the search gets; the relaxation rounded below is the model without them, whose
        # roundings were the better starts on the demo)
        self._share = _shares(problem)
        long = _long_windows(problem, runs, self._share, dt, scn.horizon_h + w, self.long_share,
                             int(self.long_budget * max(len(runs.job), 4_000)))
        self.long_jobs = len(long)
        self.runs = len(runs.job)
        T = math.ceil(runs.end.max()) + 2 if len(runs.job) else 1

        model = self._build(problem, runs)
        h = model.highs({"random_seed": 0, "presolve": "on", "threads": self.threads})
        lap("build")
        # the LP relaxation, rounded by alpha-points into list schedules
        h.setOptionValue("solve_relaxation", True)
        h.setOptionValue("time_limit", max(1.0, 0.3 * self.time_limit_s))
        h.run()
        lap("lp")
        lp_bound = None                                 # the relaxation's value bounds the model's optimum
        support: set = set()                            # runs the relaxation uses
        if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            lp_bound = float(h.getInfo().objective_function_value)
        cost = _run_costs(problem, runs, _price_curves(problem, T))
        if h.getInfo().primal_solution_status == 2:
            xlp = np.asarray(h.getSolution().col_value)[model.s]
            support = {(int(runs.job[i]), int(runs.option[i]), float(runs.start[i]))
                       for i in np.flatnonzero(xlp > 1e-6)}
            for alpha in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8):
                plans[f"lp round {alpha}"] = _lp_round(problem, runs, cost, xlp, alpha)
        scores = {k: _accounted(scn, _plan_of(problem, plan)) for k, plan in plans.items()}
        warm = plans[min(scores, key=scores.get)]
        for j, run in warm.items():                    # a list schedule may start a job off the grid
            if (j, run[0], run[1]) not in runs.index:
                extra.setdefault(j, []).append(run)
        if long or any((j, o, st) not in runs.index for j, (o, st) in warm.items()):
            runs = _candidate_runs(problem, extra, dt, w, reach, long)
            self.runs = len(runs.job)
            model = self._build(problem, runs)
            h = model.highs({"random_seed": 0, "presolve": "on", "threads": self.threads})
            lp_bound = None                             # (that was another model's relaxation)
        lap("rounding")
        self._lp_support = np.array([k in support for k in runs.index], dtype=bool) if support else None
        self._site_of_run = np.array([problem.pools[p].site_index for p in runs.pool], dtype=np.int64)
        self._deadline = np.array([math.inf if job.deadline_h is None else job.deadline_h for job in scn.jobs])
        left = self.time_limit_s - (time.perf_counter() - t0)
        h.setOptionValue("solve_relaxation", False)
        h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
        picks = self._solve(h, model, runs, warm, max(1.0, left), lp_bound)
        final = {k: _plan_of(problem, plan) for k, plan in plans.items()}
        if picks is not None:
            for alt in [picks, *self._alternatives]:     # the best plan of the search, then the ones before it
                mip_plan = _plan_of(problem, alt)
                if _plan_valid(problem, mip_plan):
                    value = _accounted(scn, mip_plan)
                    if "mip" not in scores or value < scores["mip"] - 1e-9:
                        final["mip"], scores["mip"] = mip_plan, value
        self.source = min(scores, key=lambda k: (scores[k], k != "mip"))
        self.plan = final[self.source]
        self.objective = scores[self.source]
        self.heuristics = {k: v for k, v in scores.items() if k != "mip"}
        self._delegate = None
        for name, (value, plan) in online.items():
            if plan is not None:
                continue                            # already weighed as a plan
            self.heuristics[f"policy {name}"] = value
            if value < self.objective - 1e-9:       # a policy's own run (outage cuts and all) does better:
                self.objective, self.source = value, f"policy {name}"     # act as it does
                self._delegate = policies.make(name)
        lap("final")
        self.solve_s = time.perf_counter() - t0

    def _build(self, problem: Problem, runs: _Runs) -> _Model:
        scn = problem.scn
        obj = scn.objective
        jobs = scn.jobs
        n = len(runs.job)
        T = max(math.ceil(scn.horizon_h), int(np.ceil(runs.end.max() - 1e-12)) if n else 0, 1)
        series = resolve_series(scn, T)
        b = ModelBuilder()
        energy = add_energy(b, problem, series, T)
        gpus = np.array([jobs[j].gpus for j in runs.job], dtype=float)
        pool_of = runs.pool
        price = np.array([problem.pools[p].price for p in pool_of])
        power = np.array([problem.pools[p].power_kw for p in pool_of])
        dur = runs.end - runs.start
        late = np.zeros(n)
        for i, j in enumerate(runs.job):
            d = jobs[j].deadline_h
            if d is not None:
                late[i] = max(0.0, runs.end[i] - d)
        cost = gpus * dur * price + runs.transfer + obj.late_cny_per_gpu_h * gpus * late
        s = b.cols(n, cost, 0.0, 1.0, integer=True)
        # each job: one run or unfinished
        J = len(jobs)
        assign = b.rows(J, 1.0, 1.0)
        b.add(assign[runs.job], s, 1.0)
        u = b.cols(J, obj.unfinished_cny, 0.0, 1.0)
        b.add(assign, u, 1.0)
        # capacity, exact at every candidate start: U_i = U_{i-1} + starts at point i - ends by point i
        for p, pool in enumerate(problem.pools):
            sel = np.flatnonzero(pool_of == p)
            if not len(sel):
                continue
            points = np.unique(runs.start[sel])
            m = len(points)
            U = b.cols(m, 0.0, 0.0, float(pool.count))
            rows = b.rows(m, 0.0, 0.0)
            b.add(rows, U, 1.0)
            b.add(rows[1:], U[:-1], -1.0)
            add_at = np.searchsorted(points, runs.start[sel])
            rem_at = np.searchsorted(points, runs.end[sel], side="left")   # first point >= end
            b.add(rows[add_at], s[sel], -gpus[sel])
            keep = rem_at < m
            b.add(rows[rem_at[keep]], s[sel][keep], gpus[sel][keep])
        # IT energy per site and slot: F (fully covered slots, running sums) + partial slots
        st, en = runs.start, runs.end
        t0 = np.floor(st).astype(np.int64)
        t1 = np.ceil(en).astype(np.int64) - 1
        t1 = np.maximum(t1, t0)
        first_ov = np.minimum(en, t0 + 1.0) - st
        last_ov = en - t1
        first_full = first_ov >= 1.0 - 1e-12
        last_full = (t1 > t0) & (last_ov >= 1.0 - 1e-12)
        fa = np.where(first_full, t0, t0 + 1)
        fb = np.where(last_full | ((t1 == t0) & first_full), t1, t1 - 1)
        gp = gpus * power
        site_of = np.array([problem.pools[p].site_index for p in pool_of], dtype=np.int64)
        for k, sid in enumerate(problem.sites):
            sel = np.flatnonzero(site_of == k)
            if not len(sel):
                continue
            pue = scn.sites[sid].pue
            bal = energy.balance[k]
            full = sel[fa[sel] <= fb[sel]]
            if len(full):
                F = b.cols(T, 0.0, 0.0, INF)
                rows = b.rows(T, 0.0, 0.0)          # F_t - F_{t-1} - adds_t + removes_t = 0
                b.add(rows, F, 1.0)
                b.add(rows[1:], F[:-1], -1.0)
                b.add(rows[fa[full]], s[full], -gp[full])
                ends = fb[full] + 1
                ok = ends < T
                b.add(rows[ends[ok]], s[full][ok], gp[full][ok])
                b.add(bal, F, -pue)
            part1 = sel[~first_full[sel]]
            b.add(bal[t0[part1]], s[part1], -pue * gp[part1] * first_ov[part1])
            part2 = sel[(t1[sel] > t0[sel]) & ~last_full[sel]]
            b.add(bal[t1[part2]], s[part2], -pue * gp[part2] * last_ov[part2])

        # MODEL.md §4's battery is greedy: it discharges at the first shortfall, so it is seldom
        # still charged when a grid cap begins. The model therefore counts no discharge against a
        # cap (violation >= grid + discharge - cap), or it plans on a battery that will be empty.
        slots = np.arange(T)
        for k, sid in enumerate(problem.sites):
            charge = energy.charge[k]
            if charge is None or not energy.violation[k] or not self.caps_without_battery:
                continue
            discharge = charge + T                      # add_energy makes them one after the other
            caps = [c for c in scn.grid_caps(sid) if np.any((slots >= c.start_h) & (slots < c.end_h))]
            for cap, (v, active) in zip(caps, energy.violation[k], strict=True):
                rows = b.rows(len(active), -cap.max_grid_kw * 1.0, INF)
                b.add(rows, v, 1.0)
                b.add(rows, energy.grid[k][active], -1.0)
                b.add(rows, discharge[active], -1.0)
        model = _Model(b, s, u)
        return model

    def _solve(self, h, model: _Model, runs: _Runs, warm: dict[int, tuple[int, float]], budget_s: float,
               lp_bound: float | None = None):
        """The MIP from the `warm` plan (HiGHS fixes its binaries and completes the rest by an LP):
        a short branch and bound over the whole model (small models are solved and proved
        optimal here), then, if it has not closed the gap, large-neighbourhood search (jobs of a
        time window, or of two sites over a longer window, re-optimised with every other job
        fixed at the incumbent) while it improves, and branch and bound again from the best plan
        with whatever time the search leaves."""
        t_end = time.perf_counter() + budget_s
        self._trail, self._alternatives = [], []
        x0 = np.zeros(model.b.ncol)
        u_start = np.ones(len(model.u))
        for j, (o, start) in warm.items():
            i = runs.index.get((j, o, start))
            if i is not None:
                x0[model.s[i]] = 1.0
                u_start[j] = 0.0
        x0[model.u] = u_start
        self.mip_bound = lp_bound
        if len(model.s) <= self.bb_runs:
            x, best, proved = self._branch_and_bound(h, model, x0, max(1.0, self.bb_share * budget_s))
            self._lap("branch and bound")
            if x is None:
                return None
        else:                               # a big model: HiGHS's presolve alone takes seconds
            n = len(model.s)                # so the warm plan is only completed (energy) by an LP
            cols = model.s.astype(np.int32)
            h.changeColsBounds(n, cols, x0[model.s], x0[model.s])
            x, best, _ = self._branch_and_bound(h, model, x0, max(1.0, budget_s))
            h.changeColsBounds(n, cols, np.zeros(n), np.ones(n))
            self._lap("branch and bound")
            self.status, self.mip_bound, proved = "Time limit reached", lp_bound, False
            if x is None:
                return None
        if not proved:
            best, x = self._neighbourhoods(h, model, runs, x, best, t_end)
            self._lap("lns")
            left = t_end - time.perf_counter()
            if left > 2.0:                           # the search stalled: the whole model again
                y, value, proved = self._branch_and_bound(h, model, x, left)
                self._lap("branch and bound")
                if y is not None and value < best:
                    best, x = value, y
        self.mip_objective = best
        bound = self.mip_bound if self.mip_bound is not None else -math.inf
        self.gap = max(0.0, (best - bound) / max(1.0, abs(best))) if math.isfinite(bound) else None
        def picks_of(chosen: np.ndarray) -> dict[int, tuple[int, float]]:
            return {int(runs.job[i]): (int(runs.option[i]), float(runs.start[i])) for i in chosen}

        # the search's last few incumbents too: the model's battery is not MODEL.md §4's, so the
        # accounting may rank them a little differently
        self._alternatives = [picks_of(c) for c in self._trail[::-1][:self.alternatives]]
        return picks_of(np.flatnonzero(x[model.s] > 0.5))

    def _branch_and_bound(self, h, model: _Model, x0: np.ndarray, limit_s: float):
        """HiGHS's branch and bound over the whole model from `x0`: (x, objective, proved
        optimal), x None when it has no solution that meets the model."""
        import highspy

        sol = highspy.HighsSolution()
        sol.col_value = x0.tolist()
        h.setSolution(sol)
        h.setOptionValue("time_limit", max(1.0, limit_s))
        h.run()
        info = h.getInfo()
        ms = h.getModelStatus()
        self.status = h.modelStatusToString(ms)
        dual = float(info.mip_dual_bound)
        if math.isfinite(dual) and (self.mip_bound is None or dual > self.mip_bound):
            self.mip_bound = dual
        if info.primal_solution_status != 2:
            return None, math.inf, False
        x = np.asarray(h.getSolution().col_value)
        value = model.check(x)
        if value is None:                           # never expected: HiGHS's own solution off the model
            return None, math.inf, False
        return x, value, ms == highspy.HighsModelStatus.kOptimal

    def _neighbourhoods(self, h, model: _Model, runs: _Runs, x: np.ndarray, best: float, t_end: float,
                        width_h: float = 12.0, step_s: float = 5.0, shift_h: float = 2.0):
        """Large-neighbourhood search until `t_end` or a whole round without a gain. Each round
        sweeps time windows [a, a + width) (step width / 2: the jobs the incumbent starts there,
        and every unfinished job, may take any of their runs starting in [a - width / 2,
        a + 1.5 width)), then pairs of sites over windows twice as wide (the jobs the incumbent
        runs at either site, on runs at those two sites); after each, the big gangs (`gang_hoods`)
        and each late job with the jobs in its way (`late_hoods`), on any of their runs."""
        import highspy

        s_cols = model.s
        n = len(s_cols)
        J = len(model.u)
        cols = s_cols.astype(np.int32)
        lo_all = np.zeros(n)
        site_of = self._site_of_run
        n_sites = int(site_of.max()) + 1 if n else 0

        pairs = [(k1, k2) for k1 in range(n_sites) for k2 in range(k1 + 1, n_sites)]
        share = self._share if self._share is not None else np.zeros(J)
        deadline = self._deadline if self._deadline is not None else np.full(J, math.inf)
        runs_of = np.bincount(runs.job, minlength=J)
        masks: dict[tuple, np.ndarray] = {}             # the free jobs of the neighbourhoods of given jobs
        state = {"x": x}

        def incumbent():
            chosen = state["x"][s_cols] > 0.5
            start_of = np.full(J, -math.inf)
            start_of[runs.job[chosen]] = runs.start[chosen]
            return chosen, start_of

        def free_of(a, b, lo_t, hi_t, sites, jobs=None):
            """(free jobs, free runs, fixed runs) of a neighbourhood."""
            chosen, start_of = incumbent()
            if jobs is None:
                free_job = (start_of >= a) & (start_of < b)
            else:                                          # these jobs, on any of their runs
                free_job = jobs.copy()
            ok_run = (runs.start >= lo_t) & (runs.start < hi_t)
            if sites is not None:
                at = np.zeros(J, dtype=bool)
                sel = chosen & ((site_of == sites[0]) | (site_of == sites[1]))
                at[runs.job[sel]] = True
                free_job &= at
                ok_run &= (site_of == sites[0]) | (site_of == sites[1])
            free_job |= start_of == -math.inf              # unfinished jobs: always free
            free_run = free_job[runs.job] & ok_run
            if jobs is None and lo_t == -math.inf:         # the relaxation-induced neighbourhood
                own = np.full(J, -1)
                own[runs.job[chosen]] = runs.pool[chosen]
                near = (own[runs.job] == runs.pool) & (np.abs(runs.start - start_of[runs.job]) <= shift_h + 1e-9)
                free_run &= self._lp_support | near
            return free_job, free_run, chosen & ~free_job[runs.job], chosen

        def time_hoods(offset: float, width_h: float = width_h):
            """Time windows as wide as `width_h` or narrower, so that at most `lns_runs` runs are
            free, each starting half its width after the last."""
            _, start_of = incumbent()
            done = start_of[np.isfinite(start_of)]
            if not len(done):
                return
            a, top = math.floor(done.min()) - offset, done.max()
            while a <= top:
                w = width_h
                while True:
                    hood = (a, a + w, a - width_h / 2, a + w + width_h / 2, None)
                    if w <= 2.0 or free_of(*hood)[1].sum() <= target[0] * width_h / width0:
                        break
                    w /= 2
                yield ("time", *hood)
                a += w / 2

        def support_hoods():
            """Every job at once, each choosing among the runs the LP relaxation uses, its own run
            and that run shifted by up to `shift_h`, on the same pool (relaxation-induced)."""
            if self._lp_support is None:
                return
            yield ("support", -math.inf, math.inf, -math.inf, math.inf, None)

        def gang_hoods():
            """Every job whose gang takes at least a share of the biggest pool it may use, on any
            of its runs, the rest fixed (which of them holds the pool they share, and which waits
            or goes to a dearer one, is what time windows and pairs of sites cannot re-decide):
            the biggest gangs first, then down to `long_share` while at most `gang_runs` runs are
            free, until one hits its time limit."""
            state["gangs stop"] = False
            for least in sorted({float(v) for v in share[share >= self.long_share]}, reverse=True):
                if state["gangs stop"]:
                    return
                free = share >= least
                if free.sum() < 2:
                    continue
                if runs_of[free].sum() > self.gang_runs:
                    return
                masks[("gangs", least)] = free
                yield ("gangs", least, math.inf, -math.inf, math.inf, None)

        def late_hoods():
            """Each job the incumbent finishes late, with every job it runs on one of that job's
            pools over the time the job could have run on time, on any of their runs (the jobs in
            the way may have started far apart, in no one time window)."""
            chosen, _ = incumbent()
            on = np.flatnonzero(chosen)
            for i in on[runs.end[on] > deadline[runs.job[on]] + 1e-6]:
                j = int(runs.job[i])
                mine = runs.job == j
                near = (chosen & np.isin(runs.pool, runs.pool[mine]) & (runs.start < deadline[j])
                        & (runs.end > runs.start[mine].min()))
                free = np.zeros(J, dtype=bool)
                free[runs.job[near]] = True
                free[j] = True
                if runs_of[free].sum() <= self.gang_runs:
                    masks[("late", j)] = free
                    yield ("late", j, math.inf, -math.inf, math.inf, None)

        def site_hoods():
            """Pairs of sites over windows twice as wide as `width_h`."""
            _, start_of = incumbent()
            done = start_of[np.isfinite(start_of)]
            if not len(done):
                return
            a, top, wide = math.floor(done.min()), done.max(), 2 * width_h
            while a <= top:
                for pair in pairs:
                    yield ("sites", a, a + wide, a - width_h, a + wide + width_h, pair)
                a += wide / 2

        searched: set = set()
        trail = self._trail                 # the incumbents replaced, for the final choice by accounting
        width0 = width_h
        target = [float(self.lns_runs)]     # free runs per time window: shrinks when a sub-model
        stale = 0                           # hits its time limit, grows when it is solved quickly
        rounds = 0
        while stale < 3 and time.perf_counter() < t_end - 1.0:
            # the relaxation's support, then big gangs and late jobs; then time windows while
            # they gain (shifted a quarter width every other round), then pairs of sites, each
            # round followed by gangs and late jobs again; a round of each without a gain ends it
            first = rounds == 1               # (the round of gangs gaining nothing is no stall)
            if rounds == 0:
                hoods = support_hoods()
            elif rounds == 1:
                hoods = itertools.chain(gang_hoods(), late_hoods())
            elif stale == 0:
                hoods = itertools.chain(time_hoods(width_h / 4 * (rounds % 2)), gang_hoods(), late_hoods())
            elif stale == 1:
                hoods = itertools.chain(site_hoods(), gang_hoods(), late_hoods())
            else:                                           # then windows twice as long
                hoods = time_hoods(0.0, 2 * width_h)
            rounds += 1
            improved_any = False
            for kind, a, b, lo_t, hi_t, sites in hoods:
                if time.perf_counter() >= t_end - 1.0:
                    break
                free_job, free_run, fixed, chosen = free_of(a, b, lo_t, hi_t, sites, masks.get((kind, a)))
                if free_job.sum() < 2 or free_run.sum() <= free_job.sum():
                    continue                                 # nothing to re-decide
                # the incumbent near the neighbourhood (a day either side): when it is what a
                # sub-model already searched to the end without a gain, the answer is known
                near = chosen & (runs.end > lo_t - 24.0) & (runs.start < hi_t + 24.0)
                key = (kind, a, b, sites, np.flatnonzero(near).tobytes())
                if key in searched:
                    continue
                x = state["x"]
                lo = np.where(fixed, 1.0, lo_all)
                hi = np.maximum(np.where(free_run | fixed, 1.0, 0.0), chosen.astype(float))
                h.changeColsBounds(n, cols, lo, hi)
                sol = highspy.HighsSolution()
                sol.col_value = x.tolist()
                h.setSolution(sol)
                left = t_end - time.perf_counter()
                limit = max(step_s, 0.2 * left) if kind == "gangs" else step_s      # gangs: the bigger sub-models
                h.setOptionValue("time_limit", max(0.5, min(limit, left)))
                t1 = time.perf_counter()
                if kind == "gangs":                           # HiGHS's probing alone took seconds on these
                    h.setOptionValue("presolve_rule_off", 32768)
                h.run()
                h.setOptionValue("presolve_rule_off", 0)
                if kind == "gangs" and h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit:
                    state["gangs stop"] = True                # more gangs at once: later
                if kind == "time":
                    if h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit:
                        target[0] = max(300.0, 0.7 * target[0])
                    elif time.perf_counter() - t1 < 0.25 * step_s:
                        target[0] = min(4.0 * self.lns_runs, 1.1 * target[0])
                gain = 0.0
                if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
                    searched.add(key)
                if h.getInfo().primal_solution_status == 2:
                    y = np.asarray(h.getSolution().col_value)
                    value = model.check(y)            # a sub-model's answer must hold in the whole model
                    if value is None:
                        gain = math.nan
                    elif value < best - 1e-6 * max(1.0, abs(best)):
                        gain = best - value
                        trail.append(np.flatnonzero(state["x"][s_cols] > 0.5))
                        best, state["x"] = value, y
                        improved_any = True
                self.lns_log.append((round(time.perf_counter() - self._t0, 2), kind, a, sites,
                                     int(free_run.sum()), round(time.perf_counter() - t1, 2), gain))
            if improved_any:
                stale = 0
            elif not first:
                stale += 1
        x = state["x"]
        h.changeColsBounds(n, cols, lo_all, np.ones(n))
        return best, x

    # ------------------------------------------------------------------ online answers
    def decide(self, view: StateView, jobs: Sequence[PendingJob]) -> list[Decision]:
        if self.plan is None:
            raise RuntimeError("optimal: prepare(scenario) must run before the simulation (offline policy)")
        if self._delegate is not None:
            return self._delegate.decide(view, jobs)
        scratch = view.scratch()
        out: list[Decision] = []
        for pj in jobs:
            job = pj.job
            if job.id not in self.plan or self.plan[job.id] is None:
                out.append(Reject(job.id, "the offline optimum leaves it unfinished"))
                continue
            run = self.plan[job.id]
            if run.site in view.down:
                out.append(Defer(job.id, f"planned on {run.site}, down now"))
                continue
            dur = view.duration_h(pj, run.gpu_type)
            start = run.start_h
            if (pj.segments_done == 0 and start >= view.now - TIME_TOL
                    and start >= view.data_ready_h(pj, run.site) - TIME_TOL
                    and scratch.calendar(run.site, run.gpu_type).fits(start, start + dur, job.gpus)):
                scratch.reserve(run.site, run.gpu_type, start, start + dur, job.gpus)
                out.append(Place(job.id, run.site, run.gpu_type, start, start + dur, reason="offline optimum"))
                continue
            out.append(self._fallback(view, scratch, pj))
        return out

    def _fallback(self, view: StateView, scratch, pj: PendingJob) -> Decision:
        """Off the plan (never expected): the earliest start that avoids known outages."""
        best = None
        for sid, g in view.candidate_pools(pj):
            if sid in view.down:
                continue
            dur = view.duration_h(pj, g)
            t = max(view.now, view.data_ready_h(pj, sid))
            start = _earliest_clear(scratch.calendar(sid, g), pj.job.gpus, dur, t, self._outages.get(sid, []))
            if start is not None and (best is None or start < best[0]):
                best = (start, sid, g, dur)
        if best is None:
            return Defer(pj.job.id, "off the plan and no site up can host it")
        start, sid, g, dur = best
        scratch.reserve(sid, g, start, start + dur, pj.job.gpus)
        return Place(pj.job.id, sid, g, start, start + dur, reason="off the offline plan: earliest start")


# ============================================================================ helpers
@dataclass
class _Model:
    b: ModelBuilder
    s: np.ndarray          # start binaries, one per run
    u: np.ndarray          # unfinished, one per job
    zero: list = field(default_factory=list)

    def highs(self, options: dict):
        h = self.b.highs({k: v for k, v in options.items() if v is not None})
        if self.zero:
            cols = np.concatenate(self.zero).astype(np.int32)
            h.changeColsBounds(len(cols), cols, np.zeros(len(cols)), np.zeros(len(cols)))
        return h

    def check(self, x: np.ndarray) -> float | None:
        """The objective of `x` if it meets every row and bound of the whole model (1e-6), else None."""
        if not hasattr(self, "_arrays"):
            cost, lo, hi, _, rlo, rhi, start, index, value = self.b.arrays()
            col = np.repeat(np.arange(self.b.ncol), np.diff(start))
            self._arrays = (cost, lo, hi, rlo, rhi, col, index, value)
        cost, lo, hi, rlo, rhi, col, index, value = self._arrays
        act = np.bincount(index, weights=value * x[col], minlength=self.b.nrow)
        tol = 1e-6 * (1.0 + np.abs(act))
        if np.any(act < rlo - tol) or np.any(act > rhi + tol):
            return None
        if np.any(x < lo - 1e-6) or np.any(x > hi + 1e-6):
            return None
        return float(cost @ x)


@dataclass
class _Runs:
    job: np.ndarray        # job index
    option: np.ndarray     # index into problem.options[job]
    pool: np.ndarray
    start: np.ndarray
    end: np.ndarray
    transfer: np.ndarray
    index: dict[tuple[int, int, float], int]


def _overlaps_outage(start: np.ndarray, end: np.ndarray, outages: list[tuple[float, float]]) -> np.ndarray:
    bad = np.zeros(len(start), dtype=bool)
    for a, b in outages:
        bad |= (start < b) & (end > a)
    return bad


def _candidate_runs(problem: Problem, extra: dict[int, list[tuple[int, float]]], dt: float,
                    window_h: float, reach: dict[int, float] | None = None,
                    long: dict[int, float] | None = None) -> _Runs:
    """Start times for each (job, pool): the data's arrival, every grid point up to `window_h`
    after it (up to the latest on-time start if the deadline is later, within 2 * window_h;
    up to `reach[j]` (default: the job's latest `extra` start) if that is later still; for a
    job in `long`, up to `long[j]` or its latest on-time start, whichever is earlier, if that is
    later still), each outage end in that window, and the `extra` starts given; none
    overlapping an outage."""
    scn = problem.scn
    cols: dict[str, list] = {k: [] for k in ("job", "option", "pool", "start", "end", "transfer")}
    for j, job in enumerate(scn.jobs):
        if reach is None:
            latest = max((start for _, start in extra.get(j, ())), default=-math.inf)
        else:
            latest = reach.get(j, -math.inf)
        for oi, o in enumerate(problem.options[j]):
            r = o.release
            last = max(r + window_h, latest)
            if job.deadline_h is not None:
                last = max(last, min(job.deadline_h - o.duration, r + 2 * window_h))
            if long is not None and j in long:
                last = max(last, _long_last(job, o, long[j]))
            grid = np.arange(math.floor(r / dt) + 1, math.floor(last / dt + 1e-9) + 1) * dt
            more = [r] + [b for _, b in problem.outages[o.site] if r < b <= last]
            more += [start for ei, start in extra.get(j, ()) if ei == oi]
            starts = np.unique(np.r_[np.asarray(more, dtype=float), grid[grid > r]])
            ends = starts + o.duration
            ok = ~_overlaps_outage(starts, ends, problem.outages[o.site])
            starts, ends = starts[ok], ends[ok]
            k = len(starts)
            cols["job"].append(np.full(k, j))
            cols["option"].append(np.full(k, oi))
            cols["pool"].append(np.full(k, o.pool))
            cols["start"].append(starts)
            cols["end"].append(ends)
            cols["transfer"].append(np.full(k, o.transfer_cny))

    def cat(name, dtype):
        return np.concatenate(cols[name]).astype(dtype) if cols[name] else np.zeros(0, dtype)

    runs = _Runs(cat("job", np.int64), cat("option", np.int64), cat("pool", np.int64), cat("start", float),
                 cat("end", float), cat("transfer", float), {})
    runs.index = {(int(j), int(o), float(s)): i for i, (j, o, s) in
                  enumerate(zip(runs.job, runs.option, runs.start, strict=True))}
    return runs


def _long_last(job, o: Option, tail_end: float) -> float:
    """The latest start of a long window: `tail_end`, or the latest on-time start if earlier."""
    return tail_end if job.deadline_h is None else min(tail_end, job.deadline_h - o.duration)


def _long_windows(problem: Problem, runs: _Runs, share: np.ndarray, dt: float, tail_end: float, least_share: float,
                  budget: int) -> dict[int, float]:
    """The jobs whose windows reach on to `tail_end` (docs/BOUNDS.md §5): whole gangs that take
    at least `least_share` of the biggest pool they may use (`share`, per job), biggest first, while the
    grid points they add stay within `budget`. A big gang whose work can wait (no deadline, or
    a late one) must be free to run after the others, or it holds the only pool that hosts them
    and they go to dearer ones; short windows do not let it wait that long."""
    scn = problem.scn
    last = np.full(len(scn.jobs), -math.inf)          # each job's latest listed start
    np.maximum.at(last, runs.job, runs.start)
    out: dict[int, float] = {}
    added = 0.0
    for j in sorted(range(len(scn.jobs)), key=lambda i: (-share[i], scn.jobs[i].submit_h, i)):
        if share[j] < least_share:
            break
        more = sum(max(0.0, _long_last(scn.jobs[j], o, tail_end) - max(last[j], o.release)) / dt
                   for o in problem.options[j])
        if more < 1.0:
            continue
        if added + more > budget:
            continue
        added += more
        out[j] = tail_end
    return out


def _shares(problem: Problem) -> np.ndarray:
    """Per job: its gang's share of the biggest pool it may use (0 where none can host it)."""
    pools = problem.pools
    return np.array([job.gpus / max((pools[o.pool].count for o in opts), default=math.inf)
                     for job, opts in zip(problem.scn.jobs, problem.options, strict=True)])


def _count_runs(problem: Problem, dt: float, window_h: float) -> int:
    """About how many runs `_candidate_runs` lists (grid points only, outages ignored)."""
    n = 0
    for j, job in enumerate(problem.scn.jobs):
        for o in problem.options[j]:
            last = o.release + window_h
            if job.deadline_h is not None:
                last = max(last, min(job.deadline_h - o.duration, o.release + 2 * window_h))
            n += max(0, math.floor(last / dt + 1e-9) - math.floor(o.release / dt)) + 1
    return n


def _price_curves(problem: Problem, T: int) -> dict[str, np.ndarray]:
    """Per site, the running integral of the grid price (tariff + carbon price * carbon), CNY/kWh·h,
    so the price of a run over [a, b) is C(b) - C(a) (piecewise linear)."""
    scn = problem.scn
    series = resolve_series(scn, T)
    out = {}
    for sid in problem.sites:
        ser = series[sid]
        price = ser.cny_per_kwh[:T] + scn.objective.carbon_cny_per_kg * ser.carbon_kg_per_kwh[:T]
        out[sid] = np.r_[0.0, np.cumsum(price)]
    return out


def _integral(curve: np.ndarray, x: np.ndarray) -> np.ndarray:
    T = len(curve) - 1
    x = np.clip(x, 0.0, T)
    t = np.minimum(np.floor(x).astype(np.int64), T - 1)
    return curve[t] + (x - t) * (curve[t + 1] - curve[t])


def _run_costs(problem: Problem, runs: _Runs, prices: dict[str, np.ndarray]) -> np.ndarray:
    """Each run's rental + transfer + lateness + grid energy at the site's price (renewables and
    batteries ignored): what the heuristics rank runs by."""
    scn = problem.scn
    obj = scn.objective
    site_of = np.array([problem.pools[p].site_index for p in runs.pool], dtype=np.int64)
    kwh_price = np.zeros(len(runs.job))               # CNY per kW drawn over the run
    for k, sid in enumerate(problem.sites):
        sel = site_of == k
        kwh_price[sel] = _integral(prices[sid], runs.end[sel]) - _integral(prices[sid], runs.start[sel])
    gpus = np.array([j.gpus for j in scn.jobs], dtype=float)[runs.job]
    price = np.array([p.price for p in problem.pools])[runs.pool]
    kw = np.array([p.power_kw * scn.sites[p.site].pue for p in problem.pools])[runs.pool] * gpus
    dl = np.array([math.inf if j.deadline_h is None else j.deadline_h for j in scn.jobs])[runs.job]
    late = obj.late_cny_per_gpu_h * gpus * np.maximum(0.0, runs.end - dl)
    return gpus * (runs.end - runs.start) * price + runs.transfer + late + kwh_price * kw


def _job_runs(runs: _Runs, jobs: int) -> list[np.ndarray]:
    order = np.argsort(runs.job, kind="stable")
    bounds = np.searchsorted(runs.job[order], np.arange(jobs + 1))
    return [order[bounds[j]:bounds[j + 1]] for j in range(jobs)]


def _list_schedule(problem: Problem, runs: _Runs, order: Sequence[int],
                   ranked: dict[int, np.ndarray]) -> dict[int, tuple[int, float]]:
    """Jobs in `order`; each takes the first of its `ranked` runs that fits the calendars so far,
    else the earliest start that avoids outages on any of its pools."""
    scn = problem.scn
    cals = {p.index: PoolCalendar(p.count) for p in problem.pools}
    out: dict[int, tuple[int, float]] = {}
    for j in order:
        job = scn.jobs[j]
        pick = None
        for i in ranked.get(j, ()):
            if cals[int(runs.pool[i])].fits(runs.start[i], runs.end[i], job.gpus):
                pick = (int(runs.option[i]), float(runs.start[i]))
                break
        if pick is None:
            best = None
            for oi, o in enumerate(problem.options[j]):
                start = _earliest_clear(cals[o.pool], job.gpus, o.duration, o.release, problem.outages[o.site])
                if start is not None and (best is None or start < best[1]):
                    best = (oi, start)
            if best is None:
                continue
            pick = best
        o = problem.options[j][pick[0]]
        cals[o.pool].add(pick[1], pick[1] + o.duration, job.gpus)
        out[j] = pick
    return out


def _cost_greedy(problem: Problem, runs: _Runs, cost: np.ndarray) -> dict[int, tuple[int, float]]:
    """Jobs in arrival order; each takes its cheapest candidate run that still fits."""
    jobs = problem.scn.jobs
    per_job = _job_runs(runs, len(jobs))
    ranked = {j: idx[np.argsort(cost[idx], kind="stable")] for j, idx in enumerate(per_job)}
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].submit_h, i))
    return _list_schedule(problem, runs, order, ranked)


def _lp_round(problem: Problem, runs: _Runs, cost: np.ndarray, xlp: np.ndarray,
              alpha: float) -> dict[int, tuple[int, float]]:
    """alpha-point rounding of the LP relaxation: jobs in the order of the start time by which
    the LP has started `alpha` of them; each takes its runs by LP weight, then by cost."""
    jobs = problem.scn.jobs
    per_job = _job_runs(runs, len(jobs))
    point = {}
    ranked = {}
    for j, idx in enumerate(per_job):
        w = np.clip(xlp[idx], 0.0, None)
        total = w.sum()
        if total > 1e-6:
            by_start = idx[np.argsort(runs.start[idx], kind="stable")]
            cum = np.cumsum(np.clip(xlp[by_start], 0.0, None))
            point[j] = float(runs.start[by_start[np.searchsorted(cum, alpha * total - 1e-12)]])
        else:
            point[j] = math.inf                        # the LP leaves it unfinished: last
        ranked[j] = idx[np.lexsort((cost[idx], -np.round(w, 6)))]
    order = sorted(range(len(jobs)), key=lambda i: (point[i], jobs[i].submit_h, i))
    return _list_schedule(problem, runs, order, ranked)


def _earliest_clear(cal: PoolCalendar, gpus: int, dur: float, t: float,
                    outages: list[tuple[float, float]]) -> float | None:
    """Earliest start >= t with the GPUs free for `dur` hours and no outage in the way."""
    while True:
        start = cal.earliest_fit(gpus, dur, t)
        if start is None:
            return None
        clash = [b for a, b in outages if start < b and start + dur > a]
        if not clash:
            return start
        t = max(clash)


def _fifo_plan(problem: Problem) -> dict[int, tuple[int, float]]:
    """fifo's rule with outages known ahead: jobs in arrival order, each at the pool where it
    can start earliest (then nearest, then scenario order); without outages this is exactly
    the schedule the `fifo` policy makes. Returns job index -> (option index, start)."""
    scn = problem.scn
    cals = {p.index: PoolCalendar(p.count) for p in problem.pools}
    site_order = {sid: k for k, sid in enumerate(problem.sites)}
    out: dict[int, tuple[int, float]] = {}
    for j in sorted(range(len(scn.jobs)), key=lambda i: (scn.jobs[i].submit_h, i)):
        job = scn.jobs[j]
        best = None
        for rank, o in enumerate(problem.options[j]):
            t = max(job.submit_h, o.release)
            start = _earliest_clear(cals[o.pool], job.gpus, o.duration, t, problem.outages[o.site])
            if start is None:
                continue
            key = (start, scn.path(job, o.site).latency_ms, site_order[o.site], rank)
            if best is None or key < best[0]:
                best = (key, rank, start)
        if best is None:
            continue
        _, rank, start = best
        o = problem.options[j][rank]
        cals[o.pool].add(start, start + o.duration, job.gpus)
        out[j] = (rank, start)
    return out


def _policy_runs(problem: Problem) -> dict[str, tuple[float, dict[int, tuple[int, float]] | None]]:
    """Each registered online policy run on the scenario: its accounted objective, and its
    schedule as a plan when every job it finished ran in one segment (None otherwise)."""
    from suanli.sim.engine import PolicyError, simulate  # the offline reference alone replays others

    scn = problem.scn
    which = [{(o.site, problem.pools[o.pool].gpu_type): oi for oi, o in enumerate(opts)} for opts in problem.options]
    out: dict[str, tuple[float, dict[int, tuple[int, float]] | None]] = {}
    for name in policies.names():
        policy = policies.make(name)
        if getattr(policy, "offline", False):
            continue
        try:
            result = simulate(scn, policy)
        except (PolicyError, UserError):
            continue
        violations, outcomes = validate(scn, result.segments)
        if violations:
            continue
        value = float(account(scn, result.segments, outcomes=outcomes).metrics["objective_cny"])
        plan: dict[int, tuple[int, float]] | None = {}
        for seg in result.segments:
            j = scn.job_index[seg.job_id]
            oi = which[j].get((seg.site, seg.gpu_type))
            if j in plan or oi is None or not math.isclose(seg.length_h, problem.options[j][oi].duration,
                                                                 rel_tol=1e-9, abs_tol=1e-9):
                plan = None
                break
            plan[j] = (oi, seg.start_h)
        out[name] = (value, plan)
    return out


def _plan_of(problem: Problem, picks: dict[int, tuple[int, float]]) -> dict[str, PlannedRun | None]:
    """job index -> (option, start) as job id -> PlannedRun (None: left unfinished)."""
    scn = problem.scn
    plan: dict[str, PlannedRun | None] = {}
    for j, job in enumerate(scn.jobs):
        if j not in picks:
            plan[job.id] = None
            continue
        oi, start = picks[j]
        o: Option = problem.options[j][oi]
        pool = problem.pools[o.pool]
        plan[job.id] = PlannedRun(o.site, pool.gpu_type, start, start + job.work_h / o.speed)
    return plan


def _plan_valid(problem: Problem, plan: dict[str, PlannedRun | None]) -> bool:
    """Exact re-check of a solver's plan (capacity on exact calendars, outages, data arrival)."""
    scn = problem.scn
    cals = {(p.site, p.gpu_type): PoolCalendar(p.count) for p in problem.pools}
    order = sorted(((r.start_h, jid) for jid, r in plan.items() if r is not None))
    for _, jid in order:
        r = plan[jid]
        job = scn.jobs[scn.job_index[jid]]
        if r.start_h < job.submit_h + scn.transfer_h(job, r.site) - TIME_TOL:
            return False
        if any(r.start_h < b and r.end_h > a for a, b in problem.outages[r.site]):
            return False
        cal = cals[(r.site, r.gpu_type)]
        if not cal.fits(r.start_h, r.end_h, job.gpus):
            return False
        cal.add(r.start_h, r.end_h, job.gpus)
    return True


def _accounted(scn: Scenario, plan: dict[str, PlannedRun | None]) -> float:
    segs = [Segment(jid, r.site, r.gpu_type, scn.jobs[scn.job_index[jid]].gpus, r.start_h, r.end_h)
            for jid, r in plan.items() if r is not None]
    return float(account(scn, segs).metrics["objective_cny"])
