"""`csv:PATH[,speed=F][,shift=now]`: replay a CSV file of whole readings, for demos and tests.

The file's header names the columns `at,it_kw,facility_kw,renewable_kw,grid_kw,battery_soc_kwh`
(any order; `battery_soc_kwh` may be missing or empty: no battery). `at` is ISO 8601 with a zone;
the rows are in strictly increasing time. Units as in the readings: kW, kWh.

Replay: row k is sent `(at_k - at_0) / speed` seconds after the source's first poll (speed 1: real
time; 60: an hour a minute). Its timestamp is the file's, or with `shift=now` moved by one offset
for the whole file so that the last row is stamped the moment it is sent: at speed 1 every row is
stamped when it is sent, at a speed-up the rows lie in the past when sent, never in the future
(which the controller refuses). The file is read and checked whole at start-up (at most
MAX_BYTES and MAX_ROWS): a bad cell is one line naming its row and column.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from suanli.agent.meters.base import READING_FIELDS, Options, Reading, Sample
from suanli.errors import UserError, one_line

MAX_BYTES = 64 * 2**20
MAX_ROWS = 1_000_000
OPTIONS = ("speed", "shift")


@dataclass(frozen=True)
class CsvConfig:
    path: str
    speed: float = 1.0                # replayed seconds per wall second
    shift: bool = False               # stamp the rows relative to now (see the module's doc)

    def open(self) -> CsvReplay:
        return CsvReplay(self, load(self.path))


def parse(target: str, opts: Options) -> CsvConfig:
    if not target:
        raise UserError(f"--meter {opts.spec!r}: csv needs a file: csv:PATH")
    speed = opts.number("speed", 1.0, 1e-3, 1e7)
    shift = opts.text("shift", "none")
    if shift not in ("now", "none"):
        raise UserError(f"--meter {opts.spec!r}: shift: 'now' or 'none', got {shift!r}")
    opts.done(OPTIONS)
    return CsvConfig(target, speed, shift == "now")


def load(path: str) -> list[Reading]:
    """The file's readings, checked: a bad cell is a UserError naming the row and column."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UserError(f"--meter csv:{path}: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UserError(f"--meter csv:{path}: larger than {MAX_BYTES // 2**20} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"--meter csv:{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    rows = csv.DictReader(io.StringIO(text))
    cols = [c.strip() for c in rows.fieldnames or []]
    need = ["at", *READING_FIELDS[:-1]]
    missing = [c for c in need if c not in cols]
    if missing:
        raise UserError(f"--meter csv:{path}: no column {missing[0]!r} (columns: at, {', '.join(READING_FIELDS)})")
    unknown = [c for c in cols if c not in ("at", *READING_FIELDS)]
    if unknown:
        raise UserError(f"--meter csv:{path}: unknown column {one_line(unknown[0])!r}")
    out: list[Reading] = []
    for n, row in enumerate(rows, start=2):            # row 1 is the header
        if len(out) >= MAX_ROWS:
            raise UserError(f"--meter csv:{path}: more than {MAX_ROWS:,} rows")
        if None in row:
            raise UserError(f"--meter csv:{path}: row {n}: more cells than columns")
        row = {k.strip(): (v or "").strip() for k, v in row.items()}
        if not row.get("battery_soc_kwh"):
            row["battery_soc_kwh"] = None
        try:
            r = Reading.model_validate(row)
        except ValidationError as e:
            err = e.errors()[0]
            col = err["loc"][0] if err["loc"] else "?"
            raise UserError(f"--meter csv:{path}: row {n}, column {col}: {one_line(err['msg'])} "
                            f"(got {one_line(str(row.get(col)))[:40]!r})") from None
        if out and r.at <= out[-1].at:
            raise UserError(f"--meter csv:{path}: row {n}, column at: {r.at.isoformat()} is not after the "
                            f"row before ({out[-1].at.isoformat()}): rows go in increasing time")
        out.append(r)
    if not out:
        raise UserError(f"--meter csv:{path}: no rows")
    return out


class CsvReplay:
    """Replays the rows whose time has come at each poll; after the last row, polls return []."""
    replay = True
    measures = frozenset(READING_FIELDS)

    def __init__(self, config: CsvConfig, rows: list[Reading], clock=time.monotonic, wall=None):
        self.name = f"csv:{config.path}"
        self.config, self.rows = config, rows
        self.clock = clock
        self.wall = wall                          # () -> aware datetime; tests pass their own
        self.started: float | None = None
        self.offset = timedelta(0)
        self.next = 0

    @property
    def finished(self) -> bool:
        return self.next >= len(self.rows)

    def poll(self) -> list[Sample]:
        t = self.clock()
        if self.started is None:
            self.started = t
            if self.config.shift:
                from suanli.agent.meters.base import now
                wall = (self.wall or now)()
                span = (self.rows[-1].at - self.rows[0].at) / self.config.speed
                # the last row is sent `span` from now, and stamped then
                self.offset = wall + span - self.rows[-1].at
        elapsed = (t - self.started) * self.config.speed          # replayed seconds
        due = self.rows[0].at + timedelta(seconds=elapsed)
        out = []
        while self.next < len(self.rows) and self.rows[self.next].at <= due:
            r = self.rows[self.next]
            out.append(Sample(at=r.at + self.offset, it_kw=r.it_kw, facility_kw=r.facility_kw,
                              renewable_kw=r.renewable_kw, grid_kw=r.grid_kw, battery_soc_kwh=r.battery_soc_kwh))
            self.next += 1
        return out

    def close(self) -> None:
        pass
