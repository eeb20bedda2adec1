"""Demand response, timed: from the over-cap reading's arrival to the stop reaching the agent and
to the metered import under the cap (docs/ENERGY.md "Demand response").

    PYTHONPATH=src .venv/bin/python bench/demand_response.py                   # SQLite, 5 events
    PYTHONPATH=src .venv/bin/python bench/demand_response.py --heartbeat-s 1 --meter-interval-s 1 --events 5
    SUANLI_TEST_PG_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB \\
        PYTHONPATH=src .venv/bin/python bench/demand_response.py --db postgresql

A real `suanli serve` (policy fifo, `--tick-s`) and a real `suanli agent` for west-1 of the test
network (`--interval-s` = the heartbeat interval, local executor) running real processes. The
site's meter is this script: every `--meter-interval-s` it posts one reading to
`POST /v1/agent/west-1/meter` whose grid import is a base load (2 kW) plus the power of the job
processes alive at that instant (GPUs x 0.4 kW x PUE 1.2; each job holds an flock on a file named
for its job and dispatch, and the meter checks the lock is held), so the import falls when, and
only when, the agent has really killed a run.

Each event: three jobs run on west-1 (4 GPUs with checkpoints, 1.92 kW; 2 GPUs with checkpoints,
0.96 kW; 2 GPUs without, 0.96 kW): 5.84 kW with the base load. A utility signal caps the site at
5.0 kW (`POST /v1/sites/west-1/grid-signals`). Timed from the moment the service holds both the
cap and a fresh reading over it (the signal's 201; or the 202 of the first reading over, if the one
before the signal was not): `stop_s`, until the stopped run's process is gone (the controller's
tick, the agent's next heartbeat, the kill; a watcher polls every 10 ms); `under_s`, until the 202 of the first reading
at or under the cap; `closed_s`, until `GET /v1/sites/west-1/demand-response` shows the event
closed. Then the signal is ended (the same id, ending now), the stopped job starts again, and the
next event begins. Prints one JSON object per event and a summary.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from loadtest import _port, _wait_up, database  # bench/: the same server helpers as the load test

ROOT = Path(__file__).resolve().parent.parent
NETWORK = str(ROOT / "tests" / "service" / "data" / "network.yaml")
BASE_KW = 2.0
CAP_KW = 5.0
GPU_KW = 0.4 * 1.2          # west-1: an A800's board power x PUE


def held(path: Path) -> bool:
    """Whether a job process holds its lock file: the job takes an flock on it and execs into its
    work keeping the descriptor, so the lock lives exactly as long as the process (a pid would not
    do: the agent runs jobs in PID namespaces of their own)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)                             # (closing drops a lock we took)
    return False


class Site:
    """The site's physics: which job processes live (lock files), and the meter posting the import."""

    def __init__(self, url: str, token: str, pids: Path, interval_s: float):
        self.client = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        self.pids, self.interval_s = pids, interval_s
        self.posts: list[tuple[float, float]] = []       # (monotonic time of the 202, grid kW)
        self.deaths: dict[str, float] = {}               # "<job>-<fence>" -> monotonic time its process died
        self.seen: set[str] = set()                      # ... seen alive (a lock file exists before its lock)
        self.stop = threading.Event()

    def live(self) -> dict[str, int]:
        """{"<job>-<fence>": GPUs} of the job processes alive now (lock files job-ID-FENCE-GPUS.lock)."""
        out = {}
        for f in self.pids.glob("job-*.lock"):
            _, job, fence, gpus = f.stem.split("-")
            key = f"{job}-{fence}"
            if held(f):
                out[key] = int(gpus)
                self.seen.add(key)
            elif key in self.seen and key not in self.deaths:
                self.deaths[key] = time.monotonic()
        return out

    def watch(self) -> None:
        while not self.stop.is_set():
            self.live()
            time.sleep(0.01)

    def meter(self) -> None:
        while not self.stop.is_set():
            grid = BASE_KW + GPU_KW * sum(self.live().values())
            body = {"readings": [{"at": datetime.now(UTC).isoformat(), "it_kw": grid / 1.2, "facility_kw": grid,
                                  "renewable_kw": 0.0, "grid_kw": grid}]}
            try:
                r = self.client.post("/v1/agent/west-1/meter", json=body)
            except httpx.HTTPError as e:
                r = None
                print(f"meter: {type(e).__name__}: {e}", file=sys.stderr)
            if r is not None and r.status_code == 202:
                self.posts.append((time.monotonic(), grid))
            elif r is not None:
                print(f"meter: {r.status_code} {r.text[:300]}", file=sys.stderr)
            self.stop.wait(self.interval_s)


def wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def run(kind: str, events: int, tick_s: float, heartbeat_s: float, meter_s: float) -> list[dict]:
    from suanli.service import auth
    from suanli.service.db import open_db
    from suanli.service.models import Meta
    out = []
    with tempfile.TemporaryDirectory(prefix="dr-bench-") as tmp, database(kind, Path(tmp)) as db_url:
        tmp_p = Path(tmp)
        os.chmod(tmp, 0o755)
        pids = tmp_p / "pids"
        pids.mkdir()
        pids.chmod(0o1777)                  # a root agent runs jobs under the tenant's uid
        sessions = open_db(db_url)
        with sessions.begin() as s:
            s.merge(Meta(key="epoch", value=(datetime.now(UTC) - timedelta(hours=1)).isoformat()))
            admin = auth.create_admin_token(s)
            tenant = auth.create_tenant(s, "acme", {}, None)
            site = auth.create_site_token(s, "west-1")
        sessions.kw["bind"].dispose()
        port = _port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_p / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db_url,
             "--port", str(port), "--policy", "fifo", "--tick-s", str(tick_s), "--heartbeat-s", str(heartbeat_s),
             "--log-level", "warning", "--rate-limit", "off", "--checkpoint-store", str(tmp_p / "store")],
            stdout=log.open("wb"), stderr=subprocess.STDOUT)
        agent = None
        site_ = Site(url, site, pids, meter_s)
        threads = []
        try:
            _wait_up(server, url, log)
            work = tmp_p / "work"
            work.mkdir()
            work.chmod(0o755)
            agent = subprocess.Popen(
                [sys.executable, "-m", "suanli.agent", "--site", "west-1", "--controller", url, "--executor", "local",
                 "--workdir", str(work), "--interval-s", str(heartbeat_s)],
                stdout=(tmp_p / "agent.log").open("wb"), stderr=subprocess.STDOUT,
                env=dict(os.environ, SUANLI_AGENT_TOKEN=site))
            ops = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {admin}"})
            ten = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {tenant}"})
            sig = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {site}"})
            for t in (threading.Thread(target=site_.watch, daemon=True), threading.Thread(target=site_.meter,
                                                                                          daemon=True)):
                t.start()
                threads.append(t)
            cmd = ("exec 9>" + str(pids) + "/job-$SUANLI_JOB_ID-$SUANLI_FENCE-{gpus}.lock; flock 9; "
                   "exec sleep 3600")
            jobs = {}
            for name, gpus, ckpt in (("big", 4, True), ("small", 2, True), ("plain", 2, False)):
                body = {"name": name, "command": cmd.format(gpus=gpus), "gpus": gpus, "work_h": 2.0,
                        "gpu_types": ["a800"], "origin": "hami"}
                if ckpt:
                    body["checkpoint_h"] = 1 / 60
                r = ten.post("/v1/jobs", json=body)
                r.raise_for_status()
                jobs[name] = r.json()["id"]
            full = BASE_KW + 8 * GPU_KW
            for k in range(events):
                wait(lambda: len(site_.live()) == 3 and site_.posts and site_.posts[-1][1] >= full - 1e-9, 120,
                     "three runs on west-1, metered")
                n_posts = len(site_.posts)
                signal_id = f"bench-{k}"
                r = sig.post("/v1/sites/west-1/grid-signals", json={
                    "signal_id": signal_id, "sender": "bench", "max_grid_kw": CAP_KW,
                    "end": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
                r.raise_for_status()
                signalled = time.monotonic()
                # over from when the service holds both the cap and a fresh reading over it: at once if
                # the last reading before the signal was over, else at the first over reading's 202
                over_at = signalled if site_.posts[n_posts - 1][1] > CAP_KW else wait(
                    lambda n=n_posts: next((t for t, g in site_.posts[n:] if g > CAP_KW), None), 60,
                    "a reading over the cap")
                under_at = wait(lambda n=n_posts, o=over_at: next((t for t, g in site_.posts[n:]
                                                                    if t > o and g <= CAP_KW), None),
                                60, "a reading under the cap")
                ev = wait(lambda: (e := ops.get("/v1/sites/west-1/demand-response").json()) and e[0]["end"] and e[0],
                          60, "the event closed")
                closed_at = time.monotonic()
                [stop] = ev["stopped"]
                dead = site_.deaths.get(f"{stop['job_id']}-{stop['fence']}")
                row = {"event": ev["id"], "db": kind, "tick_s": tick_s, "heartbeat_s": heartbeat_s,
                       "meter_interval_s": meter_s, "stopped_job": stop["job_id"], "stopped_kw": round(stop["kw"], 3),
                       "stop_s": None if dead is None else round(dead - over_at, 3),
                       "under_s": round(under_at - over_at, 3), "closed_s": round(closed_at - over_at, 3),
                       "peak_over_kw": round(ev["peak_over_kw"], 3), "kwh_above": round(ev["kwh_above"], 6),
                       "event_s": ev["duration_s"]}
                print(json.dumps(row), flush=True)
                out.append(row)
                r = sig.post("/v1/sites/west-1/grid-signals", json={
                    "signal_id": signal_id, "sender": "bench", "max_grid_kw": CAP_KW,
                    "end": datetime.now(UTC).isoformat()})
                r.raise_for_status()
        except Exception:
            print("events:", json.dumps(ops.get("/v1/sites/west-1/demand-response").json())[:2000], file=sys.stderr)
            print("live:", site_.live(), "posts:", site_.posts[-5:], file=sys.stderr)
            for f in ("agent.log", "serve.log"):
                print(f"--- {f}", (tmp_p / f).read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            site_.stop.set()
            for t in threads:
                t.join(timeout=5)
            for p in (agent, server):
                if p is not None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--tick-s", type=float, default=1.0, help="the controller's tick (suanli serve --tick-s)")
    ap.add_argument("--heartbeat-s", type=float, default=1.0, help="the agent's heartbeat interval (--interval-s)")
    ap.add_argument("--meter-interval-s", type=float, default=1.0, help="seconds between the meter's readings")
    a = ap.parse_args(argv)
    rows = run(a.db, a.events, a.tick_s, a.heartbeat_s, a.meter_interval_s)
    for key in ("stop_s", "under_s", "closed_s"):
        vals = [r[key] for r in rows if r[key] is not None]
        print(f"{key}: median {statistics.median(vals):.3f} s, max {max(vals):.3f} s over {len(vals)} events "
              f"(tick {a.tick_s:g} s, heartbeat {a.heartbeat_s:g} s, meter every {a.meter_interval_s:g} s, {a.db})")
    within = sum(1 for r in rows if r["stop_s"] is not None and r["stop_s"] <= a.heartbeat_s + a.tick_s)
    print(f"stopped within one tick + one heartbeat: {within} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
