"""The composite rule: one reading per poll from the latest sample of every source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from meterkit import battery_802, dcgm_power, inverter, prometheus_exporter, sunspec_registers, sunspec_server

from suanli.agent.meters import Composite, MeterError, Sample, open_sources

AT = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


def test_fields_several_sources_measure_are_summed():
    r = Composite.merge(AT, [Sample(AT, it_kw=1.0, facility_kw=1.3), Sample(AT, it_kw=2.0, facility_kw=2.6),
                             Sample(AT, renewable_kw=0.5, battery_soc_kwh=10.0),
                             Sample(AT, renewable_kw=0.25, battery_soc_kwh=5.0)])
    assert (r.it_kw, r.facility_kw, r.renewable_kw, r.battery_soc_kwh) == (3.0, pytest.approx(3.9), 0.75, 15.0)


def test_grid_is_facility_less_renewables_less_battery_discharge():
    r = Composite.merge(AT, [Sample(AT, it_kw=80.0, facility_kw=100.0),
                             Sample(AT, renewable_kw=30.0, battery_kw=10.0)])      # discharging 10 kW
    assert r.grid_kw == pytest.approx(60.0)
    r = Composite.merge(AT, [Sample(AT, it_kw=80.0, facility_kw=100.0),
                             Sample(AT, renewable_kw=30.0, battery_kw=-25.0)])     # charging 25 kW
    assert r.grid_kw == pytest.approx(95.0)
    r = Composite.merge(AT, [Sample(AT, it_kw=10.0, facility_kw=12.0), Sample(AT, renewable_kw=20.0)])
    assert r.grid_kw == pytest.approx(-8.0)                                         # export


def test_a_measured_grid_wins_over_the_computed_one():
    r = Composite.merge(AT, [Sample(AT, it_kw=8.0, facility_kw=10.0, grid_kw=7.5), Sample(AT, renewable_kw=2.0)])
    assert r.grid_kw == 7.5


def test_no_renewable_source_reads_zero_and_no_battery_reads_null():
    r = Composite.merge(AT, [Sample(AT, it_kw=8.0, facility_kw=10.0)])
    assert (r.renewable_kw, r.grid_kw, r.battery_soc_kwh) == (0.0, 10.0, None)
    assert r.at == AT and r.at.tzinfo == UTC


def test_a_merge_without_it_or_facility_power_is_no_reading():
    with pytest.raises(MeterError, match="no sample measured facility_kw"):
        Composite.merge(AT, [Sample(AT, it_kw=8.0)])
    with pytest.raises(MeterError, match="no sample measured it_kw"):
        Composite.merge(AT, [Sample(AT, facility_kw=8.0)])


def test_dcgm_and_a_sunspec_device_make_one_reading():
    regs = sunspec_registers(inverter(1500, 0), battery_802(20, 3, 50, 0, 500, 0))   # 1.5 kW PV; 10 kWh, +0.5 kW
    with prometheus_exporter() as (reg, url), sunspec_server(regs) as port:
        dcgm_power(reg, [500.0] * 8)                                             # 4 kW of GPUs
        m = open_sources([f"prometheus:{url},pue=1.25", f"modbus:127.0.0.1:{port}"])
        assert m.notes() == ["grid_kw is computed: facility - renewable - battery discharge"]
        samples = [s.poll()[0] for s in m.sources]
        m.close()
    r = Composite.merge(AT, samples)
    assert (r.it_kw, r.facility_kw, r.renewable_kw, r.battery_soc_kwh) == (4.0, 5.0, 1.5, 10.0)
    assert r.grid_kw == pytest.approx(5.0 - 1.5 - 0.5)
