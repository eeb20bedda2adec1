"""Resolve a scenario's series specs (MODEL.md §2) into series, in place.

`model.load` calls `resolve_specs` once a scenario's references are checked. Each spec field
becomes an object with `at(t)` and `array(slots)`, and the spec is kept in `Scenario.specs`
under its field path. What the schema cannot know is checked here, with a ScenarioError
naming the file, the field path and the value: a turbine windpowerlib has no curve for, a
tariff or a province not in `suanli/energy/data`, a spec that needs `start` when the
scenario has none (or one without a UTC offset).

pvlib and windpowerlib are imported only when a solar or wind spec is there.
"""

from __future__ import annotations

from datetime import datetime

from suanli.energy import carbon, tariffs
from suanli.errors import ScenarioError
from suanli.model.scenario import Scenario
from suanli.model.series import ProvinceCarbonSpec, SeriesLike, SolarSpec, Spec, TariffSpec, WindSpec


def _start(scn: Scenario, where: str) -> datetime:
    """The scenario's start, required (with a UTC offset) by the spec at `where`."""
    if scn.start is None:
        raise ScenarioError(scn.file, "start", f"required by the spec at {where} (an ISO time with a UTC "
                            "offset, e.g. 2026-06-01T00:00:00+08:00)")
    if scn.start.tzinfo is None or scn.start.utcoffset() is None:
        raise ScenarioError(scn.file, "start", f"needs a UTC offset such as +08:00 for the spec at {where}",
                            scn.start.isoformat())
    return scn.start


def _resolve(scn: Scenario, spec: Spec, where: str, city: str) -> SeriesLike:
    if isinstance(spec, SolarSpec):
        from suanli.energy.solar import solar_series

        lat, lon = scn.cities[city]
        return solar_series(spec, lat, lon, _start(scn, where))
    if isinstance(spec, WindSpec):
        from suanli.energy.wind import turbine_types, wind_series

        if spec.turbine not in turbine_types():
            raise ScenarioError(scn.file, f"{where}.turbine", "unknown turbine type: windpowerlib has power "
                                f"curves for {len(turbine_types())} types, e.g. VS112/2500, E-126/4200, "
                                "V126/3300", spec.turbine)
        return wind_series(spec)
    if isinstance(spec, TariffSpec):
        known = tariffs.load_tariffs()
        if spec.tariff not in known:
            raise ScenarioError(scn.file, f"{where}.tariff", f"unknown tariff (known: {', '.join(known)})",
                                spec.tariff)
        return tariffs.tariff_series(spec, _start(scn, where))
    if isinstance(spec, ProvinceCarbonSpec):
        try:
            return carbon.carbon_series(spec)
        except KeyError:
            raise _unknown_province(scn, f"{where}.province", spec.province) from None
    raise TypeError(f"no resolver for {type(spec).__name__}")


def _unknown_province(scn: Scenario, where: str, value: str) -> ScenarioError:
    return ScenarioError(scn.file, where, "not in the 2023 provincial factors (English names such as Gansu, "
                         "Inner Mongolia, or codes such as CN-GS)", value)


def resolve_specs(scn: Scenario) -> None:
    """Replace every spec in the scenario's sites by its series; normalise city provinces."""
    for city, province in scn.provinces.items():
        if province is not None:
            try:
                scn.provinces[city] = carbon.province_name(province)
            except KeyError:
                raise _unknown_province(scn, f"cities.{city}.province", province) from None
    for i, site in enumerate(scn.sites.values()):
        fields = ((site.renewables, "kw", f"sites[{i}].renewables.kw"),
                  (site.grid, "cny_per_kwh", f"sites[{i}].grid.cny_per_kwh"),
                  (site.grid, "carbon_kg_per_kwh", f"sites[{i}].grid.carbon_kg_per_kwh"))
        for holder, name, where in fields:
            value = getattr(holder, name)
            if isinstance(value, Spec):
                scn.specs[where] = value
                setattr(holder, name, _resolve(scn, value, where, site.city))
