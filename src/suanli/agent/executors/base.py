"""What every executor shares: the run record, the job's directories and environment.

An executor turns an assignment (job id, fence, command, GPU type and count) into a run on the
site's cluster manager and tells the agent what became of it: `refresh()` reads the cluster's
state, `started()` lists runs that began since the last call, `finished()` those that ended
(with exit code and wall seconds), `stop(job_id)` kills one, `stop_all()` is called on exit.

Directories: a job's files live in `<workdir>/<site>/<job id>/` (its logs, `fence-<n>.*`); its
checkpoints in `<checkpoint root>/<job id>`, the root being the agent's `--checkpoint-dir` or
`<workdir>/<site>/checkpoints` (per site: two agents on one machine do not share it). The
checkpoint directory outlives a run: a re-dispatch of the job to this site resumes there, and
the agent copies it to and from the controller's checkpoint store (agent.py), so a job
re-placed on another site resumes too, with no shared file system.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    job_id: int
    fence: int
    gpu_type: str
    gpus: int
    checkpoint_dir: str = field(default="", kw_only=True)
    announced: bool = field(default=False, kw_only=True)     # RUNNING reported to the controller
    started: float = field(default_factory=time.monotonic, kw_only=True)


class Executor:
    name = "base"

    def __init__(self, site: str, workdir: str, checkpoint_root: str | None = None):
        self.site = site
        self.workdir = Path(workdir)
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else self.workdir / site / "checkpoints"
        self.runs: dict[int, Run] = {}
        self.count: dict[str, int] = {}

    def job_dir(self, job_id: int) -> Path:
        return self.workdir / self.site / str(job_id)

    def log_path(self, run: Run) -> Path:
        """Where a run's output is kept (on the site: the controller gets only a failed run's tail)."""
        return self.job_dir(run.job_id) / f"fence-{run.fence}.log"

    def checkpoint_dir(self, job_id: int) -> Path:
        return self.checkpoint_root / str(job_id)

    def prepare(self, a: dict) -> tuple[Path, Path]:
        """The job's directory and its checkpoint directory, created."""
        jobdir, ckpt = self.job_dir(a["job_id"]), self.checkpoint_dir(a["job_id"])
        jobdir.mkdir(parents=True, exist_ok=True)
        ckpt.mkdir(parents=True, exist_ok=True)
        return jobdir, ckpt

    def job_env(self, a: dict, ckpt: Path) -> dict[str, str]:
        """The variables every job gets (docs/SITES.md)."""
        return {"SUANLI_JOB_ID": str(a["job_id"]), "SUANLI_FENCE": str(a["fence"]), "SUANLI_SITE": self.site,
                "SUANLI_CHECKPOINT_DIR": str(ckpt)}

    def can_start(self, a: dict) -> bool:
        return True             # a cluster manager queues the job itself until its GPUs are free

    def refresh(self) -> None:
        pass

    def stop_all(self) -> None:
        """On agent exit a cluster manager's jobs keep running: a restarted agent adopts them."""
        self.runs.clear()
