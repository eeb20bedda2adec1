"""Meter-reading ingestion of a real `suanli serve`: readings stored per second, in batches.

    PYTHONPATH=src .venv/bin/python bench/meter_ingest.py                          # SQLite, 200,000 readings
    PYTHONPATH=src .venv/bin/python bench/meter_ingest.py --readings 200000 --batch 5000 --sites 2 --runs 3
    SUANLI_TEST_PG_URL=postgresql+psycopg://USER:PW@HOST:PORT/DB \\
        PYTHONPATH=src .venv/bin/python bench/meter_ingest.py --db postgresql

Each run: a fresh database (a SQLite file in a temporary directory, or a fresh schema on
$SUANLI_TEST_PG_URL) whose service epoch is set 10 days back (so that days of readings, one a
second, are all in the past and after the site's hour 0), a `suanli serve` subprocess on loopback
(no agents), then `--sites` clients at once (one per site, as each site's agent posts its own
meter) post `--readings` readings in all, in batches of `--batch`, each batch waiting for the last
one's 202. The bodies are serialised before the clock starts: what is timed is the server (HTTP,
validation, the duplicate check, the insert and the roll-ups of the hours each batch touches).
After the run the database is read: every reading must be stored, and every hour rolled up.

Prints one JSON object per run and a summary line (the best run): readings per second, batches
per second, the server's CPU seconds. The client shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from loadtest import _cpu_s, _port, _stop, _wait_up, database  # bench/: the same server helpers as the load test

ROOT = Path(__file__).resolve().parent.parent
NETWORK = str(ROOT / "tests" / "service" / "data" / "network.yaml")
SITES = ("east-1", "west-1")


def bodies(start: datetime, n: int, batch: int) -> list[bytes]:
    """`n` readings one a second from `start`, as JSON bodies of `batch` readings each; the powers
    vary, and hold the physical rules (facility >= IT >= 0, grid import >= 0)."""
    out = []
    for b in range(0, n, batch):
        rows = []
        for k in range(b, min(n, b + batch)):
            it = 400.0 + (k % 97)
            ren = float(k % 53)
            fac = it * 1.25
            rows.append({"at": (start + timedelta(seconds=k)).isoformat(), "it_kw": it, "facility_kw": fac,
                         "renewable_kw": ren, "grid_kw": fac - ren, "battery_soc_kwh": None})
        out.append(json.dumps({"readings": rows}).encode())
    return out


def run(kind: str, readings: int, batch: int, sites: int) -> dict:
    from sqlalchemy import func, select

    from suanli.service import auth
    from suanli.service.db import open_db
    from suanli.service.models import Meta, MeterHour, MeterReading
    with tempfile.TemporaryDirectory(prefix="meter-bench-") as tmp, database(kind, Path(tmp)) as db_url:
        epoch = datetime.now(UTC) - timedelta(days=10)
        sessions = open_db(db_url)
        with sessions.begin() as s:
            s.merge(Meta(key="epoch", value=epoch.isoformat()))
            tokens = {site: auth.create_site_token(s, site) for site in SITES[:sites]}
        per_site = readings // sites
        work = {site: bodies(epoch + timedelta(minutes=1), per_site, batch) for site in tokens}
        port = _port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db_url,
             "--port", str(port), "--policy", "fifo", "--log-level", "warning", "--rate-limit", "off",
             "--checkpoint-store", str(Path(tmp) / "store")], stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            _wait_up(server, url, log)
            statuses: dict[int, int] = {}
            lock = threading.Lock()

            def agent(site: str) -> None:
                with httpx.Client(base_url=url, timeout=120,
                                  headers={"Authorization": f"Bearer {tokens[site]}",
                                           "Content-Type": "application/json"}) as c:
                    for body in work[site]:
                        r = c.post(f"/v1/agent/{site}/meter", content=body)
                        with lock:
                            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                        if r.status_code != 202:
                            raise RuntimeError(f"{site}: {r.status_code} {r.text[:300]}")
            cpu0 = _cpu_s(server.pid)
            t0 = time.perf_counter()
            threads = [threading.Thread(target=agent, args=(site,)) for site in tokens]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            cpu = _cpu_s(server.pid) - cpu0
        finally:
            _stop(server)
        with sessions() as s:
            stored = s.scalar(select(func.count()).select_from(MeterReading))
            hours = s.scalar(select(func.count()).select_from(MeterHour))
            covered = s.scalar(select(func.sum(MeterHour.covered_s)))
        sessions.kw["bind"].dispose()
        # each site: one reading a second (each holds 1 s), the last one for the whole gap
        from suanli.service.meters import MAX_GAP_S
        want_cover = sites * ((per_site - 1) + MAX_GAP_S)
        ok = stored == per_site * sites and abs((covered or 0) - want_cover) < 1e-6 * want_cover
        return {"db": kind, "readings": per_site * sites, "batch": batch, "sites": sites,
                "seconds": round(wall, 3), "readings_per_s": round(per_site * sites / wall),
                "batches_per_s": round(sum(len(w) for w in work.values()) / wall, 2),
                "server_cpu_s": round(cpu, 2), "statuses": statuses, "stored": stored, "hours": hours,
                "check": "ok" if ok else "MISMATCH"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--readings", type=int, default=200_000, help="readings in all (default 200,000)")
    ap.add_argument("--batch", type=int, default=5000, help="readings per POST (at most 10,000)")
    ap.add_argument("--sites", type=int, default=1, choices=(1, 2), help="sites posting at once")
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args(argv)
    if not 1 <= a.batch <= 10_000:
        ap.error(f"--batch: from 1 to 10000 (got {a.batch})")
    if a.readings < a.sites:
        ap.error(f"--readings: at least one per site (got {a.readings})")
    results = []
    for _ in range(a.runs):
        r = run(a.db, a.readings, a.batch, a.sites)
        print(json.dumps(r), flush=True)
        results.append(r)
    best = max(results, key=lambda r: r["readings_per_s"])
    print(f"best of {len(results)}: {best['readings_per_s']:,} readings/s ({best['db']}, batches of {best['batch']:,}, "
          f"{best['sites']} site(s), server CPU {best['server_cpu_s']} s for {best['readings']:,} readings, "
          f"check {best['check']})")
    return 0 if all(r["check"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
