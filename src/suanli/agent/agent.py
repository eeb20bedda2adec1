"""The agent loop (HTTP, every `interval_s`): heartbeat with the pools' state and the runs in
progress (the reply names runs to stop: cancelled, or dispatched elsewhere); report runs that
ended (SUCCEEDED with exit code 0, else FAILED, with the GPU-seconds measured); claim due
assignments and start them (RUNNING). Every report carries the dispatch's fence: the controller
refuses a stale one, and the agent then drops that run.

Each heartbeat carries the agent's `instance` (new at every start): after a restart the
controller re-places the dispatched jobs the new agent does not hold (the slurm and ray
executors adopt their cluster's jobs; the local executor kills what its predecessor left).
Checkpoints: a running job's newest checkpoint is uploaded to the controller's store after each
heartbeat that finds one; a re-placed job's stored checkpoint is downloaded into its checkpoint
directory before it starts (service/checkpoints.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import tarfile
import tempfile
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from suanli.agent.executors.base import JobPolicy
from suanli.agent.executors.local import LocalExecutor
from suanli.errors import UserError
from suanli.service.client import Client

log = logging.getLogger("suanli.agent")
EXECUTORS = ("local", "slurm", "ray")


def transient(e: UserError) -> bool:
    """A failure the agent waits out: the controller unreachable, or answering 5xx (its database
    restarting: 503); its journaled reports and its runs are kept meanwhile."""
    msg = str(e)
    return msg.startswith("cannot reach") or (len(msg) > 3 and msg[0] == "5" and msg[1:3].isdigit() and msg[3] == ":")


def log_tail(path: Path, limit: int = 2000) -> str:
    """The last `limit` bytes of a run's log, as text ("" if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def newest_checkpoint(directory: str | Path) -> float | None:
    """The modification time of the newest file under a job's checkpoint directory, or None."""
    root = Path(directory)
    newest = None
    if root.is_dir():
        for f in root.rglob("*"):
            try:
                if f.is_file():
                    m = f.stat().st_mtime
                    newest = m if newest is None else max(newest, m)
            except OSError:          # gone while we looked (a job replacing its checkpoint)
                continue
    return newest


def pack(directory: str | Path, archive: Path) -> bool:
    """The checkpoint directory's regular files as a gzipped tar; False if a file changed under us
    (try later). Jobs should write a checkpoint to a temporary name and rename it (docs/SITES.md).
    The directory is the job's (the agent may be root): it is walked by directory descriptors and
    each file opened without following a link, so a link or a rename cannot put another file in."""
    root = Path(directory)
    try:
        with tarfile.open(archive, "w:gz") as tar:
            for top, _, files, dfd in os.fwalk(root, follow_symlinks=False):
                rel = Path(top).relative_to(root)
                for name in sorted(files):
                    try:
                        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
                    except OSError:                        # gone, a link, or not ours to read
                        continue
                    with os.fdopen(fd, "rb") as f:
                        st = os.fstat(fd)
                        if not stat.S_ISREG(st.st_mode):
                            continue
                        info = tarfile.TarInfo(str(rel / name))
                        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), stat.S_IMODE(st.st_mode)
                        tar.addfile(info, f)
    except (OSError, tarfile.TarError) as e:
        log.info("checkpoint %s changed while packing it (%s): next time", root, e)
        return False
    return True


def unpack(archive: Path, directory: Path) -> None:
    """Replace the checkpoint directory's content by the archive's (no path leaves it: tar filter "data")."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(directory, filter="data")


class Outbox:
    """Reports not yet acknowledged by the controller, journaled as files (written whole, then
    renamed) in `<workdir>/<site>/outbox/`, sent in order: a run's start and its result reach
    the controller even across the controller's absence or this agent's own restart, so what
    a site ran is billed once (the usage ledger is built from these reports)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in root.glob("*.json"))
        self.seq = int(names[-1].split("-")[0]) + 1 if names else 0

    def add(self, job_id: int, body: dict) -> None:
        path = self.root / f"{self.seq:012d}-{job_id}.json"
        self.seq += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    def pending(self) -> list[tuple[Path, int, dict]]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            try:
                out.append((p, int(p.stem.split("-")[1]), json.loads(p.read_text())))
            except (OSError, ValueError, IndexError):
                log.warning("outbox: unreadable report %s: skipped", p)
        return out

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)


class Agent:
    def __init__(self, site: str, controller: str | None, token: str | None, executor: str = "local",
                 workdir: str | None = None, interval_s: float = 1.0, checkpoint_dir: str | None = None,
                 partition: str | None = None, ray_address: str | None = None, policy: JobPolicy | None = None):
        if executor not in EXECUTORS:
            raise UserError(f"--executor: unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
        self.site = site
        self.instance = uuid.uuid4().hex            # new at every start: the controller sees a restart
        self.uploaded: dict[tuple[int, int], float] = {}   # (job, fence) -> mtime of the checkpoint sent
        self.client = Client(controller, token)
        self.interval_s = interval_s
        sites = {s["id"]: s for s in self._first_contact()}
        if site not in sites:
            raise UserError(f"--site: the controller's network has no site {site!r} (sites: {', '.join(sites)})")
        pools = {p["gpu_type"]: p["count"] for p in sites[site]["pools"]}
        workdir = workdir or tempfile.mkdtemp(prefix=f"suanli-agent-{site}-")
        self.outbox = Outbox(Path(workdir) / site / "outbox")
        if executor == "slurm":
            from suanli.agent.executors.slurm import SlurmExecutor
            self.executor = SlurmExecutor(site, workdir, partition, checkpoint_dir, policy=policy)
        elif executor == "ray":
            from suanli.agent.executors.ray import RayExecutor
            self.executor = RayExecutor(site, workdir, ray_address, checkpoint_dir, policy=policy)
        else:
            self.executor = LocalExecutor(site, pools, workdir, checkpoint_dir, policy=policy)
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
                if not transient(e) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def send_reports(self) -> None:
        """Send the journaled reports in order; each leaves the outbox once the controller answered
        (a 409/404 too: the job was cancelled or re-dispatched, and a run still going is stopped)."""
        for path, job_id, body in self.outbox.pending():
            try:
                self.client.call("POST", f"/v1/agent/{self.site}/jobs/{job_id}/report", json=body)
            except UserError as e:
                if not str(e).startswith(("409", "404")):
                    raise                              # the controller is away: the rest waits too
                log.info("job %s: %s", job_id, e)
                run = self.executor.runs.get(job_id)
                if run is not None and run.fence == body["fence"]:
                    self.executor.stop(job_id)
            self.outbox.done(path)

    def step(self) -> None:
        ex = self.executor
        ex.refresh()
        running = [{"job_id": r.job_id, "fence": r.fence} for r in ex.runs.values()]
        running += [{"job_id": a["job_id"], "fence": a["fence"]} for a in self.waiting]
        held = {(r["job_id"], r["fence"]) for r in running}
        running += [{"job_id": j, "fence": b["fence"]} for _, j, b in self.outbox.pending()
                    if (j, b["fence"]) not in held]            # ended, the result not yet delivered
        reply = self.client.call("POST", f"/v1/agent/{self.site}/heartbeat", json={
            "executor": ex.name, "instance": self.instance, "running": running,
            "pools": [{"gpu_type": g, "count": n, "busy": ex.busy()[g]} for g, n in ex.count.items()]})
        for ref in reply["cancel"]:
            ex.stop(ref["job_id"])
            self.waiting = deque(a for a in self.waiting if a["job_id"] != ref["job_id"])
        for run, why in ex.started():            # before `finished`: a short job may have done both
            self.outbox.add(run.job_id, {"fence": run.fence, "state": "RUNNING", "reason": why})
        for run, code, wall_s in ex.finished():
            body = {"fence": run.fence, "state": "SUCCEEDED" if code == 0 else "FAILED", "exit_code": code,
                    "gpu_seconds": wall_s * run.gpus}
            if code != 0:
                body["log_tail"] = log_tail(ex.log_path(run))        # the log itself stays on the site
            self.outbox.add(run.job_id, body)
        self.send_reports()
        self.upload_checkpoints()
        self.waiting.extend(self.client.call("POST", f"/v1/agent/{self.site}/assignments"))
        for _ in range(len(self.waiting)):
            a = self.waiting.popleft()
            if not ex.can_start(a):
                self.waiting.append(a)
                continue
            try:
                if not self.fetch_checkpoint(a):
                    continue                      # re-dispatched meanwhile: drop it
            except UserError:
                self.waiting.append(a)            # the controller is away: start it later
                raise
            ex.start(a)
        for run, why in ex.started():            # the local executor's runs start at once
            self.outbox.add(run.job_id, {"fence": run.fence, "state": "RUNNING", "reason": why})
        self.send_reports()

    # ------------------------------------------------------------------ checkpoints (service/checkpoints.py)
    def upload_checkpoints(self) -> None:
        """Send each running job's checkpoint to the controller's store when it has a newer one."""
        for run in list(self.executor.runs.values()):
            if not run.announced or not run.checkpoint_dir:
                continue
            mtime = newest_checkpoint(run.checkpoint_dir)
            key = (run.job_id, run.fence)
            if mtime is None or mtime <= self.uploaded.get(key, 0.0):
                continue
            fd, name = tempfile.mkstemp(prefix=f"suanli-ckpt-{run.job_id}-", suffix=".tar.gz")
            archive = Path(name)
            try:
                os.close(fd)
                if not pack(run.checkpoint_dir, archive):
                    continue
                at = datetime.fromtimestamp(mtime, UTC).isoformat()
                self.client.upload(f"/v1/agent/{self.site}/jobs/{run.job_id}/checkpoint", archive,
                                   {"fence": run.fence, "at": at})
                self.uploaded[key] = mtime
            except UserError as e:
                if not str(e).startswith(("409", "404")):
                    raise
                log.info("job %s: checkpoint not stored: %s", run.job_id, e)
            finally:
                archive.unlink(missing_ok=True)
        live = {(r.job_id, r.fence) for r in self.executor.runs.values()}
        self.uploaded = {k: v for k, v in self.uploaded.items() if k in live}

    def fetch_checkpoint(self, a: dict) -> bool:
        """Before a re-placed job starts: put its stored checkpoint in its checkpoint directory
        (unless it was made on this site, whose own copy is at least as new). False: the
        controller no longer dispatches it here."""
        if not a.get("resume_bytes"):
            return True
        ckpt = self.executor.checkpoint_dir(a["job_id"])
        if a.get("resume_from") == self.site and ckpt.is_dir() and any(ckpt.iterdir()):
            return True
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        archive = ckpt.parent / f".{a['job_id']}-f{a['fence']}.tar.gz"
        try:
            self.client.download(f"/v1/agent/{self.site}/jobs/{a['job_id']}/checkpoint", archive,
                                 {"fence": a["fence"]})
            unpack(archive, ckpt)
        except UserError as e:
            if str(e).startswith(("409", "404")):
                log.info("job %s: %s", a["job_id"], e)
                return False
            raise
        finally:
            archive.unlink(missing_ok=True)
        return True

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
                    if not transient(e):
                        raise
                    log.warning("%s", e)          # the controller or its database is away: try again
                self.stopping.wait(self.interval_s)
        finally:
            self.executor.stop_all()
            self.client.close()
