"""The `local` executor: each job's command runs as a shell subprocess on this machine, with

- `SUANLI_JOB_ID`, `SUANLI_FENCE`, `SUANLI_SITE`, `SUANLI_CHECKPOINT_DIR` (executors/base.py);
- `CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES`: the GPUs the job holds, by their index on
  this host (NVML's numbering; `CUDA_DEVICE_ORDER=PCI_BUS_ID` makes CUDA's the same): a gang gets
  `gpus` of them, never shared with another job, given back when its run ends or is stopped.

The host's GPUs (`host_gpus`): `suanli agent --gpus N`, else the GPUs NVML counts, else (no NVIDIA
GPU: a demo, a test) the pools' own total. The site's pools, as the controller's network file
lists them and the agent announces them, take consecutive indices in that order: pools
{a800: 4, h100: 2} are a800 = 0-3, h100 = 4-5. Given `--gpus N` fewer than the pools hold, the agent
is refused at start-up (a job would be given an index that is not there); NVML counting fewer (a
demo network on a GPU machine) is said, and the indices past the real GPUs are simulated. More
GPUs than the pools are left unused, and said.

Its stdout and stderr go to `<workdir>/<site>/<job id>/fence-<n>.log`. The command (kept in
`fence-<n>.sh`) runs under a small wrapper that writes its exit code to `fence-<n>.exit` when it
ends, and the run's record (job, fence, GPUs, process group) is kept in `fence-<n>.run.json`
while it lasts: the processes are in sessions of their own and outlive an agent that is killed,
and the next agent on this workdir adopts them as the slurm and ray executors adopt their
cluster's jobs. It follows an adopted run by its process group and its exit file; one that died
without an exit code (killed with the machine, say) is reported failed with code -1.

Isolation (executors/base.py, docs/SITES.md): the job's environment comes from the allow-list,
its working directory is its private `work/`, its umask 077. When the agent is root, the
wrapper (root, in the job's process group) runs the command through `setpriv` under the
tenant's uid and gid, no supplementary groups, no capabilities and `no_new_privs` (setuid
programs gain nothing), and, where the kernel allows it, `unshare --pid --fork --mount-proc`
puts the job in a PID namespace of its own: it sees only its own processes in `ps` and /proc
(not the agent, not another job). The namespace's first process waits for the command, so a
SIGTERM to the process group still reaches every process of the job, which may end gracefully
(write a last checkpoint) as before; when the command is done, or the group SIGKILLed, the
kernel kills whatever the job left in its namespace.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from suanli.agent.executors.base import Executor, JobPolicy, Run
from suanli.errors import UserError

log = logging.getLogger("suanli.agent")

# the job's command (a file, run by a shell of its own: its `exit` ends only that), then its code, kept
WRAPPER = ('umask 077\n{run} /bin/sh {command}\ncode=$?\n'
           'echo $code > {exit}.tmp && mv -f {exit}.tmp {exit}\nexit $code\n')
# the first process of a job's PID namespace: runs the command and waits for it (a namespace's
# init gets no signal it has no handler for, so the command is not that process)
NS_INIT = '"$@" & wait $!'


def pid_namespaces(unshare: str | None) -> bool:
    """Whether this kernel lets the agent give a job a PID namespace of its own (root only)."""
    if unshare is None or os.geteuid() != 0:
        return False
    try:
        return subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "/bin/true"],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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


def host_gpu_count(given: int | None) -> tuple[int | None, str]:
    """(this host's GPUs, where the number comes from): `--gpus N`, else NVML's count, else None."""
    if given is not None:
        return given, "--gpus"
    from suanli.agent.meters.nvml import gpu_count
    n, _ = gpu_count()
    if n > 0:
        import pynvml
        try:
            pynvml.nvmlShutdown()            # gpu_count leaves NVML initialised: the meter opens its own
        except pynvml.NVMLError:
            pass
        return n, "NVML"
    return None, ""


def gpu_indices(site: str, pools: dict[str, int], host_gpus: int | None, source: str = "--gpus"
                ) -> dict[str, list[int]]:
    """Each pool's GPU indices on this host (module docstring): consecutive, in the pools' order."""
    total = sum(pools.values())
    shown = ", ".join(f"{g} {n}" for g, n in pools.items())
    if host_gpus is not None and host_gpus < total and source != "--gpus":
        # a demo or a test network on a GPU machine: its pools are simulated beyond the real GPUs
        log.warning("site %s: this host has %d GPU(s) (%s), and the pools (%s) hold %d: indices %d-%d are not real "
                    "GPUs (runs on them have no measured energy); give --gpus %d to have this refused", site,
                    host_gpus, source, shown, total, host_gpus, total - 1, host_gpus)
    elif host_gpus is not None and host_gpus < total:
        raise UserError(f"{source}: this host has {host_gpus} GPU(s), and site {site}'s pools ({shown}) hold "
                        f"{total}: a job would be given a GPU that is not there (fix the network file's pools, "
                        f"or run the agent on a host with them all)")
    if host_gpus is not None and host_gpus > total:
        log.warning("site %s: this host has %d GPUs (%s); the pools (%s) use indices 0-%d, the others stay idle",
                    site, host_gpus, source, shown, total - 1)
    out, k = {}, 0
    for g, n in pools.items():
        out[g] = list(range(k, k + n))
        k += n
    return out


class LocalExecutor(Executor):
    name = "local"

    runs_jobs_itself = True

    def __init__(self, site: str, pools: dict[str, int], workdir: str, checkpoint_root: str | None = None,
                 policy: JobPolicy | None = None, gpus: int | None = None):
        super().__init__(site, workdir, checkpoint_root, policy)
        self.host_gpus, where = host_gpu_count(gpus)       # gpus: `--gpus N`
        self.free = gpu_indices(site, pools, self.host_gpus, where)
        log.info("site %s: GPU indices %s (%s)", site, {g: f"{d[0]}-{d[-1]}" if d else "none"
                                                          for g, d in self.free.items()},
                 f"this host's {self.host_gpus} GPUs, from {where}" if self.host_gpus is not None
                 else "no NVIDIA GPU seen and no --gpus: the pools' own numbering")
        self.count = dict(pools)
        self.setpriv = shutil.which("setpriv")
        self.unshare = shutil.which("unshare")
        if self.isolate and self.setpriv is None:
            raise UserError("the agent runs as root and runs each job under its tenant's uid with setpriv "
                            "(util-linux), which is not on PATH: install util-linux")
        if self.isolate:
            top = self.policy.uid_base + 65535
            probe = subprocess.run([self.setpriv, f"--reuid={top}", f"--regid={top}", "--clear-groups", "/bin/true"],
                                   capture_output=True, text=True, timeout=20)
            if probe.returncode != 0:
                raise UserError(f"--job-uid-base {self.policy.uid_base}: this machine cannot run a process as uid "
                                f"{top} ({probe.stderr.strip()}): a user namespace that maps fewer ids? "
                                f"(/proc/self/uid_map) choose a base within the ids it maps")
        self.pid_ns = pid_namespaces(self.unshare)
        if os.geteuid() != 0:
            log.warning("site %s: the agent is not root: jobs run as its own user (uid %d), NOT isolated from each "
                        "other nor from the agent (its files, its processes); run it as root to give each tenant's "
                        "jobs a uid of their own (docs/SITES.md, Isolation)", site, os.geteuid())
        elif not self.isolate:
            log.warning("site %s: --jobs-as-agent-user: jobs run as root, NOT isolated from each other nor from the "
                        "agent (docs/SITES.md, Isolation)", site)
        if os.geteuid() == 0 and not self.pid_ns:
            log.warning("site %s: this kernel refuses PID namespaces (unshare --pid: %s): a job can list the "
                        "machine's processes and read their command lines (docs/SITES.md, Isolation)",
                        site, self.unshare or "not installed")
        self.adopt()

    def runner(self, a: dict) -> str:
        """What the wrapper puts before `/bin/sh <command file>`: the job's namespace and user."""
        parts: list[str] = []
        if self.pid_ns:
            parts += [self.unshare, "--pid", "--fork", "--mount-proc"]
        ids = self.job_ids(a)
        if ids is not None:
            parts += [self.setpriv, f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", "--no-new-privs",
                      "--inh-caps=-all", "--"]
        if self.pid_ns:
            parts += ["/bin/sh", "-c", NS_INIT, "suanli-job"]
        return " ".join(shlex.quote(p) for p in parts)

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
        try:
            jobdir, ckpt = self.prepare(a)
            ids = self.job_ids(a)
        except BaseException:
            self.free[g] = sorted(self.free[g] + devices)
            raise
        work = self.work_dir(a["job_id"])
        env = self.job_environment(a, ckpt, work, devices)
        exit_file = jobdir / f"fence-{a['fence']}.exit"
        exit_file.unlink(missing_ok=True)
        command = jobdir / f"fence-{a['fence']}.sh"
        command.unlink(missing_ok=True)
        fd = os.open(command, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(a["command"] + "\n")
        if ids is not None:                       # the job's user reads it through its group
            os.chown(command, 0, ids[1])
            command.chmod(0o640)
        script = WRAPPER.format(run=self.runner(a), command=shlex.quote(str(command)),
                                exit=shlex.quote(str(exit_file)))
        logfd = os.open(jobdir / f"fence-{a['fence']}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                        0o600)
        os.fchmod(logfd, 0o600)
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", script], env=env, cwd=work, stdout=logfd,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(logfd)
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
