"""The service's commands as a user runs them (`python -m suanli.cli_service`, which holds the
same Typer commands `suanli` mounts): admin tokens, submit/jobs/job/cancel against a real
server, bill from the database; mistakes are one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import svc
from svc import NETWORK

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module



def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "suanli.cli_service", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_admin_commands_print_the_token_once_and_nothing_else(tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    r = _cli("admin", "create-tenant", "acme", "--quota", "h100=4", "--budget-cny", "100", "--db", db)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sl_") and len(lines[0]) > 40
    for args in (("create-site-token", "east-1", "--network", NETWORK), ("create-admin-token",)):
        r = _cli("admin", *args, "--db", db)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    from suanli.service.db import open_db
    from suanli.service.models import Token
    with open_db(db)() as s:
        hashes = [t.token_hash for t in s.query(Token)]
    assert lines[0] not in hashes and len(hashes) == 3          # stored hashed


def test_admin_mistakes_are_one_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    cases = [
        (("create-tenant", "acme", "--quota", "h100=lots"),
         "error: --quota: h100: GPUs must be a whole number, got 'lots'"),
        (("create-tenant", "bad name"),
         "error: NAME: a tenant name is letters, digits, '_', '.', '-' (got 'bad name')"),
        (("create-site-token", "mars-1", "--network", NETWORK),
         "error: SITE: unknown site 'mars-1' (sites: east-1, west-1)"),
    ]
    for args, message in cases:
        r = _cli("admin", *args, "--db", db)
        assert (r.returncode, r.stdout, r.stderr.strip()) == (2, "", message)
    assert _cli("admin", "create-tenant", "acme", "--db", db).returncode == 0
    r = _cli("admin", "create-tenant", "acme", "--db", db)
    assert (r.returncode, r.stderr.strip()) == (2, "error: NAME: tenant 'acme' already exists")
    r = _cli("admin", "create-admin-token", "--db", "mysql://x")
    assert r.returncode == 2 and r.stderr.startswith("error: --db: unsupported database URL")


def test_submit_jobs_job_cancel_and_bill(service, tmp_path):
    env = {"SUANLI_URL": service.url, "SUANLI_TOKEN": service.tenant("acme"), "SUANLI_CONFIG": str(tmp_path / "no")}
    (tmp_path / "job.yaml").write_text("name: hello\ncommand: sleep 30\ngpus: 2\nwork_h: 0.01\norigin: hami\n")
    r = _cli("submit", str(tmp_path / "job.yaml"), "--key", "once", env=env)
    assert r.returncode == 0, r.stderr
    jid, state = r.stdout.split()
    assert state == "PENDING"
    assert _cli("submit", str(tmp_path / "job.yaml"), "--key", "once", env=env).stdout.split()[0] == jid
    r = _cli("jobs", env=env)
    assert r.returncode == 0 and "hello" in r.stdout and r.stdout.count("hello") == 1
    r = _cli("job", jid, env=env)
    assert r.returncode == 0 and f"job {jid}: hello (acme)" in r.stdout and "lifecycle" in r.stdout
    r = _cli("cancel", jid, env=env)
    assert (r.returncode, r.stdout.split()) == (0, [jid, "CANCELLED"])
    r = _cli("job", "999", env=env)
    assert (r.returncode, r.stderr.strip()) == (2, "error: 404: no job 999")
    (tmp_path / "bad.yaml").write_text("name: x\ncommand: echo\ngpus: 0\nwork_h: 1\norigin: hami\n")
    r = _cli("submit", str(tmp_path / "bad.yaml"), env=env)
    want = "error: 422: gpus: Input should be greater than or equal to 1 (got 0)"
    assert (r.returncode, r.stderr.strip()) == (2, want)
    r = _cli("jobs", env={"SUANLI_URL": "", "SUANLI_TOKEN": "", "SUANLI_CONFIG": str(tmp_path / "no")})
    assert r.returncode == 2 and r.stderr.startswith("error: no server URL: set SUANLI_URL")
    r = _cli("bill", "acme", "--month", "2026-01", "--format", "csv", "--db", service.db_url)
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("tenant,month,job_id")
    r = _cli("bill", "nobody", "--month", "2026-01", "--db", service.db_url)
    assert (r.returncode, r.stderr.strip()) == (2, "error: TENANT: no tenant 'nobody'")
    r = _cli("bill", "acme", "--month", "May", "--db", service.db_url)
    assert (r.returncode, r.stderr.strip()) == (2, "error: month: expected YYYY-MM, got 'May'")


def test_serve_refuses_a_network_with_jobs_in_one_line(tmp_path):
    from pathlib import Path
    scenario = Path(__file__).parents[2] / "src" / "suanli" / "examples" / "east-west.yaml"
    r = _cli("serve", "--network", str(scenario), "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert r.returncode == 2 and "jobs: a network file has no jobs (got 300)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_bad_port_in_one_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    r = _cli("serve", "--network", NETWORK, "--db", db, "--port", "-5")
    assert (r.returncode, r.stderr.strip()) == (2, "error: --port: must be between 0 and 65535, got -5")
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _cli("serve", "--network", NETWORK, "--db", db, "--port", str(port))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: --port: cannot listen on 127.0.0.1:{port}: [Errno ")
    assert "in use" in lines[0].lower()


def test_bill_is_for_this_month_by_default(tmp_path):
    from datetime import UTC, datetime
    db = f"sqlite:///{tmp_path / 'a.db'}"
    assert _cli("admin", "create-tenant", "acme", "--db", db).returncode == 0
    r = _cli("bill", "acme", "--format", "json", "--db", db)
    assert r.returncode == 0, r.stderr
    assert f'"month": "{datetime.now(UTC):%Y-%m}"' in r.stdout


def test_site_tokens_are_for_sites_the_database_knows(tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    r = _cli("admin", "create-site-token", "east-1", "--db", db)          # a new database: no network yet
    assert r.returncode == 2 and r.stderr.startswith("error: SITE: the database knows no sites yet"), r.stderr
    assert "--network" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    from suanli.service.db import open_db
    from suanli.service.server import load_network, record_sites
    record_sites(open_db(db), load_network(NETWORK))                      # as `suanli serve` does at start
    r = _cli("admin", "create-site-token", "mars-1", "--db", db)
    assert (r.returncode, r.stdout, r.stderr.strip()) == (2, "", "error: SITE: unknown site 'mars-1' "
                                                                 "(sites: east-1, west-1)")
    r = _cli("admin", "create-site-token", "east-1", "--db", db)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1


def test_submit_quote_prints_the_options_and_submits_nothing(service, tmp_path):
    env = {"SUANLI_URL": service.url, "SUANLI_TOKEN": service.tenant("acme"), "SUANLI_CONFIG": str(tmp_path / "no"),
           "COLUMNS": "200"}
    beat = {"executor": "local", "pools": [], "running": []}
    for site in ("east-1", "west-1"):           # the sites up (a quote weighs only those, as a tick does)
        assert service.client(service.site_token(site)).post(f"/v1/agent/{site}/heartbeat", json=beat).is_success
    (tmp_path / "job.yaml").write_text("name: hello\ncommand: sleep 30\ngpus: 2\nwork_h: 0.01\norigin: hami\n")
    r = _cli("submit", str(tmp_path / "job.yaml"), "--quote", env=env)
    assert r.returncode == 0, r.stderr
    assert "quote (fifo" in r.stdout and "cost CNY" in r.stdout
    rows = [ln for ln in r.stdout.splitlines() if "west-1" in ln or "east-1" in ln]
    assert len(rows) == 3 and "now" in rows[0] and "6 h" in rows[1] and "24 h" in rows[2], r.stdout
    r = _cli("jobs", "--json", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "[]"
