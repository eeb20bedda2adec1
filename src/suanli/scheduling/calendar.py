"""Capacity calendars: GPUs in use on one pool as an exact step function of time.

A segment may start at any real time (a job's data arrives when it arrives), so the
calendar keeps exact breakpoints rather than hourly slots: `times[i]` opens an interval
[times[i], times[i+1]) during which `used[i]` GPUs are reserved; the last interval runs to
infinity. Queries and updates are linear in the number of breakpoints ahead of `now`, which
`prune` keeps short.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

import numpy as np


class PoolCalendar:
    __slots__ = ("count", "times", "used")

    def __init__(self, count: int):
        self.count = count
        self.times: list[float] = [-math.inf]
        self.used: list[int] = [0]

    def copy(self) -> PoolCalendar:
        c = PoolCalendar(self.count)
        c.times = self.times.copy()
        c.used = self.used.copy()
        return c

    def used_at(self, t: float) -> int:
        return self.used[bisect_right(self.times, t) - 1]

    def earliest_fit(self, gpus: int, duration: float, not_before: float) -> float | None:
        """Earliest start >= not_before with `gpus` free for `duration` hours (None: never)."""
        limit = self.count - gpus
        if limit < 0:
            return None
        times, used = self.times, self.used
        n = len(times)
        i = bisect_right(times, not_before) - 1
        start = not_before
        j = i
        while True:
            if used[j] > limit:                     # blocked: try again where this interval ends
                if j + 1 == n:
                    return None
                start = times[j + 1]
                j += 1
                continue
            if j + 1 == n or times[j + 1] >= start + duration:
                return start
            j += 1

    def _split(self, t: float) -> int:
        """Index of the interval that starts exactly at t, splitting one if needed."""
        k = bisect_left(self.times, t)
        if k < len(self.times) and self.times[k] == t:
            return k
        self.times.insert(k, t)
        self.used.insert(k, self.used[k - 1])
        return k

    def add(self, start: float, end: float, gpus: int) -> None:
        """Reserve (gpus > 0) or release (gpus < 0) GPUs over [start, end)."""
        if not end > start:
            return
        a = self._split(start)
        b = self._split(end)
        for k in range(a, b):
            self.used[k] += gpus

    def fits(self, start: float, end: float, gpus: int) -> bool:
        i = bisect_right(self.times, start) - 1
        limit = self.count - gpus
        while i < len(self.times) and self.times[i] < end:
            if self.used[i] > limit:
                return False
            i += 1
        return True

    def fits_each(self, starts: np.ndarray, duration: float, gpus: int) -> np.ndarray:
        """`fits(s, s + duration, gpus)` for each of the ascending `starts`, at once."""
        blocked = self._blocked(starts, duration, gpus)
        if blocked is None:
            return np.ones(len(starts), dtype=bool)
        return self._clear(starts, duration, blocked)

    def free_starts(self, starts: np.ndarray, duration: float, gpus: int) -> np.ndarray:
        """Those of the ascending `starts` at which `fits` (the same array if all do)."""
        blocked = self._blocked(starts, duration, gpus)
        return starts if blocked is None else starts[self._clear(starts, duration, blocked)]

    @staticmethod
    def _clear(starts: np.ndarray, duration: float, blocked: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        a, b = blocked
        return ~((b[None, :] > starts[:, None]) & (a[None, :] < (starts + duration)[:, None])).any(axis=1)

    def _blocked(self, starts: np.ndarray, duration: float, gpus: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The intervals [a, b) with more than count - gpus GPUs in use that a run from one of
        the ascending `starts` could meet, as arrays (a, b); None if there are none.

        `fits` refuses a start s exactly when one of them has b > s and a < s + duration (the
        intervals it walks), so only those between the first start and the last end matter."""
        if not len(starts):
            return None
        limit = self.count - gpus
        times, used = self.times, self.used
        n = len(times)
        lo = bisect_right(times, float(starts[0])) - 1
        hi = bisect_left(times, float(starts[-1]) + duration, lo)
        blocked = [i for i in range(lo, hi) if used[i] > limit]
        if not blocked:
            return None
        return (np.array([times[i] for i in blocked]),
                np.array([times[i + 1] if i + 1 < n else math.inf for i in blocked]))

    def prune(self, before: float) -> None:
        """Forget breakpoints before `before` (nothing may be asked about the past again)."""
        i = bisect_right(self.times, before) - 1
        if i > 0:
            self.times = [-math.inf] + self.times[i + 1:]
            self.used = self.used[i:]
