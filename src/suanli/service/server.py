"""Putting the service together: network file + database + policy -> controller + app, under uvicorn."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn

from suanli.errors import UserError
from suanli.model.load import load_scenario
from suanli.model.scenario import Scenario
from suanli.scheduling import policies
from suanli.service import meters, overrun
from suanli.service.app import create_app
from suanli.service.checkpoints import CheckpointStore
from suanli.service.controller import MAX_AGENT_LOSSES, Controller
from suanli.service.db import data_dir, default_url, epoch, open_db

log = logging.getLogger("suanli.serve")


def load_network(path: str) -> Scenario:
    """A network file: a scenario without jobs (MODEL.md §1). Its `events` are not used: the
    service learns of outages from the agents' heartbeats."""
    scn = load_scenario(path)
    if scn.jobs:
        raise UserError(f"{path}: jobs: a network file has no jobs (got {len(scn.jobs)}); "
                        "submit jobs with `suanli submit`")
    return scn


SITES_KEY = "network.sites"         # Meta: the site ids of the network last served (JSON list)


def record_sites(sessions, scn: Scenario) -> None:
    """Note the network's site ids in the database, for the commands that check a site's name
    without the network file (`admin create-site-token`)."""
    import json

    from sqlalchemy.exc import IntegrityError

    from suanli.service.models import Meta
    value = json.dumps(list(scn.sites))
    with sessions() as s:
        row = s.get(Meta, SITES_KEY)
        if row is not None and row.value == value:
            return
        if row is None:
            s.add(Meta(key=SITES_KEY, value=value))
        else:
            row.value = value
        try:
            s.commit()
        except IntegrityError:          # another replica wrote it first
            s.rollback()


def known_sites(s) -> list[str]:
    """The sites the database knows: those of the network last served, of registered agents and
    of site tokens."""
    import json

    from sqlalchemy import select

    from suanli.service.models import Meta, SiteAgent, Token
    row = s.get(Meta, SITES_KEY)
    out = dict.fromkeys(json.loads(row.value) if row is not None else [])
    out.update(dict.fromkeys(s.scalars(select(SiteAgent.site))))
    out.update(dict.fromkeys(x for x in s.scalars(select(Token.site).where(Token.site.is_not(None)))))
    return list(out)


def default_store(db_url: str | None) -> Path:
    """The checkpoint store beside a SQLite file, else in the data directory."""
    url = db_url or default_url()
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent / "checkpoints"
    return data_dir() / "checkpoints"


def build(network: str | Scenario, db_url: str | None = None, policy: str = "suanli", tick_s: float = 1.0,
          heartbeat_timeout_s: float | None = None, checkpoint_store: str | Path | None = None,
          max_attempts: int = 3, preempt: bool = True, max_agent_losses: int = MAX_AGENT_LOSSES,
          checkpoint_quota_bytes: int | None = None, checkpoint_keep_h: float = 24.0,
          overrun_margin: float = 0.5, overrun_min_s: float = 60.0,
          meter_retention_days: float = meters.RETENTION_DAYS, suspend: bool = True):
    scn = load_network(network) if isinstance(network, str) else network
    policies.make(policy)                       # an unknown name is one line, before the database
    sessions = open_db(db_url)
    record_sites(sessions, scn)
    controller = Controller(sessions, scn, policy, epoch(sessions), tick_s=tick_s,
                            heartbeat_timeout_s=heartbeat_timeout_s,
                            store=CheckpointStore(Path(checkpoint_store or default_store(db_url)),
                                                  quota_bytes=checkpoint_quota_bytes, keep_h=checkpoint_keep_h),
                            max_attempts=max_attempts, preempt=preempt, max_agent_losses=max_agent_losses,
                            suspend=suspend)
    controller.overrun = overrun.Rules(margin=overrun_margin, min_s=overrun_min_s)   # service/overrun.py
    controller.meter_retention_days = meter_retention_days                            # service/meters.py
    return create_app(controller)


def serve(network: str, db_url: str | None, host: str, port: int, policy: str, tick_s: float = 1.0,
          heartbeat_timeout_s: float | None = None, checkpoint_store: str | None = None, max_attempts: int = 3,
          preempt: bool = True, max_agent_losses: int = MAX_AGENT_LOSSES,
          metrics_listen: tuple[str, int] | None = None, **bounds) -> None:
    """`bounds`: `build`'s checkpoint_quota_bytes, checkpoint_keep_h, overrun_margin, overrun_min_s,
    meter_retention_days, suspend.
    `metrics_listen`: (host, port) where /metrics is served without a token (metrics.metrics_app).
    The addresses are taken first: one in use is a `BindError`, before the database is opened."""
    sock = bind(host, port)
    msock = side = None
    try:
        if metrics_listen is not None:
            msock = bind(*metrics_listen, flag="--metrics-listen")
        app = build(network, db_url, policy, tick_s, heartbeat_timeout_s=heartbeat_timeout_s,
                    checkpoint_store=checkpoint_store, max_attempts=max_attempts, preempt=preempt,
                    max_agent_losses=max_agent_losses, **bounds)
        c: Controller = app.state.controller
        engine = c.sessions.kw["bind"]
        log.info("suanli serve listening on http://%s:%s (database %s, network %s, policy %s, heartbeat timeout %g s, "
                 "tick %g s, max agent losses %s)", host, port, engine.url.render_as_string(hide_password=True),
                 network, policy, c.heartbeat_timeout_s, tick_s, c.max_agent_losses or "off",
                 extra={"host": host, "port": port, "database": engine.url.render_as_string(hide_password=True),
                        "network": network, "policy": policy, "heartbeat_timeout_s": c.heartbeat_timeout_s,
                        "tick_s": tick_s, "max_agent_losses": c.max_agent_losses})
        if msock is not None:
            from suanli.service.metrics import metrics_app
            side = ThreadServer(metrics_app(c, app.state.metrics_scrape), sockets=[msock])
            side.__enter__()
            mhost, mport = metrics_listen
            log.info("metrics for Prometheus on http://%s:%s/metrics (no token: keep this address private)",
                     mhost, mport, extra={"metrics_host": mhost, "metrics_port": mport})
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                log_level=logging.getLogger().getEffectiveLevel())
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if side is not None:
            side.__exit__(None, None, None)
        for x in (sock, msock):
            if x is not None:
                x.close()


class BindError(Exception):
    """The server cannot listen on its address (in use, not this machine's, not allowed)."""


def bind(host: str, port: int, flag: str | None = None) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn binds one (SO_REUSEADDR), not yet listening.
    `flag`: the option its errors name (default: --host, --port)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as e:
        raise BindError(f"{flag or '--host'}: cannot listen on {host!r}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise BindError(f"{flag or '--port'}: cannot listen on {host}:{port}: [Errno {e.errno}] "
                        f"{e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


class ThreadServer:
    """uvicorn in a thread (tests, embedding; `serve`'s metrics address): `with ThreadServer(app, port) as url:
    ...`. `sockets`: bound sockets to listen on instead of (host, port); then the app has no lifespan."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, sockets: list[socket.socket] | None = None):
        # beside `serve`'s own server (sockets): uvicorn's loggers are left as that one sets them
        self.config = uvicorn.Config(app, host=host, port=port, log_level=None if sockets else "warning",
                                     lifespan="off" if sockets else "on",
                                     **({"log_config": None, "access_log": False} if sockets else {}))
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": sockets}, daemon=True)

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
