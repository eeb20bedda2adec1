"""The `ray` executor: the site is a Ray cluster, driven through Ray's Job Submission API
(`ray.job_submission.JobSubmissionClient`, the head's dashboard address, e.g.
http://127.0.0.1:8265).

- Pools: each alive node's custom resources named like GPU types (`ray start
  --resources='{"h100": 8}' --num-gpus=8`), summed: read from the head (`/nodes?view=summary`),
  never restated. Busy: the GPUs of the runs this agent holds.
- Start: `submit_job(entrypoint="cd JOBDIR && COMMAND", submission_id="suanli-<job id>-f<fence>",
  entrypoint_num_gpus=N, entrypoint_resources={TYPE: N})`, with `SUANLI_JOB_ID`, `SUANLI_FENCE`,
  `SUANLI_SITE`, `SUANLI_CHECKPOINT_DIR` and the `--job-env` names in `runtime_env.env_vars`
  (added to the environment of Ray's own worker: Ray isolates nothing, docs/SITES.md); Ray holds the job
  PENDING until its resources are free and sets `CUDA_VISIBLE_DEVICES`.
- States: PENDING → still TRANSFERRING; RUNNING → RUNNING; SUCCEEDED → SUCCEEDED; FAILED and
  a STOPPED suanli did not ask for → FAILED (exit code from the driver, else -1). GPU-seconds:
  (end − start) × GPUs from the job's info. Stop: `stop_job`. Logs: Ray keeps them
  (`get_job_logs`); the agent copies them to `<workdir>/<site>/<job id>/fence-<n>.log` at the end.
- A restarted agent adopts the `suanli-*` jobs not yet finished, as the slurm executor does.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from suanli.agent.executors.base import Executor, JobPolicy, Run
from suanli.errors import UserError

log = logging.getLogger("suanli.agent")

NAME = re.compile(r"^suanli-(\d+)-f(\d+)$")
_NOT_GPU = re.compile(r"^(CPU|GPU|memory|object_store_memory|objectStoreMemory|node:.*|accelerator_type:.*)$")


def suanli_state(ray_status: str) -> str:
    return {"PENDING": "TRANSFERRING", "RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"}.get(ray_status, "FAILED")


@dataclass
class RayRun(Run):
    submission_id: str
    state: str = "PENDING"
    exit_code: int | None = None
    elapsed_s: float | None = None
    log: str = ""


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, site: str, workdir: str, address: str | None, checkpoint_root: str | None = None,
                 gpu_types: set[str] | None = None, policy: JobPolicy | None = None):
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise UserError("--executor ray: Ray is not installed (pip install 'ray[default]')") from None
        if not address:
            raise UserError("--executor ray: give the Ray head's dashboard address with --ray-address "
                            "(e.g. http://127.0.0.1:8265)")
        super().__init__(site, workdir, checkpoint_root, policy)
        log.warning("site %s: Ray isolates nothing between the jobs of one cluster: give each tenant (trust "
                    "boundary) a cluster of its own (docs/SITES.md, Isolation)", site)
        self.address = address.rstrip("/")
        self.gpu_types = gpu_types
        try:
            self.client = JobSubmissionClient(self.address)
        except Exception as e:          # ConnectionError and friends: one line
            raise UserError(f"--ray-address: cannot reach the Ray head at {self.address}: {e}") from None
        self.count = self.pools()
        if not self.count:
            raise UserError(f"--executor ray: the Ray cluster at {self.address} declares no GPU-type resources "
                            "(ray start --resources='{\"h100\": 8}' --num-gpus=8)")
        self.adopt()

    def pools(self) -> dict[str, int]:
        r = httpx.get(f"{self.address}/nodes", params={"view": "summary"}, timeout=30)
        r.raise_for_status()
        total: dict[str, int] = {}
        for node in r.json()["data"]["summary"]:
            if node.get("raylet", {}).get("state", "ALIVE") != "ALIVE":
                continue
            for name, n in node["raylet"].get("resourcesTotal", {}).items():
                if _NOT_GPU.match(name) or (self.gpu_types is not None and name not in self.gpu_types):
                    continue
                total[name] = total.get(name, 0) + int(n)
        return total

    def busy(self) -> dict[str, int]:
        used = {g: 0 for g in self.count}
        for r in self.runs.values():
            if r.state == "RUNNING" and r.gpu_type in used:
                used[r.gpu_type] += r.gpus
        return used

    def start(self, a: dict) -> RayRun:
        g, gpus, jid, fence = a["gpu_type"], a["gpus"], a["job_id"], a["fence"]
        jobdir, ckpt = self.prepare(a)
        sid = f"suanli-{jid}-f{fence}"
        env = dict(self.operator_env(), **self.job_env(a, ckpt))   # added to the Ray worker's own (no isolation)
        try:
            self.client.submit_job(entrypoint=f"cd {shlex.quote(str(jobdir))} && {a['command']}", submission_id=sid,
                                   entrypoint_num_gpus=gpus, entrypoint_resources={g: gpus},
                                   runtime_env={"env_vars": env}, metadata={"suanli_job": str(jid)})
        except Exception as e:
            if "already exists" not in str(e):
                raise UserError(f"ray: submit {sid}: {e}") from None
        run = RayRun(jid, fence, g, gpus, sid, checkpoint_dir=str(ckpt), log=str(jobdir / f"fence-{fence}.log"))
        self.runs[jid] = run
        return run

    def adopt(self) -> None:
        for info in self.client.list_jobs():
            m = NAME.match(info.submission_id or "")
            if not m or getattr(info.status, "value", info.status) not in ("PENDING", "RUNNING"):
                continue
            jid = int(m.group(1))
            res = info.entrypoint_resources or {}
            g, n = next(((k, int(v)) for k, v in res.items() if not _NOT_GPU.match(k)), ("", 0))
            self.runs[jid] = RayRun(jid, int(m.group(2)), g, n, info.submission_id,
                                 checkpoint_dir=str(self.checkpoint_dir(jid)))

    def refresh(self) -> None:
        for run in self.runs.values():
            try:
                info = self.client.get_job_info(run.submission_id)
            except Exception:                   # gone: it ended, we do not know how
                run.state, run.exit_code, run.elapsed_s = "FAILED", None, time.monotonic() - run.started
                continue
            run.state = getattr(info.status, "value", str(info.status))
            if run.state in ("SUCCEEDED", "FAILED", "STOPPED"):
                code = getattr(info, "driver_exit_code", None)
                run.exit_code = code if code is not None else (0 if run.state == "SUCCEEDED" else -1)
                if info.start_time and info.end_time:
                    run.elapsed_s = max(0.0, (info.end_time - info.start_time) / 1000.0)

    def started(self) -> list[tuple[RayRun, str]]:
        out = []
        for run in self.runs.values():
            if not run.announced and suanli_state(run.state) != "TRANSFERRING":
                run.announced = True
                out.append((run, f"Ray job {run.submission_id} at {self.address}"))
        return out

    def finished(self) -> list[tuple[RayRun, int, float]]:
        out = []
        for jid, run in list(self.runs.items()):
            if run.state in ("SUCCEEDED", "FAILED", "STOPPED"):
                code = run.exit_code if run.exit_code is not None else -1
                if run.state != "SUCCEEDED" and code == 0:
                    code = -1
                try:
                    Path(run.log).write_text(self.client.get_job_logs(run.submission_id))
                except Exception:
                    pass
                out.append((run, code, run.elapsed_s or 0.0))
                del self.runs[jid]
        return out

    def stop(self, job_id: int) -> tuple[RayRun, float] | None:
        run = self.runs.pop(job_id, None)
        if run is None:
            return None
        try:
            self.client.stop_job(run.submission_id)
        except Exception:
            pass
        return run, time.monotonic() - run.started

