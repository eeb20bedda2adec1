"""Submission throughput of a real `suanli serve`, measured with wrk (closed loop: each
connection sends its next POST /v1/jobs as soon as the last one is answered).

    PYTHONPATH=src .venv/bin/python bench/wrk_submit.py                       # 200 connections, 20 s
    PYTHONPATH=src .venv/bin/python bench/wrk_submit.py --connections 200 --duration-s 20 --runs 3

Each run: a fresh SQLite database in a temporary directory, a `suanli serve` subprocess on
loopback (no agents: the jobs stay PENDING, so what is measured is the API, not the sites),
`--tenants` tenants (so the per-token rate limit is not what is measured), then wrk with a Lua
script that POSTs jobs, each with its own Idempotency-Key, round-robin over the tenants' tokens.
After wrk, the database is read: every 201 must be there exactly once (`lost`, `extra`).

Prints one JSON object per run and a summary line (the best run by accepted/s): accepted (201)
per second, p50/p99 latency (wrk's, of all answers), socket errors, status counts. Needs `wrk`
(apt-get install wrk). The load generator shares the machine's cores with the server: on a
small, busy machine the figures are lower; take the best of a few runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest import _cpu_s, _port, _stop, _wait_up  # bench/: the same server helpers as the open-loop test

ROOT = Path(__file__).resolve().parent.parent
NETWORK = str(ROOT / "tests" / "service" / "data" / "network.yaml")

LUA = r"""
local tokens = {%(tokens)s}
local threads = {}
local n = 0
tid = 0
counts = {}

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
end

function request()
  n = n + 1
  local tok = tokens[(n + tid * 7) %% #tokens + 1]
  local body = '{"name":"wrk-' .. tid .. '-' .. n .. '","command":"true","gpus":1,"work_h":0.001,"origin":"beijing"}'
  return wrk.format("POST", "/v1/jobs", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. tok,
                    ["Idempotency-Key"] = "wrk-" .. tid .. "-" .. n}, body)
end

function response(status, headers, body)
  local k = tostring(status)
  if status == 503 or status == 429 then
    if headers["Retry-After"] == nil and headers["retry-after"] == nil then k = k .. "-no-retry-after" end
  end
  counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, '"' .. k .. '":' .. v) end
  io.write("WRKJSON {")
  io.write('"statuses":{' .. table.concat(parts, ",") .. '},')
  io.write('"requests":' .. summary.requests .. ',"duration_us":' .. summary.duration .. ',')
  local e = summary.errors
  io.write('"errors":{"connect":' .. e.connect .. ',"read":' .. e.read .. ',"write":' .. e.write ..
           ',"status":' .. e.status .. ',"timeout":' .. e.timeout .. '},')
  io.write('"p50_ms":' .. latency:percentile(50) / 1000 .. ',"p90_ms":' .. latency:percentile(90) / 1000 ..
           ',"p99_ms":' .. latency:percentile(99) / 1000 .. ',"max_ms":' .. latency.max / 1000 .. '}\n')
end
"""


def run_once(connections: int, duration_s: float, tenants: int, threads: int, serve_args: list[str]) -> dict:
    from sqlalchemy import func, select

    from suanli.service import auth
    from suanli.service.db import open_db
    from suanli.service.models import Job

    with tempfile.TemporaryDirectory(prefix="suanli-wrk-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work / 'suanli.db'}"
        sessions = open_db(db_url)
        with sessions.begin() as s:
            tokens = [auth.create_tenant(s, f"wrk{i:03d}", {}, None) for i in range(tenants)]
        port = _port()
        url = f"http://127.0.0.1:{port}"
        log = work / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "suanli.cli_service", "serve", "--network", NETWORK, "--db", db_url,
             "--port", str(port), "--policy", "fifo", "--checkpoint-store", str(work / "store"), *serve_args],
            stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            _wait_up(server, url, log)
            script = work / "submit.lua"
            script.write_text(LUA % {"tokens": ", ".join(json.dumps(t) for t in tokens)})
            cpu0 = _cpu_s(server.pid)
            out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration_s)}s",
                                  "--timeout", "10s", "--latency", "-s", str(script), url],
                                 capture_output=True, text=True, timeout=duration_s + 120)
            m = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
            if m is None:
                raise RuntimeError(f"wrk said: {out.stdout[-2000:]} {out.stderr[-2000:]}")
            res = json.loads(m.group(1))
            cpu = _cpu_s(server.pid) - cpu0
            time.sleep(0.5)
            with sessions() as s:
                in_db = s.scalar(select(func.count()).select_from(Job))
                keys = s.scalar(select(func.count(func.distinct(Job.idempotency_key))))
        finally:
            _stop(server)
        secs = res["duration_us"] / 1e6
        acc = res["statuses"].get("201", 0)
        errs = res["errors"]
        return {"connections": connections, "duration_s": round(secs, 2), "accepted_per_s": round(acc / secs, 1),
                "answers_per_s": round(res["requests"] / secs, 1), "p50_ms": round(res["p50_ms"], 1),
                "p99_ms": round(res["p99_ms"], 1), "max_ms": round(res["max_ms"], 1),
                "socket_errors": errs["connect"] + errs["read"] + errs["write"] + errs["timeout"],
                "errors": errs, "statuses": dict(sorted(res["statuses"].items())),
                "jobs_in_db": in_db, "lost": max(0, acc - in_db), "extra": max(0, in_db - acc),
                "keys_distinct": keys == in_db, "cpus": os.cpu_count(),
                # the server's CPU per answer and per 201: what a busy machine does not change much
                "server_cpu_s": round(cpu, 1),
                "server_cpu_ms_per_answer": round(1000 * cpu / max(res["requests"], 1), 2),
                "server_cpu_ms_per_201": round(1000 * cpu / max(acc, 1), 2), "load_avg": os.getloadavg()[0],
                "server_log_tail": log.read_text()[-600:] if server.returncode not in (0, -15) else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--duration-s", type=float, default=20)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--runs", type=int, default=1, help="take the best of this many runs")
    ap.add_argument("serve_args", nargs="*", help="after --: more `suanli serve` options")
    a = ap.parse_args()
    results = []
    for _ in range(a.runs):
        r = run_once(a.connections, a.duration_s, a.tenants, a.threads, a.serve_args)
        print(json.dumps(r), flush=True)
        results.append(r)
    best = max(results, key=lambda r: r["accepted_per_s"])
    print(f"best of {len(results)}: {best['accepted_per_s']} accepted/s, p50 {best['p50_ms']} ms, "
          f"p99 {best['p99_ms']} ms, socket errors {best['socket_errors']}, statuses {best['statuses']}, "
          f"lost {best['lost']}, extra {best['extra']}; server CPU {best['server_cpu_ms_per_201']} ms per 201, "
          f"{best['server_cpu_ms_per_answer']} ms per answer; load average {best['load_avg']:.1f}")


if __name__ == "__main__":
    main()
