"""Shared helpers: small scenario dicts that tests tweak, then parse.

`make_scenario()` is a minimal valid scenario (MODEL.md §1) with numbers chosen to make hand
computation easy:

- GPU types: h100 (0.5 kW, speed 2), a800 (0.25 kW, speed 1).
- Cities `east` and `west`, one link: 8 Gbit/s, 10 ms one way, 0.5 CNY/GB
  (so 3600 GB takes 3600 * 8 / 8 / 3600 = 1 h, and rtt east<->west = 20 ms).
- Sites: `w1` in west (h100: 8 GPUs at 10 CNY/GPU-h, a800: 8 at 4), `e1` in east (a800: 4 at 6);
  PUE 1, no grid prices, no renewables, no battery.
- One job `j1` from west: 2 GPUs, work_h 4, submitted at 0, no data.
- horizon_h 4, objective all zeros.

Tests import these helpers with `from conftest import ...` (tests/ is on sys.path).
"""

from __future__ import annotations

import copy
from typing import Any

from suanli.model.load import parse_scenario
from suanli.model.scenario import Scenario
from suanli.model.schedule import Segment


def make_site(id: str = "w1", city: str = "west", **overrides: Any) -> dict[str, Any]:
    """A site dict; by default `w1` in west with h100 x8 @10 and a800 x8 @4."""
    site: dict[str, Any] = {
        "id": id,
        "city": city,
        "gpus": {"h100": {"count": 8, "cny_per_gpu_h": 10.0}, "a800": {"count": 8, "cny_per_gpu_h": 4.0}},
    }
    site.update(overrides)
    return site


def make_job(id: str = "j1", **overrides: Any) -> dict[str, Any]:
    """A job dict; by default 2 GPUs, work_h 4, submitted at 0 from west, no data."""
    job: dict[str, Any] = {"id": id, "submit_h": 0.0, "gpus": 2, "work_h": 4.0, "origin": "west"}
    job.update(overrides)
    return job


def make_scenario(**overrides: Any) -> dict[str, Any]:
    """A minimal valid raw scenario dict; top-level keys in `overrides` replace the defaults."""
    raw: dict[str, Any] = {
        "name": "test",
        "horizon_h": 4,
        "gpu_types": {"h100": {"power_kw": 0.5, "speed": 2.0}, "a800": {"power_kw": 0.25, "speed": 1.0}},
        "cities": {"east": {"lat": 31.2, "lon": 121.5}, "west": {"lat": 35.7, "lon": 107.6}},
        "links": [{"a": "east", "b": "west", "gbps": 8, "latency_ms": 10, "cny_per_gb": 0.5}],
        "sites": [
            make_site(),
            make_site("e1", "east", gpus={"a800": {"count": 4, "cny_per_gpu_h": 6.0}}),
        ],
        "jobs": [make_job()],
    }
    raw.update(copy.deepcopy(overrides))
    return copy.deepcopy(raw)


def build(raw: dict[str, Any] | None = None, file: str = "test.yaml", **overrides: Any) -> Scenario:
    """Parse `raw` (default: make_scenario(**overrides)) into a Scenario."""
    if raw is None:
        raw = make_scenario(**overrides)
    return parse_scenario(raw, file)


def seg(job_id: str, site: str, gpu_type: str, gpus: int, start_h: float, end_h: float) -> Segment:
    return Segment(job_id, site, gpu_type, gpus, start_h, end_h)
