"""Simulated meter readings of a site: what its meters would report, from its models with noise.

For measuring forecasts (bench/forecast_error.py) and testing them; seeded and deterministic.
The network file's series is one draw of the site's weather; the site's real weather is another
draw of the same climate. So, for slots 0, 1, 2, ... (hourly means):

- renewables of a solar spec: the same plant and cloud climate under another seed (`seed +
  WEATHER_SEED_OFFSET`): pvlib clear sky times a Beta clear-sky index whose latent process is
  AR(1) with phi 0.9 (`energy.solar`); of a wind spec: the same farm with wind speed deviations
  from another seed (latent AR(1), phi 0.95, Weibull marginal; `energy.wind`); an explicit series:
  itself times (1 + AR(1) noise, phi `CARBON_PHI`, sd `CARBON_SD`);
- then a meter error: each hour times (1 + N(0, `METER_SD`)), never below 0;
- grid carbon, kg CO2e/kWh: the model's factor c(t) times a daily cycle and weather:
  c(t) * (1 - `CARBON_DAILY` * cos(2 pi (h - 13) / 24)) * (1 + x_t), h = the slot's hour of day
  on the slot-0 clock (local midnight in the shipped example), x_t AR(1) with phi `CARBON_PHI`
  and stationary sd `CARBON_SD`. The cycle's low at 13:00 stands for midday solar on the
  provincial grid; its depth and the noise are assumptions of this simulation, not measurements
  of a Chinese grid (the shipped factors are annual means: MEE/NBS 2023).
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from suanli.model.scenario import Scenario
from suanli.model.series import SolarSpec, WindSpec

WEATHER_SEED_OFFSET = 10_000   # the real weather's seed: the spec's seed plus this
METER_SD = 0.01                # relative sd of a meter's hourly energy (class-1 meters: ~1 %)
CARBON_DAILY = 0.08            # depth of the grid's daily carbon cycle, relative
CARBON_PHI = 0.95              # hour-to-hour autocorrelation of the grid's carbon deviations
CARBON_SD = 0.06               # their stationary sd, relative


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series of length n with lag-1 autocorrelation phi and sd `sd`."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    prev = e[0] if n else 0.0
    scale = math.sqrt(1.0 - phi * phi)
    for i in range(n):
        prev = e[0] if i == 0 else phi * prev + scale * e[i]
        x[i] = prev
    return sd * x


def true_renewable_kw(scn: Scenario, site: str, slots: int, start: datetime | None = None) -> np.ndarray:
    """The site's renewable power under its real weather (no meter error), kW, slots 0 .. slots-1."""
    k = list(scn.sites).index(site)
    s = scn.sites[site]
    spec = scn.specs.get(f"sites[{k}].renewables.kw")
    if isinstance(spec, SolarSpec):
        from suanli.energy.solar import solar_series

        lat, lon = scn.cities[s.city]
        other = spec.model_copy(update={"seed": spec.seed + WEATHER_SEED_OFFSET})
        return solar_series(other, lat, lon, start or scn.start).array(slots)
    if isinstance(spec, WindSpec):
        from suanli.energy.wind import wind_series

        return wind_series(spec.model_copy(update={"seed": spec.seed + WEATHER_SEED_OFFSET})).array(slots)
    model = np.asarray(scn.explicit(s.renewables.kw, f"sites[{k}].renewables.kw").array(slots), dtype=float)
    rng = np.random.default_rng([WEATHER_SEED_OFFSET, k, 1])
    return np.maximum(0.0, model * (1.0 + ar1(rng, slots, CARBON_PHI, CARBON_SD)))


def readings(scn: Scenario, site: str, slots: int, seed: int = 0,
             start: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(renewable kW, grid carbon kg CO2e/kWh) a site's meters would read, slots 0 .. slots-1."""
    k = list(scn.sites).index(site)
    rng = np.random.default_rng([seed, k])
    ren = true_renewable_kw(scn, site, slots, start)
    ren = np.maximum(0.0, ren * (1.0 + METER_SD * rng.standard_normal(slots)))
    base = np.asarray(scn.explicit(scn.sites[site].grid.carbon_kg_per_kwh, f"sites[{k}].grid.carbon_kg_per_kwh")
                      .array(slots), dtype=float)
    hour = np.arange(slots) % 24
    daily = 1.0 - CARBON_DAILY * np.cos(2.0 * math.pi * (hour - 13) / 24.0)
    carbon = np.maximum(0.0, base * daily * (1.0 + ar1(rng, slots, CARBON_PHI, CARBON_SD)))
    return ren, carbon
