"""Series specs in a scenario (MODEL.md §2): resolved on load, or refused with one line naming
the file, the field path inside the spec and the value."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import build, make_scenario, make_site, seg
from suanli.accounting import account
from suanli.errors import ScenarioError
from suanli.model.series import ComputedSeries, Series

START = "2026-06-01T00:00:00+08:00"
SOLAR = {"model": "solar", "capacity_kw": 50, "cloud_cover": 0.3, "seed": 1}
WIND = {"model": "wind", "capacity_kw": 30, "mean_wind_ms": 5, "seed": 2}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def refused(kw=None, grid=None, **top) -> str:
    site = make_site(**({"renewables": {"kw": kw}} if kw is not None else {}), **({"grid": grid} if grid else {}))
    raw = make_scenario(sites=[site], **({"start": START} | top))
    if top.get("start", ...) is None:
        del raw["start"]
    with pytest.raises(ScenarioError) as info:
        build(raw)
    message = str(info.value)
    assert "\n" not in message and message.startswith("test.yaml: ")
    return message


@pytest.mark.parametrize(("spec", "path", "got"), [
    (SOLAR | {"capacity_kw": -5}, "renewables.kw.capacity_kw", "(got -5)"),
    (SOLAR | {"cloud_cover": 1.5}, "renewables.kw.cloud_cover", "(got 1.5)"),
    (SOLAR | {"tilt": 120}, "renewables.kw.tilt", "(got 120)"),
    (SOLAR | {"clod_cover": 0.2}, "renewables.kw.clod_cover", "unknown field"),
    (SOLAR | {"seed": True}, "renewables.kw.seed", "not a boolean"),
    ({k: v for k, v in SOLAR.items() if k != "seed"}, "renewables.kw.seed", "required field is missing"),
    (WIND | {"mean_wind_ms": 0}, "renewables.kw.mean_wind_ms", "(got 0)"),
    (WIND | {"turbine": "X-1/999"}, "renewables.kw.turbine", "(got 'X-1/999')"),
    (WIND | {"hub_height": -80}, "renewables.kw.hub_height", "(got -80)"),
    ({"model": "tidal", "capacity_kw": 3}, "renewables.kw.model", "(got 'tidal')"),
    ({"tariff": "gansu-2021", "flat": 0.4}, "renewables.kw", "needs the key: model"),
], ids=["capacity-negative", "cloud-cover-above-1", "tilt-above-90", "misspelt-field", "seed-boolean", "seed-missing",
        "zero-wind", "unknown-turbine", "negative-hub-height", "unknown-model", "tariff-as-renewable"])
def test_bad_renewable_specs_are_refused_naming_the_field_inside_the_spec(spec, path, got):
    message = refused(kw=spec)
    assert f"sites[0].{path}" in message and got in message


@pytest.mark.parametrize(("grid", "path", "got"), [
    ({"cny_per_kwh": {"tariff": "gansu-2099", "flat": 0.4}}, "grid.cny_per_kwh.tariff", "(got 'gansu-2099')"),
    ({"cny_per_kwh": {"tariff": "gansu-2021", "flat": -0.4}}, "grid.cny_per_kwh.flat", "(got -0.4)"),
    ({"cny_per_kwh": {"tariff": "gansu-2021"}}, "grid.cny_per_kwh.flat", "required field is missing"),
    ({"carbon_kg_per_kwh": {"province": "Atlantis"}}, "grid.carbon_kg_per_kwh.province", "(got 'Atlantis')"),
    ({"carbon_kg_per_kwh": {"tariff": "gansu-2021", "flat": 1}}, "grid.carbon_kg_per_kwh", "needs the key: province"),
    ({"carbon_kg_per_kwh": SOLAR}, "grid.carbon_kg_per_kwh", "needs the key: province"),
], ids=["unknown-tariff", "negative-flat", "flat-missing", "unknown-province", "tariff-as-carbon", "solar-as-carbon"])
def test_bad_grid_specs_are_refused_naming_the_field(grid, path, got):
    message = refused(grid=grid)
    assert f"sites[0].{path}" in message and got in message


@pytest.mark.parametrize("field", ["kw", "tariff"])
def test_a_spec_that_needs_wall_clock_time_needs_start(field):
    args = {"kw": SOLAR} if field == "kw" else {"grid": {"cny_per_kwh": {"tariff": "gansu-2021", "flat": 0.4}}}
    message = refused(start=None, **args)
    assert "test.yaml: start: required by the spec at sites[0]." in message


def test_start_without_a_utc_offset_is_refused_for_a_solar_spec():
    message = refused(kw=SOLAR, start="2026-06-01T00:00:00")
    assert "start: needs a UTC offset" in message and "2026-06-01T00:00:00" in message


def test_wind_needs_no_start_and_explicit_series_stay_explicit():
    raw = make_scenario(sites=[make_site(renewables={"kw": WIND}, grid={"cny_per_kwh": [0.3, 0.6]})])
    scn = build(raw)
    assert isinstance(scn.sites["w1"].renewables.kw, ComputedSeries)
    assert isinstance(scn.sites["w1"].grid.cny_per_kwh, Series)
    assert list(scn.specs) == ["sites[0].renewables.kw"]


def test_accounting_reads_resolved_series_for_as_many_slots_as_the_run_needs():
    raw = make_scenario(start=START, horizon_h=30, sites=[make_site(
        renewables={"kw": SOLAR}, grid={"cny_per_kwh": {"tariff": "gansu-2021", "flat": 0.4},
                                        "carbon_kg_per_kwh": {"province": "Gansu"}})])
    scn = build(raw)
    short = account(scn, [seg("j1", "w1", "h100", 2, 0, 2)])
    long = account(scn, [seg("j1", "w1", "h100", 2, 40, 42)])          # T = 42 > horizon 30
    assert short.slots == 30 and long.slots == 42
    # the value of slot t does not depend on T
    assert np.array_equal(long.series["w1"].renewable_kw[:30], short.series["w1"].renewable_kw)
    assert long.series["w1"].renewable_kw[12] > 10                    # noon in June, 50 kW plant
    assert long.series["w1"].cny_per_kwh[:24] == pytest.approx(
        [0.4 * m for m in [1, 1, .5, .5, 1, 1, 1, 1.5, 1.5, 1, 1, .5, .5, .5, .5, .5, .5, 1, 1.5, 1.5, 1.5, 1.5,
                           1.5, 1.5]])


def test_the_same_scenario_resolves_to_the_same_series_twice():
    raw = make_scenario(start=START, sites=[make_site(renewables={"kw": SOLAR}), make_site(
        "e1", "east", gpus={"a800": {"count": 4}}, renewables={"kw": WIND})])
    a, b = build(raw), build(raw)
    for sid in ("w1", "e1"):
        assert np.array_equal(a.sites[sid].renewables.kw.array(200), b.sites[sid].renewables.kw.array(200))


def test_cli_refuses_a_bad_spec_with_one_line_and_exit_2(tmp_path):
    raw = make_scenario(start=START, sites=[make_site(renewables={"kw": SOLAR | {"cloud_cover": 2}})])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "suanli", "validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "bad.yaml: sites[0].renewables.kw.cloud_cover" in r.stderr and "(got 2)" in r.stderr


def test_computed_series_grows_in_order_and_caches():
    calls: list[tuple[int, int]] = []

    def compute(first: int, n: int) -> np.ndarray:
        calls.append((first, n))
        return np.arange(first, first + n, dtype=float)

    s = ComputedSeries(compute, block=10)
    assert s.at(25) == 25.0 and calls == [(0, 10), (10, 10), (20, 10)]
    assert list(s.array(5)) == [0, 1, 2, 3, 4] and len(calls) == 3
    with pytest.raises(IndexError):
        s.at(-1)
