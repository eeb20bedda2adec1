"""The `slurm` executor: the site's GPUs are run by a real Slurm cluster, driven with its
command-line clients (found on PATH; the cluster through `SLURM_CONF` as usual).

- Pools: read from Slurm's node inventory, never restated: the `Gres=gpu:TYPE:N` of every
  node of the site's partition (`scontrol -o show node`), summed per type; busy GPUs from
  the nodes' `GresUsed`.
- Start: `sbatch --parsable -p PARTITION --gres=gpu:TYPE:N -J suanli-<job id>-f<fence>` of a
  script holding the job's command, run in `<workdir>/<site>/<job id>/` with the environment of
  executors/base.py (the allow-list, `SUANLI_JOB_ID`, `SUANLI_FENCE`, `SUANLI_SITE`,
  `SUANLI_CHECKPOINT_DIR`; sbatch exports its environment, which is that plus the `SLURM_*` and
  `SBATCH_*` variables sbatch reads); output to `fence-<n>.log` there. Slurm queues it
  until its GPUs are free: the job stays TRANSFERRING in suanli until Slurm runs it.
- Follow: `squeue` for jobs still queued or running, `scontrol show job` for their end
  (`sacct` first where accounting is on). Slurm states map to suanli's lifecycle:
  PENDING/CONFIGURING/REQUEUED/SUSPENDED → still TRANSFERRING; RUNNING/COMPLETING → RUNNING;
  COMPLETED with exit 0 → SUCCEEDED; anything else that ended (FAILED, TIMEOUT, NODE_FAIL,
  OUT_OF_MEMORY, PREEMPTED, a CANCELLED that suanli did not ask for, ...) → FAILED.
- Usage: GPU-seconds = the job's elapsed time in Slurm (sacct's ElapsedRaw, else
  EndTime - StartTime) × its GPUs.
- Stop: `scancel`.
- An agent that restarts adopts the `suanli-*` jobs still in its partition: it lists them in
  its heartbeat, and the controller's reply names those it no longer holds (another
  dispatch's fence), which it then cancels.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

from suanli.agent.executors.base import Executor, JobPolicy, Run
from suanli.errors import UserError

log = logging.getLogger("suanli.agent")

QUEUED = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                    "SUSPENDED", "STOPPED", "SIGNALING", "RESIZING"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT"})
NAME = re.compile(r"^suanli-(\d+)-f(\d+)$")
_GRES = re.compile(r"gpu:([^:(,\s]+):(\d+)")


def suanli_state(slurm_state: str, exit_code: int | None) -> str:
    """Slurm's job state → suanli's: TRANSFERRING (queued), RUNNING, SUCCEEDED or FAILED."""
    st = slurm_state.split()[0].rstrip("+") if slurm_state else "UNKNOWN"
    if st in QUEUED:
        return "TRANSFERRING"
    if st in RUNNING:
        return "RUNNING"
    if st == "COMPLETED" and (exit_code or 0) == 0:
        return "SUCCEEDED"
    return "FAILED"


def parse_kv(line: str) -> dict[str, str]:
    """One `scontrol -o show ...` record: KEY=VALUE pairs separated by spaces."""
    out: dict[str, str] = {}
    key = None
    for tok in line.split():
        if "=" in tok:
            key, _, val = tok.partition("=")
            out[key] = val
        elif key is not None:                     # a value with spaces (rare: Reason=...)
            out[key] += " " + tok
    return out


def gres_gpus(gres: str) -> dict[str, int]:
    """`gpu:h100:4,gpu:a800:2(S:0)` → {'h100': 4, 'a800': 2}."""
    out: dict[str, int] = {}
    for g, n in _GRES.findall(gres or ""):
        out[g] = out.get(g, 0) + int(n)
    return out


def _seconds(start: str, end: str) -> float | None:
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (ValueError, TypeError):
        return None


@dataclass
class SlurmRun(Run):
    slurm_id: str
    state: str = "PENDING"                 # Slurm's, last seen
    exit_code: int | None = None
    elapsed_s: float | None = None
    seen_running: float | None = None      # when this agent first saw it RUNNING (monotonic)


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, site: str, workdir: str, partition: str | None = None, checkpoint_root: str | None = None,
                 policy: JobPolicy | None = None):
        if shutil.which("sbatch") is None:
            raise UserError("--executor slurm: sbatch is not on PATH (install Slurm's clients)")
        super().__init__(site, workdir, checkpoint_root, policy)
        self.partition = partition or site
        log.warning("site %s: Slurm runs every tenant's job as the agent's user (uid %d): tenants share that uid "
                    "on the nodes (docs/SITES.md, Isolation)", site, os.geteuid())
        self.count = self.pools()
        if not self.count:
            raise UserError(f"--executor slurm: partition {self.partition!r} has no node with gpu GRES "
                            f"(scontrol show node)")
        self._busy = {g: 0 for g in self.count}
        self.adopt()

    # ------------------------------------------------------------------ Slurm's clients
    def _sh(self, *args: str, check: bool = True, env: dict | None = None) -> str:
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"slurm: {' '.join(args)}: {e}") from None
        if check and p.returncode != 0:
            raise UserError(f"slurm: {' '.join(args)}: {(p.stderr or p.stdout).strip()}")
        return p.stdout if p.returncode == 0 else ""

    def _nodes(self) -> list[dict[str, str]]:
        out = []
        for line in self._sh("scontrol", "-o", "-d", "show", "node").splitlines():
            rec = parse_kv(line)
            if self.partition in (rec.get("Partitions") or "").split(","):
                out.append(rec)
        return out

    def pools(self) -> dict[str, int]:
        """GPUs per type in the partition, from the nodes' Gres."""
        total: dict[str, int] = {}
        for rec in self._nodes():
            for g, n in gres_gpus(rec.get("Gres", "")).items():
                total[g] = total.get(g, 0) + n
        return total

    def busy(self) -> dict[str, int]:
        return dict(self._busy)

    def _refresh_busy(self) -> None:
        used = {g: 0 for g in self.count}
        for rec in self._nodes():
            for g, n in gres_gpus(re.sub(r"\(IDX:[^)]*\)", "", rec.get("GresUsed", ""))).items():
                used[g] = used.get(g, 0) + n
        self._busy = used

    # ------------------------------------------------------------------ the executor's interface
    def start(self, a: dict) -> SlurmRun:
        g, gpus, jid, fence = a["gpu_type"], a["gpus"], a["job_id"], a["fence"]
        if g not in self.count:
            raise UserError(f"site {self.site}: partition {self.partition} has no {g} GPUs")
        jobdir, ckpt = self.prepare(a)
        script = jobdir / f"fence-{fence}.sh"
        script.write_text("#!/bin/bash\n" + a["command"] + "\n")
        # the job's environment from the allow-list (executors/base.py), and what sbatch itself reads:
        # sbatch exports its whole environment to the job, so nothing else of the agent's is in it
        env = dict(self.job_environment(a, ckpt, jobdir),
                   **{k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "SBATCH_"))})
        out = self._sh("sbatch", "--parsable", "-p", self.partition, f"--gres=gpu:{g}:{gpus}",
                       "-J", f"suanli-{jid}-f{fence}", "-D", str(jobdir), "-o", str(jobdir / f"fence-{fence}.log"),
                       str(script), env=env)
        slurm_id = out.strip().split(";")[0]
        run = SlurmRun(jid, fence, g, gpus, slurm_id, checkpoint_dir=str(ckpt))
        self.runs[jid] = run
        return run

    def adopt(self) -> None:
        """Take over the `suanli-*` jobs this partition still holds (an agent restarted)."""
        out = self._sh("squeue", "-h", "-p", self.partition, "-o", "%i|%j|%T|%b", check=False)
        for line in out.splitlines():
            sid, name, state, tres = (line.split("|") + ["", "", ""])[:4]
            m = NAME.match(name)
            if not m or int(m.group(1)) in self.runs:
                continue
            gpus = gres_gpus(tres.replace("gres:", ""))
            g, n = next(iter(gpus.items()), ("", 0))
            jid = int(m.group(1))
            self.runs[jid] = SlurmRun(jid, int(m.group(2)), g, n, sid, state=state,
                                 checkpoint_dir=str(self.checkpoint_dir(jid)))

    def refresh(self) -> None:
        """Read every run's Slurm state (one squeue; scontrol/sacct for those that left it)."""
        if not self.runs:
            self._refresh_busy()
            return
        ids = ",".join(r.slurm_id for r in self.runs.values())
        live = {}
        for line in self._sh("squeue", "-h", "-j", ids, "-o", "%i|%T", check=False).splitlines():
            sid, _, st = line.partition("|")
            live[sid] = st
        for run in self.runs.values():
            if run.slurm_id in live and live[run.slurm_id] not in ("COMPLETED", "FAILED", "CANCELLED"):
                run.state = live[run.slurm_id]
                if run.state in RUNNING and run.seen_running is None:
                    run.seen_running = time.monotonic()
                continue
            self._final(run)
            if run.state not in QUEUED | RUNNING and run.seen_running is not None:
                # Slurm counts whole seconds: a sub-second run shows 0; take what this agent saw
                run.elapsed_s = max(run.elapsed_s or 0.0, time.monotonic() - run.seen_running)
        self._refresh_busy()

    def _final(self, run: SlurmRun) -> None:
        acct = self._sh("sacct", "-n", "-X", "-P", "-j", run.slurm_id, "-o", "State,ExitCode,ElapsedRaw",
                        check=False).strip().splitlines()
        if acct and acct[0].count("|") == 2:
            st, code, elapsed = acct[0].split("|")
            if st.split()[0] not in QUEUED | RUNNING:
                run.state = st.split()[0]
                run.exit_code = int(code.split(":")[0] or 0)
                run.elapsed_s = float(elapsed or 0)
                return
        rec = parse_kv(self._sh("scontrol", "-o", "show", "job", run.slurm_id, check=False))
        if not rec:                               # purged (MinJobAge) or unknown: it ended, we do not know how
            run.state, run.exit_code = "UNKNOWN", None
            run.elapsed_s = time.monotonic() - run.started
            return
        run.state = rec.get("JobState", "UNKNOWN")
        if run.state in QUEUED | RUNNING:
            return
        run.exit_code = int(rec.get("ExitCode", "0:0").split(":")[0] or 0)
        run.elapsed_s = _seconds(rec.get("StartTime", ""), rec.get("EndTime", "")) or 0.0

    def started(self) -> list[tuple[SlurmRun, str]]:
        """Runs Slurm has started (or already finished) that were not yet reported RUNNING."""
        out = []
        for run in self.runs.values():
            if not run.announced and suanli_state(run.state, run.exit_code) != "TRANSFERRING":
                run.announced = True
                out.append((run, f"Slurm job {run.slurm_id} on partition {self.partition}"))
        return out

    def finished(self) -> list[tuple[SlurmRun, int, float]]:
        """Runs that ended since the last call: (run, exit code (-1 unless COMPLETED/FAILED), wall s)."""
        out = []
        for jid, run in list(self.runs.items()):
            st = suanli_state(run.state, run.exit_code)
            if st in ("SUCCEEDED", "FAILED"):
                code = run.exit_code if run.exit_code is not None else -1
                if st == "FAILED" and code == 0:
                    code = -1                     # e.g. CANCELLED outside suanli, TIMEOUT, NODE_FAIL
                out.append((run, code, run.elapsed_s or 0.0))
                del self.runs[jid]
        return out

    def describe(self, run: SlurmRun) -> str:
        return f"Slurm job {run.slurm_id} ({run.state}) on partition {self.partition}"

    def stop(self, job_id: int) -> tuple[SlurmRun, float] | None:
        run = self.runs.pop(job_id, None)
        if run is None:
            return None
        self._sh("scancel", run.slurm_id, check=False)
        return run, time.monotonic() - run.started

