"""Forecasts of renewables and grid carbon (MODEL.md §7; the error model: docs/MODEL.md §7,
suanli.scheduling.forecast): exact at lead 0, the stated error at 24 h, growing with the lead,
the same for every policy of a run, never negative; tariffs exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import build, make_site
from suanli.model.schema import ForecastError
from suanli.model.series import Series
from suanli.scheduling import policies
from suanli.scheduling.forecast import Forecaster, SeriesForecast
from suanli.sim.engine import simulate

TRUTH = Series(tuple(float(v) for v in range(1, 25)))      # 1 .. 24 kW, a daily profile


def forecast(error=0.2, seed=7, site=0, kind="renewables"):
    return SeriesForecast(TRUTH, ForecastError(error=error, seed=seed), kind, site)


def test_the_forecast_is_exact_up_to_the_hour_it_is_issued():
    f = forecast()
    truth = TRUTH.array(100)
    for h in (0, 5, 30):
        got = f.issued(h, 100)
        assert np.array_equal(got[: h + 1], truth[: h + 1])       # lead 0 (and the past): the truth
        assert not np.allclose(got[h + 1:], truth[h + 1:])


def test_the_same_seed_gives_the_same_forecasts_whatever_the_length_asked_for():
    a, b = forecast(seed=3), forecast(seed=3)
    assert np.array_equal(a.issued(4, 400), b.issued(4, 400))
    assert np.array_equal(forecast(seed=3).issued(4, 50), a.issued(4, 400)[:50])
    assert not np.array_equal(forecast(seed=4).issued(4, 50), a.issued(4, 50))
    assert not np.array_equal(forecast(site=1).issued(4, 50), a.issued(4, 50))          # sites differ
    assert not np.array_equal(forecast(kind="carbon").issued(4, 50), a.issued(4, 50))   # and series


def test_the_relative_error_is_error_times_the_root_of_lead_over_24_hours():
    # 4000 independent forecasts (seeds): the spread of forecast / truth - 1 at leads 6, 24, 96 h
    # is 0.1 * sqrt(lead / 24) = 0.05, 0.1, 0.2, within 5 %
    errors = np.array([forecast(error=0.1, seed=s).factor(0, 97)[[6, 24, 96]] - 1.0 for s in range(4000)])
    assert errors.std(axis=0) == pytest.approx([0.05, 0.1, 0.2], rel=0.05)
    assert abs(errors.mean(axis=0)).max() < 0.01                  # unbiased


def test_a_later_issue_keeps_the_shocks_still_to_come_so_forecasts_close_in_on_the_truth():
    f = forecast()
    sigma = 0.2 / math.sqrt(24)
    f10, f11 = f.factor(10, 40), f.factor(11, 40)
    # the forecast issued at 11 drops the shock of slot 11, which came true: 1 + σ Σ_{u=12..t} ξ_u
    assert f11[11] == 1.0 and f10[11] != 1.0
    assert np.allclose(f11[12:] - 1.0, (f10[12:] - 1.0) - (f10[11] - 1.0), atol=1e-12)
    assert abs(f10[11] - 1.0) < 4 * sigma


def test_forecasts_are_never_negative_even_with_a_large_error():
    assert forecast(error=3.0).issued(0, 500).min() >= 0.0


def test_without_a_forecast_block_nothing_is_forecast():
    scn = build()
    assert not Forecaster(scn)


def _scenario(forecast_block):
    site = make_site(renewables={"kw": [100.0 * (1 + t % 24) for t in range(24)]},
                     grid={"carbon_kg_per_kwh": [0.5 + 0.01 * t for t in range(24)], "cny_per_kwh": [0.3, 0.6]})
    jobs = [{"id": f"j{i}", "submit_h": 0.7 * i, "gpus": 2, "work_h": 1.5, "origin": "west"} for i in range(8)]
    return build(sites=[site], jobs=jobs, horizon_h=12, forecast=forecast_block)


class Watch:
    """fifo (or another policy), noting what it sees of w1's series at each call."""

    def __init__(self, inner="fifo"):
        self.inner = policies.make(inner)
        self.name = "watch"
        self.seen = []

    def decide(self, view, jobs):
        site = view.scenario.sites["w1"]
        self.seen.append((view.now, view.ledger.issue, site.renewables.kw.array(48),
                          site.grid.carbon_kg_per_kwh.array(48), site.grid.cny_per_kwh.array(48),
                          view.ledger.renewable["w1"][:48].copy()))
        return self.inner.decide(view, jobs)


def test_every_policy_sees_the_forecasts_issued_at_the_start_of_the_hour():
    scn = _scenario({"renewables": {"error": 0.3, "seed": 7}, "carbon": {"error": 0.1, "seed": 8}})
    truth_kw = scn.sites["w1"].renewables.kw.array(48)
    truth_carbon = scn.sites["w1"].grid.carbon_kg_per_kwh.array(48)
    tariff = scn.sites["w1"].grid.cny_per_kwh.array(48)
    a, b = Watch("fifo"), Watch("cheapest")
    simulate(scn, a)
    simulate(scn, b)
    assert len(a.seen) > 3
    by_time = {now: rest for now, *rest in b.seen}
    for now, issue, kw, carbon, tar, ledger_kw in a.seen:
        h = math.floor(now)
        assert issue == h
        assert np.array_equal(kw[: h + 1], truth_kw[: h + 1]) and not np.allclose(kw[h + 1:], truth_kw[h + 1:])
        assert np.array_equal(carbon[: h + 1], truth_carbon[: h + 1])
        assert not np.allclose(carbon[h + 1:], truth_carbon[h + 1:])
        assert np.array_equal(tar, tariff)                       # tariffs are published: exact
        assert np.array_equal(ledger_kw, kw)                     # the ledger's energy tiers use the same
        assert (kw >= 0).all() and (carbon >= 0).all()
        if now in by_time:                                       # another policy, the same instant
            assert all(np.array_equal(x, y) for x, y in zip((issue, kw, carbon), by_time[now][:3], strict=True))
    # two calls in one hour see one issue; calls in different hours see different ones
    hours = {}
    for now, _, kw, *_ in a.seen:
        hours.setdefault(math.floor(now), []).append(kw)
    assert any(len(v) > 1 for v in hours.values())
    for kws in hours.values():
        assert all(np.array_equal(kws[0], k) for k in kws)
    first, *others = [v[0] for v in hours.values()]
    assert any(not np.array_equal(first, k) for k in others)


def test_without_a_forecast_block_policies_see_the_scenario_series_themselves():
    scn = _scenario(None)
    watch = Watch()
    simulate(scn, watch)
    for _, issue, kw, carbon, _, _ in watch.seen:
        assert issue is None
        assert np.array_equal(kw, scn.sites["w1"].renewables.kw.array(48))
        assert np.array_equal(carbon, scn.sites["w1"].grid.carbon_kg_per_kwh.array(48))


@pytest.mark.parametrize("policy", ["suanli", "cheapest", "greenest", "wait-awhile", "fifo"])
def test_policies_run_on_forecasts_and_their_schedules_are_accounted_on_the_truth(policy):
    from suanli.accounting import account, validate
    scn = _scenario({"renewables": {"error": 0.5, "seed": 1}, "carbon": {"error": 0.2, "seed": 2}})
    result = simulate(scn, policies.make(policy))
    violations, outcomes = validate(scn, result.segments)
    assert violations == [] and all(o.finished for o in outcomes.values())
    m = account(scn, result.segments, outcomes=outcomes).metrics
    assert m["renewable_used_kwh"] <= sum(scn.sites["w1"].renewables.kw.array(account(scn, result.segments).slots))


def test_the_ledger_replays_its_battery_on_the_truth_once_the_hours_have_passed():
    # a battery state reckoned at slot 5 under the hour-0 forecasts used forecast renewables for
    # slots 1-4; once the hour-5 forecasts are issued those slots are known, and it is reckoned again
    from suanli.scheduling.forecast import Forecaster
    from suanli.scheduling.ledger import Ledger
    site = make_site(renewables={"kw": [3.0, 0.5, 4.0, 0.0, 2.0, 1.0]},
                     battery={"capacity_kwh": 10, "power_kw": 2, "efficiency": 0.9, "initial_soc": 0.2})
    scn = build(sites=[site], forecast={"renewables": {"error": 0.8, "seed": 3}})
    forecaster = Forecaster(scn)
    seen = Ledger(forecaster.view_scenario(scn))
    seen.reissue(0)
    seen.add("w1", "a800", 4, 0.0, 6.0)              # 1 kW of load in every slot
    truth = Ledger(scn)
    truth.add("w1", "a800", 4, 0.0, 6.0)
    guessed = seen.battery_at("w1", 5)[0]
    assert guessed != truth.battery_at("w1", 5)[0]
    forecaster.issue(5)
    seen.reissue(5)
    assert seen.battery_at("w1", 5)[0] == truth.battery_at("w1", 5)[0]
