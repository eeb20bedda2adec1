"""The database: engine, migrations (run on every start), sessions and the service epoch.

SQLite by default (`<data dir>/suanli.db`, WAL), PostgreSQL with a
`postgresql+psycopg://user:password@host:port/db` URL. The data directory is
`$SUANLI_DATA_DIR`, else `~/.local/share/suanli`; `suanli serve` and `suanli admin` use the
same default, so they meet in the same database. The service creates the data directory 0700
and the SQLite file (and its WAL files) 0600: no other user of the machine (a job on a local
site, say) reads or writes them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from suanli.errors import UserError
from suanli.service.models import Meta

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "suanli_read_only"      # execution option of the sessions that only read (`readers`)
# Connections per process. The API admits fewer requests at once than this (limits.Limits:
# max_in_flight 16), leaving some to the controller loop and the agents' upload routes, so a
# request never waits for a connection; if one does, it waits at most POOL_TIMEOUT_S (503).
POOL_SIZE = 20
POOL_TIMEOUT_S = 5.0


def data_dir() -> Path:
    return Path(os.environ.get("SUANLI_DATA_DIR") or Path.home() / ".local" / "share" / "suanli")


def private_sqlite(path: Path) -> None:
    """The database file (tokens, jobs, invoices) and its WAL files readable and writable by the
    service's user alone (0600), created so if new: SQLite gives its WAL files the database's mode."""
    if str(path) in ("", ":memory:"):
        return
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            f.chmod(0o600)


def default_url() -> str:
    return f"sqlite:///{data_dir() / 'suanli.db'}"


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: the SQLite file in the data directory)."""
    url = url or default_url()
    try:
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                private_sqlite(path)
            except OSError as e:
                raise UserError(f"--db: cannot create the data directory {str(path.parent)!r}: {e.strerror}") from None
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                   pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT_S)

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):     # WAL: readers never wait for the writer
                dbapi_conn.isolation_level = None      # SQLAlchemy's "begin" event below opens transactions
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit is durable against a crash of the process, and against a
                # power loss all but the last commits are; no fsync per commit (the submit path's
                # largest cost under load, bench/wrk_submit.py)
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _begin(conn):
                # a writer takes the write lock up front (no SQLITE_BUSY mid-transaction); a reader
                # (`readers(...)`) does not, and in WAL mode never waits for the writer
                conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")
            return engine
        if url.startswith("postgresql"):
            return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=10,
                                 pool_timeout=POOL_TIMEOUT_S)
    except (ArgumentError, NoSuchModuleError) as e:
        raise UserError(f"--db: not a database URL {url!r} ({e})") from None
    raise UserError(f"--db: unsupported database URL {url!r} (use sqlite:///PATH or postgresql+psycopg://...)")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic, migrations shipped in the package)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as e:
        first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise UserError(f"--db: cannot open the database {engine.url.render_as_string(hide_password=True)}: "
                        f"{first}") from None


def open_db(url: str | None = None) -> sessionmaker[Session]:
    """Engine, migrations, and a session factory."""
    engine = make_engine(url)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


def readers(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on the same database for requests that only read (GET): on SQLite they start a
    plain (deferred) transaction, so reads do not queue behind the one writer; elsewhere they are
    ordinary sessions."""
    return sessionmaker(sessions.kw["bind"].execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def epoch(sessions: sessionmaker[Session]) -> datetime:
    """Controller hour 0: the first time this database was served (stored, so restarts and
    replicas share one clock)."""
    with sessions() as s:
        row = s.get(Meta, "epoch")
        if row is None:
            s.add(Meta(key="epoch", value=datetime.now(UTC).isoformat()))
            try:
                s.commit()
            except IntegrityError:          # another replica wrote it first
                s.rollback()
            row = s.get(Meta, "epoch")
        return datetime.fromisoformat(row.value)
