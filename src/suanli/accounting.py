"""Schedule validation and every metric of MODEL.md §3–§6, in one place.

The simulator's outputs, the service's metering and the benchmarks all call this module;
nothing else computes cost, energy or carbon. Units: hours, kWh, CNY, kg CO2e.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from suanli.energy.balance import Balance, BatterySpec, balance
from suanli.energy.carbon import province_factor
from suanli.model.scenario import Scenario
from suanli.model.schedule import TIME_TOL, Segment, kept_work

RULES = {
    "3.0": "well-formed segment",
    "3.1": "gpus, GPU type and pool",
    "3.2": "a job's segments overlap",
    "3.3": "data arrival",
    "3.4": "pool capacity",
    "3.5": "latency",
    "3.6": "outage",
    "3.7": "progress",
}

METRIC_KEYS = (
    "gpu_cost_cny", "transfer_cost_cny", "energy_cost_cny", "total_cost_cny", "energy_kwh",
    "grid_kwh", "renewable_used_kwh", "curtailed_kwh", "carbon_kg", "dr_violation_kwh",
    "jobs_total", "jobs_finished", "jobs_unfinished", "late_gpu_h", "deadline_misses",
    "mean_jct_h", "p95_jct_h", "gpu_utilization", "objective_cny", "wait_excess_gpu_h",
)
CARBON_KEYS = (          # extra metrics.json keys: `origin_carbon` says what each means
    "carbon_location_based_kg", "carbon_origin_grid_kg", "carbon_avoided_vs_origin_kg", "carbon_origin_unknown_jobs",
)


@dataclass(frozen=True)
class Violation:
    rule: str
    job_id: str | None
    message: str

    def __str__(self) -> str:
        job = f"job {self.job_id}: " if self.job_id is not None else ""
        return f"rule {self.rule} ({RULES[self.rule]}): {job}{self.message}"


@dataclass(frozen=True)
class JobOutcome:
    finished: bool
    completion_h: float | None     # end of the last segment of a finished job
    kept_work: float               # reference-GPU hours of work kept by its segments
    first_start_h: float | None = None   # S_j: start of its earliest segment (None: never ran)


@dataclass(frozen=True)
class SiteSeries:
    """A site's series resolved for slots 0 .. T-1."""

    renewable_kw: np.ndarray
    carbon_kg_per_kwh: np.ndarray
    cny_per_kwh: np.ndarray


@dataclass
class Accounts:
    metrics: dict[str, float]
    slots: int                                   # T
    outcomes: dict[str, JobOutcome]
    balances: dict[str, Balance]                 # per site, per slot
    series: dict[str, SiteSeries]
    site_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    carbon: dict[str, float] = field(default_factory=dict)   # CARBON_KEYS: beside METRIC_KEYS


# ----------------------------------------------------------------------------- validity (§3)
def validate(scn: Scenario, segments: Sequence[Segment]) -> tuple[list[Violation], dict[str, JobOutcome]]:
    """Check every rule of §3. Returns the violations and each job's outcome (rule 7)."""
    out: list[Violation] = []
    by_job: dict[str, list[Segment]] = defaultdict(list)
    by_pool: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    for seg in segments:
        if not seg.end_h > seg.start_h:
            out.append(Violation("3.0", seg.job_id, f"end_h {seg.end_h} is not after start_h {seg.start_h}"))
            continue
        if seg.job_id not in scn.job_index:
            out.append(Violation("3.0", seg.job_id, "unknown job id"))
            continue
        site = scn.sites.get(seg.site)
        if site is None:
            out.append(Violation("3.1", seg.job_id, f"unknown site {seg.site!r}"))
            continue
        if seg.gpu_type not in site.gpus:
            out.append(Violation("3.1", seg.job_id, f"site {seg.site} has no {seg.gpu_type!r} pool"))
            continue
        by_job[seg.job_id].append(seg)
        by_pool[(seg.site, seg.gpu_type)].append(seg)

    for (sid, g), segs in by_pool.items():
        out.extend(_capacity_violations(sid, g, scn.sites[sid].gpus[g].count, segs))
    for sid in scn.sites:
        for a, b in scn.outages(sid):
            for seg in _site_segments(by_pool, sid):
                if seg.start_h < b - TIME_TOL and seg.end_h > a + TIME_TOL:
                    out.append(Violation("3.6", seg.job_id, f"segment [{seg.start_h:.6f}, {seg.end_h:.6f}) on "
                                                            f"{sid} overlaps outage [{a}, {b})"))

    outcomes: dict[str, JobOutcome] = {}
    for job in scn.jobs:
        segs = sorted(by_job.get(job.id, ()), key=lambda s: (s.start_h, s.end_h))
        allowed = set(scn.allowed_types(job))
        hosted: set[str] = set()
        prev_end: float | None = None
        latest_end = -math.inf          # a segment may overlap any earlier one, not just the last
        kept = 0.0
        completion = None
        for pos, seg in enumerate(segs):
            at = f"segment at {seg.start_h:.6f} on {seg.site}"
            if seg.gpus != job.gpus:
                out.append(Violation("3.1", job.id, f"{at}: gpus {seg.gpus} != the job's {job.gpus}"))
            if seg.gpu_type not in allowed:
                out.append(Violation("3.1", job.id, f"{at}: GPU type {seg.gpu_type} is not allowed"))
            if seg.start_h < latest_end - TIME_TOL:
                out.append(Violation("3.2", job.id, f"{at} starts before an earlier one ends ({latest_end:.6f})"))
            if seg.site not in hosted:
                depart = job.submit_h if pos == 0 else prev_end
                path = scn.path(job, seg.site)
                if path is None:
                    out.append(Violation("3.3", job.id, f"{at}: site unreachable from {job.origin}"))
                else:
                    arrive = depart + path.transfer_h(job.data_gb)
                    if seg.start_h < arrive - TIME_TOL:
                        out.append(Violation("3.3", job.id, f"{at}: data arrives only at {arrive:.6f}"))
            if not scn.latency_ok(job, seg.site):
                out.append(Violation("3.5", job.id, f"{at}: rtt {scn.rtt_ms(job, seg.site):.3f} ms > "
                                                    f"max_rtt_ms {job.max_rtt_ms}"))
            hosted.add(seg.site)
            prev_end = seg.end_h
            latest_end = max(latest_end, seg.end_h)
            speed = scn.speed(job, seg.gpu_type)
            if pos < len(segs) - 1:
                kept += kept_work(seg.length_h, speed, job.checkpoint_h)
                continue
            work = job.true_work_h                      # W_j: actual_work_h if given, else work_h
            need = (work - kept) / speed                # hours the last segment must run
            if seg.length_h > need + TIME_TOL:
                field = "actual_work_h" if job.actual_work_h is not None else "work_h"
                out.append(Violation("3.7", job.id, f"{at}: runs {seg.length_h:.6f} h but {max(need, 0):.6f} h "
                                                    f"completes {field}={work}"))
            if seg.length_h >= need - TIME_TOL:
                completion = seg.end_h
            kept += seg.length_h * speed
        outcomes[job.id] = JobOutcome(completion is not None, completion, kept,
                                      segs[0].start_h if segs else None)
    return out, outcomes


def _site_segments(by_pool: dict[tuple[str, str], list[Segment]], site: str):
    for (sid, _), segs in by_pool.items():
        if sid == site:
            yield from segs


def _capacity_violations(site: str, gpu_type: str, count: int, segs: list[Segment]) -> list[Violation]:
    """Rule 4 by an exact sweep: at equal instants ends (shifted by the tolerance) come first."""
    starts = np.array([s.start_h for s in segs])
    ends = np.array([s.end_h for s in segs]) - TIME_TOL
    gpus = np.array([s.gpus for s in segs])
    keep = ends > starts
    if not keep.any():
        return []
    starts, ends, gpus = starts[keep], ends[keep], gpus[keep]
    times = np.concatenate([starts, ends])
    delta = np.concatenate([gpus, -gpus])
    is_start = np.concatenate([np.ones(len(starts)), np.zeros(len(ends))])
    order = np.lexsort((is_start, times))
    usage = np.cumsum(delta[order])
    over = usage > count
    if not over.any():
        return []
    first = np.flatnonzero(over & ~np.r_[False, over[:-1]])
    kept_segs = [s for s, k in zip(segs, keep, strict=True) if k]
    out = []
    for r in first:
        tau = times[order][r]
        jobs = sorted({s.job_id for s, a, b in zip(kept_segs, starts, ends, strict=True) if a <= tau < b})
        out.append(Violation("3.4", jobs[0] if jobs else None,
                             f"pool {site}/{gpu_type} at t={tau:.6f}: {int(usage[r])} GPUs > count {count} "
                             f"(jobs {', '.join(jobs[:6])}{' ...' if len(jobs) > 6 else ''})"))
    return out


# ----------------------------------------------------------------------------- energy (§4)
def slot_count(scn: Scenario, segments: Sequence[Segment]) -> int:
    """T = max(ceil(horizon_h), ceil(latest segment end)): one T for every site."""
    last = max((s.end_h for s in segments), default=0.0)
    return max(math.ceil(scn.horizon_h), math.ceil(last))


def resolve_series(scn: Scenario, slots: int) -> dict[str, SiteSeries]:
    """Each site's renewable, carbon and tariff series for slots 0 .. slots-1.

    Explicit series repeat cyclically; specs were resolved when the scenario was loaded
    (`suanli.energy.resolve`) and compute as many slots as asked for.
    """
    out = {}
    for i, (sid, site) in enumerate(scn.sites.items()):
        renew = scn.explicit(site.renewables.kw, f"sites[{i}].renewables.kw")
        carbon = scn.explicit(site.grid.carbon_kg_per_kwh, f"sites[{i}].grid.carbon_kg_per_kwh")
        tariff = scn.explicit(site.grid.cny_per_kwh, f"sites[{i}].grid.cny_per_kwh")
        out[sid] = SiteSeries(renew.array(slots), carbon.array(slots), tariff.array(slots))
    return out


@dataclass(frozen=True)
class SlotPieces:
    """Every segment cut at slot boundaries: one entry per (segment, slot) it overlaps."""

    site: np.ndarray        # site index, in the scenario's order
    job: np.ndarray         # job index in scn.jobs, -1 for an unknown job id
    slot: np.ndarray
    it_kwh: np.ndarray      # overlap (h) * gpus * power_kw


def slot_pieces(scn: Scenario, segments: Sequence[Segment], slots: int) -> SlotPieces:
    site_ix = {sid: k for k, sid in enumerate(scn.sites)}
    rows = [(site_ix[s.site], scn.job_index.get(s.job_id, -1), s.start_h, s.end_h,
             s.gpus * scn.gpu_types[s.gpu_type].power_kw)
            for s in segments if s.site in site_ix and s.gpu_type in scn.gpu_types and s.end_h > s.start_h]
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return SlotPieces(empty, empty, empty, np.zeros(0))
    k, j, start, end, kw = (np.array(c) for c in zip(*rows, strict=True))
    first = np.floor(start).astype(np.int64)
    n = np.maximum(np.ceil(end).astype(np.int64) - first, 1)
    seg = np.repeat(np.arange(len(rows)), n)
    slot = first[seg] + (np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n))
    overlap = np.minimum(end[seg], slot + 1.0) - np.maximum(start[seg], slot)
    ok = (overlap > 0) & (slot >= 0) & (slot < slots)
    return SlotPieces(k[seg][ok], j[seg][ok].astype(np.int64), slot[ok], (overlap * kw[seg])[ok])


def it_energy(scn: Scenario, segments: Sequence[Segment], slots: int) -> dict[str, np.ndarray]:
    """IT energy per site per slot, kWh: Σ overlap([s, e), [t, t+1)) * gpus * power_kw."""
    pieces = slot_pieces(scn, segments, slots)
    energy = np.bincount(pieces.site * slots + pieces.slot, weights=pieces.it_kwh, minlength=len(scn.sites) * slots)
    return {sid: energy[k * slots:(k + 1) * slots] for k, sid in enumerate(scn.sites)}


def origin_carbon(scn: Scenario, segments: Sequence[Segment], slots: int, balances: dict[str, Balance],
                  series: dict[str, SiteSeries]) -> dict[str, float]:
    """The carbon metrics beside MODEL.md's `carbon_kg`, on two bases kept apart (docs/ENERGY.md).

    - `carbon_location_based_kg`: MODEL.md §4's figure (grid energy * the site grid's factor).
    - `carbon_origin_grid_kg`: each job's load (pue included, as it ran) at the 2023 factor of
      its origin city's province, all from that grid: what it would have emitted at home.
    - `carbon_avoided_vs_origin_kg`: that, less the job's share of the location-based carbon of
      the sites it ran on (a site's slot carbon split by the jobs' IT energy in the slot).
      Negative when running away from the origin emitted more.
    - `carbon_origin_unknown_jobs`: jobs that ran but whose origin city names no `province`;
      they are left out of the two origin figures.
    """
    pieces = slot_pieces(scn, segments, slots)
    sites = list(scn.sites)
    total = np.bincount(pieces.site * slots + pieces.slot, weights=pieces.it_kwh,
                        minlength=len(sites) * slots).reshape(len(sites), slots)
    slot_carbon = np.array([balances[sid].grid * series[sid].carbon_kg_per_kwh for sid in sites]
                           ).reshape(len(sites), slots)
    pue = np.array([scn.sites[sid].pue for sid in sites])
    factor = np.full(len(scn.jobs) + 1, np.nan)          # index -1: unknown job id
    for ix, job in enumerate(scn.jobs):
        province = scn.provinces.get(job.origin)
        if province is not None:
            factor[ix] = province_factor(province)
    energy = total[pieces.site, pieces.slot]
    share = np.divide(pieces.it_kwh, energy, out=np.zeros_like(pieces.it_kwh), where=energy > 0)
    actual = share * slot_carbon[pieces.site, pieces.slot]
    at_origin = pue[pieces.site] * pieces.it_kwh * factor[pieces.job]
    known = ~np.isnan(at_origin)
    unknown_jobs = {int(j) for j in pieces.job[~known] if j >= 0}
    origin_kg = float(at_origin[known].sum())
    return {
        "carbon_location_based_kg": sum(float(np.sum(row)) for row in slot_carbon),   # = carbon_kg, bit for bit
        "carbon_origin_grid_kg": origin_kg,
        "carbon_avoided_vs_origin_kg": origin_kg - float(actual[known].sum()),
        "carbon_origin_unknown_jobs": len(unknown_jobs),
    }


def battery_of(scn: Scenario, site: str) -> BatterySpec | None:
    b = scn.sites[site].battery
    if b is None:
        return None
    return BatterySpec(b.capacity_kwh, b.power_kw, b.efficiency, b.initial_soc)


def grid_cap_violation(scn: Scenario, site: str, grid: np.ndarray) -> np.ndarray:
    """kWh per slot above active grid caps; overlapping caps each add their own violation."""
    t = np.arange(len(grid))
    out = np.zeros(len(grid))
    for cap in scn.grid_caps(site):
        active = (t >= cap.start_h) & (t < cap.end_h)
        out += np.where(active, np.maximum(0.0, grid - cap.max_grid_kw * 1.0), 0.0)
    return out


# ----------------------------------------------------------------------------- metrics (§6)
def nearest_rank(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


def account(scn: Scenario, segments: Sequence[Segment], series: dict[str, SiteSeries] | None = None,
            outcomes: dict[str, JobOutcome] | None = None) -> Accounts:
    """Every metric of §6 for a schedule (valid or not; validity is `validate`'s job)."""
    T = slot_count(scn, segments)
    series = series or resolve_series(scn, T)
    if outcomes is None:
        outcomes = validate(scn, segments)[1]
    energy = it_energy(scn, segments, T)
    m: dict[str, float] = dict.fromkeys(
        ("energy_kwh", "grid_kwh", "renewable_used_kwh", "curtailed_kwh", "carbon_kg", "dr_violation_kwh",
         "energy_cost_cny"), 0.0)
    balances: dict[str, Balance] = {}
    site_m: dict[str, dict[str, float]] = {}
    for sid, site in scn.sites.items():
        ser = series[sid]
        bal = balance(site.pue * energy[sid], ser.renewable_kw * 1.0, battery_of(scn, sid))
        balances[sid] = bal
        cost = float(np.sum(bal.grid * ser.cny_per_kwh + (bal.used + bal.charge) * site.renewables.cny_per_kwh))
        per = {
            "energy_kwh": float(bal.load.sum()), "grid_kwh": float(bal.grid.sum()),
            "renewable_used_kwh": float(bal.used.sum()), "curtailed_kwh": float(bal.curtailed.sum()),
            "carbon_kg": float(np.sum(bal.grid * ser.carbon_kg_per_kwh)),
            "dr_violation_kwh": float(grid_cap_violation(scn, sid, bal.grid).sum()), "energy_cost_cny": cost,
        }
        for key, v in per.items():
            m[key] += v
        site_m[sid] = per

    gpu_cost = transfer = 0.0
    pairs: set[tuple[str, str]] = set()
    used_in_horizon: dict[str, float] = defaultdict(float)
    for s in segments:
        site = scn.sites.get(s.site)
        if site is None or s.gpu_type not in site.gpus or not s.end_h > s.start_h:
            continue
        gpu_cost += s.length_h * s.gpus * site.gpus[s.gpu_type].cny_per_gpu_h
        used_in_horizon[s.site] += max(0.0, min(s.end_h, scn.horizon_h) - max(s.start_h, 0.0)) * s.gpus
        pairs.add((s.job_id, s.site))
    for jid, sid in sorted(pairs):      # sorted: a float sum in set order would vary with PYTHONHASHSEED
        ix = scn.job_index.get(jid)
        if ix is not None:
            c = scn.transfer_cny(scn.jobs[ix], sid)
            transfer += c if math.isfinite(c) else 0.0
    m["gpu_cost_cny"] = gpu_cost
    m["transfer_cost_cny"] = transfer
    m["total_cost_cny"] = gpu_cost + transfer + m["energy_cost_cny"]

    jct: list[float] = []
    late = wait_excess = 0.0
    misses = 0
    for job in scn.jobs:
        o = outcomes.get(job.id)
        if o is None or not o.finished:
            continue
        jct.append(o.completion_h - job.submit_h)
        if job.deadline_h is not None:
            late += job.gpus * max(0.0, o.completion_h - job.deadline_h)
            misses += o.completion_h > job.deadline_h + TIME_TOL
        if job.max_wait_h is not None:        # §3: a first start after submit_h + max_wait_h
            wait_excess += job.gpus * max(0.0, o.first_start_h - job.submit_h - job.max_wait_h)
    m["jobs_total"] = len(scn.jobs)
    m["jobs_finished"] = len(jct)
    m["jobs_unfinished"] = len(scn.jobs) - len(jct)
    m["late_gpu_h"] = late
    m["deadline_misses"] = misses
    m["mean_jct_h"] = sum(jct) / len(jct) if jct else 0.0
    m["p95_jct_h"] = nearest_rank(jct, 95)
    capacity = {sid: sum(p.count for p in s.gpus.values()) * scn.horizon_h for sid, s in scn.sites.items()}
    total_cap = sum(capacity.values())
    m["gpu_utilization"] = sum(used_in_horizon.values()) / total_cap if total_cap > 0 else 0.0
    for sid in scn.sites:
        site_m[sid]["gpu_utilization"] = used_in_horizon[sid] / capacity[sid] if capacity[sid] > 0 else 0.0
    o = scn.objective
    m["objective_cny"] = (m["total_cost_cny"] + o.carbon_cny_per_kg * m["carbon_kg"]
                          + o.late_cny_per_gpu_h * late + o.unfinished_cny * m["jobs_unfinished"]
                          + o.dr_cny_per_kwh * m["dr_violation_kwh"]
                          + o.wait_cny_per_gpu_h * wait_excess)
    m["wait_excess_gpu_h"] = wait_excess
    ordered = {k: m[k] for k in METRIC_KEYS}
    carbon = origin_carbon(scn, segments, T, balances, series)
    return Accounts(ordered, T, outcomes, balances, series, site_m, carbon)
