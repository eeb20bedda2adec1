"""Each run's GPU energy from per-GPU power samples (agent/gpu_energy.py): hold-last, per GPU,
covered or not. The clock is the test's, so every integral is known exactly."""

from __future__ import annotations

import pytest

from suanli.agent.gpu_energy import J_PER_KWH, GpuEnergy


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_each_sample_holds_until_the_next_and_a_run_takes_its_own_gpus_only():
    c = Clock()
    e = GpuEnergy(stale_s=5.0, clock=c)
    e.record({0: 300.0, 1: 200.0, 2: 100.0, 3: 50.0})
    c.t += 0.5
    a = e.mark([0, 1])                       # starts half-way through the first sample's hold
    b = e.mark([2, 3])
    c.t += 0.5
    e.record({0: 100.0, 1: 200.0, 2: 100.0, 3: 150.0})
    c.t += 2.0
    e.record({0: 400.0, 1: 200.0, 2: 100.0, 3: 150.0})
    c.t += 1.0
    # a: GPU 0: 300 W x 0.5 s + 100 W x 2 s + 400 W x 1 s; GPU 1: 200 W x 3.5 s
    assert e.energy_kwh(a) * J_PER_KWH == pytest.approx(300 * 0.5 + 100 * 2 + 400 * 1 + 200 * 3.5)
    # b: GPU 2: 100 W x 3.5 s; GPU 3: 50 W x 0.5 s + 150 W x 3 s
    assert e.energy_kwh(b) * J_PER_KWH == pytest.approx(100 * 3.5 + 50 * 0.5 + 150 * 3)


def test_a_run_started_before_any_sample_or_across_a_gap_has_no_measured_energy():
    c = Clock()
    e = GpuEnergy(stale_s=2.0, clock=c)
    assert e.mark([0]) is None                # no sample yet
    e.record({0: 100.0})
    run = e.mark([0])
    assert run is not None and e.mark([0, 5]) is None      # GPU 5 is never sampled
    c.t += 1.5
    e.record({0: 100.0})
    c.t += 3.0                                 # the source fails: the last sample is stale
    assert e.energy_kwh(run) is None
    e.record({0: 100.0})                       # read again: a gap lies inside the run
    c.t += 1.0
    assert e.energy_kwh(run) is None
    fresh = e.mark([0])
    c.t += 1.0
    e.record({0: 100.0})
    assert e.energy_kwh(fresh) * J_PER_KWH == pytest.approx(100.0)


def test_no_device_no_mark_and_the_counters_are_one_per_gpu():
    c = Clock()
    e = GpuEnergy(stale_s=10.0, clock=c)
    assert e.mark([]) is None and e.energy_kwh(None) is None
    for _ in range(10_000):
        c.t += 0.01
        e.record({0: 700.0, 1: 700.0})
    assert len(e.gpus) == 2                    # memory does not grow with the samples
    with pytest.raises(ValueError):
        GpuEnergy(stale_s=0)
