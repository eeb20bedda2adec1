"""The demo network on the energy models: its written-out series equal their specs, and its
explicit-series twin (tests/data/east-west-explicit.yaml) equals the model version."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from suanli.accounting import account, slot_count
from suanli.energy.carbon import province_factor
from suanli.energy.resolve import resolve_specs
from suanli.energy.tariffs import tariff_series
from suanli.model.load import load_scenario
from suanli.model.series import ComputedSeries, TariffSpec
from suanli.scheduling import policies
from suanli.sim.engine import simulate

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "suanli" / "examples" / "east-west.yaml"
EXPLICIT = ROOT / "tests" / "data" / "east-west-explicit.yaml"
EXPLICIT_SLOTS = 168          # a week: more than the slots a demo run accounts (T = 108 with fifo)
TARIFF_COMMENT = re.compile(r"#\s*(?:\{tariff:\s*)?(gansu-2021|zhejiang-2026),?\s*flat:?\s*([0-9.]+)")


def explicit_text(slots: int = EXPLICIT_SLOTS) -> str:
    """The demo's YAML with every renewable spec replaced by its first `slots` resolved values."""
    scn = load_scenario(str(DEMO))
    text = DEMO.read_text(encoding="utf-8")
    text = text.replace("jobs_file: east-west.jobs.csv", "jobs_file: ../../src/suanli/examples/east-west.jobs.csv")
    text = text.replace("name: east-west-demo", "name: east-west-explicit")
    header = ("# GENERATED from src/suanli/examples/east-west.yaml by tests/test_energy_demo.py:write_explicit():\n"
              f"# every renewables.kw model spec written out as its first {slots} hourly values (kW).\n"
              "# Tests use it; edit the demo, then regenerate this file.\n")
    for sid, site in scn.sites.items():
        spec_line = re.search(rf"- id: {re.escape(sid)}\b.*?\n(\s*)kw: (\{{model:[^}}]*\}})", text, re.S)
        if spec_line is None:
            continue
        values = site.renewables.kw.array(slots)
        rows = [", ".join(repr(round(float(v), 6)) for v in values[i:i + 12]) for i in range(0, slots, 12)]
        indent = spec_line.group(1) + "     "
        listed = "[" + (",\n" + indent).join(rows) + "]"
        text = text[:spec_line.start(2)] + listed + text[spec_line.end(2):]
    return header + text


def write_explicit() -> None:  # pragma: no cover - run by hand after changing the demo
    EXPLICIT.write_text(explicit_text(), encoding="utf-8")


@pytest.fixture(scope="module")
def demo():
    return load_scenario(str(DEMO))


def test_the_demo_uses_solar_and_wind_models_at_four_western_hubs(demo):
    models = {where: spec.model for where, spec in demo.specs.items() if where.endswith("renewables.kw")}
    by_site = {list(demo.sites)[int(re.search(r"\[(\d+)\]", w).group(1))]: m for w, m in models.items()}
    assert by_site["qingyang-1"] == "solar" and by_site["zhongwei-1"] == "solar"
    assert by_site["hami-1"] == "wind" and by_site["ulanqab-1"] == "wind"
    assert all(isinstance(s.renewables.kw, ComputedSeries) for sid, s in demo.sites.items() if sid in by_site)


def test_each_written_out_tariff_list_equals_its_tariff_spec(demo):
    text = DEMO.read_text(encoding="utf-8")
    comments = TARIFF_COMMENT.findall(text)
    assert len(comments) == len(demo.sites)
    for (name, flat), (sid, site) in zip(comments, demo.sites.items(), strict=True):
        want = tariff_series(TariffSpec(tariff=name, flat=float(flat)), demo.start).array(96)
        got = site.grid.cny_per_kwh.array(96)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), sid


def test_each_written_out_carbon_factor_is_its_city_provinces_2023_factor(demo):
    for sid, site in demo.sites.items():
        province = demo.provinces[site.city]
        assert site.grid.carbon_kg_per_kwh.array(3) == pytest.approx([province_factor(province)] * 3), sid


def test_every_city_of_the_demo_names_its_province(demo):
    assert all(demo.provinces[c] for c in demo.cities)


def test_explicit_twin_is_the_demo_with_its_models_written_out():
    """Same document as the demo's, written-out values within 1e-5 kW (floats may differ by platform)."""
    stale = "tests/data/east-west-explicit.yaml is stale: run tests/test_energy_demo.py:write_explicit()"
    want, got = yaml.safe_load(explicit_text()), yaml.safe_load(EXPLICIT.read_text(encoding="utf-8"))
    for w, g in zip(want["sites"], got["sites"], strict=True):
        if "renewables" in w:
            assert g["renewables"]["kw"] == pytest.approx(w["renewables"]["kw"], abs=1e-5), stale
            w["renewables"]["kw"] = g["renewables"]["kw"]
    assert got == want, stale


def test_explicit_twin_accounts_the_same_as_the_model_demo(demo):
    twin = load_scenario(str(EXPLICIT))
    assert not twin.specs.get("sites[0].renewables.kw")
    result = simulate(twin, policies.make("fifo"))
    T = slot_count(twin, result.segments)
    assert T <= EXPLICIT_SLOTS
    a, b = account(twin, result.segments), account(demo, result.segments)
    for key, value in a.metrics.items():
        assert b.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert b.carbon == pytest.approx(a.carbon, rel=1e-6, abs=1e-6)


def test_demo_renewables_cover_a_share_of_the_load_but_not_all(demo):
    twin = yaml.safe_load(EXPLICIT.read_text(encoding="utf-8"))
    assert twin["horizon_h"] == 72
    total = sum(float(np.sum(s.renewables.kw.array(72))) for s in demo.sites.values())
    # full use: 85 + 38 + 34 + 36 + 35 kW at the western hubs, 228 kW * 72 h = 16,400 kWh
    assert 1500 < total < 16400


def test_resolving_twice_is_harmless(demo):
    before = demo.sites["qingyang-1"].renewables.kw.array(30)
    resolve_specs(demo)                       # nothing left to resolve
    assert np.array_equal(demo.sites["qingyang-1"].renewables.kw.array(30), before)
