"""GAIA's and Let's Wait Awhile's setups as suanli scenarios: one site, carbon only.

Two published studies of temporal carbon shifting, rebuilt from their public data (our code,
read from theirs, never copied):

- **GAIA** (Hanafy et al., ASPLOS '24, `umassos/GAIA`): 1,000 jobs sampled from the Alibaba PAI
  trace (`pai_1k.csv`: `arrival_time` and `length` in seconds, `cpus`), one carbon series
  (720 hours from a start index), an unbounded cluster, 1 W per core. Its simulator steps in
  5-second ticks (`TIME_FACTOR`), so arrival and length are floored to 5 s here too. A job
  shorter than 2 h (by its true length: the user picks the queue) may wait 6 h, the others
  24 h. GAIA's knowledge of a job's length is its queue's mean length (`queue_means`).
- **Let's Wait Awhile** (Wiesner et al., Middleware '21, `dos-group/lets-wait-awhile`): the
  "ML jobs" scenario: 3,387 jobs submitted on 2020's workdays between 09:00 and 17:00 on the
  half hour, each 4 h to 89.5 h long (30-minute steps), drawn with numpy's
  `default_rng(0)` in a fixed order (`lwa_ml_jobs` makes the same draws, so the same jobs);
  carbon at 30-minute resolution; results wanted by the next workday or the next Monday or
  Thursday (`uncertainty`'s `lwa-next-workday` and `lwa-mon-thu` rules). 1 W per job.

What maps to what (MODEL.md):
- a core (GAIA) or a job (LWA) is one GPU of the type `core`: speed 1, `POWER_KW` per GPU (their
  1 W scaled to 1 kW: savings are ratios, and suanli's prices then dwarf its small tie-breaking
  costs), one site with PUE 1 and more GPUs than all jobs together need, so no job ever waits
  for room, as in both simulators;
- the carbon series is the site's `grid.carbon_kg_per_kwh`, hourly (MODEL.md §2 has one-hour
  slots): GAIA's series is hourly already; LWA's 30-minute samples are averaged per hour;
- GPU rental and energy are free, carbon costs `CARBON_CNY_PER_KG`: the objective is carbon;
  a start past a job's window costs `WAIT_CNY_PER_GPU_H` per GPU-hour (a hard window in effect);
- the truth is `actual_work_h`, the policy's knowledge `work_h` (equal under exact information).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable, Sequence

import numpy as np

from suanli.traces.uncertainty import max_wait_h

GAIA_TICK_S = 5                  # GAIA's simulator step (TIME_FACTOR)
GAIA_SHORT_S = 7200              # its short queue: jobs under 2 h
GAIA_WAIT_H = (6.0, 24.0)        # the short and the long queue's waiting caps
GAIA_CARBON_OFFSET = 17544       # GAIA's loader skips this many rows of a carbon file first
POWER_KW = 1.0
CARBON_CNY_PER_KG = 100.0
WAIT_CNY_PER_GPU_H = 1000.0
SITE, CITY, GPU = "de-1", "de", "core"

LWA_YEAR_START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)   # their clock, read as local wall-clock time
LWA_STEP_MIN = 30


# ---------------------------------------------------------------- carbon series

def read_lwa_carbon(path: str, since: dt.datetime = LWA_YEAR_START) -> list[float]:
    """LWA's carbon file (`Time,Carbon Intensity`, gCO2/kWh every 15 minutes) as hourly means of the
    :00 and :30 samples (the 30-minute steps its simulator uses), from `since` to the file's end.
    The file's times are wall-clock times without a zone; they are read as `since`'s zone."""
    base = since.replace(tzinfo=None)
    sums: dict[int, list[float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            t = dt.datetime.fromisoformat(row["Time"])
            if t < base or t.minute % LWA_STEP_MIN:
                continue
            h = int((t - base).total_seconds() // 3600)
            sums.setdefault(h, []).append(float(row["Carbon Intensity"]))
    if not sums:
        raise ValueError(f"{path}: no carbon sample at or after {base}")
    n = max(sums) + 1
    missing = [h for h in range(n) if h not in sums]
    if missing:
        raise ValueError(f"{path}: no sample in hour {missing[0]} after {base}")
    return [sum(sums[h]) / len(sums[h]) for h in range(n)]


# ---------------------------------------------------------------- GAIA

def read_gaia_trace(path: str) -> list[tuple[float, float, int]]:
    """GAIA's job trace: (arrival s, length s, cpus) per row."""
    with open(path, newline="") as fh:
        return [(float(r["arrival_time"]), float(r["length"]), int(float(r["cpus"]))) for r in csv.DictReader(fh)]


def _ticks(seconds: float) -> int:
    return int(seconds / GAIA_TICK_S)


def queue_means(rows: Sequence[tuple[float, float, int]]) -> tuple[float, float]:
    """GAIA's knowledge: the mean length (h) of the short queue (up to 2 h) and of the long one
    (2 h and more), floored to its 5 s tick as its simulator does."""
    lengths = [ln / GAIA_TICK_S for _, ln, _ in rows]
    short_tick = GAIA_SHORT_S / GAIA_TICK_S
    shorts = [x for x in lengths if x <= short_tick]
    longs = [x for x in lengths if x >= short_tick]
    return tuple(int(sum(q) / len(q)) * GAIA_TICK_S / 3600.0 if q else 0.0 for q in (shorts, longs))


def gaia_jobs(rows: Sequence[tuple[float, float, int]], knowledge: str = "exact",
              checkpoint_h: float | None = None) -> list[dict]:
    """Scenario jobs for GAIA's trace. `knowledge`: `exact` (work_h is the true length) or
    `queue-mean` (work_h is the job's queue's mean length, the truth in actual_work_h). With
    `checkpoint_h`, jobs checkpoint that often; with exact knowledge they must also end by
    submit + window + length, the span GAIA's suspend-resume (Wait Awhile) may spread a job over.
    With queue-mean knowledge they get no deadline: one at submit + window + TRUE length would
    tell a policy the true length (deadline - submit - max_wait_h), which GAIA's knowledge does
    not include; the span is then the policy's to judge from its estimate (suanli: the window's
    wait spent in pauses, `Suanli._finish_by`)."""
    if knowledge not in ("exact", "queue-mean"):
        raise ValueError(f"knowledge must be exact or queue-mean, not {knowledge!r}")
    means = queue_means(rows)
    jobs = []
    for i, (arrival, length, cpus) in enumerate(rows):
        submit_h = _ticks(arrival) * GAIA_TICK_S / 3600.0
        ticks = _ticks(length)
        if ticks <= 0:
            continue                      # GAIA drops jobs of no length
        true_h = ticks * GAIA_TICK_S / 3600.0
        short = ticks < GAIA_SHORT_S / GAIA_TICK_S
        job = {"id": f"g-{i:04d}", "submit_h": submit_h, "gpus": cpus, "work_h": true_h, "origin": CITY,
               "max_wait_h": GAIA_WAIT_H[0] if short else GAIA_WAIT_H[1]}
        if knowledge == "queue-mean":
            job["work_h"] = means[0] if short else means[1]
            job["actual_work_h"] = true_h
            job["class"] = "short" if short else "long"     # the queue: what the predictor may learn by
        if checkpoint_h is not None:
            job["checkpoint_h"] = checkpoint_h
            if knowledge == "exact":
                job["deadline_h"] = submit_h + job["max_wait_h"] + true_h
        jobs.append(job)
    return jobs


# ---------------------------------------------------------------- Let's Wait Awhile

def lwa_ml_jobs(n: int = 3387, seed: int = 0, year: int = 2020, min_duration_min: int = 4 * 60,
                max_duration_min: int = 90 * 60, day_start_min: int = 9 * 60,
                day_end_min: int = 17 * 60) -> list[tuple[int, int]]:
    """LWA's ML jobs: (submission, duration) in minutes from `year`'s 1 January 00:00.

    The draws, in LWA's order so that the same seed gives the same jobs: how many jobs each
    workday gets (one multinomial over the year's Monday-Friday dates, uniform); then, for every
    date of the year in turn (weekend dates drawing none), that day's submission times, uniform
    over the half hours in [day_start, day_end), sorted; then all durations, uniform over the
    half-hour steps in [min_duration, max_duration)."""
    rng = np.random.default_rng(seed)
    first = dt.date(year, 1, 1)
    days = [first + dt.timedelta(days=k) for k in range((dt.date(year + 1, 1, 1) - first).days)]
    workdays = [d for d in days if d.weekday() <= 4]
    per_day = dict(zip(workdays, rng.multinomial(n, [1 / len(workdays)] * len(workdays)).tolist(), strict=True))
    times = np.arange(day_start_min, day_end_min, LWA_STEP_MIN)
    submits: list[int] = []
    for d in days:
        for m in np.sort(rng.choice(times, size=per_day.get(d, 0))).tolist():
            submits.append((d - first).days * 1440 + int(m))
    durations = rng.choice(np.arange(min_duration_min, max_duration_min, LWA_STEP_MIN), size=n).tolist()
    return list(zip(submits, (int(x) for x in durations), strict=True))


LWA_CODE_SLACK_H = 0.5     # see `lwa_jobs`


def lwa_jobs(ml: Iterable[tuple[int, int]], rule: str | None, start: dt.datetime = LWA_YEAR_START,
             checkpoint_h: float | None = None, slack_h: float = 0.0) -> list[dict]:
    """Scenario jobs for LWA's ML jobs, each with the window `rule` gives it (`lwa-next-workday`,
    `lwa-mon-thu`, or any rule of `uncertainty.RULES`; None: no window, the baseline's view),
    plus `slack_h`. LWA's simulator lets a run start one 30-minute step later than its rule says
    (`LWA_CODE_SLACK_H`: it picks among the windows of a forecast that ends, inclusive, at the
    time the results are wanted, so its last window ends one step after that time); pass that
    to reproduce its code rather than its paper. With `checkpoint_h`, jobs checkpoint that often
    and must end by submit + window + length, as LWA's interrupting strategy does."""
    jobs = []
    for i, (submit_min, duration_min) in enumerate(ml):
        submit_h, work_h = submit_min / 60.0, duration_min / 60.0
        job = {"id": f"ml-{i:04d}", "submit_h": submit_h, "gpus": 1, "work_h": work_h, "origin": CITY}
        if rule is not None:
            job["max_wait_h"] = max_wait_h(rule, submit_h, work_h, start) + slack_h
        if checkpoint_h is not None:
            job["checkpoint_h"] = checkpoint_h
            job["deadline_h"] = submit_h + job.get("max_wait_h", 0.0) + work_h
        jobs.append(job)
    return jobs


# ---------------------------------------------------------------- the scenario

def carbon_only_scenario(name: str, start: dt.datetime, carbon_g_per_kwh: Sequence[float], jobs: list[dict],
                         horizon_h: float, description: str = "") -> dict:
    """A one-site scenario (MODEL.md §1) whose objective is the jobs' grid carbon: the site has
    GPUs for every job at once, free rental and energy, and the hourly `carbon_g_per_kwh`."""
    if not jobs:
        raise ValueError("no jobs")
    count = sum(int(j["gpus"]) for j in jobs)
    classes = {j["class"] for j in jobs if "class" in j}
    doc = {
        "name": name,
        "description": description,
        "start": start.isoformat(),
        "horizon_h": horizon_h,
        "gpu_types": {GPU: {"power_kw": POWER_KW, "speed": 1.0}},
        "cities": {CITY: {"lat": 51.2, "lon": 10.4}},
        "links": [],
        "sites": [{"id": SITE, "city": CITY, "pue": 1.0,
                   "gpus": {GPU: {"count": count, "cny_per_gpu_h": 0.0}},
                   "grid": {"carbon_kg_per_kwh": [round(g / 1000.0, 9) for g in carbon_g_per_kwh],
                            "cny_per_kwh": 0.0}}],
        "jobs": jobs,
        "objective": {"carbon_cny_per_kg": CARBON_CNY_PER_KG, "late_cny_per_gpu_h": WAIT_CNY_PER_GPU_H,
                      "unfinished_cny": 1e7, "wait_cny_per_gpu_h": WAIT_CNY_PER_GPU_H},
    }
    if classes:
        doc["job_classes"] = {c: {GPU: 1.0} for c in sorted(classes)}
    if not math.isfinite(horizon_h) or horizon_h <= 0:
        raise ValueError(f"horizon_h must be positive, not {horizon_h}")
    return doc
