"""Wind from windpowerlib's power curves and a seeded, autocorrelated Weibull wind (docs/ENERGY.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from windpowerlib import WindTurbine

from suanli.energy.wind import Farm, turbine_types, wind_series, wind_speed_series
from suanli.model.series import WindSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # windpowerlib on pandas 3


def spec(**overrides) -> WindSpec:
    fields = {"model": "wind", "capacity_kw": 2500.0, "mean_wind_ms": 6.0, "seed": 1} | overrides
    return WindSpec(**fields)


def test_windpowerlib_ships_the_default_turbine_and_dozens_more():
    assert "VS112/2500" in turbine_types() and len(turbine_types()) > 50


@pytest.mark.parametrize("turbine", ["VS112/2500", "E-126/4200", "V90/2000", "SWT130/3600"])
def test_wind_never_exceeds_the_turbine_curves_rated_power(turbine):
    curve = WindTurbine(turbine_type=turbine, hub_height=100).power_curve
    rated_kw = curve["value"].max() / 1000.0
    # strong wind (mean 9 m/s at 10 m) so that many hours sit at rated power or beyond cut-out
    values = wind_series(spec(turbine=turbine, capacity_kw=rated_kw, mean_wind_ms=9.0, seed=3)).array(2000)
    assert values.max() <= rated_kw * (1 + 1e-12)
    assert values.max() == pytest.approx(rated_kw)              # it does reach rated power
    assert values.min() >= 0.0


def test_a_farm_follows_the_curve_at_hub_height_by_windpowerlibs_log_profile():
    farm = Farm("VS112/2500", hub_height=100, capacity_kw=5000, roughness_length_m=0.03, wind_height_m=10)
    # 10 m speeds whose hub-height speeds (x ln(100/0.03) / ln(10/0.03)) hit the curve's points
    ratio = math.log(100 / 0.03) / math.log(10 / 0.03)
    kw = farm.power_kw(np.array([3.0, 8.0, 12.0, 26.0]) / ratio)
    # two turbines (5,000 kW / 2,500 kW); VS112/2500 curve: 3 m/s 0, 8 m/s 1290.1 kW, 12+ 2500, 26 cut out
    assert kw == pytest.approx([0.0, 2 * 1290.1, 5000.0, 0.0], abs=1e-6)


def test_wind_speed_is_weibull_with_the_asked_mean_and_persists_hour_to_hour():
    speeds = wind_speed_series(spec(mean_wind_ms=5.0, seed=4)).array(24 * 365 * 4)
    assert speeds.mean() == pytest.approx(5.0, rel=0.05)
    assert speeds.min() >= 0.0
    # Weibull k = 2 (Rayleigh): std / mean = sqrt(4 / pi - 1) = 0.523
    assert speeds.std() / speeds.mean() == pytest.approx(0.523, rel=0.05)
    assert np.corrcoef(speeds[:-1], speeds[1:])[0, 1] > 0.85


def test_a_seed_reproduces_its_series_exactly_however_it_is_asked_for():
    whole = wind_series(spec(seed=8)).array(500)
    again = wind_series(spec(seed=8))
    assert [again.at(t) for t in (0, 1, 170, 171, 499)] == [whole[t] for t in (0, 1, 170, 171, 499)]
    assert np.array_equal(again.array(500), whole)
    assert not np.array_equal(wind_series(spec(seed=9)).array(500), whole)


def test_a_windier_site_gives_more_energy():
    calm = wind_series(spec(mean_wind_ms=4.0, seed=2)).array(24 * 90).sum()
    windy = wind_series(spec(mean_wind_ms=6.0, seed=2)).array(24 * 90).sum()
    assert windy > 1.5 * calm
