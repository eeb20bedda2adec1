"""Solar from pvlib (docs/ENERGY.md): checked against pvlib's own clear-sky PVWatts ModelChain."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from pvlib.location import Location, lookup_altitude
from pvlib.modelchain import ModelChain
from pvlib.pvsystem import PVSystem
from pvlib.temperature import TEMPERATURE_MODEL_PARAMETERS

from suanli.energy.solar import solar_series
from suanli.model.series import SolarSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # pvlib on pandas 3

QINGYANG = (35.71, 107.64)
JUNE_DAY = datetime.fromisoformat("2026-06-21T00:00:00+08:00")     # local midnight, a clear-sky day


def spec(**overrides) -> SolarSpec:
    fields = {"model": "solar", "capacity_kw": 1000.0, "tilt": 30.0, "cloud_cover": 0.0, "seed": 1} | overrides
    return SolarSpec(**fields)


def pvlib_reference_hourly_kw(capacity_kw: float, tilt: float, start: datetime, hours: int) -> np.ndarray:
    """pvlib's ModelChain.with_pvwatts on 1-minute clear-sky weather, averaged per hour (kW)."""
    lat, lon = QINGYANG
    location = Location(lat, lon, altitude=float(lookup_altitude(lat, lon)))
    system = PVSystem(surface_tilt=tilt, surface_azimuth=180,
                      module_parameters={"pdc0": capacity_kw * 1000, "gamma_pdc": -0.004},
                      inverter_parameters={"pdc0": capacity_kw * 1000},
                      temperature_model_parameters=TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"])
    times = pd.date_range(pd.Timestamp(start), periods=hours * 60, freq="min")
    mc = ModelChain.with_pvwatts(system, location)
    mc.run_model(location.get_clearsky(times))
    return mc.results.ac.to_numpy().reshape(hours, 60).mean(axis=1) / 1000.0


@pytest.fixture(scope="module")
def june_day():
    ours = solar_series(spec(), *QINGYANG, JUNE_DAY).array(24)
    ref = pvlib_reference_hourly_kw(1000.0, 30.0, JUNE_DAY, 24)
    return ours, ref


def test_clear_june_day_at_qingyang_is_within_5_percent_of_pvlib_pvwatts(june_day):
    ours, ref = june_day
    assert ours.sum() == pytest.approx(ref.sum(), rel=0.05)
    assert np.max(np.abs(ours - ref)) <= 0.05 * ref.max()     # each hour within 5 % of the day's peak
    assert int(np.argmax(ours)) == int(np.argmax(ref))


def test_no_solar_at_night_and_none_above_capacity(june_day):
    ours, _ = june_day
    night = list(range(0, 5)) + list(range(21, 24))         # local hours, sunrise ~05:40, sunset ~19:50
    assert np.all(ours[night] == 0.0)
    assert ours[12] > 600                                   # 1 MW DC at noon in June: most of it
    assert np.all(ours <= 1000.0)


def test_slot_zero_is_the_scenarios_start_whatever_its_offset():
    same_instant = datetime.fromisoformat("2026-06-20T16:00:00+00:00")     # = 2026-06-21 00:00 +08:00
    a = solar_series(spec(), *QINGYANG, JUNE_DAY).array(24)
    b = solar_series(spec(), *QINGYANG, same_instant).array(24)
    assert np.array_equal(a, b)
    shifted = solar_series(spec(), *QINGYANG, datetime.fromisoformat("2026-06-21T06:00:00+08:00")).array(18)
    assert shifted == pytest.approx(a[6:24], rel=0.02, abs=1.0)


def test_clouds_average_to_one_minus_cloud_cover():
    clear = solar_series(spec(), *QINGYANG, JUNE_DAY).array(24 * 60)
    cloudy = solar_series(spec(cloud_cover=0.4, seed=5), *QINGYANG, JUNE_DAY).array(24 * 60)
    day = clear > 0
    ratio = cloudy[day] / clear[day]
    assert np.all((ratio >= 0) & (ratio <= 1 + 1e-12))
    assert cloudy.sum() / clear.sum() == pytest.approx(0.6, abs=0.08)
    assert np.corrcoef(ratio[:-1], ratio[1:])[0, 1] > 0.5      # clouds persist from hour to hour


def test_full_cloud_cover_gives_nothing_and_zero_capacity_gives_nothing():
    assert not solar_series(spec(cloud_cover=1.0), *QINGYANG, JUNE_DAY).array(48).any()
    assert not solar_series(spec(capacity_kw=0.0), *QINGYANG, JUNE_DAY).array(48).any()


def test_a_seed_reproduces_its_series_exactly_however_it_is_asked_for():
    one = solar_series(spec(cloud_cover=0.3, seed=9), *QINGYANG, JUNE_DAY)
    long_first = one.array(400)
    other = solar_series(spec(cloud_cover=0.3, seed=9), *QINGYANG, JUNE_DAY)
    pieces = [other.at(t) for t in range(0, 400, 37)]
    assert pieces == [long_first[t] for t in range(0, 400, 37)]
    assert np.array_equal(other.array(100), long_first[:100])
    different = solar_series(spec(cloud_cover=0.3, seed=10), *QINGYANG, JUNE_DAY).array(400)
    assert not np.array_equal(different, long_first)
