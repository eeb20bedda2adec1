"""A schedule (MODEL.md §3): segments (job_id, site, gpu_type, gpus, start_h, end_h)."""

from __future__ import annotations

import math
from typing import NamedTuple

TIME_TOL = 1e-6   # hours: every time comparison of MODEL.md §3 and §6 uses this tolerance


class Segment(NamedTuple):
    job_id: str
    site: str
    gpu_type: str
    gpus: int
    start_h: float
    end_h: float

    @property
    def length_h(self) -> float:
        return self.end_h - self.start_h


def kept_work(length_h: float, speed: float, checkpoint_h: float | None) -> float:
    """Work kept by a segment that is not its job's last (§3.7): whole checkpoints only."""
    if not checkpoint_h:
        return 0.0
    return math.floor((length_h + TIME_TOL) / checkpoint_h) * checkpoint_h * speed
