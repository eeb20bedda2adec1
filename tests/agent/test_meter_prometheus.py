"""`prometheus:URL`: scraped from real servers: prometheus_client's own HTTP exporter (gauges as
DCGM exporter writes them, a RAPL-like joules counter) and a tiny http.server for the misbehaving
endpoints (an error status, garbage, a huge answer, one that drips, one that never answers)."""

from __future__ import annotations

import threading
import time

import pytest
from meterkit import Script, dcgm_power, prometheus_exporter, text_server
from prometheus_client import Counter, Gauge, Histogram

from suanli.agent.meters import MeterError, parse_spec


@pytest.fixture
def exporter():
    """prometheus_client's HTTP server on an ephemeral port, serving its own registry."""
    with prometheus_exporter() as (reg, url):
        yield reg, url


FOUR_GPUS_W = [301.5, 298.25, 120.0, 80.25]
DCGM_LABELS = ("gpu", "UUID", "Hostname")          # as DCGM exporter labels its power gauge


def source(spec: str):
    return parse_spec(spec).open()


def test_dcgm_power_of_every_gpu_is_summed_into_it_kw(exporter):
    reg, url = exporter
    dcgm_power(reg, FOUR_GPUS_W, DCGM_LABELS)
    src = source(f"prometheus:{url}")
    assert src.measures == {"it_kw"}
    [s] = src.poll()
    assert s.it_kw == pytest.approx(0.8)
    assert s.facility_kw is None and s.grid_kw is None
    src.close()


def test_pue_makes_facility_power_from_this_sources_it_power(exporter):
    reg, url = exporter
    Gauge("DCGM_FI_DEV_POWER_USAGE", "W", ["gpu"], registry=reg).labels("0").set(400)
    src = source(f"prometheus:{url},pue=1.3")
    assert src.measures == {"it_kw", "facility_kw"}
    [s] = src.poll()
    assert (s.it_kw, s.facility_kw) == (pytest.approx(0.4), pytest.approx(0.52))


def test_named_metrics_feed_each_field_and_several_names_are_added(exporter):
    reg, url = exporter
    Gauge("site_facility_watts", "W", registry=reg).set(150_000)
    Gauge("site_pv_watts", "W", ["array"], registry=reg).labels("a").set(20_000)
    reg_b = Gauge("site_wind_watts", "W", registry=reg)
    reg_b.set(5_000)
    Gauge("site_grid_watts", "W", registry=reg).set(-2_500)
    src = source(f"prometheus:{url},it=,facility=site_facility_watts,renewable=site_pv_watts+site_wind_watts,"
                 f"grid=site_grid_watts")
    assert src.measures == {"facility_kw", "renewable_kw", "grid_kw"}
    [s] = src.poll()
    assert (s.it_kw, s.facility_kw, s.renewable_kw, s.grid_kw) == (None, 150.0, 25.0, -2.5)


def test_a_joules_counter_becomes_power_over_the_interval_between_scrapes(exporter):
    reg, url = exporter
    c = Counter("node_rapl_package_joules", "Current RAPL package value in joules", ["index"], registry=reg)
    c.labels("0").inc(5_000)
    c.labels("1").inc(7_000)
    Gauge("site_facility_watts", "W", registry=reg).set(1_000)
    src = source(f"prometheus:{url},it=node_rapl_package_joules_total,facility=site_facility_watts")
    t0 = time.monotonic()
    assert src.poll() == []                          # the first scrape: no rate yet
    t1 = time.monotonic()
    time.sleep(0.5)
    c.labels("0").inc(60)
    c.labels("1").inc(90)                            # 150 J over the interval between the scrapes
    t2 = time.monotonic()
    [s] = src.poll()
    t3 = time.monotonic()
    assert 150 / (t3 - t0) / 1000 <= s.it_kw <= 150 / (t2 - t1) / 1000
    assert s.facility_kw == 1.0


def test_a_counter_reset_skips_one_rate(exporter):
    reg, url = exporter
    state = {"j": 1_000.0}

    class Rapl:
        def collect(self):
            from prometheus_client.core import CounterMetricFamily
            yield CounterMetricFamily("node_rapl_package_joules", "J", value=state["j"])
    reg.register(Rapl())
    src = source(f"prometheus:{url},it=node_rapl_package_joules_total,pue=1.1")
    assert src.poll() == []
    state["j"] = 10.0                                 # the host rebooted: the counter starts again
    assert src.poll() == []
    state["j"] = 60.0
    [s] = src.poll()
    assert s.it_kw > 0


def test_a_metric_missing_from_the_scrape_fails_rather_than_read_as_zero(exporter):
    reg, url = exporter
    Gauge("something_else", "x", registry=reg).set(1)
    src = source(f"prometheus:{url}")
    with pytest.raises(MeterError, match="DCGM_FI_DEV_POWER_USAGE: not in the scrape"):
        src.poll()


def test_a_histogram_is_not_power(exporter):
    reg, url = exporter
    Histogram("site_power_watts", "W", registry=reg).observe(3)
    with pytest.raises(MeterError, match="site_power_watts: a histogram, not a gauge"):
        source(f"prometheus:{url},it=site_power_watts").poll()


@pytest.mark.parametrize("script, says", [
    (Script(status=500, body=b"oops"), "answers 500"),
    (Script(body=b"DCGM_FI_DEV_POWER_USAGE{gpu=\"0\"} hello\n"), "not Prometheus text"),
    (Script(body=b"DCGM_FI_DEV_POWER_USAGE{gpu=\"0\"} NaN\n"), "it_kw: not a finite number"),
    (Script(body=b"DCGM_FI_DEV_POWER_USAGE{gpu=\"0\"} -5\n"), "it_kw: negative"),
    (Script(body=b"# " + b"x" * 5000 + b"\n"), "answer larger than 2,048 bytes"),
])
def test_a_bad_answer_fails_the_poll_with_its_reason(script, says):
    with text_server(script) as url:
        src = source(f"prometheus:{url}/metrics,max_bytes=2048")
        with pytest.raises(MeterError, match=says):
            src.poll()


@pytest.mark.parametrize("slow, timeout_s, says, within_s", [
    # 520 bytes, one every 0.05 s: 26 s to read whole
    (lambda: Script(body=b"DCGM_FI_DEV_POWER_USAGE 1\n" * 20, drip_s=0.05), 1, "not complete after 1 s", 3),
    (lambda: Script(body=b"DCGM_FI_DEV_POWER_USAGE 1\n", hang=threading.Event()), 0.5,
     "cannot scrape: ReadTimeout", 2.5),
], ids=["drips", "never-answers"])
def test_a_server_that_drips_or_never_answers_is_cut_at_the_timeout(slow, timeout_s, says, within_s):
    with text_server(slow()) as url:
        src = source(f"prometheus:{url}/metrics,timeout={timeout_s}")
        t = time.monotonic()
        with pytest.raises(MeterError, match=says):
            src.poll()
        assert time.monotonic() - t < within_s


def test_nobody_listening_fails_the_poll():
    with text_server(Script()) as url:
        pass                                          # the port is free again
    with pytest.raises(MeterError, match="cannot scrape: ConnectError"):
        source(f"prometheus:{url}/metrics").poll()


# ------------------------------------------------------------------------------------ per GPU
def test_dcgm_power_is_also_kept_per_gpu_by_its_index_label(exporter):
    reg, url = exporter
    g = dcgm_power(reg, FOUR_GPUS_W, DCGM_LABELS)
    src = source(f"prometheus:{url},pue=1.2")
    assert src.per_gpu
    [s] = src.poll()
    assert s.gpu_w == {0: 301.5, 1: 298.25, 2: 120.0, 3: 80.25}
    assert sum(s.gpu_w.values()) / 1000 == pytest.approx(s.it_kw)
    g.labels("2", "GPU-2", "node1").set(420.0)                 # read afresh at each poll
    [s] = src.poll()
    assert s.gpu_w[2] == 420.0 and src.per_gpu_w == s.gpu_w
    src.close()


def test_series_that_cannot_be_told_apart_by_gpu_give_no_per_gpu_power_but_still_it_kw(exporter):
    reg, url = exporter
    g = Gauge("DCGM_FI_DEV_POWER_USAGE", "W", ["gpu", "Hostname"], registry=reg)
    g.labels("0", "node1").set(100.0)
    g.labels("0", "node2").set(200.0)                          # two hosts' GPU 0
    src = source(f"prometheus:{url}")
    [s] = src.poll()
    assert s.gpu_w is None and s.it_kw == pytest.approx(0.3)
    g.remove("0", "node2")
    g.labels("x", "node2").set(200.0)                          # a label that is no index
    [s] = src.poll()
    assert s.gpu_w is None and s.it_kw == pytest.approx(0.3)
    src.close()


def test_per_gpu_power_needs_every_it_series_labelled_and_can_be_turned_off(exporter):
    reg, url = exporter
    Gauge("DCGM_FI_DEV_POWER_USAGE", "W", ["gpu"], registry=reg).labels("0").set(100.0)
    Gauge("node_fan_watts", "W", registry=reg).set(40.0)        # no gpu label: per-GPU would not add up
    src = source(f"prometheus:{url},it=DCGM_FI_DEV_POWER_USAGE+node_fan_watts")
    [s] = src.poll()
    assert s.gpu_w is None and s.it_kw == pytest.approx(0.14)
    src.close()
    off = source(f"prometheus:{url},gpu_label=")
    assert not off.per_gpu
    [s] = off.poll()
    assert s.gpu_w is None
    off.close()
    other = source(f"prometheus:{url},gpu_label=device")       # a label of another name
    assert other.per_gpu and other.poll()[0].gpu_w is None
    other.close()
    nothing = source(f"prometheus:{url},it=,facility=node_fan_watts")
    assert not nothing.per_gpu                                  # no IT power: nothing per GPU
    nothing.close()


def test_a_bad_gpu_label_is_one_line(exporter):
    from suanli.errors import UserError
    _, url = exporter
    with pytest.raises(UserError) as e:
        parse_spec(f"prometheus:{url},gpu_label=a-b")
    assert "gpu_label: 'a-b' is not a label name" in str(e.value)
