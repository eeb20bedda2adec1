"""The agent's metering thread (agent/metering.py): readings posted in batches to a real HTTP
server that records what it gets and answers as the test says (202, 503, 413, 422); sources that
fail or hang stop the readings, never the loop."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from meterkit import Script, dcgm_power, prometheus_exporter, text_server

from suanli.agent.metering import Metering
from suanli.agent.meters import Composite, Sample, open_sources
from suanli.agent.meters.base import now
from suanli.service.client import Client

HEAD = "at,it_kw,facility_kw,renewable_kw,grid_kw,battery_soc_kwh\n"


def csv_meter(tmp_path, its: list[float]) -> Composite:
    p = tmp_path / "m.csv"
    p.write_text(HEAD + "".join(f"2026-05-01T00:{i:02d}:00Z,{it},{it * 1.2},0,{it * 1.2},\n"
                                for i, it in enumerate(its)))
    return open_sources([f"csv:{p},speed=1e6"])


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out; last {fn()!r}")


def posts(script):
    return [r for r in script.received if r[0] == "POST"]


def accepted(script, codes):
    """The readings of the batches answered 2xx, in order (codes: the status answered to each POST)."""
    return [rd["it_kw"] for r, c in zip(posts(script), codes, strict=False) if c < 300 for rd in r[2]["readings"]]


def run(site, meter, url, **kw):
    client = Client(url, "site-token", timeout=5)
    m = Metering(site, meter, lambda body: client.call("POST", f"/v1/agent/{site}/meter", json=body),
                 close=client.close, **kw)
    m.start()
    return m


def test_a_503_keeps_the_batch_and_it_is_posted_again(tmp_path):
    codes: list[int] = []

    def answer(payload):
        codes.append(503 if len(codes) < 2 else 202)
        return codes[-1], {"detail": "database restarting"} if codes[-1] == 503 else {"accepted": 1}
    script = Script(answer=answer)
    with text_server(script) as url:
        m = run("s1", csv_meter(tmp_path, [1, 2, 3, 4, 5]), url, interval_s=0.05, batch=2)
        wait_for(lambda: m.sent == 5)
        m.stop()
    assert codes[:3] == [503, 503, 202]
    first = posts(script)[0]
    assert first[1] == "/v1/agent/s1/meter" and first[3] == "Bearer site-token"
    assert [p[2]["readings"][0]["it_kw"] for p in posts(script)[:3]] == [1, 1, 1]   # kept until taken
    assert accepted(script, codes) == [1, 2, 3, 4, 5]                   # each once, in order
    assert first[2]["readings"][0] == {"at": "2026-05-01T00:00:00+00:00", "it_kw": 1.0, "facility_kw": 1.2,
                                       "renewable_kw": 0.0, "grid_kw": 1.2, "battery_soc_kwh": None}


def test_a_422_batch_is_dropped_with_the_servers_message(tmp_path, caplog):
    codes: list[int] = []

    def answer(payload):
        bad = [i for i, r in enumerate(payload["readings"]) if r["it_kw"] == 666]
        codes.append(422 if bad else 202)
        if bad:
            return 422, {"detail": f"readings[{bad[0]}].it_kw: 666.0 is more than the site can draw"}
        return 202, {"accepted": len(payload["readings"])}
    script = Script(answer=answer)
    caplog.set_level(logging.INFO, logger="suanli.agent.meter")
    with text_server(script) as url:
        m = run("s1", csv_meter(tmp_path, [1, 2, 666, 4, 5, 6]), url, interval_s=0.05, batch=2)
        wait_for(lambda: m.sent == 4)
        time.sleep(0.3)
        m.stop()
    refused = [p[2]["readings"] for p, c in zip(posts(script), codes, strict=False) if c == 422]
    assert len(refused) == 1 and 666 in [r["it_kw"] for r in refused[0]]        # sent once, never again
    gone = {r["it_kw"] for r in refused[0]}
    assert accepted(script, codes) == [x for x in [1, 2, 666, 4, 5, 6] if x not in gone]   # the others once
    assert m.refused == len(gone) and not m.buffer
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1 and "].it_kw: 666.0 is more than the site can draw" in said[0]
    assert f"{len(gone)} reading(s) (" in said[0] and "2026-05-01T00:02:00+00:00" in said[0]


def test_a_413_halves_the_batch(tmp_path):
    codes: list[int] = []

    def answer(payload):
        codes.append(413 if len(payload["readings"]) > 2 else 202)
        return codes[-1], {"detail": "too many readings"}
    script = Script(answer=answer)
    with text_server(script) as url:
        m = run("s1", csv_meter(tmp_path, list(range(1, 8))), url, interval_s=0.05, batch=8)
        wait_for(lambda: m.sent == 7)
        m.stop()
    sizes = [len(p[2]["readings"]) for p in posts(script)]
    assert 413 in codes and m.batch == 2
    assert all(n <= 2 for n, c in zip(sizes, codes, strict=False) if c == 202)
    assert all(b <= a for a, b in zip(sizes[codes.index(413):], sizes[codes.index(413) + 1:], strict=False))
    assert accepted(script, codes) == list(range(1, 8))


def test_the_buffer_is_bounded_and_keeps_the_newest(tmp_path):
    taking = threading.Event()
    codes: list[int] = []

    def answer(payload):
        codes.append(202 if taking.is_set() else 503)
        return codes[-1], {}
    script = Script(answer=answer)
    with text_server(script) as url:
        m = run("s1", csv_meter(tmp_path, list(range(1, 11))), url, interval_s=0.05, max_buffer=3)
        wait_for(lambda: m.dropped == 7)
        taking.set()
        wait_for(lambda: m.sent == 3, timeout=30)
        m.stop()
    assert accepted(script, codes) == [8, 9, 10]


class Blocking:
    """A source whose poll blocks until released (a driver call that never returns): a double for
    the loop's sake; the real sources bound their own time (their tests)."""
    replay = False
    measures = frozenset({"renewable_kw"})
    name = "blocking"

    def __init__(self):
        self.release = threading.Event()
        self.polls = 0

    def poll(self):
        self.polls += 1
        self.release.wait(60)
        return [Sample(now(), renewable_kw=0.5)]

    def close(self):
        self.release.set()


@pytest.fixture
def dcgm():
    with prometheus_exporter() as (reg, url):
        dcgm_power(reg, [1000])
        yield f"prometheus:{url},pue=1.5"


def test_a_source_that_fails_holds_the_readings_and_is_retried_backing_off(dcgm, caplog):
    """A PV meter that answers 503, then recovers: no readings meanwhile (its share is not read
    as 0), the failure said once, the retries backing off; then readings with its power."""
    pv = Script(status=503, body=b"down")
    got = Script(answer=lambda p: (202, {}))
    caplog.set_level(logging.INFO, logger="suanli.agent.meter")
    with text_server(pv) as pv_url, text_server(got) as url:
        meter = open_sources([dcgm, f"prometheus:{pv_url}/metrics,it=,renewable=pv_watts,timeout=1"])
        m = run("s1", meter, url, interval_s=0.05)
        time.sleep(1.0)
        assert m.sent == 0 and not m.buffer
        tries = m.pollers[1].failures
        assert 2 <= tries <= 6                           # 0.05, 0.1, 0.2, 0.4 s apart: not 20 tries
        pv.status, pv.body = 200, b"# TYPE pv_watts gauge\npv_watts 250\n"
        wait_for(lambda: m.sent >= 3)
        m.stop()
    readings = [rd for p in posts(got) for rd in p[2]["readings"]]
    assert {(r["it_kw"], r["facility_kw"], r["renewable_kw"], r["grid_kw"]) for r in readings} == {(1.0, 1.5, 0.25,
                                                                                                     1.25)}
    said = [r.getMessage() for r in caplog.records if "answers 503; trying again in 0.05 s" in r.getMessage()]
    assert len(said) == 1
    assert any("no reading: prometheus:" in r.getMessage() for r in caplog.records)
    assert any("read again" in r.getMessage() for r in caplog.records)


def test_a_source_that_hangs_holds_its_own_thread_only(dcgm, caplog):
    caplog.set_level(logging.INFO, logger="suanli.agent.meter")
    blocking = Blocking()
    dc = open_sources([dcgm]).sources[0]
    got = Script(answer=lambda p: (202, {}))
    with text_server(got) as url:
        m = run("s1", Composite([dc, blocking]), url, interval_s=0.05, hang_s=0.3)
        time.sleep(0.8)
        assert m.thread.is_alive() and m.sent == 0
        assert m.pollers[0].polls >= 5                   # the other source goes on being read
        assert any("blocking: a poll has run for" in r.getMessage() for r in caplog.records)
        blocking.release.set()
        wait_for(lambda: m.sent >= 1)
        m.stop()
    assert posts(got)[0][2]["readings"][0]["renewable_kw"] == 0.5


# ------------------------------------------------------------------------------------ per-GPU power
def test_the_per_gpu_source_feeds_each_gpus_energy_while_readings_go_on():
    script = Script(status=202, body=b"{}")
    with prometheus_exporter() as (reg, url), text_server(script) as ctl:
        dcgm_power(reg, [300.0, 200.0, 100.0, 50.0])
        m = run("s", open_sources([f"prometheus:{url},pue=1.25"]), ctl, interval_s=0.3)
        try:
            assert m.gpu_energy is not None and not m.per_gpu_note
            wait_for(lambda: m.gpu_energy.samples >= 2)
            a, b = m.gpu_energy.mark([0, 1]), m.gpu_energy.mark([2, 3])
            t0 = time.monotonic()
            time.sleep(1.0)
            ea, eb = m.gpu_energy.energy_kwh(a), m.gpu_energy.energy_kwh(b)
            dt = time.monotonic() - t0
            # constant power: each run's GPUs' watts times its time, whatever the polls' times
            assert ea * 3.6e6 == pytest.approx(500.0 * dt, rel=0.02)
            assert eb * 3.6e6 == pytest.approx(150.0 * dt, rel=0.02)
            wait_for(lambda: posts(script))             # and the site's readings are posted as ever
        finally:
            m.stop()


def test_two_per_gpu_sources_cannot_be_told_apart_and_neither_is_used():
    with prometheus_exporter() as (r1, u1), prometheus_exporter() as (r2, u2):
        dcgm_power(r1, [100.0])
        dcgm_power(r2, [200.0])
        m = Metering("s", open_sources([f"prometheus:{u1},pue=1.2", f"prometheus:{u2}"]), lambda body: None,
                     interval_s=0.05)
        assert m.gpu_energy is None and "both read per-GPU power" in m.per_gpu_note
        m2 = Metering("s", open_sources([f"prometheus:{u1},pue=1.2", f"prometheus:{u2},gpu_label="]),
                      lambda body: None, interval_s=0.05)
        assert m2.gpu_energy is not None                 # the other told to give none: this one is used
        m.meter.close()
        m2.meter.close()
