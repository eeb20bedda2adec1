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

Isolation (docs/SITES.md, "Isolation"). A job's environment is built from an allow-list, never
copied from the agent's: `PATH`, `LANG`, `LANGUAGE`, `LC_*`, `TZ`, `TERM`, the names the
operator adds (`suanli agent --job-env NAME`), then `HOME` and `TMPDIR` (the job's private
directory), the `SUANLI_*` variables below and, on the local executor, the GPUs it holds: `CUDA_VISIBLE_DEVICES`
and `NVIDIA_VISIBLE_DEVICES` (the same indices, for a container runtime), with
`CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA numbers the GPUs as NVML and DCGM do (executors/local.py).
No other variable of the agent reaches a job (its token, `SUANLI_AGENT_TOKEN`, least of all).

When the agent runs as root (and not `--jobs-as-agent-user`), the local executor runs each job
under an unprivileged uid and gid of its tenant, `--job-uid-base` + the tenant's id (no
/etc/passwd entry needed), and the directories are laid out so that a job reaches only its own:

    <workdir>/                      root, 0711 (searchable, not listable)
      <site>/                       root, 0711
        outbox/                     root, 0700 (the agent's journaled reports)
        checkpoints/                root, 0711
          <job id>/                 the job's uid, 0700: SUANLI_CHECKPOINT_DIR
        <job id>/                   root:<job gid>, 0710: the agent's record of the job
          fence-<n>.log             root, 0600: the run's output (the job holds it open)
          fence-<n>.sh              root:<job gid>, 0640: the job's command
          fence-<n>.exit, .run.json root, 0600: its exit code, the run's record
          work/                     the job's uid, 0700: its working directory, HOME and TMPDIR

Every file the agent itself reads or writes is in a directory only root can change, so a job
cannot point the agent at another file with a link or a rename.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from suanli.errors import UserError

log = logging.getLogger("suanli.agent")

# what a job gets of the agent's environment, with the names an operator adds (--job-env)
SAFE_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TERM"})
SAFE_PREFIXES = ("LC_",)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
UID_BASE = 2_000_000             # + a tenant's id: a job's uid and gid (no real user has one this high)
MAX_ID = 2**31 - 2
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class JobPolicy:
    """How jobs are run (`suanli agent --job-env`, `--job-uid-base`, `--jobs-as-agent-user`)."""
    env: tuple[str, ...] = ()            # more variables of the agent's environment to pass to jobs
    uid_base: int = UID_BASE             # a job runs as uid = gid = uid_base + its tenant's id
    as_agent_user: bool = False          # a root agent runs jobs as root: no isolation (one trusted tenant)

    def __post_init__(self):
        for name in self.env:
            if not _NAME.match(name):
                raise UserError(f"--job-env: {name!r} is not a variable name")
            if name.startswith("SUANLI_"):
                raise UserError(f"--job-env {name}: suanli's own variables are set by the agent, never passed "
                                f"from its environment (its token is never given to a job)")
        if not 1000 <= self.uid_base <= MAX_ID:
            raise UserError(f"--job-uid-base: must be between 1000 and {MAX_ID}, got {self.uid_base}")


def searchable_by_others(path: Path) -> Path | None:
    """The first directory on the way to `path` (itself included) that other users cannot
    search (no o+x), or None: a job under another uid needs every one of them."""
    p = path.resolve()
    for d in [*reversed(p.parents), p]:
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return d
        except FileNotFoundError:
            return None
    return None


def give(top: Path, uid: int, gid: int) -> None:
    """Make `top` (a directory in a directory only the agent can change) and what the agent put
    in it (a checkpoint it unpacked, the files of a job run before isolation: the agent's own
    files) the job's, mode 0700 for `top`; a `top` that is already the job's is left as it is
    (its files are the job's: walking a large home at every start would hold the loop). Walks by
    directory descriptors and never follows a link, and leaves alone what is not the agent's
    and any file with several links, so a job's links and renames cannot turn it on another file."""
    me = os.geteuid()
    if os.stat(top, follow_symlinks=False).st_uid != me:
        os.chmod(top, 0o700, follow_symlinks=False)     # the job's already: the agent put nothing in it since
        return
    for _, dirs, files, dfd in os.fwalk(top, topdown=False, follow_symlinks=False):
        for name in dirs + files:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if st.st_uid != me or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
                    continue
                os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
    os.chown(top, uid, gid, follow_symlinks=False)
    os.chmod(top, 0o700, follow_symlinks=False)


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

    def __init__(self, site: str, workdir: str, checkpoint_root: str | None = None, policy: JobPolicy | None = None):
        self.site = site
        self.workdir = Path(workdir)
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else self.workdir / site / "checkpoints"
        self.runs: dict[int, Run] = {}
        self.count: dict[str, int] = {}
        self.policy = policy or JobPolicy()
        # jobs under their tenants' uids: the local executor, when the agent is root
        self.isolate = self.runs_jobs_itself and os.geteuid() == 0 and not self.policy.as_agent_user
        self.layout()

    runs_jobs_itself = False      # True: this executor starts the jobs' processes (local), not a cluster manager

    def layout(self) -> None:
        """The agent's directories: its outbox private; when jobs run under other uids, the roots
        of their directories searchable by them but not listable (module docstring), owned by the
        agent and writable by it alone, on a path every user can search."""
        site_dir = self.workdir / self.site
        (site_dir / "outbox").mkdir(mode=0o700, parents=True, exist_ok=True)
        (site_dir / "outbox").chmod(0o700)
        self.checkpoint_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.isolate:
            return
        for d, what in ((self.workdir, "--workdir"), (site_dir, "--workdir"),
                        (self.checkpoint_root, "--checkpoint-dir")):
            st = d.stat()
            if st.st_uid != os.geteuid():
                raise UserError(f"{what} {d}: owned by uid {st.st_uid}, not by the agent's user: the jobs' users "
                                f"must not be able to change it")
            d.chmod(0o711)
            blocked = searchable_by_others(d)
            if blocked is not None:
                raise UserError(f"{what} {d}: {blocked} cannot be searched by other users (mode "
                                f"{stat.S_IMODE(blocked.stat().st_mode):04o}) and jobs run under their tenants' "
                                f"uids: chmod o+x {blocked}, or choose a directory under a searchable path")

    def job_dir(self, job_id: int) -> Path:
        return self.workdir / self.site / str(job_id)

    def work_dir(self, job_id: int) -> Path:
        """The job's private directory: its working directory, HOME and TMPDIR."""
        return self.job_dir(job_id) / "work"

    def job_ids(self, a: dict) -> tuple[int, int] | None:
        """(uid, gid) a job runs as, or None: as the agent's own user."""
        if not self.isolate:
            return None
        tenant = a.get("tenant_id")
        if not isinstance(tenant, int) or tenant < 0:
            raise UserError(f"job {a.get('job_id')}: the assignment names no tenant (tenant_id): the controller "
                            f"is older than this agent, which runs a job only under its tenant's uid")
        uid = self.policy.uid_base + tenant
        if uid > MAX_ID:
            raise UserError(f"job {a['job_id']}: uid {uid} of tenant {tenant} is past {MAX_ID}: lower --job-uid-base")
        return uid, uid

    def log_path(self, run: Run) -> Path:
        """Where a run's output is kept on the site (the agent uploads its last MiB: agent.send_output)."""
        return self.job_dir(run.job_id) / f"fence-{run.fence}.log"

    def checkpoint_dir(self, job_id: int) -> Path:
        return self.checkpoint_root / str(job_id)

    def prepare(self, a: dict) -> tuple[Path, Path]:
        """The job's directory (with its private `work/`) and its checkpoint directory, created
        with their owners and modes (module docstring)."""
        if "\x00" in a["command"]:
            # no shell, sbatch script or Ray entrypoint can carry it; the API refuses it at its door,
            # and one that got into the database anyway fails this job alone (agent.py contains it)
            raise ValueError("the command holds a NUL byte, which no executor can run")
        job_id = a["job_id"]
        jobdir, work, ckpt = self.job_dir(job_id), self.work_dir(job_id), self.checkpoint_dir(job_id)
        ids = self.job_ids(a)
        for d in (jobdir, work, ckpt):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if ids is None:
            for d in (jobdir, work, ckpt):
                d.chmod(0o700)
        else:
            os.chown(jobdir, 0, ids[1], follow_symlinks=False)
            jobdir.chmod(0o710)
            give(work, *ids)
            give(ckpt, *ids)
        return jobdir, ckpt

    def job_env(self, a: dict, ckpt: Path) -> dict[str, str]:
        """The variables every job gets (docs/SITES.md)."""
        return {"SUANLI_JOB_ID": str(a["job_id"]), "SUANLI_FENCE": str(a["fence"]), "SUANLI_SITE": self.site,
                "SUANLI_CHECKPOINT_DIR": str(ckpt)}

    def operator_env(self) -> dict[str, str]:
        """The variables of the agent's environment the operator passes on (--job-env)."""
        return {k: os.environ[k] for k in self.policy.env if k in os.environ}

    def job_environment(self, a: dict, ckpt: Path, home: Path, devices: list[int] | None = None) -> dict[str, str]:
        """A job's whole environment, from the allow-list (module docstring)."""
        env = {k: v for k, v in os.environ.items() if k in SAFE_ENV or k.startswith(SAFE_PREFIXES)}
        env.setdefault("PATH", DEFAULT_PATH)
        env.update(self.operator_env())
        env.update(HOME=str(home), TMPDIR=str(home))
        ids = self.job_ids(a)
        if ids is not None:               # no passwd entry: getpass.getuser() and the like read these
            env.update(USER=f"suanli-{a['tenant_id']}", LOGNAME=f"suanli-{a['tenant_id']}")
        else:
            env.update({k: os.environ[k] for k in ("USER", "LOGNAME") if k in os.environ})
        env.update(self.job_env(a, ckpt))
        if devices is not None:
            # CUDA's own order (fastest first) may differ from NVML's: the indices are NVML's (the
            # meters' per-GPU power is read by them), so CUDA is told to number by PCI bus as NVML does
            env["CUDA_VISIBLE_DEVICES"] = env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        return env

    def can_start(self, a: dict) -> bool:
        return True             # a cluster manager queues the job itself until its GPUs are free

    def refresh(self) -> None:
        pass

    def stop_all(self) -> None:
        """On agent exit a cluster manager's jobs keep running: a restarted agent adopts them."""
        self.runs.clear()
