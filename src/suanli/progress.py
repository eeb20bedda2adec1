"""Progress of a long command (`suanli validate`, `suanli sim`) on stderr, whoever reads it.

On a terminal: a Rich progress bar, redrawn in place and gone when the command ends. Otherwise
(piped, captured by a CI log, run under nohup): one plain line every `every_s` seconds (default
5, `SUANLI_PROGRESS_S`) while the command runs, from a thread of its own, so a phase that calls
no callback (accounting, writing the report) still shows that the command is alive:

    validate: reading jobs: 1,250,000 rows, 61% of 98.2 MB, 9 s

A command shorter than `every_s` prints nothing. The library reports through plain callbacks
(`phase`, `update`); nothing in it prints.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

DEFAULT_EVERY_S = 5.0


def every_s() -> float:
    try:
        v = float(os.environ.get("SUANLI_PROGRESS_S", DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S
    return v if v > 0 else DEFAULT_EVERY_S


class Reporter:
    """`with Reporter("validate", console) as p: p.phase("reading jobs", total=size, unit="bytes");
    p.update(done, rows=n)`. `enabled=False`: silent (`--quiet`)."""

    def __init__(self, command: str, console: Console, enabled: bool = True, stream: TextIO | None = None):
        self.command = command
        self.console = console
        self.enabled = enabled
        self.tty = console.is_terminal
        self.stream = stream or console.file
        self.started = time.monotonic()
        self.name = ""
        self.total: float | None = None
        self.unit = ""
        self.done = 0.0
        self.rows: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    # ------------------------------------------------------------------ what the work reports
    def phase(self, name: str, total: float | None = None, unit: str = "") -> None:
        with self._lock:
            self.name, self.total, self.unit, self.done, self.rows = name, total, unit, 0.0, None
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=name, total=total, completed=0)

    def update(self, done: float, rows: int | None = None) -> None:
        with self._lock:
            self.done, self.rows = done, rows
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done,
                             description=self.name + (f" ({rows:,} rows)" if rows is not None else ""))

    # ------------------------------------------------------------------ how it is shown
    def line(self) -> str:
        """The plain line of now: `validate: reading jobs: 1,250,000 rows, 61% of 98.2 MB, 9 s`."""
        with self._lock:
            parts = []
            if self.rows is not None:
                parts.append(f"{self.rows:,} rows")
            if self.total:
                of = (f"{self.total / 1e6:,.1f} MB" if self.unit == "bytes"
                      else f"{self.total:,.0f}{' ' + self.unit if self.unit else ''}")
                parts.append(f"{self.done / self.total:.0%} of {of}")
            elif self.done and self.unit:
                parts.append(f"{self.done:,.0f} {self.unit}")
            parts.append(f"{time.monotonic() - self.started:,.0f} s")
            return f"{self.command}: {self.name or 'starting'}: " + ", ".join(parts)

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> Reporter:
        if not self.enabled:
            return self
        if self.tty:
            self._bar = Progress(TextColumn(f"[bold]{self.command}[/] {{task.description}}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=self.console,
                                 transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.name or "starting", total=None)
        else:
            self._thread = threading.Thread(target=self._tick, args=(every_s(),), daemon=True,
                                            name="suanli-progress")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.__exit__(*exc)
