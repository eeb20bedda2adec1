"""`prometheus:URL[,it=M+M..][,facility=M..][,renewable=M..][,grid=M..][,pue=F][,gpu_label=L][,timeout=S]
[,max_bytes=N]`:
scrape one Prometheus text endpoint (an exporter's /metrics) at each poll.

Each field is the sum of the named metrics over all their series (every GPU, every node, every
label set); a metric is read by its type:
- a gauge (or untyped) is power in watts, e.g. DCGM exporter's `DCGM_FI_DEV_POWER_USAGE` (W per
  GPU) or node exporter's `node_hwmon_power_average_watt`;
- a counter is energy in joules, and its power the increase over the interval between two scrapes,
  e.g. node exporter's RAPL counters `node_rapl_package_joules_total` (so its first scrape yields no
  sample, and a counter that went down, reset, skips one).

Defaults: `it=DCGM_FI_DEV_POWER_USAGE`; no other field. Give `it=` (empty) for an endpoint that
has no IT power (a building meter's). Facility power: a metric (`facility=`, e.g. a PDU or
building meter exposed through node exporter's textfile collector), or `pue=F`: this source's IT
power times F. A metric named but missing from the scrape fails the poll: a meter that stopped
exporting must not read as 0 kW.

Per GPU: where every series of the `it` metrics is a gauge with a `gpu_label` label (default `gpu`,
as DCGM exporter labels each GPU by its NVML index: `gpu="0"`), each sample also carries each GPU's
watts by that index (`Sample.gpu_w`, the sum over the `it` metrics; they add up to `it_kw`), which
the agent integrates into each local run's GPU energy (agent/gpu_energy.py). A series without the
label, a label that is not an index, two series of one metric for one index (two hosts' GPU 0),
or a value no board draws (over 5 kW) leaves a poll without per-GPU values (its `it_kw` is read
as ever). `gpu_label=` (empty): none.

Bounded: `timeout` seconds (default 5) for the whole scrape (checked at each chunk received; a
server silent past the read timeout, the same `timeout`, is cut there), at most `max_bytes` of
answer (default 8 MiB).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from suanli.agent.meters.base import MAX_GPU_INDEX, MAX_GPU_W, MeterError, Options, Sample, now
from suanli.errors import UserError

FIELDS = {"it": "it_kw", "facility": "facility_kw", "renewable": "renewable_kw", "grid": "grid_kw"}
OPTIONS = (*FIELDS, "pue", "gpu_label", "timeout", "max_bytes")
DCGM_POWER = "DCGM_FI_DEV_POWER_USAGE"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,99}")
GPU_INDEX = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    metrics: dict[str, tuple[str, ...]]   # field (it_kw, ...) -> the metric names summed into it
    pue: float | None = None
    timeout_s: float = 5.0
    max_bytes: int = 8 * 2**20
    gpu_label: str = "gpu"                # the label naming a GPU's index in the `it` metrics ("": none)

    def open(self) -> PrometheusSource:
        return PrometheusSource(self)


def parse(target: str, opts: Options) -> PrometheusConfig:
    u = urlsplit(target)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UserError(f"--meter {opts.spec!r}: prometheus needs an http(s) URL, e.g. "
                        f"prometheus:http://gpu-node-1:9400/metrics")
    metrics: dict[str, tuple[str, ...]] = {}
    for key, name in FIELDS.items():
        raw = opts.text(key, DCGM_POWER if key == "it" else "")
        names = tuple(m for m in raw.split("+") if m)
        for m in names:
            if not METRIC_NAME.fullmatch(m):
                raise UserError(f"--meter {opts.spec!r}: {key}: {m!r} is not a metric name")
        if names:
            metrics[name] = names
    pue = opts.number("pue", None, 1.0, 5.0)
    if pue is not None and "facility_kw" in metrics:
        raise UserError(f"--meter {opts.spec!r}: pue: give facility= or pue=, not both")
    if pue is not None and "it_kw" not in metrics:
        raise UserError(f"--meter {opts.spec!r}: pue: multiplies this source's IT power, and it reads none (it=)")
    timeout = opts.number("timeout", 5.0, 0.1, 120.0)
    max_bytes = opts.integer("max_bytes", 8 * 2**20, 1024, 256 * 2**20)
    gpu_label = opts.text("gpu_label", "gpu")
    if gpu_label and not LABEL_NAME.fullmatch(gpu_label):
        raise UserError(f"--meter {opts.spec!r}: gpu_label: {gpu_label!r} is not a label name")
    opts.done(OPTIONS)
    if not metrics:
        raise UserError(f"--meter {opts.spec!r}: reads no metric (give it=, facility=, renewable= or grid=)")
    return PrometheusConfig(target, metrics, pue, timeout, max_bytes, gpu_label)


class PrometheusSource:
    replay = False

    def __init__(self, config: PrometheusConfig):
        self.name = f"prometheus:{config.url}"
        self.config = config
        self.measures = frozenset(config.metrics) | ({"facility_kw"} if config.pue else frozenset())
        self.http = httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        self.counters: dict[str, tuple[float, float]] = {}      # counter -> (monotonic time, joules)
        self.per_gpu = bool(config.gpu_label) and "it_kw" in config.metrics
        self.per_gpu_w: dict[int, float] = {}                   # the last poll's, W by GPU index

    def scrape(self) -> str:
        """The endpoint's answer, bounded in bytes and in time (a server that sends one byte a
        second does not hold the poll longer than `timeout`)."""
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s
        try:
            with self.http.stream("GET", cfg.url, headers={"Accept": "text/plain"}) as r:
                if r.status_code != 200:
                    raise MeterError(f"answers {r.status_code}")
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > cfg.max_bytes:
                        raise MeterError(f"answer larger than {cfg.max_bytes:,} bytes (max_bytes=)")
                    if time.monotonic() > deadline:
                        raise MeterError(f"answer not complete after {cfg.timeout_s:g} s (timeout=)")
                    chunks.append(chunk)
        except httpx.HTTPError as e:
            raise MeterError(f"cannot scrape: {type(e).__name__}: {e}") from None
        return b"".join(chunks).decode("utf-8", errors="replace")

    def poll(self) -> list[Sample]:
        text = self.scrape()
        t = time.monotonic()
        wanted = {m for names in self.config.metrics.values() for m in names}
        it_metrics = set(self.config.metrics.get("it_kw", ())) if self.per_gpu else set()
        found: dict[str, tuple[str, float]] = {}                 # metric -> (type, sum of its series)
        by_gpu: dict[tuple[str, int], float] | None = {} if it_metrics else None   # (metric, GPU) -> W
        try:
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    name = s.name if s.name in wanted else fam.name if fam.name in wanted else None
                    if name is None or s.name.endswith("_created"):
                        continue
                    if fam.type not in ("gauge", "counter", "unknown", "untyped"):
                        raise MeterError(f"{name}: a {fam.type}, not a gauge (W) or a counter (J)")
                    kind = "counter" if fam.type == "counter" else "gauge"
                    found[name] = (kind, found.get(name, (kind, 0.0))[1] + float(s.value))
                    if by_gpu is not None and name in it_metrics:
                        by_gpu = self._per_gpu(by_gpu, name, kind, s.labels, float(s.value))
        except ValueError as e:
            raise MeterError(f"not Prometheus text: {e}") from None
        watts: dict[str, float] = {}
        ready = True
        for metric in wanted:
            if metric not in found:
                raise MeterError(f"{metric}: not in the scrape")
            kind, value = found[metric]
            if kind == "gauge":
                watts[metric] = value
                continue
            last = self.counters.get(metric)
            self.counters[metric] = (t, value)
            if last is None or value < last[1] or t <= last[0]:
                ready = False                     # first scrape, or a reset: no rate this time
                continue
            watts[metric] = (value - last[1]) / (t - last[0])
        if not ready:
            return []
        kw = {f: sum(watts[m] for m in names) / 1000.0 for f, names in self.config.metrics.items()}
        if self.config.pue is not None:
            kw["facility_kw"] = kw["it_kw"] * self.config.pue
        gpu_w: dict[int, float] | None = None
        if by_gpu:
            gpu_w = {}
            for (_, i), w in by_gpu.items():
                gpu_w[i] = gpu_w.get(i, 0.0) + w
        self.per_gpu_w = gpu_w or {}
        return [Sample(at=now(), **kw, gpu_w=gpu_w)]

    def _per_gpu(self, by_gpu: dict[tuple[str, int], float], name: str, kind: str, labels: dict[str, str],
                 watts: float) -> dict[tuple[str, int], float] | None:
        """`by_gpu` with one more series of an `it` metric, or None once the series cannot be
        told apart by GPU (the module's rule): that poll carries no per-GPU values."""
        raw = labels.get(self.config.gpu_label)
        if kind != "gauge" or raw is None or not GPU_INDEX.fullmatch(raw) or int(raw) > MAX_GPU_INDEX:
            return None
        if not (math.isfinite(watts) and 0 <= watts <= MAX_GPU_W):
            return None                        # no board draws it: the site's it_kw says the rest
        key = (name, int(raw))
        if key in by_gpu:
            return None
        by_gpu[key] = watts
        return by_gpu

    def close(self) -> None:
        self.http.close()
