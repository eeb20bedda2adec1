"""Time-of-use tariffs as data: periods with multipliers on a flat price, CNY/kWh.

The tables are `data/tariffs.csv` (one row per tariff: region, effective date, the UTC offset
of its clock, status and source) and `data/tou_periods.csv` (per tariff: months, local start
and end `HH:MM`, band and multiplier). Every tariff covers each minute of each month exactly
once; `load_tariffs` refuses a table that does not.

A `TariffSpec` `{tariff: NAME, flat: P}` resolves against the scenario's `start`: slot t covers
[start + t h, start + t h + 1 h), read on the tariff's own clock (China Standard Time for
both shipped tables, whatever offset `start` has), and its price is P times the mean
multiplier over the slot's 60 minutes (exact when `start` falls on a whole minute). A slot
that straddles midnight at a month's end takes each minute's own month.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources

import numpy as np

from suanli.model.series import ComputedSeries, TariffSpec

MINUTES = 24 * 60


@dataclass(frozen=True)
class Tariff:
    name: str
    region: str
    effective: str
    utc_offset: timezone
    status: str                    # "sourced" or "uncertain"
    source: str
    minute_multipliers: np.ndarray  # shape (12, 1440): month 1..12 -> multiplier per local minute
    bands: tuple[tuple[str, float], ...]

    def multipliers(self, start: datetime, first: int, n: int) -> np.ndarray:
        """Mean multiplier of slots first .. first+n-1 from `start` (tz-aware)."""
        local0 = start.astimezone(self.utc_offset) + timedelta(hours=first)
        base = np.datetime64(local0.replace(tzinfo=None), "s")
        minutes = base + (np.arange(n * 60) * 60 + 30).astype("timedelta64[s]")   # each minute's middle
        month = minutes.astype("datetime64[M]").astype(int) % 12                    # 0 = January
        minute_of_day = (minutes - minutes.astype("datetime64[D]")).astype(int) // 60
        return self.minute_multipliers[month, minute_of_day].reshape(n, 60).mean(axis=1)


def _months(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(";"):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def _minute(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("suanli.energy").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    h, m = text.lstrip("+-").split(":")
    return timezone(sign * timedelta(hours=int(h), minutes=int(m)))


@functools.cache
def load_tariffs() -> dict[str, Tariff]:
    """Every shipped tariff by name; ValueError when a table is incomplete or overlapping."""
    periods: dict[str, list[dict[str, str]]] = {}
    for row in _read("tou_periods.csv"):
        periods.setdefault(row["tariff"], []).append(row)
    out: dict[str, Tariff] = {}
    for meta in _read("tariffs.csv"):
        name = meta["tariff"]
        grid = np.full((12, MINUTES), np.nan)
        bands: dict[str, float] = {}
        for row in periods.get(name, []):
            a, b, mult = _minute(row["start"]), _minute(row["end"]), float(row["multiplier"])
            for m in _months(row["months"]):
                if not np.isnan(grid[m - 1, a:b]).all():
                    raise ValueError(f"tariff {name}: month {m} {row['start']}-{row['end']} overlaps another period")
                grid[m - 1, a:b] = mult
            bands[row["band"]] = mult
        if np.isnan(grid).any():
            month, minute = (int(i) for i in np.argwhere(np.isnan(grid))[0])
            raise ValueError(f"tariff {name}: month {month + 1} minute {minute} has no period")
        out[name] = Tariff(name, meta["region"], meta["effective"], _offset(meta["utc_offset"]), meta["status"],
                           meta["source"], grid, tuple(sorted(bands.items(), key=lambda kv: -kv[1])))
    return out


def tariff_series(spec: TariffSpec, start: datetime) -> ComputedSeries:
    """The tariff's price, CNY/kWh, for slots 0, 1, 2, ... from `start` (KeyError: unknown name)."""
    tariff = load_tariffs()[spec.tariff]
    return ComputedSeries(lambda first, n: spec.flat * tariff.multipliers(start, first, n),
                          label=f"{spec.tariff} on {spec.flat:g} CNY/kWh")
