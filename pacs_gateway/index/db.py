"""Engine creation and schema migration for the index (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from pacs_gateway.errors import IndexError_

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it returns, so "indexed" means durable.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = None
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # gateways and workers starting together migrate one at a time
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7412001)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise IndexError_(f"index database migration failed: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from None


def open_index(url: str) -> tuple[Engine, sessionmaker]:
    """Create the engine, migrate, and return ``(engine, sessionmaker)``."""
    protect_sqlite_file(url)
    try:
        engine = make_engine(url)
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot open the index database '{_redact(url)}': {getattr(exc, 'orig', exc)}") from None
    migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def protect_sqlite_file(url: str) -> None:
    """A SQLite index file (and its -wal/-shm, which SQLite creates with the same mode) is 0600.

    The index holds patient names and sealed secrets: readable by the service's user only,
    whatever the umask. Created empty here (a valid empty database) so it is never briefly 0644.
    """
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return
    path = url[len("sqlite:///"):]
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for p in (path, path + "-wal", path + "-shm"):
            if os.path.exists(p):
                os.chmod(p, 0o600)
    except OSError:
        pass  # the engine reports a path it cannot open, naming it


@contextmanager
def index_sessions(url: str) -> Iterator[sessionmaker]:
    """``open_index`` for a short-lived command: yields the sessionmaker, disposes the engine after."""
    engine, sessions = open_index(url)
    try:
        yield sessions
    finally:
        engine.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
