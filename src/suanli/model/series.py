"""Hourly series (MODEL.md §2) and the specs that stand for them.

A series is a number (constant) or a list of numbers for slots 0, 1, 2, ... that repeats
cyclically beyond its length. Slot t covers hours [t, t+1) from the scenario's start.

A field may instead hold a spec, parsed once here into a typed object:
- `renewables.kw`: `{model: solar, ...}` (`SolarSpec`) or `{model: wind, ...}` (`WindSpec`);
- `grid.cny_per_kwh`: `{tariff: gansu-2021, flat: 0.42}` (`TariffSpec`);
- `grid.carbon_kg_per_kwh`: `{province: Gansu}` (`ProvinceCarbonSpec`).

Specs are resolved by `suanli.energy.resolve` into objects with the same interface as
`Series` (`at(t)`, `array(slots)`): a `ComputedSeries` grows on demand and caches what it
computed, so slot t's value never depends on how many slots were asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


@runtime_checkable
class SeriesLike(Protocol):
    """What the accounting and the scheduler read: one value per 1-h slot."""

    def at(self, t: int) -> float: ...

    def array(self, slots: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Series:
    """An explicit series; `values` holds one period (length >= 1)."""

    values: tuple[float, ...]

    def at(self, t: int) -> float:
        return self.values[t % len(self.values)]

    def array(self, slots: int) -> np.ndarray:
        """Values for slots 0 .. slots-1, repeated cyclically."""
        return np.resize(np.asarray(self.values, dtype=float), slots)


class ComputedSeries:
    """A series computed block by block on first use, cached, and grown on demand.

    `compute(first, n)` returns the values of slots first .. first+n-1. Blocks are always
    computed in order (0, `block`, 2 * `block`, ...), so `compute` may carry state from one
    block to the next (a random process does); the value of slot t is therefore the same
    however many slots are asked for, and in whatever order.
    """

    def __init__(self, compute: Callable[[int, int], np.ndarray], *, block: int = 168, label: str = ""):
        if block < 1:
            raise ValueError("block must be >= 1")
        self._compute = compute
        self._block = block
        self._values = np.zeros(0)
        self.label = label

    def _grow(self, slots: int) -> None:
        while len(self._values) < slots:
            first = len(self._values)
            chunk = np.asarray(self._compute(first, self._block), dtype=float)
            if chunk.shape != (self._block,):
                raise RuntimeError(f"{self.label or 'series'}: block of shape {chunk.shape}, expected "
                                   f"({self._block},)")
            self._values = np.concatenate([self._values, chunk])

    def at(self, t: int) -> float:
        if t < 0:
            raise IndexError(f"slot {t} is before hour 0")
        self._grow(t + 1)
        return float(self._values[t])

    def array(self, slots: int) -> np.ndarray:
        """Values for slots 0 .. slots-1 (a copy)."""
        self._grow(slots)
        return self._values[:slots].copy()

    def __repr__(self) -> str:
        return f"ComputedSeries({self.label!r}, {len(self._values)} slots computed)"


# ----------------------------------------------------------------------------- specs
class SpecError(ValueError):
    """A bad spec field: `path` inside the spec (e.g. `capacity_kw`), a message and the value."""

    def __init__(self, path: str, message: str, value: Any = ...):
        self.path, self.message, self.value = path, message, value
        super().__init__(f"{path}: {message}" if path else message)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        if isinstance(v, bool):        # `seed: yes` is a typo, not 1
            raise ValueError("expected a number or text, not a boolean")
        return v


class SolarSpec(Spec):
    """PV plant: pvlib clear-sky PVWatts at the site's city, times a seeded cloud factor.

    capacity_kw: DC nameplate at standard test conditions, kW (the inverter has the same
    rating). tilt: degrees from horizontal (default: the site's latitude). azimuth: degrees
    clockwise from north (180 = south). cloud_cover: the mean fraction of clear-sky output
    lost to clouds, in [0, 1]. seed: the cloud process's seed.
    """

    model: Literal["solar"]
    capacity_kw: float = Field(ge=0)
    tilt: float | None = Field(default=None, ge=0, le=90)
    azimuth: float = Field(default=180.0, ge=0, lt=360)
    cloud_cover: float = Field(ge=0, le=1)
    seed: int = Field(ge=0)


class WindSpec(Spec):
    """Wind farm: a windpowerlib power curve driven by a seeded, autocorrelated Weibull wind.

    capacity_kw: rated power of the farm, kW (the turbine curve's maximum, scaled). turbine:
    a windpowerlib turbine type with a power curve. hub_height: m. mean_wind_ms: mean wind
    speed, m/s, at `wind_height_m` above ground (default 10 m, a weather station's height),
    brought to hub height by windpowerlib's logarithmic profile with `roughness_length_m`.
    weibull_k: the Weibull shape of hourly speeds. seed: the wind process's seed.
    """

    model: Literal["wind"]
    capacity_kw: float = Field(ge=0)
    turbine: str = "VS112/2500"
    hub_height: float = Field(default=100.0, gt=0)
    mean_wind_ms: float = Field(gt=0)
    wind_height_m: float = Field(default=10.0, gt=0)
    roughness_length_m: float = Field(default=0.03, gt=0)
    weibull_k: float = Field(default=2.0, ge=1, le=5)
    seed: int = Field(ge=0)


class TariffSpec(Spec):
    """A named time-of-use tariff (a table in suanli/energy/data) on a flat price, CNY/kWh."""

    tariff: str
    flat: float = Field(ge=0)


class ProvinceCarbonSpec(Spec):
    """The 2023 provincial average grid factor, kg CO2/kWh (suanli/energy/data)."""

    province: str


RenewableSpec = SolarSpec | WindSpec
SeriesSpec = SolarSpec | WindSpec | TariffSpec | ProvinceCarbonSpec
_PYDANTIC_MESSAGES = {"extra_forbidden": "unknown field", "missing": "required field is missing"}


def _spec_key(cls: type[Spec]) -> tuple[str, str | None]:
    """The key that marks a spec, and for `model` specs the model's name."""
    if "model" in cls.model_fields:
        return "model", cls.model_fields["model"].annotation.__args__[0]
    return next(iter(cls.model_fields)), None


def _parse_spec(raw: dict[str, Any], kinds: tuple[type[Spec], ...]) -> Spec:
    """The one spec among `kinds` that `raw` names by its key; SpecError otherwise."""
    keys = {k: _spec_key(k) for k in kinds}
    models = {name: k for k, (key, name) in keys.items() if key == "model"}
    if "model" in raw and models:
        # a model name is text: a list or a mapping there is not hashable (a TypeError fuzzing found)
        cls = models.get(raw["model"]) if isinstance(raw["model"], str) else None
        if cls is None:
            raise SpecError("model", f"unknown model (known: {', '.join(sorted(models))})", raw["model"])
    else:
        found = [k for k, (key, _) in keys.items() if key != "model" and key in raw]
        if not found:
            wanted = ", ".join(dict.fromkeys(key for key, _ in keys.values()))
            raise SpecError("", f"a spec here needs the key: {wanted}")
        cls = found[0]
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        path = ".".join(str(p) for p in err["loc"])
        value = ... if err["type"] == "missing" else err.get("input", ...)
        message = _PYDANTIC_MESSAGES.get(err["type"], err["msg"]).removeprefix("Value error, ")
        raise SpecError(path, message, value) from None


def _float(x: int | float, what: str) -> float:
    """float(x), refusing an integer too large for a float (YAML reads 1e400 written out as an
    int; float() raised OverflowError, a traceback that fuzzing found)."""
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"{what} is not finite") from None


def parse_series(raw: Any, *, specs: tuple[type[Spec], ...] = (), minimum: float | None = None) -> Series | Spec:
    """Turn a scenario value into a Series or one of `specs`; ValueError names what is wrong."""
    if isinstance(raw, bool):
        raise ValueError("a series must be a number or a list of numbers")
    if isinstance(raw, (int, float)):
        values = [_float(raw, "a series number")]
    elif isinstance(raw, list):
        if not raw:
            raise ValueError("a series list must not be empty")
        values = []
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"series item [{i}] is not a number: {v!r}")
            values.append(_float(v, f"series item [{i}]"))
    elif isinstance(raw, dict) and specs:
        return _parse_spec(raw, specs)
    else:
        kinds = "a number, a list of numbers" + (" or a spec" if specs else "")
        raise ValueError(f"a series must be {kinds}")
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"series item [{i}] is not finite")
        if minimum is not None and v < minimum:
            raise ValueError(f"series item [{i}] = {v} is below {minimum}")
    return Series(tuple(values))
