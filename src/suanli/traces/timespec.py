"""Times on a trace's clock as a user writes them: `48h`, `12d`, `2017-11-20 06:00`.

A duration is a number with a unit (`s`, `m`/`min`, `h`, `d`, `w`); a bare number is hours,
suanli's unit. An instant is an ISO date/time (only on a calendar clock) or a duration
after the trace's origin, its first submit.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from suanli.errors import UserError
from suanli.traces.records import MAX_SECONDS, Clock

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_duration(text: str, option: str) -> float:
    """Seconds in `text` ('48h', '90m', '2.5d', '36' = 36 h); UserError naming the option."""
    m = _DURATION.match(text.lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise UserError(f"{option}: not a duration like 48h, 90m, 2d or 3600s (got {text!r})")
    seconds = float(m.group(1)) * _UNITS.get(m.group(2) or "h", 3600.0)
    if not seconds <= MAX_SECONDS:      # 1e400 is inf; a window of 1e20 d ends past any calendar
        raise UserError(f"{option}: too long: at most {MAX_SECONDS / 3600:g} h (got {text!r})")
    return seconds


def epoch_seconds(value: datetime) -> float:
    """Seconds since 1970 for a calendar time; a time without offset is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_datetime(text: str) -> float | None:
    """Epoch seconds of an ISO date/time, or None if `text` is not one."""
    try:
        return epoch_seconds(datetime.fromisoformat(text.strip()))
    except ValueError:
        return None


def parse_instant(text: str, option: str, clock: Clock, origin_s: float) -> float:
    """An instant on the trace clock from `text`: an ISO time or an offset from the origin."""
    if clock is Clock.DATETIME and not _DURATION.match(text.lower()):
        t = parse_datetime(text)
        if t is None:
            raise UserError(f"{option}: not an ISO date/time like 2017-11-20T06:00 or an offset like 30d "
                            f"(got {text!r})")
        return t
    if clock is Clock.OFFSET and parse_datetime(text) is not None:
        raise UserError(f"{option}: this trace's times are offsets from its start; give one like 12d or 36h "
                        f"(got {text!r})")
    return origin_s + parse_duration(text, option)


def describe(t: float, clock: Clock) -> str:
    """An instant for a summary: a calendar time (as the trace wrote it) or trace-clock hours."""
    if clock is Clock.DATETIME:
        try:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, ValueError, OSError):       # past year 9999 (a window's far end)
            return f"{t:.6g} s after 1970 (UTC)"
    return f"{t / 3600:.6g} h (trace clock)"
