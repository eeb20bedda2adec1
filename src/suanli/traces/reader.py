"""The part every trace reader shares: the header, the rows, their line numbers.

A reader names the columns it needs, binds them to the header once, then turns each row's
cells into a `TraceRecord` or raises `BadRow` (unreadable) or `Skip` (not a GPU job by
design). `iter_records` streams a file through a reader with constant memory and reports
how far it has read, so a progress bar can follow.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, ClassVar

from suanli.errors import UserError, short_repr
from suanli.traces.records import BadRow, Clock, Skip, TraceRecord

Progress = Callable[[int], None]        # called with the bytes read so far
_PROGRESS_EVERY = 16384                 # rows between progress calls


class TraceReader:
    """Base of the per-kind readers: `columns` must be in the header, `parse` reads a row."""

    kind: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]] = ()
    clock: Clock
    # long-running services: jobs already running when a window opens are carried into it
    services: ClassVar[bool] = False

    def __init__(self) -> None:
        self.col: dict[str, int] = {}

    def bind(self, header: list[str], file: str) -> None:
        names = [h.strip() for h in header]
        missing = [c for c in self.required() if c not in names]
        if missing:
            raise UserError(f"{file}: the header lacks column {missing[0]!r} that a {self.kind} trace has "
                            f"(header: {short_repr(','.join(names))})")
        self.col = {n: names.index(n) for n in (*self.required(), *self.optional) if n in names}

    def required(self) -> tuple[str, ...]:
        return self.columns

    def parse(self, cells: list[str], line: int) -> TraceRecord:  # pragma: no cover - abstract
        raise NotImplementedError

    def times(self, cells: list[str]) -> tuple[float, float]:
        """(submit, latest time) of a row, for the first pass. Readers of batch jobs may read just
        the submit cell and return it twice: only services need the trace's end."""
        r = self.parse(cells, 0)
        return r.submit_s, max(r.start_s, r.end_s if r.end_s is not None else r.start_s)


@dataclass
class Tally:
    """Rows that did not become records: bad ones (first line kept) and skipped ones."""

    rows: int = 0
    bad: dict[str, list[int]] = field(default_factory=dict)      # reason -> [count, first line]
    skipped: dict[str, int] = field(default_factory=dict)        # reason -> count

    def add_bad(self, e: BadRow, line: int) -> None:
        entry = self.bad.setdefault(e.reason, [0, line])
        entry[0] += 1

    def add_skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    @property
    def bad_rows(self) -> int:
        return sum(c for c, _ in self.bad.values())


def open_csv(path: str) -> tuple[IO[bytes], IO[str]]:
    """The file as raw bytes (whose position a progress bar reads) and as text for the csv module."""
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    return raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def iter_rows(path: str, progress: Progress | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of every non-blank row, the header first."""
    raw, fh = open_csv(path)
    with fh:
        reader = csv.reader(fh)
        try:
            n = 0
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue                      # blank line (Philly's file ends with one)
                yield reader.line_num, cells
                n += 1
                if progress is not None and n % _PROGRESS_EVERY == 0:
                    progress(raw.tell())          # bytes buffered so far: a little ahead of the rows
        except csv.Error as e:
            raise UserError(f"{path}:{reader.line_num}: not a readable CSV row: {e}") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if progress is not None:
            progress(raw.tell())


def iter_records(path: str, reader: TraceReader, tally: Tally | None = None, *, strict: bool = False,
                 progress: Progress | None = None) -> Iterator[TraceRecord]:
    """The file's records through `reader`. Bad rows go to `tally` (or stop the run when strict)."""
    width = 0
    for line, cells in iter_rows(path, progress):
        if not width:
            reader.bind(cells, path)
            width = len(cells)
            continue
        if tally is not None:
            tally.rows += 1
        try:
            if len(cells) != width:
                raise BadRow("row", f"has {len(cells)} cells where the header has {width}")
            yield reader.parse(cells, line)
        except BadRow as e:
            if strict:
                raise UserError(f"{path}:{line}: bad row: {e} (--strict refuses the file)") from None
            if tally is not None:
                tally.add_bad(e, line)
        except Skip as e:
            if tally is not None:
                tally.add_skip(e.reason)
    if not width:
        raise UserError(f"{path}: empty file: no header row")


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
