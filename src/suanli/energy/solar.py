"""Solar power from physics: pvlib's clear-sky PVWatts model times a seeded cloud factor.

For a `SolarSpec` at a city (lat, lon) and a scenario start, slot t's value is the mean AC
power of the plant over [t, t+1) h, in kW:

- pvlib `Location(lat, lon, altitude)`, the altitude from pvlib's bundled lookup table;
- clear-sky irradiance: Ineichen with pvlib's bundled Linke-turbidity climatology;
- `ModelChain.with_pvwatts`: solar position, Perez transposition onto the plane (tilt,
  azimuth), physical AOI loss, SAPM cell temperature (open rack, glass/polymer) at pvlib's
  defaults of 20 °C air and 0 m/s wind, PVWatts DC (gamma -0.4 %/°C), PVWatts system
  losses (14.08 %), PVWatts inverter (96 % nominal) rated at the DC nameplate;
- evaluated at `SAMPLES_PER_SLOT` instants spread evenly over the slot and averaged;
- times a cloud factor per slot in [0, 1]: Beta-distributed with mean 1 - cloud_cover,
  autocorrelated hour to hour (`suanli.energy.stochastic`, seeded by `seed`).

Nothing here touches the network: pvlib reads its bundled data files.
"""

from __future__ import annotations

import warnings
from datetime import datetime

import numpy as np

from suanli.energy.stochastic import CLOUD_STREAM, Ar1Uniform, beta_quantile
from suanli.model.series import ComputedSeries, SolarSpec

SAMPLES_PER_SLOT = 4       # instants per 1-h slot (every 15 min, at 7.5, 22.5, 37.5, 52.5 min)
CLOUD_PHI = 0.9            # hour-to-hour autocorrelation of the latent cloud process
CLOUD_CONCENTRATION = 2.0  # a + b of the Beta cloud factor: small = often clear or overcast
GAMMA_PDC = -0.004         # PVWatts DC temperature coefficient, 1/°C (crystalline silicon)


class ClearSkyPlant:
    """A fixed-tilt PV plant at a place, run through pvlib's PVWatts ModelChain on clear sky."""

    def __init__(self, capacity_kw: float, lat: float, lon: float, tilt: float | None = None,
                 azimuth: float = 180.0):
        from pvlib.location import Location, lookup_altitude
        from pvlib.modelchain import ModelChain
        from pvlib.pvsystem import PVSystem
        from pvlib.temperature import TEMPERATURE_MODEL_PARAMETERS

        self.capacity_kw = capacity_kw
        self.location = Location(lat, lon, altitude=float(lookup_altitude(lat, lon)))
        self.system = PVSystem(
            surface_tilt=abs(lat) if tilt is None else tilt, surface_azimuth=azimuth,
            module_parameters={"pdc0": capacity_kw * 1000.0, "gamma_pdc": GAMMA_PDC},
            inverter_parameters={"pdc0": capacity_kw * 1000.0},
            temperature_model_parameters=TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"])
        self._model_chain = ModelChain.with_pvwatts

    def ac_kw(self, times) -> np.ndarray:
        """AC power, kW, at each instant of a tz-aware pandas DatetimeIndex."""
        if self.capacity_kw <= 0:
            return np.zeros(len(times))
        with warnings.catch_warnings():        # pvlib's own pandas deprecations: not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            mc = self._model_chain(self.system, self.location)
            mc.run_model(self.location.get_clearsky(times))
        return np.clip(np.asarray(mc.results.ac, dtype=float), 0.0, None) / 1000.0


def slot_instants(start: datetime, first: int, n: int, samples: int = SAMPLES_PER_SLOT):
    """UTC instants evenly spread over slots first .. first+n-1 (`samples` per slot, at their middles)."""
    import pandas as pd

    offsets_h = first + (np.arange(n * samples) + 0.5) / samples
    return pd.Timestamp(start).tz_convert("UTC") + pd.to_timedelta(offsets_h * 3600.0, unit="s")


def clear_sky_slots_kw(plant: ClearSkyPlant, start: datetime, first: int, n: int) -> np.ndarray:
    """Mean clear-sky AC power, kW, of slots first .. first+n-1."""
    ac = plant.ac_kw(slot_instants(start, first, n))
    return ac.reshape(n, SAMPLES_PER_SLOT).mean(axis=1)


def solar_series(spec: SolarSpec, lat: float, lon: float, start: datetime) -> ComputedSeries:
    """The plant's hourly output, kW, for slots 0, 1, 2, ... from `start` (tz-aware)."""
    plant = ClearSkyPlant(spec.capacity_kw, lat, lon, spec.tilt, spec.azimuth)
    clouds = Ar1Uniform(spec.seed, CLOUD_STREAM, CLOUD_PHI)

    def compute(first: int, n: int) -> np.ndarray:
        factor = beta_quantile(clouds(first, n), 1.0 - spec.cloud_cover, CLOUD_CONCENTRATION)
        return clear_sky_slots_kw(plant, start, first, n) * factor

    return ComputedSeries(compute, label=f"solar {spec.capacity_kw:g} kW at ({lat:g}, {lon:g})")
