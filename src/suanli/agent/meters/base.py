"""What every meter source shares: the reading the controller takes, the partial sample a source
measures, the `MeterSource` protocol, and the errors.

Units, here once for the whole package: power in kW, state of charge in kWh, times timezone-aware
UTC. Signs: `grid_kw` > 0 imports from the grid (< 0 exports); `battery_kw` > 0 discharges the
battery (< 0 charges it). Every other power is >= 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, field_validator

from suanli.errors import UserError

# the fields a reading carries to the controller (POST /v1/agent/{site}/meter), besides `at`
POWER_FIELDS = ("it_kw", "facility_kw", "renewable_kw", "grid_kw")
READING_FIELDS = (*POWER_FIELDS, "battery_soc_kwh")
# what a source may measure: the reading's fields, and the battery's power, which the composite
# needs to compute grid import where no meter measures it (composite.py) but the controller does not take
SAMPLE_FIELDS = (*READING_FIELDS, "battery_kw")
SIGNED = frozenset({"grid_kw", "battery_kw"})
# per-GPU power (Sample.gpu_w): GPU indices as NVML numbers them (DCGM's `gpu` label), watts
MAX_GPU_INDEX = 1023
MAX_GPU_W = 5000.0               # one board's power, W: beyond any (the controller's bound, MAX_GPU_KW)


class MeterError(Exception):
    """A poll that failed (the device unreachable, an answer that makes no sense): the source is
    tried again later, backing off; the agent and its jobs go on."""


class MeterUnavailable(UserError):
    """A source that cannot work on this host at all (NVML without an NVIDIA GPU): said in one line
    at start-up, exit code 2."""


class Reading(BaseModel):
    """One reading of a site's meters, as `POST /v1/agent/{site}/meter` takes it."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime                      # when measured, timezone-aware, held in UTC
    it_kw: float                      # the IT equipment's power (GPUs, at least), kW, >= 0
    facility_kw: float                # the whole facility's power (IT, cooling, losses), kW, >= 0
    renewable_kw: float               # on-site renewable output, kW, >= 0
    grid_kw: float                    # grid import, kW (< 0: export)
    battery_soc_kwh: float | None = None   # energy held in the battery, kWh, >= 0; None: no battery measured

    @field_validator("at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("must carry a time zone (e.g. 2026-01-01T00:00:00+00:00)")
        return v.astimezone(UTC)

    @field_validator(*POWER_FIELDS, "battery_soc_kwh")
    @classmethod
    def _finite(cls, v: float | None, info) -> float | None:
        if v is None:
            return v
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v}")
        if info.field_name not in SIGNED and v < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v

    def body(self) -> dict:
        """The JSON object the controller takes (`at` in ISO 8601 with its zone, +00:00)."""
        return {"at": self.at.isoformat(), **{f: getattr(self, f) for f in READING_FIELDS}}


@dataclass(frozen=True)
class Sample:
    """What one source measured at `at`: the fields it measures, None for the others."""
    at: datetime
    it_kw: float | None = None
    facility_kw: float | None = None
    renewable_kw: float | None = None
    grid_kw: float | None = None
    battery_soc_kwh: float | None = None
    battery_kw: float | None = None
    # each GPU's power, W, by its index on this host (NVML's, DCGM's `gpu` label), where the source
    # reads it: what the agent integrates into each run's GPU energy (agent/gpu_energy.py)
    gpu_w: Mapping[int, float] | None = None
    NAMES: ClassVar[tuple[str, ...]] = SAMPLE_FIELDS

    def __post_init__(self):
        if self.at.tzinfo is None:
            raise ValueError("Sample.at must be timezone-aware")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("at", "gpu_w") or v is None:
                continue
            if not math.isfinite(v):
                raise MeterError(f"{f.name}: not a finite number ({v})")
            if f.name not in SIGNED and v < 0:
                raise MeterError(f"{f.name}: negative ({v})")
        for i, w in (self.gpu_w or {}).items():
            if not (isinstance(i, int) and 0 <= i <= MAX_GPU_INDEX):
                raise MeterError(f"gpu_w: GPU index {i!r} is not in [0, {MAX_GPU_INDEX}]")
            if not (math.isfinite(w) and 0 <= w <= MAX_GPU_W):
                raise MeterError(f"gpu_w: GPU {i}: {w} W is not in [0, {MAX_GPU_W:g}]")

    def measured(self) -> dict[str, float]:
        return {n: getattr(self, n) for n in SAMPLE_FIELDS if getattr(self, n) is not None}


def now() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class MeterSource(Protocol):
    """A meter source. `measures` names the fields (SAMPLE_FIELDS) its samples carry, known when it
    is built, so that a composite can tell at start-up whether every field is covered. `poll()`
    measures now and returns its samples: one for a live meter, any number (0 too) for a replay;
    it raises MeterError when the meter cannot be read, and must bound its own time (a timeout on
    every network call). `close()` releases connections."""
    name: str
    measures: frozenset[str]
    replay: bool                      # True: its samples are whole readings with their own times (csv)
    # (optional attribute) per_gpu: True where its samples carry `gpu_w`, each GPU's power (nvml,
    # prometheus of a DCGM exporter); read with getattr(source, "per_gpu", False)

    def poll(self) -> list[Sample]: ...

    def close(self) -> None: ...


@dataclass
class Options:
    """A SPEC's `key=value` options, each taken once by the source that knows it; what is left
    over is a mistake (`done()`)."""
    spec: str
    items: dict[str, str] = field(default_factory=dict)

    def _bad(self, key: str, why: str) -> UserError:
        return UserError(f"--meter {self.spec!r}: {key}: {why}")

    def text(self, key: str, default: str | None = None) -> str | None:
        return self.items.pop(key, default)

    def number(self, key: str, default: float | None, lo: float, hi: float) -> float | None:
        raw = self.items.pop(key, None)
        if raw is None:
            return default
        try:
            v = float(raw)
        except ValueError:
            raise self._bad(key, f"not a number: {raw!r}") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise self._bad(key, f"must lie in [{lo:g}, {hi:g}], got {raw}")
        return v

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        raw = self.items.pop(key, None)
        if raw is None:
            return default
        try:
            v = int(raw, 0)
        except ValueError:
            raise self._bad(key, f"not an integer: {raw!r}") from None
        if not lo <= v <= hi:
            raise self._bad(key, f"must lie in [{lo}, {hi}], got {raw}")
        return v

    def done(self, known: tuple[str, ...]) -> None:
        if self.items:
            key = next(iter(self.items))
            raise self._bad(key, f"unknown option (known: {', '.join(known) or 'none'})")
