"""Forecasts from readings (suanli.energy.nowcast; docs/ENERGY.md "Forecasts from readings"):
clear-sky solar times a decaying clear-sky index, anomaly persistence into the daily profile for
wind and carbon, the models unchanged without readings, and the same StateView shape as the
simulator's forecasts (scheduling.forecast.LiveForecaster)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import build, make_job, make_site
from suanli.energy import nowcast as nc
from suanli.energy.simulated_readings import readings
from suanli.scheduling import policies
from suanli.scheduling.forecast import Forecaster, LiveForecaster
from suanli.scheduling.ledger import Ledger
from suanli.scheduling.state import PendingJob, Place, StateView

START = "2026-06-01T00:00:00+08:00"      # slot t = local hour t mod 24 (China Standard Time)
SOLAR = {"model": "solar", "capacity_kw": 100, "cloud_cover": 0.3, "seed": 1}
WIND = {"model": "wind", "capacity_kw": 50, "mean_wind_ms": 6.0, "seed": 2}


def network(renewables=SOLAR, carbon=0.6, **more):
    return build(start=START, horizon_h=24, sites=[
        make_site(renewables={"kw": renewables}, grid={"carbon_kg_per_kwh": carbon}),
        make_site("e1", "east", gpus={"a800": {"count": 4, "cny_per_gpu_h": 6.0}})], **more)


@pytest.fixture(scope="module")
def solar():
    return nc.site_models(network(), "w1")


@pytest.fixture(scope="module")
def wind():
    return nc.site_models(network(WIND), "w1")


def history(ren, carbon=None, first=0):
    return nc.HourlyHistory(first, np.asarray(ren, dtype=float), None if carbon is None else np.asarray(carbon, float))


# ----------------------------------------------------------------------------- solar
def test_clear_sky_is_zero_at_night_and_so_is_the_solar_forecast(solar):
    clear = solar.clear.kw(0, 48)
    assert clear[[0, 1, 2, 22, 23, 24, 47]].max() == 0.0          # local midnight to 03:00, 22:00 on
    assert clear[12] > 0.6 * solar.capacity_kw                      # a June noon in Qingyang
    ren = clear[:20] * 0.7                                          # read up to 19:00 on day 0
    f = nc.site_forecast(solar, history(ren), 19, 48)
    night = solar.clear.kw(19, 49) == 0.0
    assert night.sum() >= 12
    assert np.all(f.renewable_kw[night] == 0.0)
    assert np.all(f.renewable_kw[~night][1:] > 0.0)


def test_the_reading_of_the_current_hour_is_the_forecast_at_lead_0(solar, wind):
    ren = solar.clear.kw(0, 13) * 0.37
    f = nc.site_forecast(solar, history(ren, np.full(13, 0.55)), 12, 24)
    assert f.renewable_kw[0] == ren[12] and f.carbon_kg_per_kwh[0] == 0.55
    w = nc.site_forecast(wind, history(np.arange(13.0)), 12, 24)
    assert w.renewable_kw[0] == 12.0
    # complete hours only (the live case): the current hour is lead 1, not the last reading
    f = nc.site_forecast(solar, history(ren[:12]), 12, 24)
    assert f.renewable_kw[0] != ren[11]


def test_the_clear_sky_index_decays_from_the_last_reading_to_the_climatology(solar):
    days = 28
    clear = solar.clear.kw(0, days * 24)
    ren = clear * 0.8                       # four weeks at index 0.8 ...
    ren[-24 + 16] = clear[-24 + 16] * 0.2   # ... and a dark 16:00 today, read at 16:00
    now = days * 24 - 24 + 16
    f = nc.site_forecast(solar, history(ren[:now + 1]), now, 72)
    cf = solar.clear.kw(now, 73)
    day = (cf >= nc.MIN_CLEAR_SHARE * solar.capacity_kw)
    index = np.where(day, f.renewable_kw / np.where(day, cf, 1.0), np.nan)
    # the documented climatology: energy-weighted index of the window's daylight hours, shrunk toward
    # 1 - cloud_cover with the weight of PRIOR_DAYLIGHT_H hours
    h = clear[:now + 1]
    lit = h >= nc.MIN_CLEAR_SHARE * solar.capacity_kw
    k_hist = ren[:now + 1][lit].sum() / h[lit].sum()
    n = lit.sum()
    k_clim = (n * k_hist + nc.PRIOR_DAYLIGHT_H * 0.7) / (n + nc.PRIOR_DAYLIGHT_H)
    lead = np.arange(73)
    want = k_clim + (0.2 - k_clim) * np.exp(-lead / nc.TAU_SOLAR_H)
    assert np.allclose(index[day & (lead > 0)], want[day & (lead > 0)], rtol=1e-9)
    assert index[1] < 0.45                                 # persists at first ...
    assert abs(index[day][-1] - k_clim) < 1e-3             # ... and is the climatology three days on
    assert 0.7 < k_clim < 0.8


def test_night_only_readings_forecast_the_climatological_index(solar):
    clear = solar.clear.kw(0, 5)
    f = nc.site_forecast(solar, history(np.zeros(5)), 4, 24)        # 00:00 - 04:00: dark anyway
    cf = solar.clear.kw(4, 25)
    noon = 12 - 4
    assert clear.max() == 0.0
    assert f.renewable_kw[noon] == pytest.approx(cf[noon] * 0.7)     # the model's index: nothing measured


# ----------------------------------------------------------------------------- daily profile
def test_wind_and_carbon_carry_the_anomaly_into_the_daily_profile(wind):
    days = 28
    hour = np.arange(days * 24) % 24
    cycle = 0.5 + 0.1 * np.cos(2 * math.pi * hour / 24)         # a grid's daily carbon cycle
    car = cycle.copy()
    now = len(car) - 1
    car[now] += 0.2                                             # now it is dirtier than usual
    ren = np.full(days * 24, 20.0)
    f = nc.site_forecast(wind, history(ren, car), now, 72)
    prior = nc.model_profile(wind.carbon, now)
    assert np.allclose(prior, 0.6)                             # the model: a constant 0.6
    profile = (days * (0.5 + 0.1 * np.cos(2 * math.pi * np.arange(24) / 24)) + nc.PRIOR_DAYS * 0.6)
    profile[now % 24] += 0.2                                   # today's reading is in the mean too
    profile /= days + nc.PRIOR_DAYS
    lead = np.arange(1, 73)
    anomaly = car[now] - profile[now % 24]
    want = profile[(now + lead) % 24] + anomaly * np.exp(-lead / nc.TAU_CARBON_H)
    assert np.allclose(f.carbon_kg_per_kwh[1:], want, rtol=1e-12)
    # in phase: 12 h on, the forecast follows the cycle's other half, not the value now
    assert f.carbon_kg_per_kwh[12] < f.carbon_kg_per_kwh[0] - 0.2
    assert abs(f.carbon_kg_per_kwh[72] - profile[(now + 72) % 24]) < 1e-3


def test_the_daily_profile_shrinks_toward_the_model_where_readings_are_few():
    prior = np.full(24, 10.0)
    vals = np.full(48, np.nan)
    vals[[5, 29]] = 40.0                           # two readings at hour 5, none elsewhere
    p = nc.daily_profile(vals, 0, prior, prior_weight=3.0)
    assert p[5] == pytest.approx((80 + 30) / 5)
    assert np.all(np.delete(p, 5) == 10.0)


def test_wind_forecasts_stay_within_the_farms_capacity(wind):
    ren = np.full(24 * 3, 50.0)                    # rated for three days
    f = nc.site_forecast(wind, history(ren), len(ren) - 1, 168)
    assert f.renewable_kw.max() <= 50.0 and f.renewable_kw.min() >= 0.0


# ----------------------------------------------------------------------------- without readings
@pytest.mark.parametrize("hist", [nc.HourlyHistory.empty(), history(np.full(30, np.nan), np.full(30, np.nan))])
def test_without_readings_the_models_serve_unchanged(solar, wind, hist):
    for models in (solar, wind):
        f = nc.site_forecast(models, hist, 40, 168)
        assert f.renewable_from == f.carbon_from == "model"
        assert np.array_equal(f.renewable_kw, models.renewable.array(209)[40:])
        assert np.array_equal(f.carbon_kg_per_kwh, models.carbon.array(209)[40:])
        assert np.array_equal(f.series("renewables", models.renewable, 300), models.renewable.array(300))


def test_readings_older_than_the_window_are_no_readings(wind):
    f = nc.site_forecast(wind, history(np.full(24, 30.0)), nc.WINDOW_H + 100, 24)
    assert f.renewable_from == "model"


def test_carbon_without_readings_is_the_model_while_renewables_use_theirs(wind):
    f = nc.site_forecast(wind, history(np.full(24, 30.0)), 23, 24)
    assert (f.renewable_from, f.carbon_from) == ("readings", "model")
    assert np.all(f.carbon_kg_per_kwh == 0.6)


# ----------------------------------------------------------------------------- inputs
def test_missing_hours_are_skipped_and_the_last_reading_anchors(wind):
    ren = np.full(48, 20.0)
    ren[-1] = np.nan                                # the last hour was not read
    ren[10:20] = np.nan
    f = nc.site_forecast(wind, history(ren), 47, 24)
    same = nc.site_forecast(wind, history(np.r_[ren[:-1]]), 47, 24)   # as if it had not come yet
    assert np.all(np.isfinite(f.renewable_kw))
    assert np.array_equal(f.renewable_kw, same.renewable_kw)


@pytest.mark.parametrize("make, field", [
    (lambda: history([1.0, np.inf]), "renewable_kw[1]"),
    (lambda: history([1.0, -0.5]), "renewable_kw[1]"),
    (lambda: history([1.0, 2.0], [0.5, -np.inf]), "carbon_kg_per_kwh[1]"),
    (lambda: history([1.0, 2.0], [0.5]), "carbon_kg_per_kwh"),
    (lambda: history([[1.0, 2.0]]), "renewable_kw"),
    (lambda: history(np.zeros(nc.HISTORY_MAX_H + 1)), "renewable_kw"),
    (lambda: history([1.0], first=-1), "first"),
])
def test_impossible_readings_are_refused_naming_the_field(make, field):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value).startswith(field)


@pytest.mark.parametrize("now, horizon, field", [(5, 0, "horizon_h"), (5, 169, "horizon_h"), (5, 2.5, "horizon_h"),
                                                 (-1, 24, "now_h"), (True, 24, "now_h"), (3, 24, "history")])
def test_bad_times_are_refused_naming_the_field(wind, now, horizon, field):
    with pytest.raises(ValueError) as e:
        nc.site_forecast(wind, history(np.ones(6)), now, horizon)   # readings up to slot 5
    assert str(e.value).startswith(field)


def test_the_same_inputs_give_the_same_forecasts_bit_for_bit():
    scn = network()
    a, b = readings(scn, "w1", 24 * 10, seed=4), readings(network(), "w1", 24 * 10, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(readings(scn, "w1", 24 * 10, seed=5)[1], a[1])
    fa = nc.site_forecast(nc.site_models(scn, "w1"), history(*a), 239, 168)
    fb = nc.site_forecast(nc.site_models(network(), "w1"), history(*b), 239, 168)
    assert np.array_equal(fa.renewable_kw, fb.renewable_kw)
    assert np.array_equal(fa.carbon_kg_per_kwh, fb.carbon_kg_per_kwh)


# ----------------------------------------------------------------------------- measured skill
@pytest.mark.parametrize("renewables", [SOLAR, WIND], ids=["solar", "wind"])
def test_the_nowcast_beats_the_model_at_short_leads_on_simulated_readings(renewables):
    """Three weeks of hourly issues after a four-week warm-up: mean absolute error at leads 1 and
    3 h at most 70 % of the model's (the bench measures about 30-50 %), for renewables (solar over
    daylight hours) and carbon."""
    scn = network(renewables)
    models = nc.site_models(scn, "w1")
    warm, issues, leads = nc.WINDOW_H, 21 * 24, np.array([1, 3])
    ren, car = readings(scn, "w1", warm + issues + 4, seed=11)
    hours = np.arange(warm, warm + issues)
    targets = hours[:, None] + leads
    fr, fc = np.empty(targets.shape), np.empty(targets.shape)
    for i, h in enumerate(hours):
        f = nc.site_forecast(models, history(ren[:h + 1], car[:h + 1]), int(h), 3)
        fr[i], fc[i] = f.renewable_kw[leads], f.carbon_kg_per_kwh[leads]
    mask = np.ones(targets.shape, dtype=bool)
    if models.solar is not None:
        mask = models.clear.kw(0, len(ren))[targets] >= nc.MIN_CLEAR_SHARE * models.capacity_kw
    for got, truth, model, m in ((fr, ren, models.renewable.array(len(ren)), mask),
                                 (fc, car, models.carbon.array(len(car)), np.ones_like(mask))):
        for j in range(len(leads)):
            ours = np.abs(got[:, j] - truth[targets[:, j]])[m[:, j]].mean()
            theirs = np.abs(model[targets[:, j]] - truth[targets[:, j]])[m[:, j]].mean()
            assert ours < 0.7 * theirs, (j, ours, theirs)


# ----------------------------------------------------------------------------- what a policy sees
def decisions(view, jobs):
    got = policies.make("suanli").decide(view, [PendingJob(j, j.work_h, j.submit_h) for j in jobs])
    return [(type(d).__name__, getattr(d, "site", None), getattr(d, "start_h", None), getattr(d, "end_h", None))
            for d in got]


def test_a_policy_cannot_tell_live_forecasts_from_the_simulators():
    """Live forecasts holding the simulator's numbers (the readings up to the hour, its forecast
    after) give a policy the very decisions the simulator's forecasts give, for five seeds; and the
    forecasts matter (some seed's decisions differ from those on the true series)."""
    sun = [0] * 7 + [0.4, 0.8, 1.2, 1.6, 1.6, 1.6, 1.6, 1.2, 0.8, 0.4] + [0] * 7    # kW; a job draws 1 kW
    jobs = [make_job(f"j{i}", gpus=4, work_h=3.0, submit_h=5.0, deadline_h=40.0, gpu_types=["a800"])
            for i in range(3)]
    now, mattered = 5, 0
    for seed in range(5):
        scn = build(horizon_h=24, jobs=jobs, forecast={"renewables": {"error": 0.8, "seed": seed}},
                    objective={"carbon_cny_per_kg": 5.0},
                    sites=[make_site(renewables={"kw": sun}, grid={"carbon_kg_per_kwh": 0.8}),
                           make_site("e1", "east", renewables={"kw": sun[6:] + sun[:6]},
                                     grid={"carbon_kg_per_kwh": 0.8},
                                     gpus={"a800": {"count": 8, "cny_per_gpu_h": 4.0}})])
        sim = Forecaster(scn)
        sim.issue(now)
        seen = sim.view_scenario(scn)
        live = LiveForecaster(scn)
        fcs = []
        for sid in scn.sites:
            issued = seen.sites[sid].renewables.kw.array(now + 169)
            truth = scn.sites[sid].renewables.kw.array(now)
            fcs.append(nc.SiteForecast(sid, now, 168, issued[now:], np.full(169, 0.8), "readings", "model",
                                       nc.HourlyHistory(0, truth)))
        assert live.issue(now, fcs)
        shown = live.view_scenario(scn)
        for sid in scn.sites:
            assert np.array_equal(shown.sites[sid].renewables.kw.array(150),
                                  seen.sites[sid].renewables.kw.array(150))
        views = []
        for public in (seen, shown, scn):
            ledger = Ledger(public)
            ledger.reissue(now)
            views.append(StateView(now=float(now), scenario=public, ledger=ledger))
        sim_d, live_d, truth_d = (decisions(v, scn.jobs) for v in views)
        assert sim_d == live_d
        assert all(d[0] == Place.__name__ for d in live_d)
        mattered += live_d != truth_d
    assert mattered >= 1


def test_live_issues_come_once_an_hour_and_fall_back_to_the_model(wind):
    scn = network(WIND)
    live = LiveForecaster(scn)
    shown = live.view_scenario(scn)
    model = scn.sites["w1"].renewables.kw.array(100)
    assert np.array_equal(shown.sites["w1"].renewables.kw.array(100), model)     # nothing issued yet
    f = nc.site_forecast(wind, history(np.full(24, 33.0), np.full(24, 0.4)), 23, 48)
    assert live.issue(23, [f])
    got = shown.sites["w1"].renewables.kw.array(100)
    assert np.all(got[:24] == 33.0) and got[23] == 33.0
    assert np.array_equal(got[24:72], f.renewable_kw[1:])
    assert np.array_equal(got[72:], model[72:])                                  # past the horizon
    assert shown.sites["w1"].grid.carbon_kg_per_kwh.at(30) == f.carbon_kg_per_kwh[7]
    assert np.array_equal(shown.sites["e1"].renewables.kw.array(10), np.zeros(10))   # no readings: model
    assert not live.issue(23, [])                                                # same hour: ignored
    assert shown.sites["w1"].renewables.kw.at(0) == 33.0
    with pytest.raises(ValueError, match="issued at hour 23, not 24"):
        live.issue(24, [f])
    with pytest.raises(ValueError, match="not a site"):
        live.issue(24, [nc.SiteForecast("x9", 24, 1, np.zeros(2), np.zeros(2), "model", "model")])
    assert live.issue(25, [])
    assert np.array_equal(shown.sites["w1"].renewables.kw.array(100), model)
