"""Wind power from a turbine's power curve (windpowerlib) and a seeded Weibull wind.

For a `WindSpec`, slot t's value is the farm's power over [t, t+1) h, in kW:

- wind speed at `wind_height_m` (default 10 m): Weibull with mean `mean_wind_ms` and shape
  `weibull_k`, autocorrelated hour to hour (`suanli.energy.stochastic`, seeded by `seed`);
- windpowerlib's `ModelChain` brings it to `hub_height` with its logarithmic wind profile
  (roughness length `roughness_length_m`) and reads the turbine's power curve, one of the
  curves windpowerlib ships (oedb `power_curves.csv`, read from the package, no network);
- the farm is `capacity_kw / rated` turbines, where rated is the curve's maximum, so the
  farm never gives more than `capacity_kw`.

The hour's mean speed goes through the curve (no sub-hourly gusts), and air density is the
curve's own (no density correction).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from suanli.energy.stochastic import WIND_STREAM, Ar1Uniform, weibull_quantile
from suanli.model.series import ComputedSeries, WindSpec

WIND_PHI = 0.95     # hour-to-hour autocorrelation of the latent wind process


@functools.cache
def turbine_types() -> tuple[str, ...]:
    """The turbine types windpowerlib ships a power curve for."""
    from windpowerlib import get_turbine_types

    table = get_turbine_types(turbine_library="local", print_out=False, filter_=True)
    return tuple(sorted(table.loc[table["has_power_curve"], "turbine_type"]))


class Farm:
    """A wind farm of one turbine type, scaled to `capacity_kw`."""

    def __init__(self, turbine: str, hub_height: float, capacity_kw: float, roughness_length_m: float,
                 wind_height_m: float):
        from windpowerlib import WindTurbine

        if turbine not in turbine_types():
            raise KeyError(turbine)
        with warnings.catch_warnings():        # windpowerlib's own pandas deprecations: not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            self.turbine = WindTurbine(turbine_type=turbine, hub_height=hub_height)
        self.rated_w = float(self.turbine.power_curve["value"].max())
        self.capacity_kw = capacity_kw
        self.roughness_length_m = roughness_length_m
        self.wind_height_m = wind_height_m

    def power_kw(self, wind_ms: np.ndarray) -> np.ndarray:
        """Farm power, kW, for hourly mean wind speeds (m/s) at `wind_height_m`."""
        import pandas as pd
        from windpowerlib import ModelChain

        columns = pd.MultiIndex.from_tuples(
            [("wind_speed", self.wind_height_m), ("roughness_length", 0)], names=["variable_name", "height"])
        weather = pd.DataFrame(np.column_stack([wind_ms, np.full(len(wind_ms), self.roughness_length_m)]),
                               columns=columns)
        per_turbine_w = ModelChain(self.turbine).run_model(weather).power_output.to_numpy(dtype=float)
        return per_turbine_w / self.rated_w * self.capacity_kw


def wind_speed_series(spec: WindSpec) -> ComputedSeries:
    """Hourly mean wind speed, m/s, at `wind_height_m`, for slots 0, 1, 2, ..."""
    latent = Ar1Uniform(spec.seed, WIND_STREAM, WIND_PHI)
    return ComputedSeries(lambda first, n: weibull_quantile(latent(first, n), spec.mean_wind_ms, spec.weibull_k),
                          label=f"wind speed, mean {spec.mean_wind_ms:g} m/s")


def wind_series(spec: WindSpec) -> ComputedSeries:
    """The farm's hourly output, kW, for slots 0, 1, 2, ... (KeyError: unknown turbine)."""
    farm = Farm(spec.turbine, spec.hub_height, spec.capacity_kw, spec.roughness_length_m, spec.wind_height_m)
    speeds = wind_speed_series(spec)

    def compute(first: int, n: int) -> np.ndarray:
        return farm.power_kw(speeds.array(first + n)[first:])

    return ComputedSeries(compute, label=f"wind {spec.capacity_kw:g} kW of {spec.turbine}")
