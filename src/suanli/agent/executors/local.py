"""The `local` executor: each job's command runs as a shell subprocess on this machine, with

- `SUANLI_JOB_ID`, `SUANLI_FENCE`, `SUANLI_SITE`, `SUANLI_CHECKPOINT_DIR` (executors/base.py);
- `CUDA_VISIBLE_DEVICES`: the GPUs of the site's simulated pool the job holds (indices into
  the pool of its GPU type: a gang gets `gpus` of them, never shared with another job).

Its stdout and stderr go to `<workdir>/<site>/<job id>/fence-<n>.log`. The command runs in a
subshell of a small wrapper that writes its exit code to `fence-<n>.exit` when it ends, and the
run's record (job, fence, GPUs, process group) is kept in `fence-<n>.run.json` while it lasts:
the processes are in sessions of their own and outlive an agent that is killed, and the next
agent on this workdir adopts them as the slurm and ray executors adopt their cluster's jobs. It
follows an adopted run by its process group and its exit file; one that died without an exit
code (killed with the machine, say) is reported failed with code -1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from suanli.agent.executors.base import Executor, Run
from suanli.errors import UserError

# the job's command in a subshell (its own `exit` ends only that), then its code, kept
WRAPPER = '(\n{command}\n)\ncode=$?\necho $code > {exit}.tmp && mv {exit}.tmp {exit}\nexit $code\n'


@dataclass
class LocalRun(Run):
    devices: list[int]
    pid: int
    proc: subprocess.Popen | None = None        # None: adopted from a previous agent (not our child)
    record: str = ""                           # fence-<n>.run.json
    exit_file: str = ""


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_group(pgid: int, grace_s: float = 5.0) -> None:
    """SIGTERM a process group that is not our child (an adopted run's), SIGKILL after `grace_s`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, site: str, pools: dict[str, int], workdir: str, checkpoint_root: str | None = None):
        super().__init__(site, workdir, checkpoint_root)
        self.free: dict[str, list[int]] = {g: list(range(n)) for g, n in pools.items()}
        self.count = dict(pools)
        self.adopt()

    def adopt(self) -> None:
        """Take over the runs a previous agent of this site and workdir left (their records)."""
        for record in sorted((self.workdir / self.site).glob("*/fence-*.run.json")):
            try:
                r = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            old = self.runs.get(r["job_id"])
            if old is not None:                      # two dispatches of one job: the older is stale
                stale_pid, stale = (old.pid, old.job_id) if old.fence < r["fence"] else (r["pid"], None)
                _kill_group(stale_pid)
                if stale is None:
                    record.unlink(missing_ok=True)
                    continue
                self._release(stale)
            devices = [d for d in r["devices"] if d in self.free.get(r["gpu_type"], [])]
            self.free[r["gpu_type"]] = [d for d in self.free.get(r["gpu_type"], []) if d not in devices]
            self.runs[r["job_id"]] = LocalRun(r["job_id"], r["fence"], r["gpu_type"], r["gpus"], devices, r["pid"],
                                              record=str(record), exit_file=r["exit_file"],
                                              checkpoint_dir=r["checkpoint_dir"],
                                              started=time.monotonic() - max(0.0, time.time() - r["wall_start"]))

    def busy(self) -> dict[str, int]:
        return {g: self.count[g] - len(self.free[g]) for g in self.count}

    def can_start(self, a: dict) -> bool:
        return len(self.free.get(a["gpu_type"], [])) >= a["gpus"]

    def start(self, a: dict) -> LocalRun:
        g, gpus = a["gpu_type"], a["gpus"]
        if len(self.free.get(g, [])) < gpus:
            raise UserError(f"site {self.site}: {gpus} {g} GPUs asked, {len(self.free.get(g, []))} free")
        devices, self.free[g] = self.free[g][:gpus], self.free[g][gpus:]
        jobdir, ckpt = self.prepare(a)
        env = dict(os.environ, **self.job_env(a, ckpt), CUDA_VISIBLE_DEVICES=",".join(map(str, devices)))
        exit_file = jobdir / f"fence-{a['fence']}.exit"
        exit_file.unlink(missing_ok=True)
        script = WRAPPER.format(command=a["command"], exit=exit_file.name)
        logf = open(jobdir / f"fence-{a['fence']}.log", "wb")
        try:
            proc = subprocess.Popen(script, shell=True, env=env, cwd=jobdir, stdout=logf,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            logf.close()
        record = jobdir / f"fence-{a['fence']}.run.json"
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"job_id": a["job_id"], "fence": a["fence"], "gpu_type": g, "gpus": gpus,
                                   "devices": devices, "pid": proc.pid, "exit_file": str(exit_file),
                                   "checkpoint_dir": str(ckpt), "wall_start": time.time()}))
        os.replace(tmp, record)                   # start_new_session: its pid is its group's id
        run = LocalRun(a["job_id"], a["fence"], g, gpus, devices, proc.pid, proc=proc, record=str(record),
                       exit_file=str(exit_file), checkpoint_dir=str(ckpt))
        self.runs[a["job_id"]] = run
        return run

    def started(self) -> list[tuple[Run, str]]:
        """Runs started (or adopted) since the last call, with the RUNNING report's reason."""
        out = []
        for run in self.runs.values():
            if not run.announced:
                run.announced = True
                how = "" if run.proc is not None else " (adopted from the previous agent)"
                out.append((run, f"pid {run.pid}, GPUs {run.devices}{how}"))
        return out

    def _exit_code(self, run: LocalRun) -> int | None:
        """The run's exit code if it ended, else None."""
        if run.proc is not None and run.proc.poll() is None:
            return None
        try:
            return int(Path(run.exit_file).read_text().strip())
        except (OSError, ValueError):
            pass
        if run.proc is not None:
            return run.proc.returncode             # the wrapper itself was killed
        return None if _alive(run.pid) else -1     # adopted, and died without saying how

    def finished(self) -> list[tuple[Run, int, float]]:
        """Runs that ended since the last call: (run, exit code, wall seconds)."""
        out = []
        for jid, run in list(self.runs.items()):
            code = self._exit_code(run)
            if code is not None:
                out.append((run, code, time.monotonic() - run.started))
                self._release(jid)
        return out

    def stop(self, job_id: int) -> tuple[Run, float] | None:
        run = self.runs.get(job_id)
        if run is None:
            return None
        if run.proc is None:
            _kill_group(run.pid)
        else:
            try:                 # our own child: wait() reaps it (a zombie would still answer kill(0))
                os.killpg(run.pid, signal.SIGTERM)
                try:
                    run.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(run.pid, signal.SIGKILL)
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
        Path(run.record).unlink(missing_ok=True)
