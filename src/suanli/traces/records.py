"""What every trace reader yields: one `TraceRecord` per job, or a reason it is not one.

Times are seconds on the trace's own clock (`Clock`): epoch seconds for traces that write
calendar times (Philly), seconds from the trace start for traces that write offsets
(Alibaba). Nothing here knows about scenarios; `importer` turns records into jobs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from suanli.errors import short_repr

# The largest time or duration a trace may hold, in seconds (31.7 million years; an epoch second
# of the year 9999 is 2.5e11): beyond it the hours derived from it (a deadline of slack x work,
# in millionths of an hour) overflow to inf, and the jobs file would say "inf" (fuzzing found it).
MAX_SECONDS = 1e15


class Clock(StrEnum):
    DATETIME = "datetime"     # submit times are calendar times, stored as epoch seconds (naive = UTC)
    OFFSET = "offset"         # submit times are seconds from the trace start (time 0)


class TraceRecord(NamedTuple):
    line: int                     # line of the source file, for messages
    submit_s: float               # when the job was submitted, trace clock, s
    start_s: float                # when it started running (= submit when the trace has no start), s
    end_s: float | None           # when it ended; None: still running when the trace ended
    gpus: int                     # GPUs it held, >= 1
    tenant: str | None = None
    gpu_types: tuple[str, ...] | None = None   # allowed scenario GPU types; None: any
    max_rtt_ms: float | None = None
    notes: tuple[str, ...] = ()   # adjustments made while reading, counted in the report
    estimate_s: float | None = None   # the user's estimate of the run time (a requested time limit), s


class BadRow(Exception):
    """A row that cannot be read: a missing field, a non-number, a negative duration."""

    def __init__(self, field: str, problem: str, value: Any = ...):
        self.field, self.problem, self.value = field, problem, value
        got = "" if value is ... else f" (got {short_repr(value)})"
        super().__init__(f"{field}: {problem}{got}")

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.problem}"


class Skip(Exception):
    """A well-formed row that is not a GPU job by design (a CPU-only task, a pod never run)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def number(cells: list[str], i: int, field: str, *, allow_empty: bool = False) -> float | None:
    """The float in cell i; `None` for an empty/NaN cell when allowed, else a BadRow."""
    raw = cells[i]
    try:
        x = float(raw)                # float() ignores surrounding blanks itself
    except ValueError:
        if not raw.strip():
            if allow_empty:
                return None
            raise BadRow(field, "missing") from None
        raise BadRow(field, "not a number", raw.strip()) from None
    if x - x != 0:                    # NaN or infinite: the only floats for which this holds
        if x != x and allow_empty:
            return None
        raise BadRow(field, "missing" if x != x else "not a finite number", raw.strip())
    if abs(x) > MAX_SECONDS:
        raise BadRow(field, f"out of range (more than {MAX_SECONDS:g} in size)", raw.strip())
    return x


def count(cells: list[str], i: int, field: str) -> int:
    """A non-negative whole number in cell i (`2` or `2.0`)."""
    x = number(cells, i, field)
    assert x is not None
    if x < 0 or x != int(x):
        raise BadRow(field, "not a whole number >= 0", cells[i].strip())
    return int(x)


def text(cells: list[str], i: int, field: str) -> str:
    value = cells[i].strip()
    if not value:
        raise BadRow(field, "missing")
    return value
