"""The `local` executor: each job's command runs as a shell subprocess on this machine, with

- `SUANLI_JOB_ID`: the job's id; `SUANLI_FENCE`: this dispatch's fence number;
- `SUANLI_CHECKPOINT_DIR`: `<workdir>/<site>/<job id>/checkpoints` (kept across dispatches of
  the same job, so a re-run can resume), or `<checkpoint root>/<job id>` with the agent's
  `--checkpoint-dir` (a directory every site can reach: a re-placed job resumes there);
- `CUDA_VISIBLE_DEVICES`: the GPUs of the site's simulated pool the job holds (indices into
  the pool of its GPU type: a gang gets `gpus` of them, never shared with another job).

Its stdout and stderr go to `<workdir>/<site>/<job id>/fence-<n>.log`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from suanli.errors import UserError


@dataclass
class Run:
    job_id: int
    fence: int
    gpu_type: str
    devices: list[int]
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    gpus: int = 1
    checkpoint_dir: str = ""
    announced: bool = False                # RUNNING reported to the controller


class LocalExecutor:
    name = "local"

    def __init__(self, site: str, pools: dict[str, int], workdir: str, checkpoint_root: str | None = None):
        self.site = site
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else None
        self.free: dict[str, list[int]] = {g: list(range(n)) for g, n in pools.items()}
        self.count = dict(pools)
        self.workdir = Path(workdir)
        self.runs: dict[int, Run] = {}

    def busy(self) -> dict[str, int]:
        return {g: self.count[g] - len(self.free[g]) for g in self.count}

    def start(self, a: dict) -> Run:
        g, gpus = a["gpu_type"], a["gpus"]
        if len(self.free.get(g, [])) < gpus:
            raise UserError(f"site {self.site}: {gpus} {g} GPUs asked, {len(self.free.get(g, []))} free")
        devices, self.free[g] = self.free[g][:gpus], self.free[g][gpus:]
        jobdir = self.workdir / self.site / str(a["job_id"])
        ckpt = self.checkpoint_root / str(a["job_id"]) if self.checkpoint_root else jobdir / "checkpoints"
        jobdir.mkdir(parents=True, exist_ok=True)
        ckpt.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SUANLI_JOB_ID=str(a["job_id"]), SUANLI_CHECKPOINT_DIR=str(ckpt),
                   SUANLI_FENCE=str(a["fence"]),
                   CUDA_VISIBLE_DEVICES=",".join(map(str, devices)), SUANLI_SITE=self.site)
        logf = open(jobdir / f"fence-{a['fence']}.log", "wb")
        try:
            proc = subprocess.Popen(a["command"], shell=True, env=env, cwd=jobdir, stdout=logf,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            logf.close()
        run = Run(a["job_id"], a["fence"], g, devices, proc, gpus=gpus, checkpoint_dir=str(ckpt))
        self.runs[a["job_id"]] = run
        return run

    def can_start(self, a: dict) -> bool:
        return len(self.free.get(a["gpu_type"], [])) >= a["gpus"]

    def refresh(self) -> None:
        pass

    def started(self) -> list[tuple[Run, str]]:
        """Runs started since the last call, with the RUNNING report's reason."""
        out = []
        for run in self.runs.values():
            if not run.announced:
                run.announced = True
                out.append((run, f"pid {run.proc.pid}, GPUs {run.devices}"))
        return out

    def finished(self) -> list[tuple[Run, int, float]]:
        """Runs that ended since the last call: (run, exit code, wall seconds)."""
        out = []
        for jid, run in list(self.runs.items()):
            code = run.proc.poll()
            if code is not None:
                out.append((run, code, time.monotonic() - run.started))
                self._release(jid)
        return out

    def stop(self, job_id: int) -> tuple[Run, float] | None:
        run = self.runs.get(job_id)
        if run is None:
            return None
        try:
            os.killpg(run.proc.pid, signal.SIGTERM)
            try:
                run.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        self._release(job_id)
        return run, time.monotonic() - run.started

    def stop_all(self) -> None:
        for jid in list(self.runs):
            self.stop(jid)

    def _release(self, job_id: int) -> None:
        run = self.runs.pop(job_id)
        self.free[run.gpu_type] = sorted(self.free[run.gpu_type] + run.devices)
