"""An invoice whose energy is the meters': a real `suanli serve`, a site's runs, its meter, the bills.

    PYTHONPATH=src .venv/bin/python bench/metered_invoice.py                     # SQLite, 12 jobs
    PYTHONPATH=src .venv/bin/python bench/metered_invoice.py --jobs 24 --seed 3
    SUANLI_TEST_PG_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB \\
        PYTHONPATH=src .venv/bin/python bench/metered_invoice.py --db postgresql

A fresh database (tests/service/data/network.yaml: west-1 holds 8 A800 GPUs of 0.4 kW), two
tenants, a `suanli serve` subprocess on loopback. This script is west-1's agent, over HTTP: it
heartbeats, claims each placement, reports it RUNNING and, a few seconds later, SUCCEEDED
(`--jobs` jobs of 1 to 4 GPUs, submitted at random moments, so that they overlap). It is also
west-1's meter: a reading every `--step-s` over the whole run, posted after the last job ends,
each reading what the site would draw then: an idle base of 0.3 kW plus each running job's GPUs at
55 % to 100 % of their rating (so the IT power is sometimes below the runs' rated power: the
clamp of the rule), the facility at a PUE between 1.1 and 1.35, the renewable output the simulated
readings of the site (`energy.simulated_readings.readings`, one of its hourly values a second,
never above the facility: west-1 cannot export), the grid the rest.

Then it waits until every line is billed from the meter, and reads back the invoices of both
tenants (all lines of west-1, `energy_basis` "metered") and `GET /v1/sites/west-1/energy` over the
hours of the run. Prints the meter's facility kWh (the hours' roll-ups), the invoice lines' kWh,
the idle share, and (lines + idle) / meter; the same for carbon. Exits 1 if they differ by more
than 0.1 %, or a line is still modelled.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from loadtest import _port, _stop, _wait_up, database  # bench/: the same server helpers as the load test

ROOT = Path(__file__).resolve().parent.parent
NETWORK = str(ROOT / "tests" / "service" / "data" / "network.yaml")
SITE, GPU_KW, IDLE_KW = "west-1", 0.4, 0.3


def run(kind: str, jobs: int, seed: int, step_s: float) -> dict:
    from suanli.energy.simulated_readings import readings as simulated
    from suanli.model.load import load_scenario
    from suanli.service import auth
    from suanli.service.db import open_db
    from suanli.service.models import Meta
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="metered-invoice-") as tmp, database(kind, Path(tmp)) as db_url:
        sessions = open_db(db_url)
        with sessions.begin() as s:
            s.merge(Meta(key="epoch", value=(datetime.now(UTC) - timedelta(minutes=1)).isoformat()))
            tenants = [auth.create_tenant(s, name, {}, None) for name in ("acme", "bolt")]
            site_token, admin_token = auth.create_site_token(s, SITE), auth.create_admin_token(s)
        sessions.kw["bind"].dispose()
        port = _port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db_url,
             "--port", str(port), "--policy", "fifo", "--log-level", "warning", "--rate-limit", "off",
             "--tick-s", "0.5", "--checkpoint-store", str(Path(tmp) / "store")],
            stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            _wait_up(server, url, log)
            return _drive(url, tenants, site_token, admin_token, jobs, rng, step_s,
                          simulated(load_scenario(NETWORK), SITE, 4096, seed=seed)[0]) | {"db": kind}
        finally:
            _stop(server)


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"})


def _drive(url: str, tenants: list[str], site_token: str, admin_token: str, n: int, rng: random.Random,
           step_s: float, renewable_kw) -> dict:
    site, admin = _client(url, site_token), _client(url, admin_token)
    users = [_client(url, t) for t in tenants]
    t0 = datetime.now(UTC)
    pending = []                                    # (job id, GPUs, when to submit, seconds to run)
    for k in range(n):
        pending.append([None, rng.randint(1, 4), time.monotonic() + rng.uniform(0, 0.6 * n), rng.uniform(2, 6),
                        users[k % 2]])
    running: dict[int, dict] = {}                   # job -> fence, gpus, end (monotonic), start (wall)
    spans: list[tuple[datetime, datetime, int, float]] = []      # start, end, GPUs, utilisation
    claimed: dict[int, int] = {}
    gpus_of: dict[int, int] = {}
    length_s: dict[int, float] = {}
    waiting: set[int] = set()                       # submitted, not yet ended
    while pending or waiting:
        now = time.monotonic()
        for p in [p for p in pending if p[2] <= now]:
            r = p[4].post("/v1/jobs", json={"name": "train", "command": "true", "gpus": p[1], "work_h": 0.05,
                                            "origin": "beijing", "gpu_types": ["a800"]})
            r.raise_for_status()
            pending.remove(p)
            waiting.add(r.json()["id"])
            gpus_of[r.json()["id"]] = p[1]
            length_s[r.json()["id"]] = p[3]
        beat = [{"job_id": j, "fence": f} for j, f in ({j: v["fence"] for j, v in running.items()} | claimed).items()]
        site.post(f"/v1/agent/{SITE}/heartbeat", json={"executor": "local", "pools": [], "running": beat})
        for a in site.post(f"/v1/agent/{SITE}/assignments").json():
            claimed[a["job_id"]] = a["fence"]
        for j, fence in list(claimed.items()):
            r = site.post(f"/v1/agent/{SITE}/jobs/{j}/report", json={"fence": fence, "state": "RUNNING"})
            r.raise_for_status()
            del claimed[j]
            running[j] = {"fence": fence, "end": time.monotonic() + length_s[j],
                          "start": datetime.now(UTC), "util": rng.uniform(0.55, 1.0)}
        for j, v in list(running.items()):
            if time.monotonic() >= v["end"]:
                r = site.post(f"/v1/agent/{SITE}/jobs/{j}/report",
                              json={"fence": v["fence"], "state": "SUCCEEDED", "exit_code": 0})
                r.raise_for_status()
                spans.append((v["start"], datetime.now(UTC), gpus_of[j], v["util"]))
                del running[j]
                waiting.discard(j)
        time.sleep(0.1)
    t1 = datetime.now(UTC) + timedelta(seconds=2)
    # the meter: what the site drew, a reading every step_s over [t0, t1]
    out, t, k = [], t0, 0
    while t <= t1:
        it = IDLE_KW + sum(g * GPU_KW * u for a, b, g, u in spans if a <= t < b)
        fac = it * rng.uniform(1.1, 1.35)
        ren = min(float(renewable_kw[k % len(renewable_kw)]), fac)
        out.append({"at": t.isoformat(), "it_kw": it, "facility_kw": fac, "renewable_kw": ren, "grid_kw": fac - ren})
        t += timedelta(seconds=step_s)
        k += 1
    for b in range(0, len(out), 5000):
        r = site.post(f"/v1/agent/{SITE}/meter", json={"readings": out[b:b + 5000]})
        if r.status_code != 202:
            raise RuntimeError(f"meter: {r.status_code} {r.text[:300]}")
    month = t0.strftime("%Y-%m")
    deadline = time.monotonic() + 120
    while True:
        lines = [ln for inv in admin.get("/v1/invoices", params={"month": month}).json() for ln in inv["lines"]]
        if len(lines) == n and all(ln["energy_basis"] == "metered" for ln in lines):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(lines)} lines of {n}, not all metered after 120 s: "
                               f"{[(ln['job_id'], ln['energy_basis']) for ln in lines]}")
        time.sleep(0.5)
    rows = admin.get(f"/v1/sites/{SITE}/energy", params={"from": (t0 - timedelta(hours=1)).isoformat(),
                                                          "to": (t1 + timedelta(hours=1)).isoformat()}).json()
    hours = [r for r in rows if r["measured"] is not None]
    meter_kwh = sum(r["measured"]["facility_kwh"] for r in hours)
    meter_kg = sum(r["measured"]["carbon_kg"] for r in hours)
    lines_kwh, lines_kg = sum(ln["energy_kwh"] for ln in lines), sum(ln["carbon_kg"] for ln in lines)
    idle_kwh = sum(r["billed"]["idle_kwh"] for r in hours)
    idle_kg = sum(r["billed"]["idle_carbon_kg"] for r in hours)
    rated_kwh = sum(g * GPU_KW * (b - a).total_seconds() / 3600 for a, b, g, _ in spans)
    return {"jobs": n, "readings": len(out), "hours": len(hours), "meter_kwh": meter_kwh, "lines_kwh": lines_kwh,
            "idle_kwh": idle_kwh, "ratio": (lines_kwh + idle_kwh) / meter_kwh, "meter_carbon_kg": meter_kg,
            "lines_carbon_kg": lines_kg, "idle_carbon_kg": idle_kg, "carbon_ratio": (lines_kg + idle_kg) / meter_kg,
            "runs_rated_gpu_kwh": rated_kwh, "settled": all(r["billed"]["settled"] for r in hours)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-s", type=float, default=0.5, help="seconds between the meter's readings")
    a = ap.parse_args()
    if not 1 <= a.jobs <= 200 or not 0.05 <= a.step_s <= 60:
        ap.error("--jobs: 1 to 200; --step-s: 0.05 to 60")
    got = run(a.db, a.jobs, a.seed, a.step_s)
    print(json.dumps(got, indent=1))
    print(f"meter {got['meter_kwh']:.6f} kWh; invoice lines {got['lines_kwh']:.6f} kWh + idle share "
          f"{got['idle_kwh']:.6f} kWh = {got['lines_kwh'] + got['idle_kwh']:.6f} kWh; ratio {got['ratio']:.9f}; "
          f"carbon ratio {got['carbon_ratio']:.9f}")
    ok = abs(got["ratio"] - 1) <= 1e-3 and abs(got["carbon_ratio"] - 1) <= 1e-3
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
