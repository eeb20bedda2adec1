"""Writing the scenario loader's jobs CSV (MODEL.md §1 `jobs_file`), all or nothing.

Columns in the loader's order; an empty cell is "not set"; `gpu_types` joined by `;`.
Every file of an import is written to a temporary file beside its target and moved into
place with `os.replace` only when the whole import succeeded, so a failed or interrupted
import leaves any earlier output untouched and no half-written file behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from typing import IO

import numpy as np

from suanli.errors import UserError

COLUMNS = ("id", "tenant", "submit_h", "gpus", "work_h", "gpu_types", "class", "deadline_h", "origin",
           "data_gb", "max_rtt_ms", "checkpoint_h")


def fmt(x: float, places: int = 6) -> str:
    """A short decimal of x >= 0: at most `places` decimals, no trailing zeros; '' for NaN (unset)."""
    return fmt_all(np.array([x], dtype=float), places)[0]


def fmt_all(values: np.ndarray, places: int = 6) -> list[str]:
    """`fmt` of each value (one comprehension: this is the hot loop of a big import)."""
    spec = f"%.{places}f"
    return [((spec % x).rstrip("0").rstrip(".") or "0") if x == x else "" for x in values.tolist()]


def job_rows(first: int, prefix: str, tenant: list[str | None], submit_h: np.ndarray, gpus: np.ndarray,
             work_h: np.ndarray, gpu_types: list[tuple[str, ...] | None], klass: list[str | None],
             deadline_h: np.ndarray, origin: list[str], data_gb: np.ndarray, max_rtt_ms: np.ndarray,
             checkpoint_h: np.ndarray) -> list[tuple]:
    """CSV rows for a batch of jobs numbered from `first`; NaN = unset. Times keep 6 decimals
    (3.6 ms); a deadline is rounded up and kept at least 2e-6 h after the rounded submit, so
    `deadline_h > submit_h` survives the rounding."""
    n = len(submit_h)
    submit_r = np.round(submit_h, 6)
    deadline = np.maximum(np.ceil(deadline_h * 1e6 - 1e-3) / 1e6, submit_r + 2e-6)     # NaN stays NaN
    columns = (
        [f"{prefix}{i:06d}" for i in range(first, first + n)],
        [t or "" for t in tenant],
        fmt_all(submit_r),
        gpus.tolist(),
        fmt_all(np.maximum(work_h, 1e-6)),
        [";".join(t) if t else "" for t in gpu_types],
        [k or "" for k in klass],
        fmt_all(deadline),
        origin,
        np.maximum(1, np.rint(data_gb)).astype(np.int64).tolist(),
        fmt_all(max_rtt_ms, 3),
        fmt_all(checkpoint_h, 4),
    )
    return list(zip(*columns, strict=True))


class AtomicFiles:
    """Open targets as temporary files; `commit()` moves them all into place, else none."""

    def __init__(self) -> None:
        self._open: list[tuple[IO[str], str]] = []

    def open(self, target: str, option: str = "--out") -> IO[str]:
        if os.path.isdir(target):
            raise UserError(f"{option}: {target} is a folder; give a file name like {target.rstrip('/')}/jobs.csv")
        folder = os.path.dirname(os.path.abspath(target))
        try:
            os.makedirs(folder, exist_ok=True)
            fh = tempfile.NamedTemporaryFile("w", dir=folder, prefix=f".{os.path.basename(target)}.",
                                             suffix=".tmp", delete=False, newline="", encoding="utf-8")
        except OSError as e:
            raise UserError(f"{option}: cannot write {target}: {e.strerror}") from None
        self._open.append((fh, target))
        return fh

    def commit(self) -> None:
        mask = os.umask(0)
        os.umask(mask)
        for fh, _ in self._open:
            fh.close()
            os.chmod(fh.name, 0o666 & ~mask)      # a temporary file is private (0600); the output is not
        for fh, target in self._open:
            try:
                os.replace(fh.name, target)
            except OSError as e:
                raise UserError(f"--out: cannot write {target}: {e.strerror}") from None
        self._open = []

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, *exc) -> None:
        for fh, _ in self._open:          # not committed: drop every temporary file
            fh.close()
            with contextlib.suppress(OSError):
                os.unlink(fh.name)
        self._open = []


def jobs_writer(fh: IO[str], extra: tuple[str, ...] = ()):
    """A CSV writer with the header written: `COLUMNS`, then `extra` ones (`max_wait_h`,
    `actual_work_h`: MODEL.md §1 fields that only some imports write)."""
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(COLUMNS + tuple(extra))
    return w
