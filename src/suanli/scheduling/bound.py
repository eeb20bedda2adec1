"""A proven lower bound on the objective (MODEL.md §6) of every valid schedule.

`lower_bound(scn)` solves, with HiGHS, the fluid linear relaxation of the scheduling problem:
a job's work may split across pools and hourly slots and run at any rate up to its gang size,
with no gang, contiguity or start-time rules, and the batteries dispatched optimally within
the physical limits of MODEL.md §4. Every valid schedule (MODEL.md §3) maps to a feasible
point of the LP whose LP objective is at most the schedule's true objective, so the LP optimum
never exceeds the objective of any valid schedule. docs/BOUNDS.md gives the proof step by step.

Two LPs are solved:
- `plain`: valid for every valid schedule (unfinished jobs and lateness priced as §6 prices
  them);
- `deadline`: valid for the schedules that finish every job by its deadline (and leave none
  unfinished); infeasible when no fluid schedule can, in which case no real one can either.

The module also holds the small pieces the offline `optimal` policy shares with the bound:
the sparse model builder over highspy, the (job, pool) options and the site energy block.
Units: hours, kWh, CNY, kg CO2e; x variables are GPU-hours.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from suanli.accounting import SiteSeries, resolve_series
from suanli.model.scenario import Scenario
from suanli.model.schedule import TIME_TOL
from suanli.model.series import Series

INF = math.inf
CAP_SLACK = 1e-5     # hours of capacity slack per slot: the validator lets segments overlap by TIME_TOL


# ============================================================================ problem data
@dataclass(frozen=True)
class Pool:
    index: int
    site: str
    site_index: int
    gpu_type: str
    count: int
    price: float          # CNY per GPU-hour
    power_kw: float       # per GPU


@dataclass(frozen=True)
class Option:
    """Job j on pool p: where it may run, how fast, from when."""

    pool: int
    site: str
    release: float        # submit_h + transfer_h(origin, site): no segment on the site starts earlier
    speed: float          # work per hour per GPU (class override, else the type's)
    duration: float       # work_h / speed: hours of one uninterrupted run
    transfer_cny: float


@dataclass
class Problem:
    scn: Scenario
    sites: list[str]
    pools: list[Pool]
    options: list[list[Option]]                   # per job, in scenario order
    outages: dict[str, list[tuple[float, float]]]  # per site, merged, sorted

    def free(self, site: str, lo: np.ndarray | float, hi: np.ndarray | float, shrink: float = 0.0) -> np.ndarray:
        """Measure of [lo, hi) outside the site's outages (each shrunk by `shrink` at both ends)."""
        lo = np.asarray(lo, dtype=float)
        hi = np.asarray(hi, dtype=float)
        m = np.clip(hi - lo, 0.0, None)
        for a, b in self.outages[site]:
            a, b = a + shrink, b - shrink
            if b > a:
                m = m - np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None)
        return np.clip(m, 0.0, None)


def build_problem(scn: Scenario) -> Problem:
    """Pools, and for each job the pools that could ever host it (as `StateView.candidate_pools`:
    reachable, rtt within max_rtt_ms, an allowed type, count >= gang size), with release times."""
    sites = list(scn.sites)
    pools: list[Pool] = []
    by_key: dict[tuple[str, str], int] = {}
    for k, (sid, site) in enumerate(scn.sites.items()):
        for g, pool in site.gpus.items():
            by_key[(sid, g)] = len(pools)
            pools.append(Pool(len(pools), sid, k, g, pool.count, pool.cny_per_gpu_h, scn.gpu_types[g].power_kw))
    options: list[list[Option]] = []
    for job in scn.jobs:
        allowed = set(scn.allowed_types(job))
        opts = []
        for sid, site in scn.sites.items():
            path = scn.path(job, sid)
            if path is None or not scn.latency_ok(job, sid):
                continue
            release = job.submit_h + path.transfer_h(job.data_gb)
            for g, pool in site.gpus.items():          # the scenario's order of pools (fifo's tie-break)
                if g not in allowed or pool.count < job.gpus:
                    continue
                speed = scn.speed(job, g)
                opts.append(Option(by_key[(sid, g)], sid, release, speed, job.work_h / speed,
                                   path.transfer_cny(job.data_gb)))
        options.append(opts)
    outages: dict[str, list[tuple[float, float]]] = {}
    for sid in sites:
        merged: list[list[float]] = []
        for a, b in scn.outages(sid):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        outages[sid] = [(a, b) for a, b in merged]
    return Problem(scn, sites, pools, options, outages)


def series_period(series) -> int:
    """Length of one period of an explicit (repeating) series; 1 for a computed one."""
    return len(series.values) if isinstance(series, Series) else 1


# ============================================================================ the sparse model
_BANNER_SILENCED = False


def new_highs():
    """A silent highspy.Highs (its first construction prints a banner on the C stdout)."""
    global _BANNER_SILENCED
    import highspy

    if _BANNER_SILENCED:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError):
            fd = None
        saved = None
        if fd is not None:
            saved = os.dup(fd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        try:
            h = highspy.Highs()
        finally:
            if saved is not None:
                os.dup2(saved, fd)
                os.close(saved)
        _BANNER_SILENCED = True
    h.setOptionValue("output_flag", False)
    return h


class ModelBuilder:
    """Columns and rows added in blocks (numpy arrays), passed to HiGHS in one piece."""

    def __init__(self) -> None:
        self._cost: list[np.ndarray] = []
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._rlo: list[np.ndarray] = []
        self._rhi: list[np.ndarray] = []
        self._er: list[np.ndarray] = []
        self._ec: list[np.ndarray] = []
        self._ev: list[np.ndarray] = []
        self.ncol = 0
        self.nrow = 0

    def cols(self, n: int, cost=0.0, lo=0.0, hi=INF, integer: bool = False) -> np.ndarray:
        idx = np.arange(self.ncol, self.ncol + n)
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (n,)).copy())
        self._lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (n,)).copy())
        self._hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (n,)).copy())
        self._int.append(np.full(n, integer))
        self.ncol += n
        return idx

    def col(self, cost=0.0, lo=0.0, hi=INF, integer: bool = False) -> int:
        return int(self.cols(1, cost, lo, hi, integer)[0])

    def rows(self, n: int, lo=-INF, hi=INF) -> np.ndarray:
        idx = np.arange(self.nrow, self.nrow + n)
        self._rlo.append(np.broadcast_to(np.asarray(lo, dtype=float), (n,)).copy())
        self._rhi.append(np.broadcast_to(np.asarray(hi, dtype=float), (n,)).copy())
        self.nrow += n
        return idx

    def row(self, lo=-INF, hi=INF) -> int:
        return int(self.rows(1, lo, hi)[0])

    def add(self, rows, cols, vals) -> None:
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        vals = np.broadcast_to(np.asarray(vals, dtype=float), rows.shape).ravel()
        if len(rows) != len(cols):
            raise ValueError("rows and cols differ in length")
        if len(rows):
            self._er.append(rows)
            self._ec.append(cols)
            self._ev.append(vals.copy())

    def arrays(self):
        def cat(parts, dt=float):
            return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

        r, c, v = cat(self._er, np.int64), cat(self._ec, np.int64), cat(self._ev)
        keep = v != 0.0
        r, c, v = r[keep], c[keep], v[keep]
        key = c * max(self.nrow, 1) + r
        order = np.argsort(key, kind="stable")
        key, r, c, v = key[order], r[order], c[order], v[order]
        if len(key):                                   # sum duplicate (row, col) entries
            first = np.r_[True, key[1:] != key[:-1]]
            starts = np.flatnonzero(first)
            v = np.add.reduceat(v, starts)
            r, c = r[starts], c[starts]
        start = np.zeros(self.ncol + 1, dtype=np.int64)
        np.cumsum(np.bincount(c, minlength=self.ncol), out=start[1:])
        return (cat(self._cost), cat(self._lo), cat(self._hi), cat(self._int, bool),
                cat(self._rlo), cat(self._rhi), start, r, v)

    @property
    def nonzeros(self) -> int:
        return int(sum(len(a) for a in self._er))

    def highs(self, options: dict | None = None):
        import highspy

        cost, lo, hi, integer, rlo, rhi, start, index, value = self.arrays()
        lp = highspy.HighsLp()
        lp.num_col_ = self.ncol
        lp.num_row_ = self.nrow
        lp.col_cost_ = cost
        lp.col_lower_ = lo
        lp.col_upper_ = hi
        lp.row_lower_ = rlo
        lp.row_upper_ = rhi
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = self.ncol
        lp.a_matrix_.num_row_ = self.nrow
        lp.a_matrix_.start_ = start.astype(np.int32)
        lp.a_matrix_.index_ = index.astype(np.int32)
        lp.a_matrix_.value_ = value
        if integer.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                               for b in integer]
        h = new_highs()
        for k, v in (options or {}).items():
            h.setOptionValue(k, v)
        h.passModel(lp)
        return h


# ============================================================================ site energy (§4)
@dataclass
class EnergyBlock:
    """Per site and slot t < T: used + discharge + grid = load, used + charge <= R_t,
    soc_t = soc_{t-1} + eta * charge - discharge in [0, capacity], charge and discharge
    <= power_kw, violation_c >= grid - max_grid_kw for each grid_cap active in t.
    `balance[k]` are the rows where the load enters with coefficient -pue * kWh."""

    balance: list[np.ndarray]
    grid: list[np.ndarray]
    used: list[np.ndarray]
    charge: list[np.ndarray | None]
    soc_end: list[int | None]
    violation: list[list[tuple[np.ndarray, np.ndarray]]]   # per site: (columns, slots) per cap
    series: dict[str, SiteSeries]

    def parts(self, problem: Problem, x: np.ndarray) -> dict[str, float]:
        scn = problem.scn
        o = scn.objective
        grid_cny = renew_cny = carbon_kg = viol = grid_kwh = 0.0
        for k, sid in enumerate(problem.sites):
            ser = self.series[sid]
            T = len(self.grid[k])
            g = x[self.grid[k]]
            grid_kwh += float(g.sum())
            grid_cny += float(g @ ser.cny_per_kwh[:T])
            carbon_kg += float(g @ ser.carbon_kg_per_kwh[:T])
            used = x[self.used[k]].sum() + (x[self.charge[k]].sum() if self.charge[k] is not None else 0.0)
            renew_cny += float(used) * scn.sites[sid].renewables.cny_per_kwh
            for cols, _ in self.violation[k]:
                viol += float(x[cols].sum())
        return {"energy_cny": grid_cny + renew_cny, "grid_kwh": grid_kwh, "carbon_kg": carbon_kg,
                "carbon_cny": o.carbon_cny_per_kg * carbon_kg, "dr_violation_kwh": viol,
                "dr_cny": o.dr_cny_per_kwh * viol}


def add_energy(b: ModelBuilder, problem: Problem, series: dict[str, SiteSeries], T: int) -> EnergyBlock:
    scn = problem.scn
    o = scn.objective
    out = EnergyBlock([], [], [], [], [], [], series)
    t_idx = np.arange(T)
    for sid in problem.sites:
        site = scn.sites[sid]
        ser = series[sid]
        rp = site.renewables.cny_per_kwh
        R = np.asarray(ser.renewable_kw[:T], dtype=float) * 1.0
        grid_cost = ser.cny_per_kwh[:T] + o.carbon_cny_per_kg * ser.carbon_kg_per_kwh[:T]
        bal = b.rows(T, 0.0, 0.0)
        used = b.cols(T, rp, 0.0, R)
        grid = b.cols(T, grid_cost, 0.0, INF)
        b.add(bal, used, 1.0)
        b.add(bal, grid, 1.0)
        bat = site.battery
        charge = None
        soc_end = None
        if bat is not None and bat.capacity_kwh > 0 and bat.power_kw > 0:
            charge = b.cols(T, rp, 0.0, bat.power_kw)
            dis = b.cols(T, 0.0, 0.0, bat.power_kw)
            soc = b.cols(T, 0.0, 0.0, bat.capacity_kwh)
            b.add(bal, dis, 1.0)
            ren = b.rows(T, -INF, R)                       # used + charge <= R_t
            b.add(ren, used, 1.0)
            b.add(ren, charge, 1.0)
            init = bat.initial_soc * bat.capacity_kwh      # soc_t - soc_{t-1} - eta*charge + dis = 0
            dyn = b.rows(T, np.r_[init, np.zeros(T - 1)], np.r_[init, np.zeros(T - 1)])
            b.add(dyn, soc, 1.0)
            b.add(dyn[1:], soc[:-1], -1.0)
            b.add(dyn, charge, -bat.efficiency)
            b.add(dyn, dis, 1.0)
            soc_end = int(soc[-1])
        viols = []
        for cap in scn.grid_caps(sid):
            active = t_idx[(t_idx >= cap.start_h) & (t_idx < cap.end_h)]
            if not len(active):
                continue
            v = b.cols(len(active), o.dr_cny_per_kwh, 0.0, INF)
            rows = b.rows(len(active), -cap.max_grid_kw * 1.0, INF)   # v - grid >= -cap
            b.add(rows, v, 1.0)
            b.add(rows, grid[active], -1.0)
            viols.append((v, active))
        out.balance.append(bal)
        out.grid.append(grid)
        out.used.append(used)
        out.charge.append(charge)
        out.soc_end.append(soc_end)
        out.violation.append(viols)
    return out


# ============================================================================ the bound
@dataclass(frozen=True)
class BoundPart:
    """One LP: its value (a lower bound, or None), status, the cost parts of its solution."""

    value: float | None
    status: str                   # optimal | infeasible | unbounded | time limit | ...
    parts: dict[str, float] = field(default_factory=dict)
    time_s: float = 0.0
    columns: int = 0
    rows: int = 0
    nonzeros: int = 0


@dataclass(frozen=True)
class Bound:
    plain: BoundPart              # every valid schedule
    deadline: BoundPart           # schedules that finish every job by its deadline
    slots: int                    # H: hourly slots modelled one by one (work after H: the tail)
    time_s: float

    @property
    def value(self) -> float | None:
        return self.plain.value

    @property
    def deadline_value(self) -> float | None:
        return self.deadline.value

    @property
    def status(self) -> str:
        return self.plain.status


def bound_slots(scn: Scenario, problem: Problem, extra_h: float) -> int:
    """H: slots 0..H-1 are modelled one by one; H covers the horizon, every event and every
    job's earliest release, plus `extra_h`."""
    ends = [scn.horizon_h] + [e.end_h for e in scn.events]
    ends += [min(o.release for o in opts) for opts in problem.options if opts]
    return max(1, math.ceil(max(ends) + extra_h - 1e-9))


def lower_bound(scn: Scenario, *, time_limit_s: float = 120.0, extra_h: float = 24.0,
                deadline_variant: bool = True, threads: int | None = None) -> Bound:
    """Both lower bounds of the scenario's objective (see the module docstring), with perfect
    information: the true work and series (MODEL.md §7)."""
    t0 = time.perf_counter()
    scn = scn.with_true_work()
    problem = build_problem(scn)
    H = bound_slots(scn, problem, extra_h)
    plain = _solve_bound(problem, H, deadlines=False, time_limit_s=time_limit_s, threads=threads)
    if deadline_variant:
        left = max(1.0, time_limit_s - (time.perf_counter() - t0))
        dl = _solve_bound(problem, H, deadlines=True, time_limit_s=left, threads=threads)
    else:
        dl = BoundPart(None, "not solved")
    return Bound(plain, dl, H, time.perf_counter() - t0)


def _tail_energy_price(problem: Problem, H: int) -> dict[str, float]:
    """e_min per site: no kWh of load at t >= H costs less. It is the renewable price (only if
    the site ever has renewables) or the least tariff plus carbon price times the least carbon
    factor. An explicit series repeats, so one whole period after H holds its least value; a
    computed one (a spec) is not known to the end of time, so its least value is taken as
    min(0, least value computed): valid as long as it never goes negative later."""
    scn = problem.scn
    period = max([series_period(getattr(s.grid, f)) for s in scn.sites.values()
                  for f in ("cny_per_kwh", "carbon_kg_per_kwh")]
                 + [series_period(s.renewables.kw) for s in scn.sites.values()] + [1])
    ser = resolve_series(scn, H + period)
    tail = slice(H, H + period)
    out = {}
    for sid, site in scn.sites.items():
        def least(series, values):
            low = float(np.min(values[tail]))
            return low if isinstance(series, Series) else min(0.0, float(np.min(values)))

        grid_min = least(site.grid.cny_per_kwh, ser[sid].cny_per_kwh) + \
            scn.objective.carbon_cny_per_kg * least(site.grid.carbon_kg_per_kwh, ser[sid].carbon_kg_per_kwh)
        kw = site.renewables.kw
        renewable = not isinstance(kw, Series) or float(np.max(ser[sid].renewable_kw[tail])) > 0
        out[sid] = min(site.renewables.cny_per_kwh, grid_min) if renewable else grid_min
    return out


def _solve_bound(problem: Problem, H: int, *, deadlines: bool, time_limit_s: float,
                 threads: int | None) -> BoundPart:
    t0 = time.perf_counter()
    scn = problem.scn
    obj = scn.objective
    jobs = scn.jobs
    if deadlines:
        if not all(problem.options):         # a job no pool can host can never meet its deadline
            return BoundPart(None, "infeasible", {}, time.perf_counter() - t0)
    series = resolve_series(scn, H)
    b = ModelBuilder()
    energy = add_energy(b, problem, series, H)
    slots = np.arange(H, dtype=float)
    # pool capacity rows: sum_j x[j,p,t] (+ waste) <= count * free measure of slot t
    cap_rows = []
    for pool in problem.pools:
        free = problem.free(pool.site, slots, slots + 1.0, shrink=TIME_TOL)
        cap_rows.append(b.rows(H, -INF, pool.count * (free + CAP_SLACK)))
    # waste (occupancy that does no kept work): useful only where energy can earn money
    for pool in problem.pools:
        ser = series[pool.site]
        net = ser.cny_per_kwh[:H] + obj.carbon_cny_per_kg * ser.carbon_kg_per_kwh[:H]
        if np.min(net) < 0:
            w = b.cols(H, pool.price, 0.0, INF)
            b.add(cap_rows[pool.index], w, 1.0)
            k = pool.site_index
            b.add(energy.balance[k], w, -scn.sites[pool.site].pue * pool.power_kw)
    e_min = _tail_energy_price(problem, H)
    tail_load: list[list[tuple[int, float]]] = [[] for _ in problem.sites]   # (column, kWh per GPU-h)

    gpu_cols: list[np.ndarray] = []
    gpu_price: list[np.ndarray] = []
    late_cols: list[np.ndarray] = []
    late_coef: list[np.ndarray] = []
    transfer_cols: list[tuple[int, float]] = []
    unfinished_cols: list[tuple[int, int]] = []     # (job index, column of its unfinished work)
    unfinishable = 0
    for j, job in enumerate(jobs):
        opts = problem.options[j]
        if not opts:
            unfinishable += 1                            # no pool can ever host it
            continue
        d = job.deadline_h
        g = job.gpus
        s_max = max(o.speed for o in opts)
        work_row = b.row(job.work_h - s_max * TIME_TOL, INF)
        if not deadlines:
            u = b.col(obj.unfinished_cny / job.work_h, 0.0, job.work_h)   # unfinished work, in work units
            b.add([work_row], [u], 1.0)
            unfinished_cols.append((j, u))
        r_min = min(o.release for o in opts)
        multi = len(opts) > 1
        if multi:                                    # the gang is one: sum over pools <= gpus per hour
            rate_lo = max(0, math.floor(r_min - TIME_TOL))
            ts = slots[rate_lo:]
            meas = np.clip(ts + 1.0 - np.maximum(ts, r_min - TIME_TOL), 0.0, 1.0)
            if deadlines and d is not None:
                meas = np.clip(np.minimum(ts + 1.0, d + TIME_TOL) - np.maximum(ts, r_min - TIME_TOL), 0.0, 1.0)
            rate_rows = b.rows(len(ts), -INF, g * (meas + CAP_SLACK))
        site_credit: dict[str, int] = {}
        tail_cols_job: list[int] = []
        for o in opts:
            pool = problem.pools[o.pool]
            pue = scn.sites[pool.site].pue
            k = pool.site_index
            if o.transfer_cny > 0:
                if o.site not in site_credit:         # v_jk <= work done at k; sum v + ... >= work
                    v = b.col(o.transfer_cny / job.work_h, 0.0, INF)
                    credit_row = b.row(-INF, 0.0)
                    b.add([credit_row], [v], 1.0)
                    b.add([work_row], [v], 1.0)
                    site_credit[o.site] = credit_row
                    transfer_cols.append((v, o.transfer_cny / job.work_h))
                wrow = site_credit[o.site]
                wsign = -1.0
            else:
                wrow, wsign = work_row, 1.0
            rel = o.release - TIME_TOL
            lo_t = max(0, math.floor(rel))
            if lo_t < H:
                ts = slots[lo_t:]
                t_idx = np.arange(lo_t, H)
                start = np.maximum(ts, rel)
                pieces = []       # (slot indices, measure, late?)
                if d is None:
                    pieces.append((t_idx, problem.free(o.site, start, ts + 1.0, TIME_TOL), False))
                elif deadlines:
                    pieces.append((t_idx, problem.free(o.site, start, np.minimum(ts + 1.0, d + TIME_TOL),
                                                       TIME_TOL), False))
                else:
                    pieces.append((t_idx, problem.free(o.site, start, np.minimum(ts + 1.0, d), TIME_TOL), False))
                    pieces.append((t_idx, problem.free(o.site, np.maximum(start, d), ts + 1.0, TIME_TOL), True))
                for t_sel, meas, late in pieces:
                    keep = meas > 1e-12
                    if not keep.any():
                        continue
                    t_sel, meas = t_sel[keep], meas[keep]
                    n = len(t_sel)
                    cost = pool.price + (obj.late_cny_per_gpu_h if late else 0.0)
                    x = b.cols(n, cost, 0.0, g * meas)
                    b.add(cap_rows[o.pool][t_sel], x, 1.0)
                    b.add(energy.balance[k][t_sel], x, -pue * pool.power_kw)
                    b.add(np.full(n, wrow), x, wsign * o.speed / g)
                    if multi:
                        b.add(rate_rows[t_sel - rate_lo], x, 1.0)
                    gpu_cols.append(x)
                    gpu_price.append(np.full(n, pool.price))
                    if late:
                        late_cols.append(x)
                        late_coef.append(np.full(n, obj.late_cny_per_gpu_h))
            # the tail [H, inf): unlimited time, energy at no less than e_min per kWh
            tail_hi = INF
            if deadlines and d is not None:
                tail_hi = g * max(0.0, d + TIME_TOL - H)
                if tail_hi <= 0:
                    continue
            late_here = (not deadlines) and d is not None and d <= H
            xt = b.col(pool.price + (obj.late_cny_per_gpu_h if late_here else 0.0), 0.0, tail_hi)
            b.add([wrow], [xt], wsign * o.speed / g)
            gpu_cols.append(np.array([xt]))
            gpu_price.append(np.array([pool.price]))
            if late_here:
                late_cols.append(np.array([xt]))
                late_coef.append(np.array([obj.late_cny_per_gpu_h]))
            tail_load[k].append((xt, pue * pool.power_kw))
            tail_cols_job.append(xt)
        if tail_cols_job and d is not None and d > H:
            if not deadlines:        # late GPU-hours >= tail GPU-hours - gpus * (d - H)
                lt = b.col(obj.late_cny_per_gpu_h, 0.0, INF)
                row = b.row(-g * (d - H), INF)
                b.add([row], [lt], 1.0)
                b.add(np.full(len(tail_cols_job), row), tail_cols_job, -1.0)
                late_cols.append(np.array([lt]))
                late_coef.append(np.array([obj.late_cny_per_gpu_h]))
            elif len(tail_cols_job) > 1:
                row = b.row(-INF, g * max(0.0, d + TIME_TOL - H))
                b.add(np.full(len(tail_cols_job), row), tail_cols_job, 1.0)
    for pool in problem.pools:                  # waste in the tail: only where a kWh may earn money there
        if e_min[pool.site] < 0:
            wt = b.col(pool.price, 0.0, INF)
            tail_load[pool.site_index].append((wt, scn.sites[pool.site].pue * pool.power_kw))
    tail_cols: list[int] = []
    for k, sid in enumerate(problem.sites):
        if not tail_load[k]:
            continue
        em = e_min[sid]
        tc = b.col(1.0, 0.0 if em >= 0 else -INF, INF)
        row = b.row(0.0, INF)        # tc - e_min * load_tail + max(e_min, 0) * soc_H >= 0
        b.add([row], [tc], 1.0)
        cols, kwh = zip(*tail_load[k], strict=True)
        b.add(np.full(len(cols), row), cols, -em * np.asarray(kwh))
        if em > 0 and energy.soc_end[k] is not None:
            b.add([row], [energy.soc_end[k]], em)
        tail_cols.append(tc)

    opts = {"time_limit": float(max(1.0, time_limit_s)), "solver": "simplex", "presolve": "on",
            "random_seed": 0}
    if threads:
        opts["threads"] = int(threads)
    h = b.highs(opts)
    h.run()
    import highspy

    unfinished_const = obj.unfinished_cny * unfinishable
    status = h.modelStatusToString(h.getModelStatus()).lower()
    ms = h.getModelStatus()
    info = h.getInfo()
    ncols, nrows, nnz = b.ncol, b.nrow, b.nonzeros
    wall = time.perf_counter() - t0
    if ms == highspy.HighsModelStatus.kInfeasible:
        return BoundPart(None, "infeasible", {}, wall, ncols, nrows, nnz)
    if ms in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        if ms == highspy.HighsModelStatus.kUnboundedOrInfeasible and deadlines:
            return BoundPart(None, "infeasible or unbounded", {}, wall, ncols, nrows, nnz)
        return BoundPart(-INF, "unbounded", {}, wall, ncols, nrows, nnz)
    if ms != highspy.HighsModelStatus.kOptimal:
        return BoundPart(None, status, {}, wall, ncols, nrows, nnz)
    x = np.asarray(h.getSolution().col_value)
    primal = float(info.objective_function_value) + unfinished_const
    # HiGHS stops at relative primal/dual infeasibilities <= 1e-7: step down by as much
    value = primal - 1e-7 * max(1.0, abs(primal))
    parts = energy.parts(problem, x)
    gc = np.concatenate(gpu_cols) if gpu_cols else np.zeros(0, dtype=np.int64)
    gp = np.concatenate(gpu_price) if gpu_price else np.zeros(0)
    lc = np.concatenate(late_cols) if late_cols else np.zeros(0, dtype=np.int64)
    lk = np.concatenate(late_coef) if late_coef else np.zeros(0)
    parts["gpu_cny"] = float(x[gc] @ gp)
    parts["gpu_h"] = float(x[gc].sum())
    parts["transfer_cny"] = float(sum(x[c] * w for c, w in transfer_cols))
    parts["late_cny"] = float(x[lc] @ lk)
    parts["late_gpu_h"] = parts["late_cny"] / obj.late_cny_per_gpu_h if obj.late_cny_per_gpu_h > 0 else 0.0
    unf = float(sum(x[u] / jobs[j].work_h for j, u in unfinished_cols)) + unfinishable
    parts["unfinished_jobs"] = unf
    parts["unfinished_cny"] = obj.unfinished_cny * unf
    parts["tail_energy_cny"] = float(sum(x[c] for c in tail_cols))
    parts["objective_cny"] = primal
    return BoundPart(value, status, parts, wall, ncols, nrows, nnz)
