"""The SPEC parser (`--meter KIND[:TARGET][,KEY=VALUE]...`) and the agent's refusal of a bad one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from suanli.agent.meters import open_sources, parse_spec
from suanli.agent.meters.csv_replay import CsvConfig
from suanli.agent.meters.modbus import ModbusConfig
from suanli.agent.meters.nvml import NvmlConfig, gpu_count
from suanli.agent.meters.prometheus import PrometheusConfig
from suanli.errors import UserError


def test_each_kind_parses_into_its_typed_config():
    assert parse_spec("csv:/data/site.csv,speed=60,shift=now") == CsvConfig("/data/site.csv", 60.0, True)
    p = parse_spec("prometheus:http://gpu-1:9400/metrics,pue=1.25,timeout=2")
    assert p == PrometheusConfig("http://gpu-1:9400/metrics", {"it_kw": ("DCGM_FI_DEV_POWER_USAGE",)}, 1.25, 2.0)
    p = parse_spec("prometheus:http://bms:9100/metrics,it=,facility=site_facility_watts,grid=a+b")
    assert p.metrics == {"facility_kw": ("site_facility_watts",), "grid_kw": ("a", "b")}
    assert parse_spec("modbus:10.0.0.5:1502,unit=3,capacity_kwh=400") == ModbusConfig("10.0.0.5", 1502, 3, None, 400.0)
    assert parse_spec("modbus:inverter.local") == ModbusConfig("inverter.local", 502)
    assert parse_spec("modbus:[::1]:502,base=0").host == "::1"
    assert parse_spec("nvml,pue=1.4") == NvmlConfig(1.4)


@pytest.mark.parametrize("spec, says", [
    ("", "unknown kind ''"),
    ("gauge:http://x", "unknown kind 'gauge'"),
    ("csv:", "csv needs a file"),
    ("csv:a.csv,speed=0", "speed: must lie in"),
    ("csv:a.csv,speed=fast", "speed: not a number: 'fast'"),
    ("csv:a.csv,speed=nan", "speed: must lie in"),
    ("csv:a.csv,shift=later", "shift: 'now' or 'none'"),
    ("csv:a.csv,loop", "'loop' is not KEY=VALUE"),
    ("csv:a.csv,speed=2,speed=3", "'speed' given twice"),
    ("csv:a.csv,colour=red", "colour: unknown option (known: speed, shift)"),
    ("prometheus:gpu-1:9400", "needs an http(s) URL"),
    ("prometheus:http://x/m,it=rm -rf", "is not a metric name"),
    ("prometheus:http://x/m,it=", "reads no metric"),
    ("prometheus:http://x/m,pue=0.5", "pue: must lie in [1, 5]"),
    ("prometheus:http://x/m,pue=1.2,facility=f", "give facility= or pue=, not both"),
    ("prometheus:http://x/m,it=,facility=f,pue=1.2", "give facility= or pue=, not both"),
    ("prometheus:http://x/m,max_bytes=1", "max_bytes: must lie in"),
    ("modbus:", "modbus needs HOST[:PORT]"),
    ("modbus:h:0", "modbus needs HOST[:PORT]"),
    ("modbus:h:port", "modbus needs HOST[:PORT]"),
    ("modbus:h,unit=300", "unit: must lie in [0, 247]"),
    ("modbus:h,unit=one", "unit: not an integer"),
    ("nvml:0", "nvml takes no target"),
])
def test_a_bad_spec_is_one_line_naming_it(spec, says):
    with pytest.raises(UserError) as e:
        parse_spec(spec)
    assert says in str(e.value)
    assert str(e.value).startswith("--meter ")
    assert "\n" not in str(e.value)


def test_a_spec_with_a_line_break_is_still_one_line():
    with pytest.raises(UserError) as e:
        parse_spec("csv:a.csv,spe\ned=2")
    assert "\n" not in str(e.value)


def test_sources_must_cover_it_and_facility_power(tmp_path):
    with pytest.raises(UserError, match="no source measures it_kw"):
        open_sources(["modbus:127.0.0.1:1"])
    with pytest.raises(UserError, match="no source measures facility_kw"):
        open_sources(["prometheus:http://127.0.0.1:1/metrics"])
    with pytest.raises(UserError, match="given twice"):
        open_sources(["prometheus:http://127.0.0.1:1/metrics,pue=1.2", "prometheus:http://127.0.0.1:1/metrics,pue=1.3"])
    csv = tmp_path / "m.csv"
    csv.write_text("at,it_kw,facility_kw,renewable_kw,grid_kw\n2026-01-01T00:00:00Z,1,1.2,0,1.2\n")
    with pytest.raises(UserError, match="a replay carries whole readings: give it alone"):
        open_sources([f"csv:{csv}", "prometheus:http://127.0.0.1:1/metrics,pue=1.2"])
    m = open_sources(["prometheus:http://127.0.0.1:1/metrics,pue=1.2", "modbus:127.0.0.1:1"])
    assert [s.name for s in m.sources] == ["prometheus:http://127.0.0.1:1/metrics", "modbus:127.0.0.1:1"]
    m.close()


def _agent(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SUANLI_AGENT_TOKEN="not-used")
    return subprocess.run([sys.executable, "-m", "suanli.agent", "--site", "s1", "--controller", "http://127.0.0.1:9",
                           *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("args, says", [
    (["--meter", "gauge:http://x"], "error: --meter 'gauge:http://x': unknown kind 'gauge'"),
    (["--meter", "csv:/no/such/file.csv"], "error: --meter csv:/no/such/file.csv: No such file or directory"),
    (["--meter", "prometheus:http://x/m,pue=1.2", "--meter-interval-s", "0"], "error: --meter-interval-s: must lie in"),
    (["--meter", "modbus:127.0.0.1:1"], "error: --meter: no source measures it_kw"),
])
def test_the_agent_refuses_a_bad_meter_in_one_line_exit_2(args, says):
    r = _agent(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.strip().startswith(says), r.stderr


def test_the_agent_refuses_nvml_on_a_host_without_an_nvidia_gpu():
    if gpu_count()[0] > 0:
        pytest.skip("this host has an NVIDIA GPU: nvml is usable here")
    r = _agent("--meter", "nvml")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --meter nvml: no NVIDIA GPU on this host ("), r.stderr
    assert lines[0].endswith("this source cannot be used")
