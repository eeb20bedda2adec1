"""Fixtures and helpers for the service tests (imported by name: not a conftest.py, whose module
name `conftest` would shadow tests/conftest.py's helpers): a real server (uvicorn on loopback, in a thread) over a real
database engine, SQLite always and PostgreSQL when `SUANLI_TEST_PG_URL` names a server (.ci/run
starts one); real agent subprocesses.

Each PostgreSQL test gets its own schema (`search_path`), so tests never see each other's rows.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from suanli.service import auth
from suanli.service.server import ThreadServer, build

NETWORK = str(Path(__file__).parent / "data" / "network.yaml")
PG_URL = os.environ.get("SUANLI_TEST_PG_URL")
PG_SKIP = "PostgreSQL: set SUANLI_TEST_PG_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB (.ci/run starts a server)"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A URL of the test PostgreSQL server whose tables live in a fresh schema, dropped after."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    import psycopg
    schema = "t_" + uuid.uuid4().hex[:12]
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'suanli.db'}"
        return
    with pg_schema() as url:
        yield url


def agent_env(token: str) -> dict[str, str]:
    """The environment of an agent process: ours, with its site token (never on its command line)."""
    return dict(os.environ, SUANLI_AGENT_TOKEN=token)


def writable(tmp_path: Path) -> Path:
    """A directory every job may write its findings to (`<tmp_path>/out`, sticky and world-writable):
    jobs run under their tenant's uid when the agent is root, and cannot write the test's own."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    out.chmod(0o1777)
    return searchable(out)


def searchable(path: Path) -> Path:
    """Make the temporary directories on the way to an agent's workdir searchable (o+x, not
    listable) by other users: an agent run as root runs its jobs under unprivileged uids, which
    must reach their directories (pytest makes its temporary directories 0700). Only directories
    under the system's temporary directory are touched. Returns `path`."""
    if os.geteuid() != 0:
        return path
    tmp = Path(tempfile.gettempdir()).resolve()
    p = Path(path).resolve()
    for d in [*reversed(p.parents), p]:
        if d != tmp and tmp in d.parents and d.is_dir() and d.stat().st_uid == 0:
            d.chmod(d.stat().st_mode | stat.S_IXOTH)
    return path


@dataclass
class Service:
    url: str
    app: object
    db_url: str
    agents: list[subprocess.Popen] = field(default_factory=list)

    @property
    def sessions(self):
        return self.app.state.controller.sessions

    def tenant(self, name: str, quota: dict[str, int] | None = None, budget: float | None = None) -> str:
        with self.sessions.begin() as s:
            return auth.create_tenant(s, name, quota or {}, budget)

    def site_token(self, site: str) -> str:
        with self.sessions.begin() as s:
            return auth.create_site_token(s, site)

    def admin_token(self) -> str:
        with self.sessions.begin() as s:
            return auth.create_admin_token(s)

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def start_agent(self, site: str, workdir: Path, token: str | None = None) -> subprocess.Popen:
        token = token or self.site_token(site)
        workdir.mkdir(parents=True, exist_ok=True)
        searchable(workdir)
        with open(workdir / f"agent-{site}.log", "ab") as log:    # its log, kept (a pipe nobody reads fills up)
            p = subprocess.Popen([sys.executable, "-m", "suanli.agent", "--site", site, "--controller", self.url,
                                  "--executor", "local", "--workdir", str(workdir),
                                  "--interval-s", "0.2"], stdout=log, stderr=subprocess.STDOUT, env=agent_env(token))
        self.agents.append(p)
        return p


@pytest.fixture
def service(db_url, tmp_path, request) -> Iterator[Service]:
    """The service with the default heartbeat timeout (30 s): on a loaded machine heartbeats come
    seconds apart, and a shorter one takes live sites for dead. A test of failover through the
    timeout sets a short one: `@pytest.mark.heartbeat_timeout(3.0)`."""
    mark = request.node.get_closest_marker("heartbeat_timeout")
    app = build(NETWORK, db_url, policy="fifo", tick_s=0.2, heartbeat_timeout_s=mark.args[0] if mark else None,
                checkpoint_store=tmp_path / "checkpoint-store")
    with ThreadServer(app) as url:
        svc = Service(url, app, db_url)
        try:
            yield svc
        finally:
            stop_all(svc.agents)
            reap_jobs(tmp_path)         # what a SIGKILLed agent left running (its jobs outlive it)


def stop_all(procs, grace_s: float = 15.0) -> None:
    """SIGTERM every process still running, then wait for each; SIGKILL one that outlasts `grace_s`."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def job_processes(root: Path) -> dict[int, int]:
    """The live processes of jobs that agents started with a workdir (or checkpoint directory)
    under `root`, a test's tmp_path: {pid: process group}. A job's processes carry its
    environment (executors/base.py), whose SUANLI_CHECKPOINT_DIR names its directory; they run in
    sessions of their own under the tenant's uid, and outlive an agent that is SIGKILLed. Reading
    another uid's /proc/<pid>/environ takes root, as running jobs under tenants' uids does; a
    zombie (its environment gone) is not running."""
    under = str(Path(root).resolve()) + "/"
    found: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            environ = (d / "environ").read_bytes()
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()     # after "(comm)": state ppid pgrp
        except (OSError, IndexError):
            continue                   # ended meanwhile, or not ours to read
        if fields[0] == "Z":
            continue
        for var in environ.split(b"\0"):
            if var.startswith(b"SUANLI_CHECKPOINT_DIR=") and var.split(b"=", 1)[1].decode(errors="replace"
                                                                                    ).startswith(under):
                found[int(d.name)] = int(fields[2])
                break
    return found


def reap_jobs(root: Path, timeout: float = 10.0) -> dict[int, int]:
    """SIGKILL the process groups (and the processes) of the jobs still running under `root`
    (job_processes) and wait until none is left; returns those found. A test that SIGKILLs an
    agent calls it for what that agent left, and the `service` fixture when it tears down."""
    found = job_processes(root)
    for pid, pgid in found.items():
        for kill, target in ((os.killpg, pgid), (os.kill, pid)):
            if kill is os.killpg and pgid == os.getpgrp():
                continue                # a job is in a session of its own: never the test's group
            try:
                kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    wait_for(lambda: not job_processes(root), timeout, dump=lambda: job_processes(root))
    return found


def no_job_left(root: Path) -> None:
    """Wait until no process of a job run under `root` is left (job_processes): a run that ended,
    or that its agent or the test stopped, leaves nothing behind."""
    wait_for(lambda: not job_processes(root), 15, dump=lambda: job_processes(root))


def run_pid(job: dict) -> int:
    """The pid (and process group) of a job's first run, from its RUNNING transition's reason
    ("pid N, GPUs [...]", the local executor's)."""
    running = next(t for t in job["transitions"] if t["to_state"] == "RUNNING")["reason"]
    return int(running.split()[1].rstrip(","))


def job_body(**over) -> dict:
    body = {"name": "train", "command": "true", "gpus": 1, "work_h": 0.0005, "origin": "beijing"}
    body.update(over)
    return body


def wait_for(fn, timeout: float = 60.0, every: float = 0.1, dump=None):
    """Poll `fn` until it returns something truthy; fail with its last value after `timeout` s
    (and `dump()`, what explains it, when given)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s; last value: {last!r}"
                         + (f"; {dump()!r}" if dump is not None else ""))


def pieces_network(tmp: Path) -> str:
    """east-1 alone with a time-of-use tariff: hour 0 cheap (0.2 CNY/kWh), hour 1 dear (5),
    hour 2 in between (1): a checkpointing job submitted late in hour 0 that may wait is
    planned as the rest of hour 0 and then hour 2 (tests of plans in pieces)."""
    net = yaml.safe_load(Path(NETWORK).read_text())
    net["sites"] = net["sites"][:1]
    net["sites"][0]["grid"] = {"carbon_kg_per_kwh": 0.6, "cny_per_kwh": [0.2, 5.0, 1.0] + [5.0] * 21}
    path = tmp / "net.yaml"
    path.write_text(yaml.safe_dump(net))
    return str(path)


def set_clock(app, hours: float) -> None:
    """The controller's clock reads `hours` now (its epoch moved back), between two of its ticks:
    hours pass in a moment."""
    c = app.state.controller
    with c.lock:
        c.epoch = datetime.now(UTC) - timedelta(hours=hours)


def states(job: dict) -> list[str]:
    """The states a job went through, in order."""
    return [t["to_state"] for t in job["transitions"]]
