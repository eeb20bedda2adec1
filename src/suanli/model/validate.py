"""`suanli validate`: check a scenario without running it, its jobs file streamed.

A scenario whose jobs are in a `jobs_file` (CSV) is checked a batch of rows at a time, with
the same rules and the same one-line errors as `load_scenario` (pydantic's for each job, then
`scenario.job_problem` against the network), but without holding the jobs: memory stays flat in
the number of rows. Job ids must be unique; to know that without keeping the ids, each id's
64-bit BLAKE2b digest is kept (8 bytes a row, in sorted numpy arrays) and a digest seen twice is
confirmed by reading the earlier row again. Besides errors, it lists the jobs no site can ever
host (`unhostable`): warnings, not errors. Nothing here prints: progress goes to callbacks.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from suanli.energy.resolve import resolve_specs
from suanli.errors import ScenarioError
from suanli.model.load import _JOBS, _first_error, iter_jobs_csv, load_scenario, read_document
from suanli.model.scenario import Scenario, job_problem
from suanli.model.schema import Job, ScenarioDoc

BATCH = 20_000         # rows validated by pydantic at once
MAX_WARNINGS = 20      # jobs named in warnings; the rest are counted
HOME_CACHE = 65_536    # remembered answers of `unhostable` (by the fields it reads)

Progress = Callable[[str, float | None, str], None]       # (phase, total, unit)
Update = Callable[[float, int], None]                     # (done, rows)


@dataclass
class Checked:
    """What `check` found: the scenario (jobs left out when they were streamed) and its job count."""
    scenario: Scenario
    jobs: int
    homeless: list[tuple[str, str]] = field(default_factory=list)     # (job id, why): the first MAX_WARNINGS
    homeless_count: int = 0


def unhostable(scn: Scenario, job: Job) -> str | None:
    """Why no site of `scn` can ever host `job` (none within its max_rtt_ms of its origin, or no
    pool with its gang of an allowed type), or None if one can."""
    reach = [k for k in scn.sites if math.isfinite(scn.rtt_ms(job, k)) and scn.latency_ok(job, k)]
    if not reach:
        rtts = [(scn.rtt_ms(job, k), k) for k in scn.sites if math.isfinite(scn.rtt_ms(job, k))]
        if not rtts:
            return f"no site is reachable from its origin {job.origin!r}"
        ms, k = min(rtts)
        return f"no site within its max_rtt_ms {job.max_rtt_ms:g} ms of {job.origin!r} (nearest: {k}, {ms:g} ms)"
    types = [g for g in scn.allowed_types(job) if scn.speed(job, g) > 0]
    if any(p.count >= job.gpus for k in reach for g, p in scn.sites[k].gpus.items() if g in types):
        return None
    largest = max((p.count for k in reach for g, p in scn.sites[k].gpus.items() if g in types), default=0)
    return (f"no reachable pool has {job.gpus} GPUs of an allowed type ({', '.join(types) or 'none'}; "
            f"the largest has {largest})")


def _digest(job_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=8).digest(), "little")


class _Ids:
    """The digests of the ids seen, as sorted uint64 arrays that merge as they grow (each array at
    least twice the next one's size: O(n log n) work in all, 8 bytes a row)."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def seen(self, d: np.ndarray) -> np.ndarray:
        """For each digest of `d` (a batch, its own duplicates already ruled out): seen before?"""
        hit = np.zeros(len(d), dtype=bool)
        for r in self.runs:
            i = np.searchsorted(r, d).clip(0, len(r) - 1)
            hit |= r[i] == d
        return hit

    def add(self, d: np.ndarray) -> None:
        run = np.sort(d)
        while self.runs and len(self.runs[-1]) <= 2 * len(run):
            run = np.sort(np.concatenate([self.runs.pop(), run]), kind="stable")
        self.runs.append(run)


def _first_with(path: str, digest: int, before_line: int) -> tuple[str, int] | None:
    """(id, line) of the first row before `before_line` whose id has `digest`, if any."""
    for cells, line in iter_jobs_csv(path):
        if line >= before_line:
            return None
        if _digest(cells.get("id", "")) == digest:
            return cells.get("id", ""), line
    return None


def check(path: str, phase: Progress | None = None, update: Update | None = None) -> Checked:
    """Validate the scenario at `path` (and its jobs file, streamed): a ScenarioError on the first
    problem, else what was checked."""
    raw = read_document(path)
    if raw.get("jobs_file") is None or raw.get("jobs") is not None:
        scn = load_scenario(path)                  # jobs inline (or both given: load says which is wrong)
        homeless = [(j.id, why) for j in scn.jobs if (why := unhostable(scn, j)) is not None]
        return Checked(scn, len(scn.jobs), homeless[:MAX_WARNINGS], len(homeless))
    try:
        doc = ScenarioDoc.model_validate(raw)
    except ValidationError as e:
        raise _first_error(path, e) from None
    jobs_file = os.path.join(os.path.dirname(os.path.abspath(path)), doc.jobs_file)
    if not os.path.isabs(doc.jobs_file):
        jobs_file = os.path.relpath(jobs_file)
    scn = Scenario.build(doc, [], file=path, jobs_file=jobs_file)
    resolve_specs(scn)
    out = Checked(scn, 0)
    ids = _Ids()
    read = [0]
    size = os.path.getsize(jobs_file) if os.path.exists(jobs_file) else None
    if phase:
        phase("reading jobs", size, "bytes")
    if update:
        update(0, 0)
    batch: list[dict] = []
    lines: list[int] = []
    # whether a job can be hosted depends on these fields only; a big file repeats few of them
    homes: dict[tuple, str | None] = {}

    def home(j: Job) -> str | None:
        key = (j.origin, j.max_rtt_ms, j.gpus, tuple(j.gpu_types) if j.gpu_types else None, j.class_)
        if key not in homes:
            if len(homes) >= HOME_CACHE:
                homes.clear()
            homes[key] = unhostable(scn, j)
        return homes[key]

    def flush() -> None:
        try:
            jobs = _JOBS.validate_python(batch)
        except ValidationError as e:
            raise _first_error(jobs_file, e, prefix="jobs", lines=lines, offset=out.jobs) from None
        digests = np.fromiter((_digest(j.id) for j in jobs), dtype=np.uint64, count=len(jobs))
        # the batch's own repeats, then repeats of earlier batches: the first row that repeats an id
        first_here: dict[int, int] = {}
        repeat = np.zeros(len(jobs), dtype=bool)
        for i, d in enumerate(digests.tolist()):
            if d in first_here:
                repeat[i] = True
            else:
                first_here[d] = i
        repeat |= ids.seen(digests)
        for i, j in enumerate(jobs):
            where = f"{jobs_file}:{lines[i]}"
            if repeat[i]:
                d = int(digests[i])
                k = first_here[d]
                earlier = (jobs[k].id, lines[k]) if k < i else _first_with(jobs_file, d, lines[i])
                if earlier is not None and earlier[0] == j.id:
                    raise ScenarioError(where, f"jobs[{out.jobs + i}].id", "duplicate job id", j.id)
            if (bad := job_problem(doc, j)) is not None:
                raise ScenarioError(where, f"jobs[{out.jobs + i}].{bad[0]}", bad[1], bad[2])
            why = home(j)
            if why is not None:
                if len(out.homeless) < MAX_WARNINGS:
                    out.homeless.append((j.id, why))
                out.homeless_count += 1
        ids.add(digests)
        out.jobs += len(jobs)
        batch.clear()
        lines.clear()
        if update:
            update(read[0], out.jobs)

    for cells, line in iter_jobs_csv(jobs_file, read):
        batch.append(cells)
        lines.append(line)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    if update:
        update(read[0], out.jobs)
    return out
