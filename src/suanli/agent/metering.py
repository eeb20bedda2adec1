"""The agent's metering: poll the meter sources, make readings, post them to the controller.

Threads, none of them the agent's loop (whose heartbeats keep their interval whatever the meters do):
- one per source (`Poller`): polls every `interval_s`; a poll that fails is logged (once per
  change of error) and tried again backing off, from `interval_s` doubling up to BACKOFF_MAX_S; a
  poll that hangs holds its own thread only, and is said once it has run past `hang_s`;
- one (`Metering`) that every `interval_s` merges the sources' latest samples into a reading
  (composite.py: only when every source's sample is fresh), keeps it in a bounded buffer (the
  oldest dropped, and said, past `max_buffer`), and posts the buffer in batches of at most
  `batch` to `POST /v1/agent/{site}/meter`. A 2xx takes the batch; a 422 refuses it for good (the
  server's message is logged and the batch dropped: it will never be taken); a 413 halves the
  batch; anything else (unreachable, 5xx, 429, 401) keeps it and tries again backing off.
Per-GPU power: where exactly one source reads each GPU's power (`per_gpu`: nvml, or prometheus of
a DCGM exporter), its poller gives every sample's `gpu_w` to `gpu_energy` (agent/gpu_energy.py),
from which the agent reports each local run's GPU energy. Two such sources (nvml and a DCGM
exporter, or two hosts' exporters) cannot be told apart by GPU index: then none is used, and said.
Nothing here raises into the agent: a bug is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from suanli.agent.gpu_energy import GpuEnergy
from suanli.agent.meters import Composite, MeterSource, Reading, Sample
from suanli.agent.meters.base import MeterError, now
from suanli.errors import UserError

log = logging.getLogger("suanli.agent.meter")
BACKOFF_MAX_S = 300.0
MAX_BUFFER = 20_000              # readings kept while the controller is away: 3.5 days at 15 s
BATCH = 500


def _status(e: UserError) -> int | None:
    m = re.match(r"(\d{3}):", str(e))
    return int(m.group(1)) if m else None


class Poller:
    """One source's thread: its latest sample (live) or its samples not yet taken (replay)."""

    def __init__(self, source: MeterSource, interval_s: float, stopping: threading.Event, hang_s: float,
                 gpu_energy: GpuEnergy | None = None):
        self.source = source
        self.gpu_energy = gpu_energy                            # given each sample's per-GPU power
        self.interval_s = interval_s
        self.hang_s = hang_s
        self.stopping = stopping
        self.lock = threading.Lock()
        self.latest: tuple[float, Sample] | None = None        # (monotonic time, sample)
        self.pending: deque[Sample] = deque()                   # a replay's samples
        self.error: str = ""                                    # the last failure, "" after a success
        self.delay = 0.0
        self.polling_since: float | None = None
        self.polls = self.failures = 0
        self.thread = threading.Thread(target=self._run, name=f"meter {source.name}", daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.polling_since = time.monotonic()
            try:
                samples = self.source.poll()
                failed = None
            except MeterError as e:
                failed = str(e)
            except Exception as e:                # a bug in a source: said, and retried like a failure
                failed = f"{type(e).__name__}: {e}"
                log.debug("meter %s", self.source.name, exc_info=True)
            took = time.monotonic() - self.polling_since
            self.polling_since = None
            self.polls += 1
            if failed is None:
                with self.lock:
                    if self.source.replay:
                        self.pending.extend(samples)
                    elif samples:
                        self.latest = (time.monotonic(), samples[-1])
                if self.gpu_energy is not None and samples and samples[-1].gpu_w:
                    self.gpu_energy.record(samples[-1].gpu_w)
                if self.error:
                    log.warning("meter %s: read again, after %s", self.source.name, self.error)
                self.error, self.delay = "", 0.0
                wait = self.interval_s
            else:
                self.failures += 1
                self.delay = self.interval_s if self.delay == 0 else min(2 * self.delay, BACKOFF_MAX_S)
                if failed != self.error:
                    log.warning("meter %s: %s; trying again in %.3g s, backing off up to %.0f s",
                                self.source.name, failed, self.delay, BACKOFF_MAX_S)
                self.error = failed
                wait = self.delay
            self.stopping.wait(max(0.0, wait - took) if failed is None else wait)

    def hung(self) -> float:
        """Seconds the current poll has run past `hang_s` (0: not hung)."""
        since = self.polling_since
        return max(0.0, time.monotonic() - since - self.hang_s) if since is not None else 0.0

    def take(self) -> list[Sample]:
        with self.lock:
            out = list(self.pending)
            self.pending.clear()
            return out

    def fresh(self, stale_s: float) -> Sample | None:
        with self.lock:
            if self.latest is None or time.monotonic() - self.latest[0] > stale_s:
                return None
            return self.latest[1]


class Metering:
    """The merging and posting thread. `post(body)` sends one batch (raising UserError "NNN: why"
    on a refusal, "cannot reach ..." when unreachable): the agent gives its own client's call."""

    def __init__(self, site: str, meter: Composite, post: Callable[[dict], Any], interval_s: float = 15.0,
                 max_buffer: int = MAX_BUFFER, batch: int = BATCH, stale_s: float | None = None,
                 hang_s: float | None = None, close: Callable[[], None] | None = None):
        self.site = site
        self.meter = meter
        self.post = post
        self.interval_s = interval_s
        self.stale_s = stale_s if stale_s is not None else 3 * interval_s
        self.batch = self.max_batch = batch
        self.buffer: deque[Reading] = deque(maxlen=max_buffer)
        self.stopping = threading.Event()
        hang = hang_s if hang_s is not None else max(60.0, 4 * interval_s)
        per_gpu = [s for s in meter.sources if getattr(s, "per_gpu", False)]
        self.per_gpu_note = ""
        if len(per_gpu) > 1:
            self.per_gpu_note = (f"{' and '.join(s.name for s in per_gpu)} both read per-GPU power, and their GPU "
                                 f"indices cannot be told apart: no run's GPU energy is measured (they are billed "
                                 f"by their GPUs' rating); give the others gpu_label= (empty)")
            per_gpu = []
        # a sample holds at most stale_s: a run across a longer gap has no measured GPU energy
        self.gpu_energy = GpuEnergy(self.stale_s) if per_gpu else None
        self.pollers = [Poller(s, interval_s, self.stopping, hang, self.gpu_energy if s in per_gpu else None)
                        for s in meter.sources]
        self.next_post = 0.0
        self.post_delay = 0.0
        self.dropped = 0                     # readings pushed out of a full buffer
        self.refused = 0                     # readings in batches the controller refused (422)
        self.sent = 0
        self._said: dict[str, str] = {}
        self._close = close
        self.thread = threading.Thread(target=self._run, name="metering", daemon=True)

    def _once(self, where: str, level: int, text: str) -> None:
        if self._said.get(where) != text:
            self._said[where] = text
            log.log(level, "%s", text)

    def start(self) -> None:
        for note in self.meter.notes():
            log.info("meters: %s", note)
        if self.per_gpu_note:
            log.warning("meters: %s", self.per_gpu_note)
        log.info("meters: %s, read every %g s, posted in batches of up to %d", ", ".join(
            s.name for s in self.meter.sources), self.interval_s, self.batch)
        for p in self.pollers:
            p.thread.start()
        self.thread.start()

    def stop(self, flush_s: float = 5.0) -> None:
        """Stop polling; one last try to post what is buffered (within `flush_s`), then close."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(flush_s)
        if self.buffer:
            log.warning("meters: %d reading(s) not yet posted are lost as the agent stops", len(self.buffer))
        self.meter.close()
        if self._close is not None:
            self._close()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as e:           # a bug: said, and the loop goes on
                self._once("tick", logging.ERROR, f"meters: {type(e).__name__}: {e}")
                log.debug("meters", exc_info=True)
            next_tick += self.interval_s
            self.stopping.wait(max(0.0, next_tick - time.monotonic()))
        try:
            self.collect()
            self.send(final=True)
        except Exception as e:
            log.error("meters: the last post failed: %s: %s", type(e).__name__, e)

    def tick(self) -> None:
        self.collect()
        self.send()

    # ---------------------------------------------------------------- readings
    def collect(self) -> None:
        for p in self.pollers:
            h = p.hung()
            if h > 0:
                self._once(f"hung {p.source.name}", logging.WARNING,
                           f"meter {p.source.name}: a poll has run for {h + p.hang_s:.0f} s: its readings wait")
        if self.meter.replay:
            for s in self.pollers[0].take():
                self._add(self.meter.whole(s))
            return
        samples = []
        for p in self.pollers:
            s = p.fresh(self.stale_s)
            if s is None:
                why = p.error or ("still polling" if p.polling_since is not None else "no sample yet")
                self._once("merge", logging.INFO if p.polls == 0 else logging.WARNING,
                           f"meters: no reading: {p.source.name} has no sample of the last {self.stale_s:g} s "
                           f"({why})")
                return
            samples.append(s)
        try:
            reading = self.meter.merge(now(), samples)
        except MeterError as e:
            self._once("merge", logging.WARNING, f"meters: no reading: {e}")
            return
        if self._said.get("merge"):
            log.info("meters: readings again")
            self._said.pop("merge")
        self._add(reading)

    def _add(self, r: Reading) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
            self._once("full", logging.WARNING, f"meters: {self.buffer.maxlen:,} readings wait to be posted: "
                                                 f"the oldest are dropped")
        self.buffer.append(r)

    # ---------------------------------------------------------------- posting
    def send(self, final: bool = False) -> None:
        """Post the buffer, batch by batch, until it is empty or a post fails."""
        while self.buffer and (final or time.monotonic() >= self.next_post):
            n = min(self.batch, len(self.buffer))
            batch = [self.buffer[i] for i in range(n)]
            try:
                self.post({"readings": [r.body() for r in batch]})
            except UserError as e:
                code = _status(e)
                if code == 422:
                    self._drop(n)
                    self.refused += n
                    log.error("meters: the controller refused %d reading(s) (%s to %s) for good: %s; dropped",
                              n, batch[0].at.isoformat(), batch[-1].at.isoformat(), e)
                    continue
                if code == 413 and self.batch > 1:
                    self.batch = max(1, self.batch // 2)
                    log.warning("meters: the controller takes no batch of %d readings (413): batches of %d now",
                                n, self.batch)
                    continue
                self.post_delay = (self.interval_s if self.post_delay == 0
                                   else min(2 * self.post_delay, BACKOFF_MAX_S))
                self.next_post = time.monotonic() + self.post_delay
                self._once("post", logging.WARNING, f"meters: cannot post readings ({e}): they are kept (up to "
                                                    f"{self.buffer.maxlen:,}), trying again backing off up to "
                                                    f"{BACKOFF_MAX_S:.0f} s")
                return
            self._drop(n)
            if self.sent == 0:
                log.info("meters: the controller takes the readings (the first %d posted)", n)
            self.sent += n
            self.post_delay = 0.0
            if self._said.pop("post", None):
                log.info("meters: readings posted again")

    def _drop(self, n: int) -> None:
        for _ in range(n):
            self.buffer.popleft()
