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
from collections.abc import Mapping, Sequence
from typing import Any

from suanli.accounting import Accounts
from suanli.errors import UserError
from suanli.model.schedule import Segment
from suanli.scheduling.state import Scored
from suanli.sim.engine import ExplainedDecision

_UMASK = os.umask(0)
os.umask(_UMASK)


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
            os.fchmod(fd, 0o666 & ~_UMASK)        # mkstemp makes 0600; outputs are ordinary files
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


def explain_jsonl(explanations: Mapping[str, Sequence[ExplainedDecision]]) -> str:
    """One JSON line per decision with an explanation: `suanli explain` reads it back."""
    lines = []
    for job_id, decisions in explanations.items():
        for d in decisions:
            e = d.explain
            lines.append(json.dumps({
                "job_id": job_id, "decision": d.kind, "at_h": d.at_h, "policy": e.policy, "note": e.note,
                "chosen": _scored(e.chosen), "candidates": [_scored(c) for c in e.candidates],
                "rejected": dict(e.rejected), "weighed": e.weighed}, separators=(",", ":")))
    return "\n".join(lines) + ("\n" if lines else "")


def _scored(c: Scored | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"site": c.site, "gpu_type": c.gpu_type, "start_h": c.start_h, "end_h": c.end_h,
            "parts": dict(c.parts), "total": c.total}


def write_run(outdir: str, segments: Sequence[Segment], accounts: Accounts, extra: dict[str, Any],
              explanations: Mapping[str, Sequence[ExplainedDecision]] | None = None) -> list[str]:
    """schedule.csv, metrics.json (the §6 keys, then the carbon keys and `extra`), series.csv and,
    when given, explain.jsonl."""
    metrics = dict(accounts.metrics) | accounts.carbon | extra
    files = {
        "schedule.csv": schedule_csv(segments),
        "metrics.json": metrics_json(metrics),
        "series.csv": series_csv(accounts),
    }
    if explanations is not None:
        files["explain.jsonl"] = explain_jsonl(explanations)
    return write_files(outdir, files)


def read_explanations(outdir: str, job_id: str) -> list[dict[str, Any]]:
    """The decisions recorded for `job_id` in `<outdir>/explain.jsonl`, oldest first."""
    path = os.path.join(outdir, "explain.jsonl")
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror} (run `suanli sim ... --out {outdir}` first)") from None
    needle = json.dumps(job_id)
    out = []
    with fh:
        for line in fh:
            if needle in line:                      # cheap pre-filter before parsing
                rec = json.loads(line)
                if rec["job_id"] == job_id:
                    out.append(rec)
    if not out:
        raise UserError(f"{path}: no decision recorded for job {job_id!r}")
    return out
