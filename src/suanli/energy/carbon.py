"""Grid carbon factors of Chinese provinces, 2023, kg CO2/kWh (`data/grid_co2_factors_2023.csv`).

Provincial average electricity CO2 emission factors, location-based, CO2 only, with
inter-provincial transfers. Source: Ministry of Ecology and Environment and National Bureau
of Statistics, Announcement 2025 No. 47 (published 2025-12-31), Table 3. Tibet, Hong Kong,
Macao and Taiwan are not in the table.

A province is named by its English name (`Gansu`, `Inner Mongolia`, case and spaces ignored)
or its ISO 3166-2 code (`CN-GS`).
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

from suanli.model.series import ProvinceCarbonSpec, Series

FACTORS_FILE = "grid_co2_factors_2023.csv"


def _key(name: str) -> str:
    return "".join(name.split()).casefold()


@functools.cache
def provincial_factors() -> dict[str, float]:
    """English province name -> kg CO2/kWh, in the table's order."""
    text = resources.files("suanli.energy").joinpath("data", FACTORS_FILE).read_text(encoding="utf-8")
    return {row["province"]: float(row["kg_co2_per_kwh"]) for row in csv.DictReader(io.StringIO(text))}


@functools.cache
def _index() -> dict[str, str]:
    text = resources.files("suanli.energy").joinpath("data", FACTORS_FILE).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(text)):
        out[_key(row["province"])] = row["province"]
        out[_key(row["code"])] = row["province"]
    return out


def province_name(name: str) -> str:
    """The table's spelling of a province given by name or code; KeyError if it is not there."""
    return _index()[_key(name)]


def province_factor(name: str) -> float:
    """kg CO2/kWh of the province's grid in 2023; KeyError if it is not in the table."""
    return provincial_factors()[province_name(name)]


def carbon_series(spec: ProvinceCarbonSpec) -> Series:
    """The province's factor as a constant series, kg CO2/kWh (KeyError: unknown province)."""
    return Series((province_factor(spec.province),))
