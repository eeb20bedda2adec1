"""Hourly series (MODEL.md §2).

A series is a number (constant) or a list of numbers for slots 0, 1, 2, ... that repeats
cyclically beyond its length. Slot t covers hours [t, t+1) from the scenario's start.
Model specs (`{model: solar, ...}`) are kept as `ModelSpec` until the energy layer
resolves them into an explicit list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Series:
    """An explicit series; `values` holds one period (length >= 1)."""

    values: tuple[float, ...]

    def at(self, t: int) -> float:
        return self.values[t % len(self.values)]

    def array(self, slots: int) -> np.ndarray:
        """Values for slots 0 .. slots-1, repeated cyclically."""
        return np.resize(np.asarray(self.values, dtype=float), slots)


@dataclass(frozen=True)
class ModelSpec:
    """A renewable model spec such as `{model: solar, capacity_kw: 50000, seed: 1}`."""

    model: str
    params: dict[str, Any] = field(default_factory=dict)


def parse_series(raw: Any, *, allow_model: bool = False, minimum: float | None = None) -> Series | ModelSpec:
    """Turn a scenario value into a Series (or ModelSpec); ValueError names what is wrong."""
    if isinstance(raw, bool):
        raise ValueError("a series must be a number or a list of numbers")
    if isinstance(raw, (int, float)):
        values = [float(raw)]
    elif isinstance(raw, list):
        if not raw:
            raise ValueError("a series list must not be empty")
        values = []
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"series item [{i}] is not a number: {v!r}")
            values.append(float(v))
    elif isinstance(raw, dict) and allow_model and "model" in raw:
        params = {k: v for k, v in raw.items() if k != "model"}
        return ModelSpec(model=str(raw["model"]), params=params)
    else:
        kinds = "a number, a list of numbers" + (" or a model spec" if allow_model else "")
        raise ValueError(f"a series must be {kinds}")
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"series item [{i}] is not finite")
        if minimum is not None and v < minimum:
            raise ValueError(f"series item [{i}] = {v} is below {minimum}")
    return Series(tuple(values))
