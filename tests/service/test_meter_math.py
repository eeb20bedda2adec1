"""The meters' pure arithmetic (service/meters.py `integrate`, `check`), no
database: energies against sums done by hand on the rule of docs/ENERGY.md "Meter readings"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from suanli.service.meters import HOUR_US, US, Reading, Refused, check, integrate, to_us

H0 = to_us(datetime(2026, 6, 1, 8, tzinfo=UTC))
MIN = 60 * US


def test_each_power_holds_until_the_next_reading_capped_at_the_gap_and_is_cut_at_hours_and_slots():
    """Readings at 0, 15, 40, 55 and 70 min past H0; holds [0,15) [15,35) (capped: the next is 25
    min later) [40,55) [55,70) [70,90) (the last one holds for the whole 20-min gap). The carbon
    slots start 15 min before H0, so slot 1 begins at H0+45 min, inside the third hold."""
    pts = [(H0 + 0 * MIN, 100.0, 120.0, 30.0, 90.0),
           (H0 + 15 * MIN, 120.0, 150.0, 0.0, 150.0),
           (H0 + 40 * MIN, 80.0, 100.0, 130.0, -30.0),
           (H0 + 55 * MIN, 60.0, 72.0, 12.0, 60.0),
           (H0 + 70 * MIN, 40.0, 48.0, 0.0, 48.0)]
    factors = {0: 0.5, 1: 0.8}
    out = integrate(pts, max_gap_s=1200, carbon=factors.__getitem__, origin_us=H0 - 15 * MIN)
    assert list(out) == [H0, H0 + HOUR_US]
    a, b = out[H0], out[H0 + HOUR_US]
    # hour H0: 100×15 + 120×20 + 80×15 + 60×5 kW·min = 90 kWh IT, and likewise
    assert a.it_kwh == pytest.approx(25 + 40 + 20 + 5)
    assert a.facility_kwh == pytest.approx(30 + 50 + 25 + 6)
    assert a.renewable_kwh == pytest.approx(7.5 + 0 + 32.5 + 1)
    assert a.grid_kwh == pytest.approx(22.5 + 50 + 0 + 5)       # import only
    assert a.export_kwh == pytest.approx(7.5)                   # 30 kW fed in for 15 min
    assert a.carbon_kg == pytest.approx(22.5 * 0.5 + 50 * 0.5 + 5 * 0.8)
    assert (a.covered_s, a.readings) == (pytest.approx(55 * 60), 4)
    assert a.at == datetime(2026, 6, 1, 8, tzinfo=UTC)
    # hour H0+1: 60 kW for 10 min, 40 kW for 20 min
    assert b.it_kwh == pytest.approx(10 + 40 / 3)
    assert b.facility_kwh == pytest.approx(12 + 16)
    assert b.grid_kwh == pytest.approx(10 + 16)
    assert b.carbon_kg == pytest.approx(26 * 0.8)
    assert (b.covered_s, b.readings) == (pytest.approx(30 * 60), 1)


def test_the_next_reading_outside_the_points_ends_the_last_hold():
    pts = [(H0 - 10 * MIN, 10.0, 10.0, 0.0, 10.0), (H0 + 5 * MIN, 20.0, 20.0, 0.0, 20.0)]
    out = integrate(pts, max_gap_s=1200, next_us=H0 + 15 * MIN)
    assert list(out) == [H0 - HOUR_US, H0]
    # the reading 10 min before the hour holds into it for 5 min (until the next), not counted as taken in it
    assert out[H0].it_kwh == pytest.approx(10 * 5 / 60 + 20 * 10 / 60)
    assert (out[H0].covered_s, out[H0].readings) == (15 * 60, 1)
    # a next reading beyond the gap does not stretch the hold
    assert integrate(pts, max_gap_s=1200, next_us=H0 + 60 * MIN)[H0].covered_s == 25 * 60


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OK = Reading(NOW - timedelta(hours=1), 10.0, 12.0, 1.0, 11.0, 5.0)


@pytest.mark.parametrize("change,field", [
    (dict(it_kw=-1.0), "it_kw"), (dict(renewable_kw=-0.5), "renewable_kw"), (dict(facility_kw=9.0), "facility_kw"),
    (dict(grid_kw=-0.1), "grid_kw"), (dict(battery_soc_kwh=-1.0), "battery_soc_kwh"),
    (dict(battery_soc_kwh=101.0), "battery_soc_kwh"), (dict(it_kw=float("nan")), "it_kw"),
    (dict(grid_kw=float("inf")), "grid_kw"), (dict(at=NOW + timedelta(minutes=6)), "at"),
    (dict(at=NOW - timedelta(days=2)), "at"), (dict(at=datetime(2026, 6, 1, 11)), "at")])
def test_an_impossible_value_is_refused_naming_the_reading_and_field(change, field):
    from dataclasses import replace
    last = replace(OK, **{"at": OK.at + timedelta(seconds=2), **change})
    batch = [OK, replace(OK, at=OK.at + timedelta(seconds=1)), last]
    with pytest.raises(Refused) as e:
        check(batch, now=NOW, floor=NOW - timedelta(days=1), battery_kwh=100.0)
    assert (e.value.index, e.value.field) == (2, field)
    assert str(e.value).startswith(f"readings.2.{field}: ")


def test_export_is_allowed_down_to_the_sites_export_limit():
    from dataclasses import replace
    check([replace(OK, grid_kw=-50.0)], now=NOW, floor=NOW - timedelta(days=1), export_kw=50.0)
    with pytest.raises(Refused, match=r"readings\.0\.grid_kw: -50\.5 is not possible: exports more"):
        check([replace(OK, grid_kw=-50.5)], now=NOW, floor=NOW - timedelta(days=1), export_kw=50.0)
    # clock skew: up to 5 minutes ahead is taken
    check([replace(OK, at=NOW + timedelta(minutes=5))], now=NOW, floor=NOW - timedelta(days=1))
