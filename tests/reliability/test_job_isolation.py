"""Jobs are isolated from their agent, from each other and from the controller (issue "Trust",
item 3; docs/SITES.md, "Isolation").

A real server (SQLite in a data directory of its own), a real `suanli agent` (local executor)
started with its token in its environment, and two tenants: `acme`, the victim, runs a long job
that keeps a secret marker in its command line, its environment, its checkpoint directory and
its working directory; `rival`, the attacker, submits jobs whose commands try to read the
agent's token (/proc/$PPID/cmdline and environ, the agent's own /proc entries), acme's
processes, files and checkpoints, the controller's database (and to append to it), the
checkpoint store and the agent's outbox, and print everything they got to their own output.
Nothing may leak: no token, no marker, no write.

The uid checks need the agent to run as root (CI does): they are skipped, saying so, otherwise.
The process-listing check also needs the kernel to allow PID namespaces (`unshare --pid`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402  (tests/service's fixtures module: real server over a real database)
from svc import job_body, searchable, wait_for  # noqa: E402

from suanli.agent.executors.base import SAFE_ENV, UID_BASE  # noqa: E402
from suanli.agent.executors.local import pid_namespaces  # noqa: E402

service = svc.service
ROOT = os.geteuid() == 0
NOT_ROOT = "jobs run under their tenants' uids only when the agent is root (CI runs as root)"
PID_NS = ROOT and pid_namespaces(shutil.which("unshare"))
# what a job's environment may hold (executors/base.py): the allow-list and what the agent sets
ALLOWED = set(SAFE_ENV) | {"HOME", "TMPDIR", "USER", "LOGNAME", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                           "CUDA_DEVICE_ORDER", "PWD", "SHLVL", "OLDPWD", "_", "SUANLI_JOB_ID", "SUANLI_FENCE",
                           "SUANLI_SITE", "SUANLI_CHECKPOINT_DIR"}


@pytest.fixture
def db_url(tmp_path):
    """SQLite in a data directory the service creates (its mode is under test)."""
    yield f"sqlite:///{tmp_path / 'data' / 'suanli.db'}"


class World:
    def __init__(self, service, tmp_path: Path):
        self.s = service
        self.tmp = tmp_path
        self.secret = "acme-secret-" + uuid.uuid4().hex[:10]
        self.token = service.site_token("east-1")
        self.workdir = tmp_path / "agents"
        self.agent = service.start_agent("east-1", self.workdir, self.token)
        self.acme = service.client(service.tenant("acme"))
        self.rival = service.client(service.tenant("rival"))
        self.ids = {t["name"]: t["id"] for t in self._tenants()}
        wait_for(lambda: any(s["id"] == "east-1" and s["up"] for s in self.acme.get("/v1/sites").json()), 60,
                 dump=self.agent_log)

    def _tenants(self):
        from sqlalchemy import select

        from suanli.service.models import Tenant
        with self.s.sessions() as s:
            return [{"name": t.name, "id": t.id} for t in s.scalars(select(Tenant))]

    def agent_log(self) -> str:
        if self.agent.poll() is None:
            return "agent still running"
        return (self.agent.stdout.read() + self.agent.stderr.read()).decode(errors="replace")[-3000:]

    def submit(self, client, command: str, **over) -> int:
        r = client.post("/v1/jobs", json=job_body(command=command, gpus=1, gpu_types=["h100"], **over))
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def state(self, client, jid: int) -> str:
        return client.get(f"/v1/jobs/{jid}").json()["state"]

    def victim(self) -> int:
        """acme's long job: its secret in its command line, environment, checkpoint and home."""
        jid = self.submit(self.acme, (
            f'echo {self.secret} > "$SUANLI_CHECKPOINT_DIR/secret"; echo {self.secret} > "$HOME/secret"; '
            f"export VICTIM_SECRET={self.secret}; sh -c 'sleep 300; true' {self.secret}"), work_h=0.2)
        wait_for(lambda: self.state(self.acme, jid) == "RUNNING", 60, dump=self.agent_log)
        wait_for(lambda: self.s.app.state.controller.store.has(jid), 30)      # its checkpoint was stored
        return jid

    def run(self, command: str) -> str:
        """Run a job of rival's to its end; its output (the log the agent keeps on the site)."""
        jid = self.submit(self.rival, command)
        wait_for(lambda: self.state(self.rival, jid) in ("SUCCEEDED", "FAILED"), 90, dump=self.agent_log)
        logs = sorted((self.workdir / "east-1" / str(jid)).glob("fence-*.log"))
        assert logs, f"no log for job {jid}"
        return logs[-1].read_text(errors="replace")


def _section(out: str, name: str) -> str:
    return out.split(f"== {name}\n", 1)[1].split("\n== ", 1)[0]


def _uids() -> dict[int, list[str]]:
    """The processes of the machine by real uid: {uid: [command lines]}."""
    out: dict[int, list[str]] = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            uid = int(next(ln for ln in (p / "status").read_text().splitlines() if ln.startswith("Uid:")).split()[1])
            out.setdefault(uid, []).append((p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, StopIteration, ValueError):
            continue
    return out


def test_a_job_gets_only_the_allow_listed_environment(service, tmp_path):
    w = World(service, tmp_path)
    out = w.run("echo '== env'; env; echo '== home'; pwd; echo \"$HOME\"; echo '== end'")
    names = {ln.split("=", 1)[0] for ln in _section(out, "env").splitlines() if "=" in ln}
    extra = {n for n in names - ALLOWED if not n.startswith("LC_")}
    assert not extra, f"a job got variables of the agent's environment: {sorted(extra)}"
    assert w.token not in out and "SUANLI_AGENT_TOKEN" not in out
    assert {"SUANLI_JOB_ID", "SUANLI_CHECKPOINT_DIR", "HOME", "PATH", "CUDA_VISIBLE_DEVICES"} <= names
    cwd, home = _section(out, "home").split()
    assert cwd == home and home.endswith("/work"), (cwd, home)            # its private directory


def test_the_agent_takes_its_token_from_a_private_file_or_its_environment_never_its_command_line(service, tmp_path):
    def agent(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if k != "SUANLI_AGENT_TOKEN"}
        return subprocess.run([sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", service.url,
                               "--workdir", str(tmp_path / "w"), *args], env=dict(base, **(env or {})),
                              capture_output=True, text=True, timeout=60)

    token = service.site_token("east-1")
    r = agent("--token", token)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--token-file" in r.stderr, r.stderr
    loose = tmp_path / "loose.tok"
    loose.write_text(token)
    loose.chmod(0o644)
    r = agent("--token-file", str(loose))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "chmod 600" in r.stderr and token not in r.stderr
    r = agent()
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "SUANLI_AGENT_TOKEN" in r.stderr, r.stderr
    loose.chmod(0o600)
    r = agent("--token-file", str(loose), env={"SUANLI_AGENT_TOKEN": token})
    assert r.returncode == 2 and "give one" in r.stderr, r.stderr
    # the private file works: the agent comes up, its command line holds no token
    searchable(tmp_path / "w")
    p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", service.url,
                          "--token-file", str(loose), "--workdir", str(tmp_path / "w"), "--interval-s", "0.2"],
                         env={k: v for k, v in os.environ.items() if k != "SUANLI_AGENT_TOKEN"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    service.agents.append(p)
    c = service.client(service.tenant("acme"))
    wait_for(lambda: any(s["id"] == "east-1" and s["up"] for s in c.get("/v1/sites").json()), 60)
    assert token not in Path(f"/proc/{p.pid}/cmdline").read_text()


def test_the_service_keeps_its_database_and_checkpoint_store_private(service, tmp_path):
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for f in data.glob("suanli.db*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    w = World(service, tmp_path)
    w.victim()
    store = service.app.state.controller.store.root
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in store.iterdir())


@pytest.mark.skipif(not ROOT, reason=NOT_ROOT)
def test_a_job_cannot_reach_the_agents_token_another_tenants_files_or_the_controllers_data(service, tmp_path):
    w = World(service, tmp_path)
    victim = w.victim()
    site = w.workdir / "east-1"
    vckpt, vjob = site / "checkpoints" / str(victim), site / str(victim)
    db = tmp_path / "data" / "suanli.db"
    store = service.app.state.controller.store.root
    python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    out = w.run(f"""
echo '== id'; id
echo '== env'; env
echo '== parent'; tr '\\0' ' ' < /proc/$PPID/cmdline; echo; tr '\\0' ' ' < /proc/$PPID/environ; echo
echo '== agent'; tr '\\0' ' ' < /proc/{w.agent.pid}/cmdline; echo; tr '\\0' ' ' < /proc/{w.agent.pid}/environ; echo
echo '== environs'; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/environ; echo; done
echo '== victim checkpoint'; ls -la {vckpt}; cat {vckpt}/secret
echo '== victim job'; ls -la {vjob} {vjob}/work; cat {vjob}/fence-1.sh {vjob}/fence-1.log {vjob}/work/secret
echo '== controller'; ls -la {db.parent}; tr -cd '[:print:]' < {db}; echo; echo ATTACK >> {db} && echo APPENDED
{python} -c "import sqlite3; c = sqlite3.connect('{db}'); print(c.execute('select command from jobs').fetchall())"
echo '== store'; ls -la {store}; cat {store}/*.tar.gz | gzip -dc
echo '== outbox'; ls -la {site}/outbox; cat {site}/outbox/*
echo '== write'; touch {site}/planted {vjob}/planted {site}/checkpoints/planted && echo PLANTED
echo '== end'
""")
    assert w.token not in out, "the agent's token reached a job"
    assert w.secret not in out, f"acme's secret reached rival's job:\n{out[:3000]}"
    assert "APPENDED" not in out and "PLANTED" not in out, out
    assert f"uid={UID_BASE + w.ids['rival']}" in _section(out, "id"), _section(out, "id")
    assert "Permission denied" in _section(out, "controller") and "Permission denied" in _section(out, "victim job")
    names = {ln.split("=", 1)[0] for ln in _section(out, "env").splitlines() if "=" in ln}
    assert not {n for n in names - ALLOWED if not n.startswith("LC_")}, names
    # acme's own job still runs, as acme's uid, and its files are its own
    assert w.state(w.acme, victim) == "RUNNING"
    acme_uid = UID_BASE + w.ids["acme"]
    assert vckpt.stat().st_uid == acme_uid and stat.S_IMODE(vckpt.stat().st_mode) == 0o700
    assert (vjob / "work").stat().st_uid == acme_uid and stat.S_IMODE((vjob / "work").stat().st_mode) == 0o700
    assert (vjob / "fence-1.log").stat().st_uid == 0 and stat.S_IMODE((vjob / "fence-1.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((site / "outbox").stat().st_mode) == 0o700
    assert any("sleep 300" in c for c in _uids().get(acme_uid, [])), "acme's job does not run under acme's uid"
    # cancelled, every process of the job ends (its namespace with it)
    assert w.acme.delete(f"/v1/jobs/{victim}").status_code == 200
    # (this test's: tenant ids, hence uids, repeat across tests, and another test's orphan, such as
    # the job of an agent a failover test SIGKILLed, may still run under the same uid)
    mine = lambda: [c for c in _uids().get(acme_uid, []) if str(tmp_path) in c or "sleep 300" in c]  # noqa: E731
    wait_for(lambda: not mine(), 30, dump=mine)


@pytest.mark.skipif(not PID_NS, reason=f"{NOT_ROOT}; and a PID namespace per job needs a kernel that allows "
                                       "`unshare --pid` (docs/SITES.md, Isolation)")
def test_a_job_sees_only_its_own_processes(service, tmp_path):
    w = World(service, tmp_path)
    w.victim()
    out = w.run("""
echo '== pids'; ls -d /proc/[0-9]* | tr '\\n' ' '; echo
echo '== cmdlines'; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done
echo '== ps'; ps -eo pid,user,args
echo '== end'
""")
    assert w.secret not in out and w.token not in out, out
    pids = _section(out, "pids").split()
    assert 0 < len(pids) < 10 and "/proc/1" in pids, pids           # its namespace: itself only
    assert str(w.agent.pid) not in _section(out, "ps").split(), _section(out, "ps")
    assert "suanli.agent" not in out and "sleep 300" not in out


def test_a_cancelled_job_still_gets_sigterm_first_and_may_end_gracefully(service, tmp_path):
    """The job's namespace and uid change nothing to stopping: SIGTERM reaches the job's own
    processes (its last checkpoint written), then nothing of it is left."""
    w = World(service, tmp_path)
    jid = w.submit(w.acme, "trap 'echo bye > \"$SUANLI_CHECKPOINT_DIR/bye\"; exit 0' TERM; sleep 300 & wait",
                   work_h=0.2)
    wait_for(lambda: w.state(w.acme, jid) == "RUNNING", 60, dump=w.agent_log)
    time.sleep(0.5)                                   # the trap is set
    assert w.acme.delete(f"/v1/jobs/{jid}").status_code == 200
    bye = w.workdir / "east-1" / "checkpoints" / str(jid) / "bye"
    wait_for(bye.exists, 30)
    if ROOT:
        wait_for(lambda: not _uids().get(UID_BASE + w.ids["acme"]), 30)


def test_an_operator_adds_variables_by_name_but_never_suanlis_own(tmp_path, monkeypatch):
    from suanli.agent.executors.base import Executor, JobPolicy
    from suanli.errors import UserError
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib0")
    monkeypatch.setenv("SUANLI_AGENT_TOKEN", "sl_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    ex = Executor("east-1", str(tmp_path), policy=JobPolicy(env=("NCCL_SOCKET_IFNAME", "NOT_SET")))
    a = {"job_id": 7, "fence": 2, "tenant_id": 3}
    env = ex.job_environment(a, tmp_path / "ckpt", tmp_path / "home", [0, 1])
    assert env["NCCL_SOCKET_IFNAME"] == "ib0" and "NOT_SET" not in env
    assert "SUANLI_AGENT_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert (env["SUANLI_JOB_ID"], env["SUANLI_FENCE"], env["CUDA_VISIBLE_DEVICES"]) == ("7", "2", "0,1")
    for bad in ("SUANLI_AGENT_TOKEN", "SUANLI_TOKEN", "A-B", ""):
        with pytest.raises(UserError):
            JobPolicy(env=(bad,))
    with pytest.raises(UserError):
        JobPolicy(uid_base=0)
    r = subprocess.run([sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", "http://127.0.0.1:9",
                        "--job-env", "SUANLI_AGENT_TOKEN", "--workdir", str(tmp_path / "w")],
                       env=dict(os.environ, SUANLI_AGENT_TOKEN="sl_x"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--job-env SUANLI_AGENT_TOKEN" in r.stderr, r.stderr
