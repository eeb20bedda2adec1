"""Forecasts: what a policy sees of renewables and grid carbon ahead (MODEL.md §7).

A scenario's `forecast:` block gives, per series, the relative error of a 24-hour-ahead forecast
and a seed. The error model (docs/MODEL.md §7 states it for users):

- For site k (its position in `sites`) and series c (renewables or carbon), shocks
  ξ_t ~ N(0, 1), one per slot t, drawn from NumPy's PCG64 seeded with (seed, c, k, block) in
  blocks of 168 slots: the same for every policy, run and length asked for.
- The forecast issued at hour h (at the start of slot h) for slot t is
      truth(t)                                        for t <= h (lead 0: exact)
      truth(t) * max(0, 1 + σ (ξ_{h+1} + ... + ξ_t))   for t > h,  σ = error / sqrt(24)
  so the relative error of a forecast with lead L = t - h has standard deviation
  error * sqrt(L / 24): 0 at lead 0, `error` at 24 h, growing with the square root of the lead
  (a random walk in lead time: errors of neighbouring slots are correlated, as a missed cloudy
  afternoon is). Never negative. The forecast issued at h + 1 keeps every shock but ξ_{h+1},
  which has come true: a slot's forecasts close in on the truth as it approaches.

Tariffs are published, so they are never forecast. A scenario without a `forecast:` block (or a
series it does not name) is forecast perfectly. Units are the series' own (kW, kg CO2e/kWh).

The live controller has no truth to add errors to: its forecasts come from each site's readings
(`energy.nowcast`). `LiveForecaster` hands them to policies in the same shape: a scenario whose
series read the forecasts of the current issue (the readings before the issue hour, the forecast
from it), re-issued once an hour, with `Ledger.reissue` told the hour, so a policy cannot tell
which of the two made what it sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from suanli.energy.nowcast import SiteForecast
from suanli.model.scenario import Scenario
from suanli.model.schema import ForecastError
from suanli.model.series import SeriesLike

BLOCK = 168                          # slots of shocks drawn at once (a week)
KINDS = {"renewables": 0, "carbon": 1}   # the series tag in the seed


class SeriesForecast:
    """One site's forecast of one series: `issued(h, n)` is the forecast issued at hour `h` for
    slots 0 .. n-1 (exact up to slot h)."""

    def __init__(self, truth: SeriesLike, spec: ForecastError, kind: str, site_pos: int):
        self.truth = truth
        self.sigma = spec.error / math.sqrt(24.0)
        self.key = (int(spec.seed), KINDS[kind], site_pos)
        self._walk = np.zeros(0)       # walk[t] = ξ_0 + ... + ξ_t

    def _grow(self, n: int) -> None:
        while len(self._walk) < n:
            block = len(self._walk) // BLOCK
            seed = np.random.SeedSequence([self.key[0] % 2**64, *self.key[1:], block])   # words >= 0
            shocks = np.random.Generator(np.random.PCG64(seed)).standard_normal(BLOCK)
            start = self._walk[-1] if len(self._walk) else 0.0
            self._walk = np.concatenate([self._walk, start + np.cumsum(shocks)])

    def factor(self, h: int, n: int) -> np.ndarray:
        """Forecast / truth for slots 0 .. n-1, issued at hour h: 1 up to slot h, then
        max(0, 1 + σ × the shocks after h)."""
        out = np.ones(n)
        if self.sigma == 0.0 or n <= h + 1:
            return out
        self._grow(n)
        base = self._walk[h] if h >= 0 else 0.0
        out[h + 1:] = np.maximum(0.0, 1.0 + self.sigma * (self._walk[h + 1:n] - base))
        return out

    def issued(self, h: int, n: int) -> np.ndarray:
        return self.truth.array(n) * self.factor(h, n)


class Forecaster:
    """Every forecast series of a scenario, and the hour of the forecasts now issued.

    `issue(h)` moves to the forecasts issued at the start of hour h (the simulator calls it when
    its clock enters a new hour). The series in `view_scenario` read the current issue.
    """

    def __init__(self, scn: Scenario):
        spec = scn.forecast
        self.issue_h = 0
        self.series: dict[tuple[str, str], SeriesForecast] = {}
        for k, (sid, site) in enumerate(scn.sites.items()):
            if spec is not None and spec.renewables is not None:
                truth = scn.explicit(site.renewables.kw, f"sites[{k}].renewables.kw")
                self.series[(sid, "renewables")] = SeriesForecast(truth, spec.renewables, "renewables", k)
            if spec is not None and spec.carbon is not None:
                truth = scn.explicit(site.grid.carbon_kg_per_kwh, f"sites[{k}].grid.carbon_kg_per_kwh")
                self.series[(sid, "carbon")] = SeriesForecast(truth, spec.carbon, "carbon", k)

    def __bool__(self) -> bool:
        return bool(self.series)

    def issue(self, h: int) -> bool:
        """Issue the forecasts of hour `h`; whether they changed."""
        if h == self.issue_h:
            return False
        self.issue_h = h
        return True

    def view_scenario(self, scn: Scenario) -> Scenario:
        """`scn` with each forecast series replaced by one that reads the current issue (the
        same object for the whole run: policies key their caches on it)."""
        sites = {}
        for sid, site in scn.sites.items():
            ren = self.series.get((sid, "renewables"))
            carbon = self.series.get((sid, "carbon"))
            update = {}
            if ren is not None:
                update["renewables"] = site.renewables.model_copy(update={"kw": ForecastSeries(self, ren)})
            if carbon is not None:
                update["grid"] = site.grid.model_copy(update={"carbon_kg_per_kwh": ForecastSeries(self, carbon)})
            sites[sid] = site.model_copy(update=update) if update else site
        return replace(scn, sites=sites)


class ForecastSeries:
    """A series as a policy sees it now: the forecast of the forecaster's current issue."""

    def __init__(self, forecaster: Forecaster, forecast: SeriesForecast):
        self.forecaster = forecaster
        self.forecast = forecast

    def at(self, t: int) -> float:
        return float(self.array(t + 1)[t])

    def array(self, slots: int) -> np.ndarray:
        return self.forecast.issued(self.forecaster.issue_h, slots)


class LiveForecaster:
    """The live controller's forecasts: one `SiteForecast` per site with readings (`energy.nowcast`),
    issued once an hour; the network file's model for a site without one.

    `issue(h, forecasts)` moves to the forecasts issued at hour h (a second issue in the same hour
    is ignored, as the simulator's: policies key their caches on the hour, `Ledger.issue`). The
    series in `view_scenario` read the current issue.
    """

    def __init__(self, scn: Scenario):
        self.issue_h: int | None = None          # None: nothing issued yet, every series is the model
        self.current: dict[str, SiteForecast] = {}
        self.sites = set(scn.sites)

    def issue(self, h: int, forecasts: Iterable[SiteForecast]) -> bool:
        """Issue `forecasts` (issued at hour h) as the forecasts of hour h; whether they changed.
        A site not among them falls back to its model."""
        if h == self.issue_h:
            return False
        current = {}
        for f in forecasts:
            if f.site not in self.sites:
                raise ValueError(f"forecast for site {f.site!r}: not a site of the network")
            if f.now_h != h:
                raise ValueError(f"forecast for site {f.site!r} was issued at hour {f.now_h}, not {h}")
            current[f.site] = f
        self.issue_h, self.current = h, current
        return True

    def view_scenario(self, scn: Scenario) -> Scenario:
        """`scn` with every site's renewables and grid carbon read through the current issue (the
        same objects for the whole run: policies key their caches on them)."""
        sites = {}
        for k, (sid, site) in enumerate(scn.sites.items()):
            ren = NowcastSeries(self, sid, "renewables", scn.explicit(site.renewables.kw, f"sites[{k}].renewables.kw"))
            carbon = NowcastSeries(self, sid, "carbon", site.grid.carbon_kg_per_kwh)
            sites[sid] = site.model_copy(update={
                "renewables": site.renewables.model_copy(update={"kw": ren}),
                "grid": site.grid.model_copy(update={"carbon_kg_per_kwh": carbon})})
        return replace(scn, sites=sites)


class NowcastSeries:
    """A series as a policy sees it live: the current issue's readings and forecast for its site
    (`SiteForecast.series`), else the network file's model."""

    def __init__(self, forecaster: LiveForecaster, site: str, kind: str, model):
        self.forecaster, self.site, self.kind, self.model = forecaster, site, kind, model
        self._last: tuple[tuple, np.ndarray] | None = None      # (issue, slots) -> values

    def at(self, t: int) -> float:
        return float(self.array(t + 1)[t])

    def array(self, slots: int) -> np.ndarray:
        f = self.forecaster.current.get(self.site)
        if f is None:
            return np.array(self.model.array(slots), dtype=float)
        key = (self.forecaster.issue_h, id(f), slots)
        if self._last is None or self._last[0] != key:
            self._last = (key, f.series(self.kind, self.model, slots))
        return self._last[1].copy()
