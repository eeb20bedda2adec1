"""Meter sources as plugins: what the agent reads a site's power from (docs/SITES.md, "Meters").

A SPEC is `KIND[:TARGET][,KEY=VALUE]...`:
  csv:PATH[,speed=F][,shift=now]                               csv_replay.py
  prometheus:URL[,it=M+M][,facility=M][,renewable=M][,grid=M][,pue=F][,timeout=S][,max_bytes=N]
                                                               prometheus.py
  modbus:HOST[:PORT][,unit=N][,base=N][,capacity_kwh=F][,timeout=S]   modbus.py
  nvml[,pue=F]                                                 nvml.py
`parse_spec` turns one into a typed config (a mistake: a UserError naming the SPEC and the
option); `config.open()` makes the source; `Composite` merges the sources into readings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suanli.agent.meters import csv_replay, modbus, nvml, prometheus
from suanli.agent.meters.base import (
    READING_FIELDS,
    MeterError,
    MeterSource,
    MeterUnavailable,
    Options,
    Reading,
    Sample,
)
from suanli.agent.meters.composite import Composite
from suanli.errors import UserError, one_line

__all__ = ["KINDS", "READING_FIELDS", "Composite", "MeterError", "MeterSource", "MeterUnavailable", "Reading",
           "Sample", "open_sources", "parse_spec"]

# kind -> parse(target, options) -> a config with .open()
KINDS: dict[str, Callable[[str, Options], Any]] = {
    "csv": csv_replay.parse,
    "prometheus": prometheus.parse,
    "modbus": modbus.parse,
    "nvml": nvml.parse,
}
MAX_SPEC = 2000


def parse_spec(spec: str) -> Any:
    """A SPEC as a typed config (CsvConfig, PrometheusConfig, ModbusConfig, NvmlConfig)."""
    shown = one_line(spec)[:200]
    if len(spec) > MAX_SPEC:
        raise UserError(f"--meter {shown!r}...: longer than {MAX_SPEC} characters")
    head, *rest = spec.strip().split(",")
    kind, _, target = head.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UserError(f"--meter {shown!r}: unknown kind {one_line(kind)!r} (kinds: {', '.join(KINDS)}; "
                        f"e.g. prometheus:http://gpu-node-1:9400/metrics)")
    opts = Options(shown)
    for item in rest:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"--meter {shown!r}: {one_line(item)!r} is not KEY=VALUE")
        if key in opts.items:
            raise UserError(f"--meter {shown!r}: {one_line(key)!r} given twice")
        opts.items[key] = value.strip()
    return KINDS[kind](target.strip(), opts)


def open_sources(specs: list[str]) -> Composite:
    """The sources of the SPECs, opened and checked together (a UserError names what is wrong;
    sources opened before it are closed)."""
    configs = [parse_spec(s) for s in specs]
    sources: list[MeterSource] = []
    try:
        for c in configs:
            sources.append(c.open())
        return Composite(sources)
    except BaseException:
        for s in sources:
            s.close()
        raise
