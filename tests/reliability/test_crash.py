"""Crash consistency (reliability issue, part 1), with real processes: a `suanli serve` process
SIGKILLed at random moments during a burst of job submissions and placements and started again
on the same database; an agent SIGKILLed at random moments and started again on the same
workdir. Afterwards every acknowledged job exists exactly once, every job ran once, none is
dispatched to two runs at a time, and the usage ledger holds one row per finished run, as the
agents reported them, which the invoices sum.

`SUANLI_CRASH_JOBS` sets the burst's size (default 1,000, as the issue asks); `SUANLI_CRASH_SEEDS=N`
runs each test with N seeds (default 1: CI stays within its time), each seed its own kill times
and its own jobs: `SUANLI_CRASH_SEEDS=20 SUANLI_CRASH_JOBS=300 pytest -s tests/reliability/test_crash.py`.

The server runs with the default heartbeat timeout (30 s): a site taken for dead while its
agent lives (heartbeats arrive seconds apart on a loaded machine) runs its jobs twice."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import httpx  # noqa: E402
import pytest  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from svc import NETWORK, agent_env, job_body, no_job_left, pg_schema, reap_jobs, stop_all, wait_for  # noqa: E402

from suanli.service import auth, metering  # noqa: E402
from suanli.service.db import open_db  # noqa: E402
from suanli.service.models import Job as JobRow  # noqa: E402
from suanli.service.models import Tenant, Transition, Usage  # noqa: E402

JOBS = int(os.environ.get("SUANLI_CRASH_JOBS", "1000"))
SEEDS = range(int(os.environ.get("SUANLI_CRASH_SEEDS", "1")))


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'suanli.db'}"
        return
    with pg_schema() as url:
        yield url


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A server process (restartable on its port) and agents (restartable on their workdirs)."""

    def __init__(self, db: str, tmp: Path):
        self.db, self.tmp = db, tmp
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.agents: dict[str, subprocess.Popen] = {}
        self.starts = 0
        sessions = open_db(db)
        with sessions.begin() as s:
            self.tenants = {n: auth.create_tenant(s, n, {}, None) for n in ("acme", "bolt")}
            self.site_tokens = {site: auth.create_site_token(s, site) for site in ("east-1", "west-1")}
        self.sessions = sessions

    def start_server(self) -> None:
        self.starts += 1
        log = (self.tmp / f"serve-{self.starts}.log").open("wb")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", self.db,
             "--port", str(self.port), "--policy", "fifo", "--tick-s", "0.2", "--heartbeat-s", "1",
             "--rate-limit", "off", "--checkpoint-store", str(self.tmp / "store")],
            stdout=log, stderr=subprocess.STDOUT)

        def up():
            try:
                return httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 300, 0.1)      # a restart takes minutes when the 2 cores are very busy

    def kill_server(self) -> None:
        self.server.send_signal(signal.SIGKILL)
        self.server.wait()

    def start_agent(self, site: str) -> None:
        self.agents[site] = subprocess.Popen(
            [sys.executable, "-m", "suanli.agent", "--site", site, "--controller", self.url,
             "--executor", "local", "--workdir", str(self.tmp / "agents"), "--jobs-as-agent-user",
             "--interval-s", "0.2"],
            stdout=(self.tmp / f"{site}.log").open("ab"), stderr=subprocess.STDOUT,
            env=agent_env(self.site_tokens[site]))

    def kill_agent(self, site: str) -> None:
        self.agents[site].send_signal(signal.SIGKILL)
        self.agents[site].wait()

    def stop(self) -> None:
        stop_all([self.server, *self.agents.values()])
        reap_jobs(self.tmp)          # the jobs a SIGKILLed agent left, when the test failed before they ended

    def wait_agents_up(self) -> None:
        """Until every agent has made contact (on a busy machine an agent takes seconds to start,
        and one that cannot reach the controller for 60 s at its start gives up)."""
        headers = {"Authorization": f"Bearer {next(iter(self.tenants.values()))}"}

        def up():
            try:
                return all(s["up"] for s in httpx.get(f"{self.url}/v1/sites", headers=headers, timeout=10).json())
            except httpx.HTTPError:
                return False
        wait_for(up, 300, 0.2)


def submit_until_acknowledged(url: str, token: str, key: str, body: dict, deadline: float) -> int:
    """POST with an Idempotency-Key, retried (same key) through refused connections, 503s and
    timeouts until the server acknowledges: the id it gives is the job's."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=10)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        if r.status_code in (200, 201):
            return r.json()["id"]
        assert r.status_code == 503, (r.status_code, r.text)        # never a 5xx other than "retry"
        time.sleep(0.1)
    raise AssertionError(f"{key}: never acknowledged")


def check_consistency(cl: Cluster, acked: dict[str, int], ran_file: Path) -> dict[str, int]:
    with cl.sessions() as s:
        rows = s.execute(select(JobRow.id, JobRow.idempotency_key, JobRow.state)).all()
        by_key = Counter(k for _, k, _ in rows)
        assert all(n == 1 for n in by_key.values())                   # no key made two jobs
        ids = {k: i for i, k, _ in rows}
        assert {k: ids.get(k) for k in acked} == acked                # every acknowledged job, as acknowledged
        assert len(rows) == len(acked)                                # and no other
        assert {st for _, _, st in rows} == {"SUCCEEDED"}
        ran = Counter(int(ln.split()[0]) for ln in ran_file.read_text().splitlines() if ln.strip())
        twice = [j for j, n in ran.items() if n > 1]
        assert not twice, (f"{len(twice)} jobs ran more than once", [(j, ran[j], [
            (t.to_state, t.reason) for t in s.scalars(select(Transition).where(Transition.job_id == j)
                                                      .order_by(Transition.id))]) for j in twice[:3]])  # once each
        assert set(ran) == set(acked.values())
        usage = s.execute(select(Usage.job_id, func.count()).group_by(Usage.job_id)).all()
        assert dict(usage) == {i: 1 for i in acked.values()}          # one ledger row per finished run
        # billed = reported: the invoices sum the ledger rows, which carry the agents' GPU-seconds
        month = s.scalar(select(Usage.month).limit(1))
        total = sum(metering.invoice(s, t, month).total_cny for t in s.scalars(select(Tenant)))
        assert total == pytest.approx(s.scalar(select(func.sum(Usage.total_cny))), rel=1e-9)
        dispatches = Counter(j for (j,) in s.execute(select(Transition.job_id).where(
            Transition.to_state == "TRANSFERRING")))
        return {"jobs": len(acked), "redispatched": sum(1 for n in dispatches.values() if n > 1)}


@pytest.mark.parametrize("seed", [7 + k for k in SEEDS])
def test_controller_sigkilled_during_a_burst_loses_no_acknowledged_job(crash_db, tmp_path, seed):
    cl = Cluster(crash_db, tmp_path)
    ran = tmp_path / "ran"
    rng = random.Random(seed)
    try:
        cl.start_server()
        cl.start_agent("east-1")
        cl.start_agent("west-1")
        cl.wait_agents_up()
        acked: dict[str, int] = {}
        done = threading.Event()
        kills = []

        def killer():
            while not done.is_set():
                time.sleep(rng.uniform(2.0, 6.0))
                if done.is_set():
                    return
                cl.kill_server()
                kills.append(time.monotonic())
                time.sleep(rng.uniform(0.0, 0.5))
                cl.start_server()
        deadline = time.monotonic() + 600
        names = list(cl.tenants)

        def one(i: int) -> tuple[str, int]:
            key = f"burst-{i}"
            tenant = names[i % 2]
            body = job_body(name=key, command=f"echo $SUANLI_JOB_ID >> {ran}", gpus=1 + i % 2,
                            origin="beijing" if i % 3 else "hami")
            return key, submit_until_acknowledged(cl.url, cl.tenants[tenant], key, body, deadline)
        t = threading.Thread(target=killer, daemon=True)
        started = time.monotonic()
        t.start()
        with ThreadPoolExecutor(8) as pool:
            for key, jid in pool.map(one, range(JOBS)):
                acked[key] = jid
        burst_s = time.monotonic() - started
        wait_for(lambda: len(kills) >= 3, 600, 0.2)         # at least three crashes, some mid-burst
        done.set()
        t.join(timeout=30)

        def finished():
            with cl.sessions() as s:
                return s.scalar(select(func.count()).where(JobRow.state.not_in(("SUCCEEDED", "FAILED",
                                                                                "CANCELLED")))) == 0
        wait_for(finished, 900, 0.5)
        figures = check_consistency(cl, acked, ran)
        print(f"crash ({crash_db.split(':')[0]}, seed {seed}): {figures['jobs']} jobs acknowledged in {burst_s:.1f} s "
              f"through {len(kills)} SIGKILLs of the server, all finished {time.monotonic() - started:.1f} s after "
              f"the start; each exists once, ran once, billed once; {figures['redispatched']} re-dispatched after a "
              f"lost claim")
    finally:
        cl.stop()


@pytest.mark.parametrize("seed", [11 + k for k in SEEDS])
def test_agent_sigkilled_mid_report_loses_no_result(crash_db, tmp_path, seed):
    """Agents killed at random moments and started again on their workdirs: the reports they had
    journaled (outbox) are delivered, so every run that ended is billed once; a run the kill cut
    short is re-placed and runs again (the local executor cannot follow its predecessor's
    processes), but never alongside itself."""
    cl = Cluster(crash_db, tmp_path)
    ran = tmp_path / "ran"
    rng = random.Random(seed)
    n = max(JOBS // 5, 50)
    try:
        cl.start_server()
        cl.start_agent("east-1")
        cl.start_agent("west-1")
        cl.wait_agents_up()
        c = httpx.Client(base_url=cl.url, headers={"Authorization": f"Bearer {cl.tenants['acme']}"}, timeout=30)
        acked = {}
        for i in range(n):
            key = f"agent-{i}"
            r = c.post("/v1/jobs", headers={"Idempotency-Key": key},
                       json=job_body(name=key, command=f"sleep 0.{rng.randint(1, 5)}; echo $SUANLI_JOB_ID >> {ran}"))
            acked[key] = r.json()["id"]
        for _ in range(4):
            time.sleep(rng.uniform(0.5, 2.0))
            site = rng.choice(["east-1", "west-1"])
            cl.kill_agent(site)
            cl.start_agent(site)

        def finished():
            with cl.sessions() as s:
                return s.scalar(select(func.count()).where(JobRow.state != "SUCCEEDED")) == 0
        wait_for(finished, 300, 0.5)
        with cl.sessions() as s:
            usage = dict(s.execute(select(Usage.job_id, func.count()).group_by(Usage.job_id)).all())
            assert usage == {i: 1 for i in acked.values()}             # one billed run per job
            succeeded = Counter(j for (j,) in s.execute(select(Transition.job_id).where(
                Transition.to_state == "SUCCEEDED")))
            assert set(succeeded.values()) == {1}
            runs = s.execute(select(Transition.job_id, Transition.to_state, Transition.id).where(
                Transition.to_state.in_(("TRANSFERRING", "PREEMPTED", "SUCCEEDED"))).order_by(Transition.id)).all()
        for jid in acked.values():          # each dispatch ended (preempted or succeeded) before the next began
            seq = [st for j, st, _ in runs if j == jid]     # (a claim lost before it ran is a dispatch too)
            assert seq[-1] == "SUCCEEDED" and all((a == "TRANSFERRING") != (b == "TRANSFERRING")
                                                  for a, b in zip(seq, seq[1:], strict=False)), seq
        lines = Counter(int(ln) for ln in ran.read_text().split())
        assert set(lines) == set(acked.values())
        # every job ended: a run a killed agent left behind ended too (adopted, or on its own)
        no_job_left(tmp_path)
        print(f"agent crash ({crash_db.split(':')[0]}, seed {seed}): {n} jobs, 4 agent SIGKILLs; billed once each; "
              f"{sum(v - 1 for v in lines.values())} runs cut short and run again")
    finally:
        cl.stop()
