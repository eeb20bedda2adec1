"""What the traces lack, drawn from seeded distributions (docs/TRACES.md lists each one).

Every draw comes from numpy Generators spawned from one `SeedSequence(seed)`, one stream per
field, so turning one option on (say, work noise) does not reshuffle the others. Per-tenant
draws (a tenant's home city, an app's latency bound) are seeded by (seed, the tenant's name),
so a tenant keeps its city whatever window or sample is imported. Draws are made a batch
of jobs at a time, in the order the jobs are written: the same file, options and seed give
the same bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from suanli.traces.gavel import BUCKET_EDGES_GPU_H, BUCKETS, class_speeds

# the demo network's consumer cities and their weights (docs/DEMO.md, east-west.yaml)
DEFAULT_ORIGINS = {"beijing": 0.28, "shanghai": 0.22, "shenzhen": 0.15, "hangzhou": 0.12,
                   "zhengzhou": 0.12, "guangzhou": 0.11}
DEFAULT_GPU_SPEEDS = {"h100": 2.0, "a800": 1.0, "910b": 0.9}
DEFAULT_CLASS_NAMES = {"S": "train-s", "M": "train-m", "L": "train-l", "XL": "train-xl", "service": "service"}
# dataset size per GPU-time bucket, GB, drawn log-uniform (a service's model weights: S)
DATA_GB = {"S": (5.0, 50.0), "M": (20.0, 300.0), "L": (100.0, 1500.0), "XL": (500.0, 5000.0)}
# a service keeps the time it has served when it is moved: a 1-minute "checkpoint"
SERVICE_CHECKPOINT_H = 0.0167


# Upper bounds on the options' numbers: beyond them the synthesised hours overflow to inf (a
# deadline of 1e308 x work, a lognormal of sigma 1e308) and the jobs file gets "inf", which the
# scenario loader refuses, or numpy raises (a negative seed); fuzzing found each.
MAX_WEIGHT = 1e6


class SynthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    seed: int = Field(2026, ge=0)
    origins: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_ORIGINS), min_length=1)
    home_share: float = Field(0.8, ge=0, le=1)         # jobs from the tenant's home city
    deadline_share: float = Field(0.8, ge=0, le=1)     # training jobs that get a deadline
    slack: tuple[float, float] = (1.5, 4.0)            # deadline = submit + max(U(lo, hi) * work, min)
    min_deadline_h: float = Field(0.5, ge=0, le=1e6)
    checkpoint_after_h: float = Field(2.0, ge=0, le=1e6)   # longer training jobs checkpoint
    checkpoint_choices_h: tuple[float, ...] = (0.5, 0.75, 1.0)
    rtt_choices_ms: tuple[float, ...] = (20.0, 30.0, 40.0)
    classes: bool = False
    class_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CLASS_NAMES))
    gpu_speeds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_GPU_SPEEDS), min_length=1)
    work_noise: float = Field(0.0, ge=0, le=10)        # sigma of ln(estimate / true work)

    @field_validator("origins", "gpu_speeds")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not 0 < x <= MAX_WEIGHT:
                raise ValueError(f"{k}={x:g}: must be above 0 and at most {MAX_WEIGHT:g}")
        return v

    @field_validator("checkpoint_choices_h", "rtt_choices_ms")
    @classmethod
    def _choices(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < x <= 1e6 for x in v):
            raise ValueError("needs one or more numbers above 0 and at most 1e6")
        return v

    @field_validator("slack")
    @classmethod
    def _slack(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("needs 0 < LOW <= HIGH")
        if v[1] > 1e3:
            raise ValueError("HIGH must be at most 1000 (times the work: a deadline centuries away)")
        return v

    @field_validator("class_names")
    @classmethod
    def _buckets(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - set(DEFAULT_CLASS_NAMES)
        if unknown:
            raise ValueError(f"unknown bucket {sorted(unknown)[0]!r}; buckets are {', '.join(DEFAULT_CLASS_NAMES)}")
        return v

    def names(self) -> dict[str, str]:
        return DEFAULT_CLASS_NAMES | self.class_names

    def job_classes(self, services: bool) -> dict[str, dict[str, float]]:
        """The `job_classes` a scenario needs for the classes this import emits."""
        names = self.names()
        if services:      # a service holds its GPU for its lifetime, whatever the GPU
            return {names["service"]: {g: 1.0 for g in self.gpu_speeds}}
        return class_speeds(self.gpu_speeds, names)


@dataclass
class Drawn:
    """Synthesised columns for one batch of jobs (index i = the batch's i-th job)."""

    work_h: np.ndarray                 # the user's estimate (= true work without noise)
    origin: list[str]
    deadline_h: np.ndarray             # NaN: none
    data_gb: np.ndarray
    checkpoint_h: np.ndarray           # NaN: none
    klass: list[str | None]
    max_rtt_ms: np.ndarray             # NaN: none


def bucket_of(gpu_h: np.ndarray) -> np.ndarray:
    """GPU-time bucket index (0 = S ... 3 = XL) of reference GPU-hours."""
    return np.searchsorted(np.asarray(BUCKET_EDGES_GPU_H), gpu_h, side="right")


class Synthesiser:
    def __init__(self, opts: SynthOptions, services: bool):
        self.opts, self.services = opts, services
        purposes = ("sample", "origin", "deadline", "data", "checkpoint", "noise")
        streams = np.random.SeedSequence(opts.seed).spawn(len(purposes))
        self.rng = {p: np.random.default_rng(s) for p, s in zip(purposes, streams, strict=True)}
        self.cities = list(opts.origins)
        w = np.array([opts.origins[c] for c in self.cities], dtype=float)
        self.cum = np.cumsum(w / w.sum())
        self.cum[-1] = 1.0
        self.homes: dict[str, int] = {}
        self.app_rtt: dict[str, float] = {}
        names = opts.names()
        self.bucket_names = [names[b] for b in BUCKETS]
        self.service_name = names["service"]

    def _keyed(self, tenant: str, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.opts.seed, purpose, zlib.crc32(tenant.encode("utf-8"))])

    def home(self, tenant: str) -> int:
        """A tenant's home city (index), a weighted draw seeded by its name."""
        i = self.homes.get(tenant)
        if i is None:
            i = self.homes[tenant] = int(np.searchsorted(self.cum, self._keyed(tenant, 1).random(), side="right"))
        return i

    def rtt(self, tenant: str | None) -> float:
        """A service app's latency bound, shared by all its instances."""
        key = tenant or ""
        r = self.app_rtt.get(key)
        if r is None:
            choices = self.opts.rtt_choices_ms
            r = self.app_rtt[key] = float(choices[int(self._keyed(key, 2).integers(len(choices)))])
        return r

    def sample(self, n: int, fraction: float) -> np.ndarray:
        """Which of n jobs a seeded Bernoulli(fraction) sample keeps."""
        if fraction >= 1.0:
            return np.ones(n, dtype=bool)
        return self.rng["sample"].random(n) < fraction

    def draw(self, submit_h: np.ndarray, work_h: np.ndarray, gpus: np.ndarray, tenants: list[str | None],
             rtt: list[float | None], estimate_h: np.ndarray | None = None) -> Drawn:
        """What the trace lacks, for a batch; `estimate_h` (NaN: none) is the trace's own estimate
        of each job's work, used instead of a drawn one."""
        o, n = self.opts, len(work_h)
        # origin: the tenant's home city, or a fresh weighted draw
        u = self.rng["origin"].random(n)
        fresh = np.searchsorted(self.cum, self.rng["origin"].random(n), side="right")
        idx = [self.home(t) if t is not None and u[i] < o.home_share else int(fresh[i])
               for i, t in enumerate(tenants)]
        origin = [self.cities[i] for i in idx]
        # the user's estimate: true work x lognormal(0, sigma)
        z = self.rng["noise"].standard_normal(n)
        est = work_h * np.exp(o.work_noise * z) if o.work_noise > 0 else work_h.copy()
        if estimate_h is not None:
            est = np.where(np.isnan(estimate_h), est, estimate_h)
        bucket = bucket_of(gpus * work_h)
        # dataset size, log-uniform in the bucket's range
        lo = np.array([DATA_GB[b][0] for b in BUCKETS])
        hi = np.array([DATA_GB[b][1] for b in BUCKETS])
        b = np.zeros(n, dtype=int) if self.services else bucket
        data = np.exp(np.log(lo[b]) + self.rng["data"].random(n) * (np.log(hi[b]) - np.log(lo[b])))
        # deadline: submit + max(slack x estimate, floor), for a share of training jobs
        has = self.rng["deadline"].random(n) < o.deadline_share
        slack = self.rng["deadline"].uniform(o.slack[0], o.slack[1], n)
        deadline = np.where(has & (not self.services), submit_h + np.maximum(slack * est, o.min_deadline_h), np.nan)
        # checkpoints for long training jobs; services keep their served time
        pick = np.asarray(o.checkpoint_choices_h)[self.rng["checkpoint"].integers(len(o.checkpoint_choices_h),
                                                                                 size=n)]
        if self.services:
            ck = np.full(n, SERVICE_CHECKPOINT_H)
        else:
            ck = np.where(work_h > o.checkpoint_after_h, pick, np.nan)
        if not o.classes:
            klass: list[str | None] = [None] * n
        elif self.services:
            klass = [self.service_name] * n
        else:
            klass = [self.bucket_names[i] for i in bucket]
        bound = np.array([r if r is not None else (self.rtt(t) if self.services else np.nan)
                          for r, t in zip(rtt, tenants, strict=True)], dtype=float)
        return Drawn(est, origin, deadline, data, ck, klass, bound)
