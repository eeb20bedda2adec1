"""Helpers for the tests of real sites (imported by name, like svc.py): a real Slurm cluster
(scripts/slurm-up.sh: partitions east-1 with 4 h100 and west-1 with 8 a800 on fake device
files, matching tests/service/data/network.yaml), agents with the `slurm` executor, and a
short Python job that checkpoints.

The Slurm tests are skipped only when `sbatch` is not installed. When `SUANLI_TEST_SLURM=1`
(.ci/run sets it after starting Slurm) an unusable cluster fails them instead. When sbatch is
installed but no cluster answers, the fixture starts one with scripts/slurm-up.sh (as root)
and stops it after the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from svc import agent_env

from suanli.agent.executors.base import searchable_by_others

ROOT = Path(__file__).resolve().parents[2]
SLURM_STATE = os.environ.get("SLURM_STATE", "/tmp/suanli-slurm")
REQUIRED = os.environ.get("SUANLI_TEST_SLURM") == "1"
PARTITIONS = {"east-1": {"h100": 4}, "west-1": {"a800": 8}}

# A job that checkpoints: steps of `step_s` seconds up to `n`, the step reached in
# $SUANLI_CHECKPOINT_DIR/step after each; it resumes from that file, and at the end writes
# done-<site> with the step it started from and the step it reached.
JOB = r'''
import os, pathlib, sys, time
d = pathlib.Path(os.environ["SUANLI_CHECKPOINT_DIR"])
n, step_s = int(sys.argv[1]), float(sys.argv[2])
f = d / "step"
first = step = int(f.read_text()) if f.exists() else 0
site = os.environ["SUANLI_SITE"]
hang = len(sys.argv) > 3 and site == sys.argv[3]
while step < n:
    time.sleep(step_s)
    step += 1
    tmp = d / "step.tmp"
    tmp.write_text(str(step))
    tmp.replace(f)
    with open(d / "log", "a") as log:
        log.write(f"{site} {os.environ['SUANLI_FENCE']} {step}\n")
    if hang and step >= n // 3:
        time.sleep(3600)               # stands for a site that stops making progress
(d / f"done-{site}").write_text(f"{first} {step}")
'''


def job_python() -> str:
    """A Python the jobs' users can run: an agent run as root runs jobs under unprivileged uids,
    which cannot reach an interpreter under a private home (pyenv in /root, say). JOB needs only
    the standard library."""
    exe = Path(sys.executable).resolve()
    if os.geteuid() != 0 or (searchable_by_others(exe.parent) is None and exe.stat().st_mode & 0o001):
        return sys.executable
    return shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin") or sys.executable


def job_command(tmp: Path, n: int, step_s: float, hang_at: str = "") -> str:
    script = tmp / "ckpt_job.py"
    script.write_text(JOB)
    return f"{job_python()} {script} {n} {step_s} {hang_at}".strip()


def _usable() -> str | None:
    """None if Slurm answers with the test partitions, else why not."""
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%P %T %G"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo: {e}"
    if p.returncode != 0:
        return f"sinfo: {p.stderr.strip()}"
    parts = {ln.split()[0].rstrip("*") for ln in p.stdout.splitlines() if ln.strip()}
    missing = set(PARTITIONS) - parts
    return f"partitions {sorted(missing)} missing (sinfo: {p.stdout.strip()!r})" if missing else None


@pytest.fixture(scope="session")
def slurm():
    """A usable Slurm cluster for the session (SLURM_CONF set in this process's environment)."""
    if shutil.which("sbatch") is None:
        if REQUIRED:
            pytest.fail("SUANLI_TEST_SLURM=1 but sbatch is not on PATH")
        pytest.skip("Slurm: sbatch is not installed (apt-get install slurm-wlm munge; .ci/run starts a cluster "
                    "with scripts/slurm-up.sh)")
    os.environ.setdefault("SLURM_CONF", f"{SLURM_STATE}/slurm.conf")
    started = False
    why = _usable()
    if why is not None and not REQUIRED and os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm-up.sh")], check=True, capture_output=True,
                       timeout=300, env=dict(os.environ, SLURM_STATE=SLURM_STATE))
        started = True
        why = _usable()
    if why is not None:
        log = Path(SLURM_STATE) / "log" / "slurmctld.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else "(no log)"
        pytest.fail(f"Slurm is not usable: {why}\nslurmctld.log:\n{tail}")
    yield os.environ["SLURM_CONF"]
    if started:
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm-down.sh")], capture_output=True, timeout=60,
                       env=dict(os.environ, SLURM_STATE=SLURM_STATE))


def slurm_jobs() -> dict[str, dict[str, str]]:
    """Slurm's jobs by name (the newest of each name): `scontrol -o show job`."""
    from suanli.agent.executors.slurm import parse_kv
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30).stdout
    jobs: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        rec = parse_kv(line)
        if rec.get("JobName", "").startswith("suanli-"):
            old = jobs.get(rec["JobName"])
            if old is None or int(rec["JobId"]) > int(old["JobId"]):
                jobs[rec["JobName"]] = rec
    return jobs


def start_slurm_agent(service, site: str, workdir: Path, checkpoint_dir: Path | None = None,
                      token: str | None = None) -> subprocess.Popen:
    token = token or service.site_token(site)
    cmd = [sys.executable, "-m", "suanli.agent", "--site", site, "--controller", service.url,
           "--executor", "slurm", "--workdir", str(workdir), "--interval-s", "0.3"]
    if checkpoint_dir is not None:
        cmd += ["--checkpoint-dir", str(checkpoint_dir)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=agent_env(token))
    service.agents.append(p)
    return p


def cancel_partition(partition: str) -> None:
    """The site's cluster manager loses its jobs too (scancel every suanli job of the partition)."""
    subprocess.run(["scancel", "-p", partition], capture_output=True, timeout=30)
