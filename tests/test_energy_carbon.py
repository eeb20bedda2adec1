"""Grid carbon from the 2023 provincial factors, and the origin-grid carbon metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build, make_job, make_scenario, make_site, seg
from suanli.accounting import CARBON_KEYS, METRIC_KEYS, account
from suanli.energy.carbon import province_factor, provincial_factors

GANSU, SHANGHAI, BEIJING, INNER_MONGOLIA = 0.4471, 0.5737, 0.5554, 0.6479


def test_factors_by_name_or_code_case_and_spaces_ignored():
    assert province_factor("Gansu") == GANSU
    assert province_factor("CN-GS") == GANSU
    assert province_factor("inner  mongolia") == INNER_MONGOLIA
    assert province_factor("SHANGHAI") == SHANGHAI
    with pytest.raises(KeyError):
        province_factor("Tibet")            # not in the 2023 table


def test_the_table_has_the_thirty_provinces_of_the_announcement():
    factors = provincial_factors()
    assert len(factors) == 30
    assert min(factors, key=factors.get) == "Yunnan" and max(factors, key=factors.get) == "Tianjin"


def test_province_spec_resolves_to_a_constant_series():
    scn = build(start="2026-06-01T00:00:00+08:00",
                sites=[make_site(grid={"carbon_kg_per_kwh": {"province": "Gansu"}})])
    assert list(scn.sites["w1"].grid.carbon_kg_per_kwh.array(3)) == [GANSU] * 3


def carbon_scenario(east="Shanghai", west="Gansu", **overrides):
    cities = {"east": {"lat": 31.2, "lon": 121.5}, "west": {"lat": 35.7, "lon": 107.6}}
    if east:
        cities["east"]["province"] = east
    if west:
        cities["west"]["province"] = west
    raw = make_scenario(cities=cities, **overrides)
    return build(raw)


def test_origin_carbon_is_the_jobs_load_at_its_home_grid_factor():
    scn = carbon_scenario(sites=[make_site(grid={"carbon_kg_per_kwh": {"province": "Gansu"}})],
                          jobs=[make_job("j1", origin="east")])
    # j1: 2 h100 (1 kW IT), pue 1, in slots 0 and 1: 2 kWh, all from the Gansu grid
    acc = account(scn, [seg("j1", "w1", "h100", 2, 0, 2)])
    assert acc.carbon["carbon_location_based_kg"] == pytest.approx(2 * GANSU) == acc.metrics["carbon_kg"]
    assert acc.carbon["carbon_origin_grid_kg"] == pytest.approx(2 * SHANGHAI)
    assert acc.carbon["carbon_avoided_vs_origin_kg"] == pytest.approx(2 * (SHANGHAI - GANSU))
    assert acc.carbon["carbon_origin_unknown_jobs"] == 0
    assert list(acc.metrics) == list(METRIC_KEYS) and list(acc.carbon) == list(CARBON_KEYS)


def test_moving_to_a_dirtier_grid_shows_as_negative_avoided_carbon():
    scn = carbon_scenario(east="Beijing", west="Inner Mongolia", jobs=[make_job("j1", origin="east")],
                          sites=[make_site(pue=1.25, grid={"carbon_kg_per_kwh": {"province": "Inner Mongolia"}})])
    acc = account(scn, [seg("j1", "w1", "h100", 2, 0, 2)])
    # L = 1.25 kWh per slot: origin 2.5 * 0.5554, location 2.5 * 0.6479
    assert acc.carbon["carbon_avoided_vs_origin_kg"] == pytest.approx(2.5 * (BEIJING - INNER_MONGOLIA))
    assert acc.carbon["carbon_avoided_vs_origin_kg"] < 0


def test_a_slots_carbon_is_shared_by_the_jobs_in_proportion_to_their_energy():
    scn = carbon_scenario(
        sites=[make_site(grid={"carbon_kg_per_kwh": 0.4}, renewables={"kw": 0.5})],
        jobs=[make_job("j1", origin="east"), make_job("j2", origin="west", work_h=2)])
    # slot 0: j1 and j2 each 1 kW IT; L = 2, R = 0.5, grid 1.5, carbon 0.6 kg, each job 0.3 kg
    # slot 1: j1 alone; L = 1, R = 0.5, grid 0.5, carbon 0.2 kg
    acc = account(scn, [seg("j1", "w1", "h100", 2, 0, 2), seg("j2", "w1", "h100", 2, 0, 1)])
    assert acc.metrics["carbon_kg"] == pytest.approx(0.8)
    origin = 2 * SHANGHAI + 1 * GANSU
    assert acc.carbon["carbon_origin_grid_kg"] == pytest.approx(origin)
    assert acc.carbon["carbon_avoided_vs_origin_kg"] == pytest.approx(origin - 0.8)


def test_jobs_from_a_city_without_province_are_left_out_and_counted():
    scn = carbon_scenario(east=None, sites=[make_site(grid={"carbon_kg_per_kwh": 0.4})],
                          jobs=[make_job("j1", origin="east"), make_job("j2", origin="west"), make_job("j3")])
    acc = account(scn, [seg("j1", "w1", "h100", 2, 0, 2), seg("j2", "w1", "a800", 2, 0, 4)])
    # j2: 2 a800 (0.5 kW) for 4 h = 2 kWh from west (Gansu); j1 (east, no province) left out; j3 never ran
    assert acc.carbon["carbon_origin_unknown_jobs"] == 1
    assert acc.carbon["carbon_origin_grid_kg"] == pytest.approx(2 * GANSU)
    # j2's share of slots 0, 1 (1 kW of j1 + 0.5 kW of j2: 1/3) and all of slots 2, 3
    assert acc.carbon["carbon_avoided_vs_origin_kg"] == pytest.approx(2 * GANSU - 0.4 * (0.5 + 0.5 + 0.5 + 0.5))


def test_unknown_city_province_is_refused_naming_the_city():
    from suanli.errors import ScenarioError
    with pytest.raises(ScenarioError) as info:
        carbon_scenario(east="Atlantis")
    assert "test.yaml: cities.east.province:" in str(info.value) and "'Atlantis'" in str(info.value)


def test_metrics_json_has_the_carbon_keys_after_the_model_ones(tmp_path):
    data = Path(__file__).parent / "data" / "tiny.yaml"
    r = subprocess.run([sys.executable, "-m", "suanli", "sim", str(data), "--out", str(tmp_path), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    keys = list(json.loads((tmp_path / "metrics.json").read_text()))
    assert keys[:len(METRIC_KEYS)] == list(METRIC_KEYS)
    assert keys[len(METRIC_KEYS):len(METRIC_KEYS) + len(CARBON_KEYS)] == list(CARBON_KEYS)
