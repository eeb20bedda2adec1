"""Tokens at rest, in comparison, in logs, and where the service listens (reliability issue #9,
part 4).

- Only a token's SHA-256 is stored: no table holds a token or any 16 characters of one.
- The token never reaches the database (the lookup is by its hash) and the hash found is
  compared again with `hmac.compare_digest`.
- No token appears in any log line of a whole session, failed authentication, a token sent
  in a URL and a site agent with a wrong token included, with uvicorn's access log and
  SQLAlchemy's statement log switched on.
- `suanli serve` listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))
import svc  # noqa: E402  (tests/service's fixtures module: real server over a real database)
from svc import agent_env, job_body, wait_for  # noqa: E402

from suanli.service import auth  # noqa: E402
from suanli.service.models import Base, Token  # noqa: E402
from suanli.service.server import ThreadServer, build  # noqa: E402

db_url, service = svc.db_url, svc.service     # the fixtures, used in this module


def _pieces(token: str, n: int = 16) -> list[str]:
    """Every n-character piece of a token (its `sl_` prefix aside): a leak of part of it counts."""
    body = token.removeprefix("sl_")
    return [body[i:i + n] for i in range(0, len(body) - n + 1)]


def _tokens(svc_: svc.Service) -> dict[str, str]:
    return {"tenant": svc_.tenant("acme"), "admin": svc_.admin_token(), "site": svc_.site_token("east-1")}


def test_only_the_sha256_of_a_token_is_stored(service):
    tokens = _tokens(service)
    engine = service.sessions.kw["bind"]
    with engine.connect() as conn:
        stored = {r.role: r.token_hash for r in conn.execute(select(Token))}
        dump = "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in conn.execute(select(table)))
    assert stored == {role: hashlib.sha256(t.encode()).hexdigest() for role, t in tokens.items()}
    for t in tokens.values():
        assert not [p for p in _pieces(t) if p in dump]
    if engine.dialect.name == "sqlite":            # the file itself, write-ahead log included
        path = Path(engine.url.database)
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for t in tokens.values():
            assert t.encode() not in raw and t.removeprefix("sl_")[:16].encode() not in raw


def test_the_token_never_reaches_the_database_and_hashes_compare_in_constant_time(service, monkeypatch):
    tokens = _tokens(service)
    engine = service.sessions.kw["bind"]
    sent: list[str] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        sent.append(f"{statement} {parameters!r}")
    compared: list[tuple[str, str]] = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)
    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    event.listen(engine, "before_cursor_execute", record)
    try:
        near_miss = tokens["tenant"][:-1] + ("A" if tokens["tenant"][-1] != "A" else "B")
        with service.client(tokens["tenant"]) as c, service.client(near_miss) as bad:
            assert c.get("/v1/jobs").status_code == 200
            assert bad.get("/v1/jobs").status_code == 401
    finally:
        event.remove(engine, "before_cursor_execute", record)
    text = "\n".join(sent)
    assert hashlib.sha256(tokens["tenant"].encode()).hexdigest() in text     # looked up by its hash...
    for t in (tokens["tenant"], near_miss):
        assert not [p for p in _pieces(t) if p in text]                       # ...never by the token
    digest = auth.hash_token(tokens["tenant"])
    assert (digest, digest) in compared                                       # and compared in constant time


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ("httpx", "httpcore"):
            return      # this test's own HTTP clients (the agent's log is its own process's output)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        with self.lock_:
            self.lines.append(f"{record.name}: {text}")


@pytest.fixture
def logged_server(tmp_path) -> Iterator[tuple[str, object, _Capture]]:
    """A server whose every log record (uvicorn's access log, SQLAlchemy's statements, the
    controller's) reaches one handler: uvicorn leaves logging alone (`log_config=None`)."""
    cap = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(cap)
    # uvicorn's own loggers stop propagating once any earlier server in this process configured
    # logging (ThreadServer does): listen on them directly
    own = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error") if not logging.getLogger(n).propagate]
    for lg in own:
        lg.addHandler(cap)
    root.setLevel(logging.DEBUG)
    sql = logging.getLogger("sqlalchemy.engine")
    sql_level = sql.level
    sql.setLevel(logging.INFO)                   # statements and their parameters
    app = build(svc.NETWORK, f"sqlite:///{tmp_path / 'suanli.db'}", policy="fifo", tick_s=0.2,
                heartbeat_timeout_s=5.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="debug",
                                           access_log=True, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30, every=0.02)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}", app, cap
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        root.removeHandler(cap)
        for lg in own:
            lg.removeHandler(cap)
        root.setLevel(old_level)
        sql.setLevel(sql_level)


def test_no_token_appears_in_the_logs(logged_server, tmp_path):
    url, app, cap = logged_server
    sessions = app.state.controller.sessions
    with sessions.begin() as s:
        tenant = auth.create_tenant(s, "acme", {}, None)
        admin = auth.create_admin_token(s)
        site = auth.create_site_token(s, "east-1")
    near_miss = tenant[:-1] + ("A" if tenant[-1] != "A" else "B")
    secrets = [tenant, admin, site, near_miss]

    def client(token: str | None) -> httpx.Client:
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=30)

    with client(tenant) as t, client(admin) as a, client(near_miss) as bad, client(None) as anon:
        job = t.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k1"}).json()["id"]
        assert t.get(f"/v1/jobs/{job}").status_code == 200
        assert a.get("/v1/jobs", params={"tenant": "acme"}).status_code == 200
        assert bad.get("/v1/jobs").status_code == 401                       # failed authentication
        assert anon.get("/v1/jobs").status_code == 401
        assert anon.get("/v1/jobs", params={"token": tenant}).status_code == 400        # a token in the URL
        assert anon.get("/v1/jobs", params={"access_token": admin, "x": "1"}).status_code == 400
        assert t.post("/v1/jobs", json=job_body(gpus=0)).status_code == 422
    # a real agent: one with a wrong token (refused), then the right one until the job ran
    work = tmp_path / "agents"
    runs = []
    svc.searchable(work)
    for token in (near_miss, site):
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "suanli.agent", "--site", "east-1", "--controller", url,
             "--executor", "local", "--workdir", str(work), "--interval-s", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=agent_env(token)))
    try:
        with client(tenant) as t:
            wait_for(lambda: t.get(f"/v1/jobs/{job}").json()["state"] == "SUCCEEDED", timeout=60)
    finally:
        outputs = []
        for p in runs:
            p.terminate()
            try:
                outputs.append(p.communicate(timeout=15)[0])
            except subprocess.TimeoutExpired:
                p.kill()
                outputs.append(p.communicate()[0])
    logs = "\n".join(cap.lines)
    # the capture works: the access log and the SQL log are in it, failures included
    access = [line for line in cap.lines if line.startswith("uvicorn.access")]
    assert any('"GET /v1/jobs HTTP/1.1" 401' in line for line in access), access
    assert any('"GET /v1/jobs HTTP/1.1" 400' in line for line in access), access   # the URL, its secret blanked
    assert "SELECT" in logs
    for where, text in (("server logs", logs), ("agent output", "\n".join(outputs))):
        for secret in secrets:
            leaked = [line for line in text.splitlines() if any(p in line for p in _pieces(secret))]
            assert not leaked, f"a token appears in the {where}: {leaked[0][:300]}"


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of the sockets listening on `port`."""
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(name):
            continue
        with open(name) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.rsplit(":", 1)
                if state == "0A" and int(hexport, 16) == port:          # 0A: LISTEN
                    out.append(addr)
    return out


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the listening sockets from /proc/net/tcp")
def test_serve_listens_on_loopback_unless_told_otherwise(tmp_path):
    with socket.socket() as s:                   # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "suanli.cli_service", "serve", "--network", svc.NETWORK,
                          "--db", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(port), "--policy", "fifo"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert p.poll() is None, p.communicate()[0]
            assert time.monotonic() < deadline, "the server did not start listening"
            time.sleep(0.1)
        assert _listening(port) == ["0100007F"], _listening(port)    # 127.0.0.1 only, no IPv6, no 0.0.0.0
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200
    finally:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    assert ThreadServer(object()).config.host == "127.0.0.1"        # the embedding helper, too
