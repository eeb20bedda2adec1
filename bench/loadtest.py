"""Load test of a real `suanli serve` process: open-loop arrivals at fixed request rates.

    .venv/bin/python bench/loadtest.py --db sqlite --rates 50,100,200 --duration-s 20 --tenants 20
    .venv/bin/python bench/loadtest.py --db postgresql --rates 50,100,200,300,400   # SUANLI_TEST_PG_URL

For each rate: a fresh database (a SQLite file, or a fresh PostgreSQL schema), a `suanli serve`
subprocess on loopback, two local agents (east-1, west-1) so jobs are really placed and run, and
`--tenants` tenants. Requests arrive open-loop (request i is due at t0 + i/rate, whatever happened
to the earlier ones), so a slow server shows as latency, not as a lower offered rate; latency is
measured from the moment a request was due, not from when it was sent (no coordinated omission).

The mix: POST /v1/jobs (command "true", a small work_h, an Idempotency-Key each), GET /v1/jobs/{id}
(one of the tenant's acknowledged jobs) and GET /v1/jobs (the tenant's list, default page).
After the run, the database is read: every submit acknowledged with 201 must be there exactly once
(its id, its tenant, its key); one that is not is "lost".

Writes bench/loadtest-results.json (or --out) and prints a markdown table. The load generator
runs on the same machine as the server and the agents: on a small machine they share the cores,
and the figures say so (`host`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
NETWORK = str(ROOT / "tests" / "service" / "data" / "network.yaml")
MIX = {"submit": 0.4, "get": 0.4, "list": 0.2}
KINDS = ("submit", "get", "list")


# ----------------------------------------------------------------------------- the stack under test
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database(kind: str, workdir: Path):
    """A fresh database URL: a SQLite file in `workdir`, or a fresh schema on $SUANLI_TEST_PG_URL."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'suanli.db'}"
        return
    pg = os.environ.get("SUANLI_TEST_PG_URL")
    if not pg:
        raise SystemExit("--db postgresql: set SUANLI_TEST_PG_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB")
    import psycopg
    schema = "load_" + uuid.uuid4().hex[:12]
    plain = pg.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg else "?"
    try:
        yield f"{pg}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@dataclass
class Stack:
    url: str
    db_url: str
    server: subprocess.Popen
    agents: list[subprocess.Popen]
    tokens: list[str]                      # one per tenant
    tenant_ids: list[int]
    sessions: object
    log: Path
    procs: list[subprocess.Popen] = field(default_factory=list)


def _wait_up(p: subprocess.Popen, url: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"suanli serve exited {p.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"suanli serve did not answer /v1/health in {timeout} s")


@contextmanager
def stack(db_url: str, workdir: Path, tenants: int, tick_s: float = 1.0, agent_interval_s: float = 0.5):
    """`suanli serve` + two local agents + `tenants` tenants on `db_url`; everything stopped after."""
    from suanli.service import auth
    from suanli.service.db import open_db
    port = _port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "serve.log"
    procs: list[subprocess.Popen] = []
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db_url,
             "--port", str(port), "--policy", "fifo", "--tick-s", str(tick_s), "--heartbeat-s", str(agent_interval_s),
             "--checkpoint-store", str(workdir / "store")],
            stdout=log.open("wb"), stderr=subprocess.STDOUT)
        procs.append(server)
        _wait_up(server, url, log)
        sessions = open_db(db_url)
        with sessions.begin() as s:
            tokens = [auth.create_tenant(s, f"load{i:02d}", {}, None) for i in range(tenants)]
            sites = {site: auth.create_site_token(s, site) for site in ("east-1", "west-1")}
        from sqlalchemy import select

        from suanli.service.models import Tenant
        with sessions() as s:
            ids = dict(s.execute(select(Tenant.name, Tenant.id)).all())
        tenant_ids = [ids[f"load{i:02d}"] for i in range(tenants)]
        agents = []
        workdir.chmod(0o711)        # searchable: an agent run as root runs its jobs under unprivileged uids
        for site, tok in sites.items():
            a = subprocess.Popen(
                [sys.executable, "-m", "suanli.agent", "--site", site, "--controller", url,
                 "--executor", "local", "--workdir", str(workdir / "agents"), "--interval-s", str(agent_interval_s)],
                stdout=(workdir / f"{site}.log").open("wb"), stderr=subprocess.STDOUT,
                env=dict(os.environ, SUANLI_AGENT_TOKEN=tok))       # never on the command line
            procs.append(a)
            agents.append(a)
        yield Stack(url, db_url, server, agents, tokens, tenant_ids, sessions, log, procs)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _stop(p: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM a server, and SIGKILL it if it has not ended within `grace_s`."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0.0 where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# ----------------------------------------------------------------------------- the load
@dataclass
class Rec:
    kind: str
    due: float           # when the request was due (monotonic)
    sent: float          # when it was handed to the client
    done: float
    status: int | str    # HTTP status, or the exception's name
    tenant: int
    key: str | None = None
    job_id: int | None = None


def job_body(k: int) -> dict:
    return {"name": f"load-{k}", "command": "true", "gpus": 1, "work_h": 0.0002,
            "origin": "beijing" if k % 2 else "hami"}


async def drive(url: str, tokens: list[str], rate: float, duration_s: float, seed: int = 0,
                grace_s: float = 30.0, timeout_s: float = 30.0,
                per_tenant_conns: int = 32) -> tuple[list[Rec], float, float]:
    """Open-loop load: request i due at t0 + i/rate for `duration_s`. Returns the records, t0 and
    the latest due-lag (how far behind its schedule the generator itself was at worst)."""
    rng = random.Random(seed)
    acked: dict[int, list[int]] = defaultdict(list)
    recs: list[Rec] = []
    # one client per tenant (each with its own connection pool: httpcore's pool does work per
    # request that grows with the pool's size, which made one 1000-connection pool the bottleneck)
    limits = httpx.Limits(max_connections=per_tenant_conns, max_keepalive_connections=per_tenant_conns)
    n = int(rate * duration_s)
    worst_lag = 0.0
    clients = [httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits,
                                 headers={"Authorization": f"Bearer {t}"}) for t in tokens]
    try:

        async def one(i: int, due: float) -> None:
            tenant = rng.randrange(len(tokens))
            kind = rng.choices(KINDS, weights=[MIX[k] for k in KINDS])[0]
            if kind == "get" and not acked[tenant]:
                kind = "list"
            key = job_id = None
            client = clients[tenant]
            sent = time.monotonic()
            try:
                if kind == "submit":
                    key = uuid.uuid4().hex
                    r = await client.post("/v1/jobs", json=job_body(i),
                                          headers={"Idempotency-Key": key})
                    if r.status_code == 201:
                        job_id = r.json()["id"]
                        acked[tenant].append(job_id)
                elif kind == "get":
                    job_id = rng.choice(acked[tenant])
                    r = await client.get(f"/v1/jobs/{job_id}")
                else:
                    r = await client.get("/v1/jobs")
                status: int | str = r.status_code
            except (httpx.HTTPError, OSError) as e:
                status = type(e).__name__
            recs.append(Rec(kind, due, sent, time.monotonic(), status, tenant, key, job_id))

        tasks = []
        t0 = time.monotonic() + 0.2
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            worst_lag = max(worst_lag, time.monotonic() - due)
            tasks.append(asyncio.create_task(one(i, due)))
        # bounded in time: what has not answered `grace_s` after the last arrival is cut off
        _, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        cut = len(pending)
        if cut:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for c in clients:
            await c.aclose()
    recs.extend(Rec("cut", 0.0, 0.0, 0.0, "cut_off", -1) for _ in range(cut))
    return recs, t0, worst_lag


# ----------------------------------------------------------------------------- checking and figures
def check_db(sessions, recs: list[Rec], tenant_ids: list[int]) -> dict:
    """Every submit acknowledged with 201 is in the database exactly once, with its tenant and key."""
    from sqlalchemy import func, select

    from suanli.service.models import Job
    acked = [r for r in recs if r.kind == "submit" and r.status == 201]
    with sessions() as s:
        rows = {i: (t, k) for i, t, k in s.execute(select(Job.id, Job.tenant_id, Job.idempotency_key))}
        per_key = dict(s.execute(select(Job.idempotency_key, func.count()).group_by(Job.idempotency_key)).all())
        states = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    lost = [r.job_id for r in acked if rows.get(r.job_id) != (tenant_ids[r.tenant], r.key)]
    dup_keys = sum(1 for k, c in per_key.items() if k is not None and c > 1)
    ids = [r.job_id for r in acked]
    return {"acknowledged": len(acked), "lost": len(lost), "lost_ids": lost[:20],
            "acked_twice": len(ids) - len(set(ids)), "keys_stored_twice": dup_keys,
            "jobs_in_db": len(rows), "states": states}


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def summarise(recs: list[Rec], rate: float, duration_s: float, t0: float, lag: float) -> dict:
    done = [r for r in recs if r.kind != "cut"]
    ok = [r for r in done if isinstance(r.status, int) and 200 <= r.status < 300]
    end = max((r.done for r in done), default=t0 + duration_s)
    span = max(duration_s, end - t0)
    in_window = [r for r in ok if r.done <= t0 + duration_s]
    kinds = {}
    for k in KINDS:
        mine = [r for r in done if r.kind == k]
        lat = [(r.done - r.due) * 1000 for r in mine if isinstance(r.status, int) and r.status < 500]
        kinds[k] = {"n": len(mine), "ok": sum(1 for r in mine if isinstance(r.status, int) and 200 <= r.status < 300),
                    "p50_ms": _pct(lat, 0.50), "p99_ms": _pct(lat, 0.99), "max_ms": max(lat, default=None)}
    codes = Counter(str(r.status) for r in recs)
    return {
        "rate": rate, "duration_s": duration_s, "requests": len(recs),
        "offered_rps": round(len(recs) / duration_s, 1),
        "achieved_rps": round(len(ok) / span, 1),
        "achieved_in_window_rps": round(len(in_window) / duration_s, 1),
        "last_answer_after_s": round(end - t0, 2),
        "generator_worst_lag_ms": round(lag * 1000, 1),
        "kinds": {k: {kk: (round(v, 1) if isinstance(v, float) else v) for kk, v in d.items()}
                  for k, d in kinds.items()},
        "status_codes": dict(sorted(codes.items())),
        "errors_4xx": sum(c for s, c in codes.items() if s.isdigit() and 400 <= int(s) < 500),
        "errors_5xx": sum(c for s, c in codes.items() if s.isdigit() and int(s) >= 500),
        "errors_transport": sum(c for s, c in codes.items() if not s.isdigit()),
    }


def run_rate(kind: str, rate: float, duration_s: float, tenants: int, seed: int = 0, drain_s: float = 10.0,
             tick_s: float = 1.0, keep: Path | None = None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"suanli-load-{kind}-"))
    try:
        with database(kind, workdir) as db_url, stack(db_url, workdir, tenants, tick_s=tick_s) as st:
            time.sleep(1.5)                              # the agents register and send a first heartbeat
            cpu0, wall0 = _cpu_s(st.server.pid), time.monotonic()
            self0 = time.process_time()
            recs, t0, lag = asyncio.run(drive(st.url, st.tokens, rate, duration_s, seed))
            wall = time.monotonic() - wall0
            server_cpu = (_cpu_s(st.server.pid) - cpu0) / wall
            gen_cpu = (time.process_time() - self0) / wall
            out = summarise(recs, rate, duration_s, t0, lag)
            # give the placed jobs a moment to run (the figures above do not wait for it)
            acked = {r.job_id for r in recs if r.kind == "submit" and r.status == 201}
            deadline = time.monotonic() + drain_s
            from sqlalchemy import func, select

            from suanli.service.models import Job
            while time.monotonic() < deadline:
                with st.sessions() as s:
                    left = s.scalar(select(func.count()).select_from(Job).where(
                        Job.state.notin_(("SUCCEEDED", "FAILED", "CANCELLED"))))
                if not left:
                    break
                time.sleep(0.5)
            out["db"] = kind
            out["check"] = check_db(st.sessions, recs, st.tenant_ids)
            out["check"]["acked_ids_distinct"] = len(acked)
            out["server_cpu_cores"] = round(server_cpu, 2)
            out["generator_cpu_cores"] = round(gen_cpu, 2)
            out["server_alive"] = st.server.poll() is None
            tail = st.log.read_text(errors="replace")[-3000:] if st.log.exists() else ""
            out["server_log_tail"] = tail if out["errors_5xx"] or "Traceback" in tail else ""
        return out
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _f(v) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def table(results: list[dict]) -> str:
    lines = ["| db | rate | offered rps | achieved rps | submit p50/p99/max ms | get p50/p99/max ms | "
             "list p50/p99/max ms | 4xx | 5xx | transport/cut | acked | lost | dup | server CPU | gen CPU |",
             "|" + "---|" * 15]
    for r in results:
        k = r["kinds"]
        lat = [f"{_f(k[x]['p50_ms'])} / {_f(k[x]['p99_ms'])} / {_f(k[x]['max_ms'])}" for x in KINDS]
        c = r["check"]
        lines.append(f"| {r['db']} | {r['rate']:g} | {r['offered_rps']} | {r['achieved_rps']} | {lat[0]} | {lat[1]} | "
                     f"{lat[2]} | {r['errors_4xx']} | {r['errors_5xx']} | {r['errors_transport']} | "
                     f"{c['acknowledged']} | {c['lost']} | {c['acked_twice'] + c['keys_stored_twice']} | "
                     f"{r['server_cpu_cores']} | {r['generator_cpu_cores']} |")
    return "\n".join(lines)


def knee(results: list[dict]) -> dict | None:
    """The first rate where throughput stops following the offered rate (< 90 %), the p99 of any
    kind is over 5x its value at the lowest rate and over 1 s, or 5xx/transport errors appear."""
    if not results:
        return None
    base = {k: results[0]["kinds"][k]["p99_ms"] or 0.0 for k in KINDS}
    for r in results:
        why = []
        if r["achieved_rps"] < 0.9 * r["offered_rps"]:
            why.append(f"achieved {r['achieved_rps']} of {r['offered_rps']} rps")
        for k in KINDS:
            p = r["kinds"][k]["p99_ms"]
            if p is not None and p > 1000 and p > 5 * max(base[k], 1.0):
                why.append(f"{k} p99 {p:.0f} ms (was {base[k]:.0f} ms at {results[0]['rate']:g}/s)")
        if r["errors_5xx"] or r["errors_transport"]:
            why.append(f"{r['errors_5xx']} 5xx, {r['errors_transport']} transport errors")
        if why:
            return {"rate": r["rate"], "why": why}
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--rates", default="50,100,200", help="requests per second, comma-separated")
    ap.add_argument("--duration-s", type=float, default=20.0)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--drain-s", type=float, default=10.0, help="after each rate, wait this long for jobs to finish")
    ap.add_argument("--tick-s", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "loadtest-results.json"),
                    help="JSON results; the run for one --db replaces that db's entry and keeps the others")
    a = ap.parse_args(argv)
    rates = [float(x) for x in a.rates.split(",") if x.strip()]
    results = []
    for rate in rates:
        print(f"[{a.db}] {rate:g} req/s for {a.duration_s:g} s ...", file=sys.stderr, flush=True)
        results.append(run_rate(a.db, rate, a.duration_s, a.tenants, a.seed, a.drain_s, a.tick_s))
        r = results[-1]
        print(f"  achieved {r['achieved_rps']} rps, 5xx {r['errors_5xx']}, lost {r['check']['lost']}",
              file=sys.stderr, flush=True)
    host = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_avg_after": os.getloadavg(),
            "note": "server, 2 agents, the database and this generator share the machine's cores "
                    "(a 2-core machine shared with other work when these figures were taken)"}
    entry = {"db": a.db, "duration_s": a.duration_s, "tenants": a.tenants, "mix": MIX, "tick_s": a.tick_s,
             "host": host, "knee": knee(results), "results": results,
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(a.out)
    doc = {}
    if out.exists():
        try:
            doc = json.loads(out.read_text())
        except json.JSONDecodeError:
            doc = {}
    doc[a.db] = entry
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\n### {a.db}: {a.duration_s:g} s per rate, {a.tenants} tenants, mix {MIX}, "
          f"{os.cpu_count()} CPUs shared by server, agents, database and generator\n")
    print(table(results))
    k = entry["knee"]
    where = f"none up to {rates[-1]:g} req/s" if k is None else f"{k['rate']:g} req/s: " + "; ".join(k["why"])
    print(f"\nknee: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
