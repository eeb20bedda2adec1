"""Estimates, true work and flexibility windows for generated and imported jobs (MODEL.md §1, §7).

**Estimates.** Where a trace or generator knows only how long a job really ran, the user's
estimate is drawn as the true work times a log-normal error (the model of `--work-noise` in
docs/TRACES.md): estimate = true × exp(bias + σ·Z), Z ~ N(0, 1). With bias 0 the estimate is
median-unbiased; users who pad their requests (the common case in HPC traces, e.g. Tsafrir et
al. 2007) have bias > 0, optimists bias < 0. `work_h` is then the estimate and `actual_work_h`
the truth.

**Flexibility windows** (`max_wait_h`: the first start by submit_h + max_wait_h), by rule:
- `gaia`: as in GAIA (Hanafy et al. 2023): jobs estimated under 2 h may wait up to 6 h, the
  others up to 24 h.
- `next-workday`: as in Let's Wait Awhile (Wiesner et al. 2021), results are wanted by the start
  of the next workday: the job may start as late as 09:00 local time of the next Monday–Friday
  after its submission, less its estimated work (never below 0).
- `mon-thu`: LWA's twice-weekly jobs: by 09:00 of the next Monday or Thursday, less the
  estimated work (never below 0).
- `lwa-next-workday` and `lwa-mon-thu`: the same two rules exactly as Let's Wait Awhile's
  simulator applies them (its `AdHocStrategy._forecast_duration`, read, not copied), to reproduce
  its ML-jobs scenario. They are keyed on the job's *original finish* F = submission + estimated
  work, and give the time from F to the moment the results are wanted:
  - `lwa-next-workday`: F on a Saturday: Monday 09:00; F on a Sunday or after 17:00: the next
    day's 09:00 (so a Friday evening is wanted by Saturday 09:00, as LWA's code has it); F before
    09:00: 09:00 that day; F within 09:00-17:00 on a weekday: no window (0).
  - `lwa-mon-thu`: F after 09:00 on a Monday, on a Tuesday or Wednesday, or by 09:00 on a
    Thursday: that week's Thursday 09:00; otherwise (after 09:00 on a Thursday, Friday to Sunday,
    or by 09:00 on a Monday): the next Monday 09:00, which is F's own day at 09:00 for a Monday.
  "09:00 exactly" counts as by 09:00, "17:00 exactly" as within working hours.
The calendar rules need the wall-clock time of hour 0 (the scenario's `start`, with its UTC
offset: local time is the offset's).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

RULES = ("gaia", "next-workday", "mon-thu", "lwa-next-workday", "lwa-mon-thu")
WORKDAY_START_H = 9.0       # the calendar rules' deadline: 09:00 local time
WORKDAY_END_H = 17.0        # LWA's end of the working day (lwa-next-workday)


def estimates(true_work_h: np.ndarray, sigma: float, rng: np.random.Generator, bias: float = 0.0) -> np.ndarray:
    """The users' estimates of jobs that really need `true_work_h`: true × exp(bias + σ·Z)."""
    true_work_h = np.asarray(true_work_h, dtype=float)
    if sigma <= 0 and bias == 0:
        return true_work_h.copy()
    return true_work_h * np.exp(bias + sigma * rng.standard_normal(len(true_work_h)))


def _next_at(start: dt.datetime, submit_h: float, weekdays: tuple[int, ...]) -> float:
    """Hours from hour 0 to the first 09:00 local on one of `weekdays` (Monday = 0) strictly
    after the submission."""
    at = start + dt.timedelta(hours=submit_h)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    for k in range(0, 9):
        t = day + dt.timedelta(days=k, hours=WORKDAY_START_H)
        if t > at and t.weekday() in weekdays:
            return (t - start).total_seconds() / 3600.0
    raise AssertionError("a weekday comes within 8 days")


def _lwa_wanted_by(finish: dt.datetime, rule: str) -> dt.datetime:
    """When LWA's rule wants the results of a job whose original finish is `finish` (local time)."""
    nine = finish.replace(hour=int(WORKDAY_START_H), minute=0, second=0, microsecond=0)
    clock = finish.hour + finish.minute / 60 + finish.second / 3600 + finish.microsecond / 3.6e9
    wd = finish.weekday()
    if rule == "lwa-next-workday":
        if wd == 5:
            return nine + dt.timedelta(days=2)
        if wd == 6 or clock > WORKDAY_END_H:
            return nine + dt.timedelta(days=1)
        return nine if clock < WORKDAY_START_H else finish
    to_thursday = (wd == 0 and clock > WORKDAY_START_H) or wd in (1, 2) or (wd == 3 and clock <= WORKDAY_START_H)
    return nine + dt.timedelta(days=(10 - wd) % 7 if to_thursday else (7 - wd) % 7)


def max_wait_h(rule: str, submit_h: float, estimate_h: float, start: dt.datetime | None = None) -> float:
    """The window `rule` gives a job submitted at `submit_h` with work estimated at `estimate_h`."""
    if rule == "gaia":
        return 6.0 if estimate_h < 2.0 else 24.0
    if rule not in RULES:
        raise ValueError(f"unknown max-wait rule {rule!r}; rules are {', '.join(RULES)}")
    if start is None:
        raise ValueError(f"the {rule!r} rule needs the wall-clock time of hour 0")
    if rule.startswith("lwa-"):
        finish = start + dt.timedelta(hours=submit_h + estimate_h)
        return max(0.0, (_lwa_wanted_by(finish, rule) - finish).total_seconds() / 3600.0)
    days = (0, 1, 2, 3, 4) if rule == "next-workday" else (0, 3)
    return max(0.0, _next_at(start, submit_h, days) - submit_h - estimate_h)


def parse_start(text: str | dt.datetime) -> dt.datetime:
    """A scenario's `start` (ISO 8601 with a UTC offset; naive times are taken as UTC)."""
    t = text if isinstance(text, dt.datetime) else dt.datetime.fromisoformat(str(text))
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def make_uncertain(jobs: list[dict], *, sigma: float = 0.0, bias: float = 0.0, rule: str | None = None,
                   start: dt.datetime | None = None, seed: int = 0, places: int = 4) -> list[dict]:
    """Scenario jobs (dicts as in MODEL.md §1) with estimates and windows: each job's `work_h` is
    taken as its true work (its `actual_work_h` if it has one); with `sigma` or `bias`, `work_h`
    becomes a drawn estimate (rounded to `places` decimals, at least 10**-places) and
    `actual_work_h` the truth; with `rule`, `max_wait_h` is set from the estimate. Seeded."""
    rng = np.random.default_rng(seed)
    true = np.asarray([float(j.get("actual_work_h", j["work_h"])) for j in jobs], dtype=float)
    est = estimates(true, sigma, rng, bias) if (sigma > 0 or bias != 0) else true
    out = []
    for j, t, e in zip(jobs, true.tolist(), est.tolist(), strict=True):
        j = dict(j)
        if sigma > 0 or bias != 0:
            j["work_h"] = max(round(e, places), 10.0 ** -places)
            j["actual_work_h"] = t
        if rule is not None:
            w = max_wait_h(rule, float(j["submit_h"]), float(j["work_h"]), start)
            j["max_wait_h"] = math.floor(w * 10 ** places) / 10 ** places
        out.append(j)
    return out
