"""`modbus:HOST:PORT`: SunSpec inverters and batteries read from pymodbus's own Modbus TCP server
(real TCP on an ephemeral port), serving SunSpec register maps built in the test."""

from __future__ import annotations

import socket
import time

import pytest
from meterkit import battery_802, inverter, storage_124, sunspec_registers, sunspec_server

from suanli.agent.meters import MeterError, parse_spec


def source(spec: str):
    return parse_spec(spec).open()


def test_a_three_phase_inverter_and_a_model_802_battery():
    regs = sunspec_registers(inverter(12345, -1, 103),                     # 1234.5 W
                             battery_802(500, 3, 755, -1, -200, 1))        # 500 kWh at 75.5 %, charging 2 kW
    with sunspec_server(regs) as port:
        src = source(f"modbus:127.0.0.1:{port}")
        [s] = src.poll()
        assert s.renewable_kw == pytest.approx(1.2345)
        assert s.battery_soc_kwh == pytest.approx(377.5)
        assert s.battery_kw == pytest.approx(-2.0)
        assert s.it_kw is None and s.facility_kw is None and s.grid_kw is None
        [again] = src.poll()                                                # the models found once
        assert again.renewable_kw == s.renewable_kw
        src.close()


def test_several_inverters_of_each_phase_model_are_summed():
    regs = sunspec_registers(inverter(3000, 0, 101), inverter(45, 2, 102), inverter(-7, 0, 103))
    with sunspec_server(regs) as port:
        [s] = source(f"modbus:127.0.0.1:{port}").poll()
    assert s.renewable_kw == pytest.approx(3.0 + 4.5 + 0.0)               # a night-time draw reads as 0
    assert s.battery_soc_kwh is None and s.battery_kw is None


def test_model_124_needs_the_capacity_it_does_not_state():
    regs = sunspec_registers(storage_124(6250, -2))                        # 62.50 %
    with sunspec_server(regs) as port:
        with pytest.raises(MeterError, match="model 124 .* give capacity_kwh="):
            source(f"modbus:127.0.0.1:{port}").poll()
        [s] = source(f"modbus:127.0.0.1:{port},capacity_kwh=200").poll()
    assert s.battery_soc_kwh == pytest.approx(125.0)
    assert s.battery_kw is None                                            # model 124 has no battery power


def test_model_802_wins_over_a_124_describing_the_same_battery():
    regs = sunspec_registers(storage_124(10, 0), battery_802(100, 3, 50, 0, 1500, 0))
    with sunspec_server(regs) as port:
        [s] = source(f"modbus:127.0.0.1:{port},capacity_kwh=999").poll()
    assert s.battery_soc_kwh == pytest.approx(50.0)
    assert s.battery_kw == pytest.approx(1.5)


@pytest.mark.parametrize("base", [0, 50000])
def test_the_sunspec_map_is_found_at_any_standard_base(base):
    with sunspec_server(sunspec_registers(inverter(2000, 0)), base=base) as port:
        [s] = source(f"modbus:127.0.0.1:{port}").poll()
        assert s.renewable_kw == pytest.approx(2.0)
        [s] = source(f"modbus:127.0.0.1:{port},base={base}").poll()
        assert s.renewable_kw == pytest.approx(2.0)


@pytest.mark.parametrize("regs, says", [
    (sunspec_registers(inverter(0x8000, 0)), "model 103 W: not implemented"),
    (sunspec_registers(inverter(100, 0x8000)), "model 103 W_SF: not implemented"),
    (sunspec_registers(inverter(100, 30)), "model 103 W_SF: 30 is not a scale factor"),
    (sunspec_registers(battery_802(100, 3, 1200, -1, 0, 0)), "model 802 SoC: 120.0 % is not a state of charge"),
    (sunspec_registers(), r"no SunSpec inverter \(101-103\) or battery \(124, 802\) model at unit 1 \(models: 1\)"),
    ([1, 2, 3, 4], "no SunSpec marker \\(SunS\\) at unit 1, register 40000 or 0 or 50000"),
    (sunspec_registers(inverter(1, 0))[:-2], "reading 2 register\\(s\\) at 40122: the device answers exception 2"),
])
def test_a_device_that_makes_no_sense_fails_the_poll_with_its_reason(regs, says):
    with sunspec_server(regs) as port:
        with pytest.raises(MeterError, match=says):
            source(f"modbus:127.0.0.1:{port}").poll()


def test_another_unit_id_is_not_this_device():
    with sunspec_server(sunspec_registers(inverter(1, 0)), unit=1) as port:
        with pytest.raises(MeterError, match="no SunSpec marker"):
            source(f"modbus:127.0.0.1:{port},unit=7").poll()


def test_nobody_listening_fails_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = source(f"modbus:127.0.0.1:{port},timeout=1")
    t = time.monotonic()
    with pytest.raises(MeterError, match=f"cannot connect to 127.0.0.1:{port}"):
        src.poll()
    assert time.monotonic() - t < 3
    src.close()


def test_a_device_replaced_between_polls_is_read_anew():
    with sunspec_server(sunspec_registers(inverter(1000, 0))) as port:
        src = source(f"modbus:127.0.0.1:{port}")
        assert src.poll()[0].renewable_kw == pytest.approx(1.0)
    with pytest.raises(MeterError):
        src.poll()                                # gone
    with sunspec_server(sunspec_registers(battery_802(10, 3, 40, 0, 0, 0), inverter(2500, 0)), port=port):
        [s] = src.poll()                          # the same address, another device: as after a swap
    assert s.renewable_kw == pytest.approx(2.5) and s.battery_soc_kwh == pytest.approx(4.0)
