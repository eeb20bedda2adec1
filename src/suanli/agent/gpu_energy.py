"""Each local run's GPU energy, from the per-GPU power the meter sources read (docs/SITES.md, "Meters").

A per-GPU source (nvml, or prometheus of a DCGM exporter: `Sample.gpu_w`) gives each GPU's power,
W, at every poll. Here every GPU keeps one energy counter, J, over the agent's monotonic clock:

- **hold-last**: a sample's power holds from the moment it was taken until the next sample of that
  GPU, so the counter at time t is (the energy up to the last sample) + (its power × the time
  since). NVML's reading is the board's power averaged over about the last second, DCGM's a
  reading of the same; the controller's meter readings hold the same way (service/meters.py).
- **coverage**: a sample that holds for longer than `stale_s` (the source failing, backing off)
  leaves a gap, and a run across a gap, or whose GPU has no fresh sample at its start or its end,
  has no measured energy: the agent reports none, and the controller weights that run by its
  GPUs' rating (service/bills.py), as before.

A run's energy is its GPUs' counters at its end less their counters at its start (`mark`, then
`energy_kwh`): memory is one counter per GPU and one mark per run, whatever the runs' length.
Thread-safe: the metering threads `record`, the agent's loop marks and reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

J_PER_KWH = 3.6e6


@dataclass
class _Gpu:
    at: float                 # the last sample's monotonic time, s
    watts: float              # its power, W
    joules: float = 0.0       # the energy up to `at`, J
    era: int = 0              # bumped at each gap: counters of different eras cannot be subtracted


@dataclass(frozen=True)
class Mark:
    """A run's GPUs' counters when it started: {GPU: (era, J)}."""
    at: float
    counters: Mapping[int, tuple[int, float]]


class GpuEnergy:
    def __init__(self, stale_s: float, clock=time.monotonic):
        if not stale_s > 0:
            raise ValueError(f"stale_s must be > 0, got {stale_s}")
        self.stale_s = stale_s
        self.clock = clock
        self.lock = threading.Lock()
        self.gpus: dict[int, _Gpu] = {}
        self.samples = 0

    def record(self, watts: Mapping[int, float], at: float | None = None) -> None:
        """One poll's power per GPU (W, by index) at monotonic time `at` (now)."""
        t = self.clock() if at is None else at
        with self.lock:
            self.samples += 1
            for i, w in watts.items():
                g = self.gpus.get(i)
                if g is None:
                    self.gpus[i] = _Gpu(t, float(w))
                    continue
                dt = t - g.at
                if dt < 0:
                    continue                      # out of order (two threads): the later one holds
                if dt > self.stale_s:
                    g.era += 1                    # a gap: nothing is known of the time between
                else:
                    g.joules += g.watts * dt
                g.at, g.watts = t, float(w)

    def _counter(self, i: int, t: float) -> tuple[int, float] | None:
        g = self.gpus.get(i)
        if g is None or t < g.at - 1e-9 or t - g.at > self.stale_s:
            return None
        return g.era, g.joules + g.watts * max(0.0, t - g.at)

    def mark(self, devices: Iterable[int], at: float | None = None) -> Mark | None:
        """The counters of a run's GPUs as it starts, or None where one has no fresh sample."""
        t = self.clock() if at is None else at
        devices = list(devices)
        if not devices:
            return None
        with self.lock:
            got = {i: self._counter(i, t) for i in devices}
        if any(v is None for v in got.values()):
            return None
        return Mark(t, got)

    def energy_kwh(self, mark: Mark | None, at: float | None = None) -> float | None:
        """The run's GPU energy since `mark`, kWh; None where it is not covered (module docstring)."""
        if mark is None:
            return None
        t = self.clock() if at is None else at
        total = 0.0
        with self.lock:
            for i, (era, j0) in mark.counters.items():
                now = self._counter(i, t)
                if now is None or now[0] != era:
                    return None
                total += now[1] - j0
        return max(0.0, total) / J_PER_KWH
