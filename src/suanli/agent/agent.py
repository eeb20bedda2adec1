"""The agent loop (HTTP, every `interval_s`): heartbeat with the pools' state and the runs in
progress (the reply names runs to stop: cancelled, or dispatched elsewhere); report runs that
ended (SUCCEEDED with exit code 0, else FAILED, with the GPU-seconds measured); claim due
assignments and start them (RUNNING). Every report carries the dispatch's fence: the controller
refuses a stale one, and the agent then drops that run."""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from suanli.agent.executors.local import LocalExecutor
from suanli.errors import UserError
from suanli.service.client import Client

log = logging.getLogger("suanli.agent")
EXECUTORS = ("local", "slurm", "ray")


def last_checkpoint(directory: str) -> dict:
    """The newest file under a job's checkpoint directory: its time (UTC, ISO) and the size of
    the directory's files in bytes; {} when there is none."""
    newest, size = None, 0
    root = Path(directory) if directory else None
    if root is None or not root.is_dir():
        return {}
    for f in root.rglob("*"):
        try:
            st = f.stat()
        except OSError:
            continue
        if f.is_file():
            size += st.st_size
            newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
    if newest is None:
        return {}
    return {"checkpoint_at": datetime.fromtimestamp(newest, UTC).isoformat(), "checkpoint_bytes": size}


class Agent:
    def __init__(self, site: str, controller: str | None, token: str | None, executor: str = "local",
                 workdir: str | None = None, interval_s: float = 1.0, checkpoint_dir: str | None = None,
                 partition: str | None = None, ray_address: str | None = None):
        if executor not in EXECUTORS:
            raise UserError(f"--executor: unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
        self.site = site
        self.client = Client(controller, token)
        self.interval_s = interval_s
        sites = {s["id"]: s for s in self._first_contact()}
        if site not in sites:
            raise UserError(f"--site: the controller's network has no site {site!r} (sites: {', '.join(sites)})")
        pools = {p["gpu_type"]: p["count"] for p in sites[site]["pools"]}
        workdir = workdir or tempfile.mkdtemp(prefix=f"suanli-agent-{site}-")
        if executor == "slurm":
            from suanli.agent.executors.slurm import SlurmExecutor
            self.executor = SlurmExecutor(site, workdir, partition, checkpoint_dir)
        elif executor == "ray":
            from suanli.agent.executors.ray import RayExecutor
            self.executor = RayExecutor(site, workdir, ray_address, checkpoint_dir)
        else:
            self.executor = LocalExecutor(site, pools, workdir, checkpoint_dir)
        if executor != "local" and self.executor.count != pools:
            log.warning("site %s: the %s cluster has GPUs %s; the controller's network says %s",
                        site, executor, self.executor.count, pools)
        self.waiting: deque[dict] = deque()       # claimed, waiting for GPUs of the simulated pool
        self.stopping = threading.Event()

    def _first_contact(self, wait_s: float = 60.0) -> list[dict]:
        """The network's sites; waits up to `wait_s` for a controller that is still starting."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.client.call("GET", "/v1/sites")
            except UserError as e:
                if not str(e).startswith("cannot reach") or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _report(self, job_id: int, body: dict) -> bool:
        try:
            self.client.call("POST", f"/v1/agent/{self.site}/jobs/{job_id}/report", json=body)
            return True
        except UserError as e:
            if str(e).startswith(("409", "404")):
                log.info("job %s: %s", job_id, e)      # cancelled or re-dispatched: drop it
                return False
            raise

    def step(self) -> None:
        ex = self.executor
        ex.refresh()
        running = [{"job_id": r.job_id, "fence": r.fence, **last_checkpoint(r.checkpoint_dir)}
                   for r in ex.runs.values()]
        running += [{"job_id": a["job_id"], "fence": a["fence"]} for a in self.waiting]
        reply = self.client.call("POST", f"/v1/agent/{self.site}/heartbeat", json={
            "executor": ex.name, "running": running,
            "pools": [{"gpu_type": g, "count": n, "busy": ex.busy()[g]} for g, n in ex.count.items()]})
        for ref in reply["cancel"]:
            ex.stop(ref["job_id"])
            self.waiting = deque(a for a in self.waiting if a["job_id"] != ref["job_id"])
        for run, why in ex.started():            # before `finished`: a short job may have done both
            if not self._report(run.job_id, {"fence": run.fence, "state": "RUNNING", "reason": why}):
                ex.stop(run.job_id)
        for run, code, wall_s in ex.finished():
            self._report(run.job_id, {"fence": run.fence, "state": "SUCCEEDED" if code == 0 else "FAILED",
                                      "exit_code": code, "gpu_seconds": wall_s * run.gpus})
        self.waiting.extend(self.client.call("POST", f"/v1/agent/{self.site}/assignments"))
        for _ in range(len(self.waiting)):
            a = self.waiting.popleft()
            if not ex.can_start(a):
                self.waiting.append(a)
                continue
            ex.start(a)
        for run, why in ex.started():            # the local executor's runs start at once
            if not self._report(run.job_id, {"fence": run.fence, "state": "RUNNING", "reason": why}):
                ex.stop(run.job_id)

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self.stopping.set())
            except ValueError:          # not the main thread
                pass
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                except UserError as e:
                    if not str(e).startswith("cannot reach"):
                        raise
                    log.warning("%s", e)          # the controller is away: try again
                self.stopping.wait(self.interval_s)
        finally:
            self.executor.stop_all()
            self.client.close()
