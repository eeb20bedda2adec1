"""Writing a run's outputs (MODEL.md §6), atomically.

Each file is written to a temporary file in the same folder and renamed into place only
when all of them are complete, so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from suanli.accounting import Accounts
from suanli.errors import UserError
from suanli.model.schedule import Segment


def schedule_csv(segments: Sequence[Segment]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(Segment._fields[:4] + ("start_h", "end_h"))
    for s in segments:
        w.writerow([s.job_id, s.site, s.gpu_type, s.gpus, repr(s.start_h), repr(s.end_h)])
    return buf.getvalue()


def series_csv(accounts: Accounts) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["site", "slot", "renewable_kw", "carbon_kg_per_kwh", "cny_per_kwh"])
    for sid, ser in accounts.series.items():
        for t in range(accounts.slots):
            w.writerow([sid, t, repr(float(ser.renewable_kw[t])), repr(float(ser.carbon_kg_per_kwh[t])),
                        repr(float(ser.cny_per_kwh[t]))])
    return buf.getvalue()


def metrics_json(metrics: dict[str, Any]) -> str:
    return json.dumps(metrics, indent=2) + "\n"


def write_files(outdir: str, files: dict[str, str]) -> list[str]:
    """Write {name: text} into outdir: all to temporary files first, then rename each."""
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create folder {outdir!r}: {e.strerror}") from None
    temps: list[tuple[str, str]] = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=outdir)
            temps.append((tmp, os.path.join(outdir, name)))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as e:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise UserError(f"--out: cannot write into {outdir!r}: {e.strerror}") from None
    for tmp, final in temps:
        os.replace(tmp, final)
    return [final for _, final in temps]


def write_run(outdir: str, segments: Sequence[Segment], accounts: Accounts, extra: dict[str, Any]) -> list[str]:
    """schedule.csv, metrics.json (the §6 keys, then the carbon keys and `extra`) and series.csv."""
    metrics = dict(accounts.metrics) | accounts.carbon | extra
    return write_files(outdir, {
        "schedule.csv": schedule_csv(segments),
        "metrics.json": metrics_json(metrics),
        "series.csv": series_csv(accounts),
    })
