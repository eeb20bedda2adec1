"""Two `suanli serve` replicas on one PostgreSQL database (real processes, a real server): jobs
submitted to either are placed and dispatched once, one replica at a time runs the scheduling
loop, and when that one is SIGKILLed the other takes the loop over and the agents move to it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from svc import NETWORK, agent_env, job_body, pg_schema, stop_all, wait_for

from suanli.service import auth
from suanli.service.db import open_db
from suanli.service.models import Job as JobRow
from suanli.service.models import Transition, Usage


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica(db: str, store: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    p = subprocess.Popen([sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db,
                          "--port", str(port), "--policy", "fifo", "--tick-s", "0.2", "--heartbeat-s", "1",
                          "--checkpoint-store", str(store)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        if p.poll() is not None:
            raise AssertionError(f"replica exited {p.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, 60, 0.2)
    return p, url


def _health(url: str) -> dict | None:
    try:
        return httpx.get(f"{url}/v1/health", timeout=5).json()
    except httpx.HTTPError:
        return None


@pytest.fixture
def pg():
    with pg_schema() as url:
        yield url


def test_two_replicas_place_each_job_once_and_hand_the_loop_over_when_the_leader_dies(pg, tmp_path):
    procs: list[subprocess.Popen] = []
    try:
        a, url_a = _replica(pg, tmp_path / "store", tmp_path / "a.log")
        procs.append(a)
        b, url_b = _replica(pg, tmp_path / "store", tmp_path / "b.log")
        procs.append(b)
        sessions = open_db(pg)
        with sessions.begin() as s:
            tokens = {"acme": auth.create_tenant(s, "acme", {}, None), "bolt": auth.create_tenant(s, "bolt", {}, None)}
            east, west = auth.create_site_token(s, "east-1"), auth.create_site_token(s, "west-1")
        for site, tok, urls in (("east-1", east, f"{url_a},{url_b}"), ("west-1", west, f"{url_b},{url_a}")):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "suanli.agent", "--site", site, "--controller", urls, "--jobs-as-agent-user",
                 "--executor", "local", "--workdir", str(tmp_path / "agents"), "--interval-s", "0.2"],
                stdout=(tmp_path / f"{site}.log").open("wb"), stderr=subprocess.STDOUT, env=agent_env(tok)))
        ran = tmp_path / "ran"
        command = f"echo $SUANLI_JOB_ID $SUANLI_FENCE >> {ran}"

        def submit(url: str, tenant: str, k: int) -> int:
            r = httpx.post(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {tokens[tenant]}"}, timeout=30,
                           json=job_body(name=f"{tenant}-{k}", command=command, gpus=1 + k % 2,
                                         origin="beijing" if k % 2 else "hami"))
            assert r.status_code == 201, r.text
            return r.json()["id"]

        def all_done(ids: list[int]):
            with sessions() as s:
                states = dict(s.execute(select(JobRow.id, JobRow.state).where(JobRow.id.in_(ids))).all())
            return all(states[i] == "SUCCEEDED" for i in ids) and states

        ids = [submit(url_a if k % 2 else url_b, "acme" if k % 3 else "bolt", k) for k in range(20)]
        wait_for(lambda: all_done(ids), 120, 0.5)
        leaders = [u for u in (url_a, url_b) if _health(u)["leader"]]
        assert len(leaders) == 1, leaders                # one loop at a time

        leader, survivor = (a, url_b) if leaders[0] == url_a else (b, url_a)
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        started = time.monotonic()
        more = [submit(survivor, "acme", k) for k in range(20, 30)]
        wait_for(lambda: all_done(more), 120, 0.5)
        takeover_s = time.monotonic() - started
        assert _health(survivor)["leader"]

        every = ids + more
        lines = ran.read_text().split("\n")
        runs = [ln.split()[0] for ln in lines if ln.strip()]
        assert sorted(map(int, runs)) == sorted(every)    # every job ran, and ran once
        with sessions() as s:
            per_job = dict(s.execute(select(Transition.job_id, func.count()).where(
                Transition.to_state == "TRANSFERRING").group_by(Transition.job_id)).all())
            assert per_job == {i: 1 for i in every}       # dispatched once
            assert sorted(s.scalars(select(Usage.job_id))) == sorted(every)   # metered once
            placed = dict(s.execute(select(Transition.job_id, func.count()).where(
                Transition.to_state == "PLACED").group_by(Transition.job_id)).all())
            assert placed == {i: 1 for i in every}        # placed once: no replica placed it again
        print(f"replicas: 30 jobs once each; the survivor finished 10 new jobs {takeover_s:.1f} s after the "
              f"leader's SIGKILL")
    finally:
        stop_all(procs)
