"""Forecasts from readings: a site's renewables and grid carbon ahead, made from what it measured.

Pure and I/O-free: the caller hands in the site's models (`site_models`, from the network file)
and its hourly history of measurements (`HourlyHistory`), and gets the hours ahead
(`site_forecast` -> `SiteForecast`). Units: kW (hourly means) for renewables, kg CO2e/kWh for
grid carbon; time in slots (hours since slot 0, the network's hour 0; MODEL.md §2).

Lead L of a forecast for slot t is t - a, where a is the last hour with a reading at or before
`now_h` (readings are hourly means: the caller passes complete hours only, so live, a = now_h - 1
and the current hour is lead 1). Slots up to a give the reading itself (lead 0 is the measurement).

Methods (docs/ENERGY.md "Forecasts from readings" says why, and measures them):
- **Solar** (`renewables.kw` a `{model: solar}` spec): clear-sky output C(t) is the spec's own
  pvlib plant (Ineichen clear sky, PVWatts; `energy.solar`) at the site's city for the wall time
  of slot t. The clear-sky index of a daylight hour (C >= `MIN_CLEAR_SHARE` of capacity) is
  reading / C, clipped to [0, `INDEX_MAX`]. Forecast: C(t) * (k_clim + (k_a - k_clim) *
  exp(-(t - a_k) / `TAU_SOLAR_H`)), where a_k is the last daylight hour read and k_a its index,
  and k_clim the climatological index: the energy-weighted index of the daylight hours of the last
  `WINDOW_H` hours of readings, shrunk toward the spec's expected index (1 - cloud_cover) with the
  weight of `PRIOR_DAYLIGHT_H` daylight hours. Zero at night (C = 0).
- **Wind, an explicit renewables series, grid carbon**: persistence of the anomaly, decaying
  into the daily profile: P(t mod 24) + (x_a - P(a mod 24)) * exp(-(t - a) / tau), with tau
  `TAU_WIND_H` (renewables) or `TAU_CARBON_H` (carbon). The daily profile P is the mean by hour
  of day (slot mod 24) of the last `WINDOW_H` hours of readings, each hour shrunk toward the
  model's mean at that hour (over `WINDOW_H` hours of the model) with the weight of `PRIOR_DAYS`
  readings. Carrying the anomaly rather than the value keeps a daily cycle in phase: noon's
  value is never carried to midnight.
- A series with no finite reading in its window is the network file's model, unchanged (the
  service's behaviour without meters). Renewables and carbon are judged separately.
- Forecasts are clipped at 0 and, where the spec gives one, at the site's capacity.

A site's `renewables.kw` holds one model (MODEL.md §2: a solar spec, a wind spec or a series), so
a site's renewable reading is all of one kind and never needs splitting between solar and wind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from suanli.model.scenario import Scenario
from suanli.model.series import SeriesLike, SolarSpec, WindSpec

HORIZON_MAX_H = 168            # the longest forecast asked for: a week
HISTORY_MAX_H = 366 * 24       # the longest history accepted: a year of hours
WINDOW_H = 28 * 24             # readings the climatology and the daily profile use: the last 4 weeks,
                               # recent enough to follow the season, long enough to average weather out
# e-folding times of the persistence, hours. Solar and wind: those of the latent AR(1) weather of
# the models themselves (energy.solar CLOUD_PHI 0.9 -> -1/ln 0.9 = 9.5 h; energy.wind WIND_PHI
# 0.95 -> 19.5 h): weather "remembers" that long in the network file's own description of the site.
TAU_SOLAR_H = -1.0 / math.log(0.9)
TAU_WIND_H = -1.0 / math.log(0.95)
TAU_CARBON_H = 12.0            # half a day: a grid's mix follows its dispatch and load more than weather
PRIOR_DAYS = 3.0               # the model's daily profile weighs as much as 3 days of readings
PRIOR_DAYLIGHT_H = 24.0        # the model's clear-sky index weighs as much as 24 daylight hours read
MIN_CLEAR_SHARE = 0.05         # daylight: clear-sky output >= 5 % of capacity (dawn and dusk indices
                               # are ratios of small numbers)
INDEX_MAX = 1.3                # clear-sky indices above this are meter or model errors (cloud
                               # enhancement stays below it in hourly means)
CLEAR_BLOCK = 168              # slots of clear-sky output computed at once and kept


class ClearSky:
    """Clear-sky output, kW, of a solar spec's plant at a place, per slot, computed a week at a
    time and kept (pvlib is the slow part)."""

    def __init__(self, spec: SolarSpec, lat: float, lon: float, start: datetime):
        from suanli.energy.solar import ClearSkyPlant

        self.plant = ClearSkyPlant(spec.capacity_kw, lat, lon, spec.tilt, spec.azimuth)
        self.start = start
        self._blocks: dict[int, np.ndarray] = {}

    def kw(self, first: int, n: int) -> np.ndarray:
        """Mean clear-sky kW of slots first .. first+n-1 (first >= 0)."""
        from suanli.energy.solar import clear_sky_slots_kw

        if n <= 0:
            return np.zeros(0)
        b0, b1 = first // CLEAR_BLOCK, (first + n - 1) // CLEAR_BLOCK
        for b in range(b0, b1 + 1):
            if b not in self._blocks:
                self._blocks[b] = clear_sky_slots_kw(self.plant, self.start, b * CLEAR_BLOCK, CLEAR_BLOCK)
        whole = np.concatenate([self._blocks[b] for b in range(b0, b1 + 1)])
        return whole[first - b0 * CLEAR_BLOCK:first - b0 * CLEAR_BLOCK + n]


@dataclass
class SiteModels:
    """What the nowcast knows of a site from the network file.

    renewable, carbon: the network file's series (kW; kg CO2e/kWh). solar: the site's solar spec,
    if its renewables are one; clear: its clear-sky output then. capacity_kw: the spec's capacity
    (solar or wind), None for an explicit series."""

    site: str
    renewable: SeriesLike
    carbon: SeriesLike
    solar: SolarSpec | None = None
    clear: ClearSky | None = None
    capacity_kw: float | None = None

    @property
    def method(self) -> str:
        return "clear-sky index" if self.solar is not None else "daily profile"


def site_models(scn: Scenario, site: str, start: datetime | None = None) -> SiteModels:
    """A site's models from a loaded network file. `start`: the wall time of slot 0 (the service's
    epoch; default the file's `start`), needed, with a UTC offset, where the site has a solar spec."""
    sids = list(scn.sites)
    if site not in scn.sites:
        raise KeyError(site)
    k = sids.index(site)
    s = scn.sites[site]
    spec = scn.specs.get(f"sites[{k}].renewables.kw")
    renewable = scn.explicit(s.renewables.kw, f"sites[{k}].renewables.kw")
    carbon = scn.explicit(s.grid.carbon_kg_per_kwh, f"sites[{k}].grid.carbon_kg_per_kwh")
    if isinstance(spec, SolarSpec):
        when = start or scn.start
        if when is None or when.utcoffset() is None:
            raise ValueError(f"site {site}: a solar site's nowcast needs the wall time of slot 0 with a UTC offset")
        lat, lon = scn.cities[s.city]
        return SiteModels(site, renewable, carbon, spec, ClearSky(spec, lat, lon, when), spec.capacity_kw)
    cap = spec.capacity_kw if isinstance(spec, WindSpec) else None
    return SiteModels(site, renewable, carbon, capacity_kw=cap)


def _checked(name: str, values, n: int | None) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of hourly values, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name}: {len(a)} values, expected {n} (one per hour, like renewable_kw)")
    bad = np.flatnonzero(np.isinf(a) | (a < 0))         # NaN compares False: a missing hour, allowed
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {a[i]}: readings must be finite and >= 0 (NaN marks a missing hour)")
    return a


@dataclass(frozen=True)
class HourlyHistory:
    """Measured hourly means of one site: index i is slot `first + i`; NaN where the hour has no
    reading. renewable_kw: kW the site's renewables gave (the hour's kWh over 1 h); carbon: the
    grid's kg CO2e/kWh where a measured source gives it, else None (the model serves).
    Refused (ValueError naming the field and index): infinite or negative values, unequal
    lengths, more than `HISTORY_MAX_H` hours, a negative `first`."""

    first: int
    renewable_kw: np.ndarray
    carbon_kg_per_kwh: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.first, bool) or not isinstance(self.first, (int, np.integer)) or self.first < 0:
            raise ValueError(f"first: {self.first!r}: expected the slot of the first reading, an integer >= 0")
        ren = _checked("renewable_kw", self.renewable_kw, None)
        if len(ren) > HISTORY_MAX_H:
            raise ValueError(f"renewable_kw: {len(ren)} hours, at most {HISTORY_MAX_H} are accepted")
        object.__setattr__(self, "first", int(self.first))
        object.__setattr__(self, "renewable_kw", ren)
        if self.carbon_kg_per_kwh is not None:
            object.__setattr__(self, "carbon_kg_per_kwh", _checked("carbon_kg_per_kwh", self.carbon_kg_per_kwh,
                                                                   len(ren)))

    @property
    def end(self) -> int:
        """One past the last slot."""
        return self.first + len(self.renewable_kw)

    @classmethod
    def empty(cls) -> HourlyHistory:
        return cls(0, np.zeros(0))


@dataclass(frozen=True)
class SiteForecast:
    """A site's forecasts issued at `now_h` for slots now_h .. now_h + horizon_h, with the readings
    they came from. `*_from` says "readings" or "model" (no usable reading: the network file's)."""

    site: str
    now_h: int
    horizon_h: int
    renewable_kw: np.ndarray
    carbon_kg_per_kwh: np.ndarray
    renewable_from: str
    carbon_from: str
    history: HourlyHistory = field(default_factory=HourlyHistory.empty)

    def series(self, kind: str, model: SeriesLike, slots: int) -> np.ndarray:
        """Slots 0 .. slots-1 of `kind` ("renewables" or "carbon") as a policy sees them at now_h:
        the readings before now_h (the model where an hour has none), this forecast from now_h to
        now_h + horizon_h, the model after it."""
        out = np.array(model.array(slots), dtype=float)
        if kind == "renewables":
            past, ahead, used = self.history.renewable_kw, self.renewable_kw, self.renewable_from
        elif kind == "carbon":
            past, ahead, used = self.history.carbon_kg_per_kwh, self.carbon_kg_per_kwh, self.carbon_from
        else:
            raise ValueError(f"kind: {kind!r}: expected renewables or carbon")
        if used == "model":
            return out
        if past is not None:
            lo, hi = self.history.first, min(self.history.end, self.now_h, slots)
            if hi > lo:
                seen = past[:hi - lo]
                mask = np.isfinite(seen)
                out[lo:hi][mask] = seen[mask]
        hi = min(self.now_h + len(ahead), slots)
        if hi > self.now_h:
            out[self.now_h:hi] = ahead[:hi - self.now_h]
        return out


# ----------------------------------------------------------------------------- the methods
def _last_finite(values: np.ndarray) -> int | None:
    idx = np.flatnonzero(np.isfinite(values))
    return int(idx[-1]) if len(idx) else None


def daily_profile(values: np.ndarray, first: int, prior: np.ndarray, prior_weight: float = PRIOR_DAYS) -> np.ndarray:
    """Mean by hour of day (slot mod 24) of `values` (slots first .., NaN ignored), each hour
    shrunk toward `prior` (24 values) with the weight of `prior_weight` readings."""
    hour = (first + np.arange(len(values))) % 24
    ok = np.isfinite(values)
    sums = np.bincount(hour[ok], weights=values[ok], minlength=24)
    counts = np.bincount(hour[ok], minlength=24)
    return (sums + prior_weight * prior) / (counts + prior_weight)


def model_profile(model: SeriesLike, now_h: int) -> np.ndarray:
    """The model's mean by hour of day over `WINDOW_H` slots ending at now_h (from slot 0 while
    now_h is younger than that)."""
    lo = max(0, now_h + 1 - WINDOW_H)
    vals = np.asarray(model.array(lo + WINDOW_H), dtype=float)[lo:]
    hour = (lo + np.arange(WINDOW_H)) % 24
    return np.bincount(hour, weights=vals, minlength=24) / np.bincount(hour, minlength=24)


def profile_forecast(values: np.ndarray, first: int, prior: np.ndarray, slots: np.ndarray, tau_h: float,
                     cap: float | None = None) -> np.ndarray:
    """Anomaly persistence into the daily profile, for target `slots` (after the last reading)."""
    a = _last_finite(values)
    profile = daily_profile(values, first, prior)
    anomaly = values[a] - profile[(first + a) % 24]
    lead = slots - (first + a)
    out = profile[slots % 24] + anomaly * np.exp(-lead / tau_h)
    return np.clip(out, 0.0, cap)


def clear_sky_index(values: np.ndarray, clear: np.ndarray, capacity_kw: float):
    """(daylight mask, indices) of readings against clear-sky output: daylight where clear-sky is
    at least `MIN_CLEAR_SHARE` of capacity and the hour was read."""
    day = np.isfinite(values) & (clear >= MIN_CLEAR_SHARE * capacity_kw) & (clear > 0)
    k = np.zeros(len(values))
    k[day] = np.clip(values[day] / clear[day], 0.0, INDEX_MAX)
    return day, k


def solar_forecast(values: np.ndarray, first: int, models: SiteModels, slots: np.ndarray) -> np.ndarray:
    """Clear-sky output times a clear-sky index decaying from the last daylight reading to the
    climatological index, for target `slots` (after the last reading)."""
    cap = models.capacity_kw or 0.0
    clear_hist = models.clear.kw(first, len(values))
    day, k = clear_sky_index(values, clear_hist, cap)
    k_model = 1.0 - models.solar.cloud_cover
    n = int(day.sum())
    k_hist = float(values[day].sum() / clear_hist[day].sum()) if n else k_model
    k_clim = (n * min(k_hist, INDEX_MAX) + PRIOR_DAYLIGHT_H * k_model) / (n + PRIOR_DAYLIGHT_H)
    days = np.flatnonzero(day)
    if len(days):
        a_k = first + int(days[-1])
        k_a = float(k[days[-1]])
    else:                                   # only night-time readings: nothing to persist
        a_k, k_a = int(slots[0]), k_clim
    index = k_clim + (k_a - k_clim) * np.exp(-(slots - a_k) / TAU_SOLAR_H)
    clear = models.clear.kw(int(slots[0]), len(slots))
    return np.clip(clear * index, 0.0, cap)


def _window(values: np.ndarray | None, first: int, now_h: int) -> tuple[np.ndarray | None, int]:
    """The readings of the last `WINDOW_H` slots up to now_h, and the slot of the first."""
    if values is None:
        return None, first
    hi = min(first + len(values), now_h + 1)
    lo = max(first, now_h + 1 - WINDOW_H)
    if hi <= lo:
        return None, first
    part = values[lo - first:hi - first]
    return (part if np.isfinite(part).any() else None), lo


def site_forecast(models: SiteModels, history: HourlyHistory, now_h: int, horizon_h: int) -> SiteForecast:
    """The forecasts issued at slot `now_h` for slots now_h .. now_h + horizon_h (1 <= horizon_h <=
    `HORIZON_MAX_H`), from `history` (readings after now_h are refused: they are from the future).
    With no reading in a series' window, that series is the model's, unchanged."""
    if isinstance(now_h, bool) or not isinstance(now_h, (int, np.integer)) or now_h < 0:
        raise ValueError(f"now_h: {now_h!r}: expected the current slot, an integer >= 0")
    if isinstance(horizon_h, bool) or not isinstance(horizon_h, (int, np.integer)) \
            or not 1 <= horizon_h <= HORIZON_MAX_H:
        raise ValueError(f"horizon_h: {horizon_h!r}: expected an integer from 1 to {HORIZON_MAX_H}")
    if history.end > now_h + 1:
        raise ValueError(f"history: readings up to slot {history.end - 1}, after now_h = {now_h}")
    now_h, horizon_h = int(now_h), int(horizon_h)
    targets = np.arange(now_h, now_h + horizon_h + 1)
    n = now_h + horizon_h + 1

    def issue(values: np.ndarray | None, model: SeriesLike, make) -> tuple[np.ndarray, str]:
        window, lo = _window(values, history.first, now_h)
        if window is None:
            return np.asarray(model.array(n), dtype=float)[now_h:], "model"
        a = lo + _last_finite(window)
        out = np.empty(len(targets))
        seen = targets <= a                 # the current slot, read already: the reading
        out[seen] = window[targets[seen] - lo]
        out[~seen] = make(window, lo, targets[~seen])
        return out, "readings"

    def renewables(window, lo, slots):
        if models.solar is not None:
            return solar_forecast(window, lo, models, slots)
        return profile_forecast(window, lo, model_profile(models.renewable, now_h), slots, TAU_WIND_H,
                                models.capacity_kw)

    def carbon(window, lo, slots):
        return profile_forecast(window, lo, model_profile(models.carbon, now_h), slots, TAU_CARBON_H)

    ren, ren_from = issue(history.renewable_kw, models.renewable, renewables)
    car, car_from = issue(history.carbon_kg_per_kwh, models.carbon, carbon)
    return SiteForecast(models.site, now_h, horizon_h, ren, car, ren_from, car_from, history)
