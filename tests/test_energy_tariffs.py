"""Time-of-use tariffs as data (suanli/energy/data/tou_periods.csv), resolved against the start."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from suanli.energy.tariffs import load_tariffs, tariff_series
from suanli.model.series import TariffSpec

F, P, V = 1.0, 1.5, 0.5
GANSU_BANDS = [F, F, V, V, F, F, F, P, P, F, F, V, V, V, V, V, V, F, P, P, P, P, P, P]   # hours 00..23


def prices(name: str, flat: float, start: str, slots: int) -> np.ndarray:
    return tariff_series(TariffSpec(tariff=name, flat=flat), datetime.fromisoformat(start)).array(slots)


def test_gansu_2021_from_local_midnight_follows_its_periods_every_day():
    assert prices("gansu-2021", 0.4, "2026-06-01T00:00:00+08:00", 48) == pytest.approx(
        [0.4 * m for m in GANSU_BANDS * 2])


def test_the_tariffs_clock_is_china_time_whatever_offset_start_has():
    # 00:00 UTC is 08:00 in China: slot 0 is Gansu's 08:00-09:00 peak, slot 1 its 09:00 flat
    got = prices("gansu-2021", 0.4, "2026-06-01T00:00:00+00:00", 24)
    assert got == pytest.approx([0.4 * m for m in GANSU_BANDS[8:] + GANSU_BANDS[:8]])


def test_a_slot_straddling_two_periods_pays_the_time_weighted_mean():
    # start at 01:30: slot 0 is 01:30-02:30, half flat and half valley
    got = prices("gansu-2021", 1.0, "2026-06-01T01:30:00+08:00", 2)
    assert got == pytest.approx([0.75, 0.5])


def test_zhejiang_2026_has_a_peak_high_band_in_summer_only():
    june = prices("zhejiang-2026", 1.0, "2026-06-01T00:00:00+08:00", 24)
    july = prices("zhejiang-2026", 1.0, "2026-07-01T00:00:00+08:00", 24)
    assert june[19] == pytest.approx(1.85) and july[19] == pytest.approx(2.05)
    assert june[16] == july[16] == pytest.approx(1.85)
    assert june[3] == july[3] == pytest.approx(0.4) and june[12] == pytest.approx(0.4)
    assert june[9] == july[9] == pytest.approx(1.0)


def test_each_minute_takes_its_own_month_across_a_month_end():
    # from 2026-06-30 12:00 China time: slot 30 is 2026-07-01 18:00, the July peak-high
    got = prices("zhejiang-2026", 1.0, "2026-06-30T12:00:00+08:00", 36)
    assert got[6] == pytest.approx(1.85)      # June 30 18:00: spring/autumn peak
    assert got[30] == pytest.approx(2.05)     # July 1 18:00: summer peak-high


def test_every_shipped_tariff_covers_each_minute_of_each_month_once_and_meets_the_national_ratio():
    tariffs = load_tariffs()
    assert set(tariffs) == {"gansu-2021", "zhejiang-2026"}
    for t in tariffs.values():
        assert t.minute_multipliers.shape == (12, 1440) and not np.isnan(t.minute_multipliers).any()
        assert t.minute_multipliers.max() / t.minute_multipliers.min() >= 3.0    # NDRC 2021: at least 3:1
        assert t.utc_offset.utcoffset(None).total_seconds() == 8 * 3600
        assert t.source
    assert tariffs["zhejiang-2026"].status == "uncertain"


def test_resolution_does_not_depend_on_how_many_slots_are_asked_for():
    spec = TariffSpec(tariff="zhejiang-2026", flat=0.6)
    start = datetime.fromisoformat("2026-06-28T05:00:00+08:00")
    whole = tariff_series(spec, start).array(24 * 10)
    piecewise = tariff_series(spec, start)
    assert [piecewise.at(t) for t in range(0, 240, 7)] == [whole[t] for t in range(0, 240, 7)]
