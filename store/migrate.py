"""Schema migrations: every store is created and upgraded by the Alembic scripts.

Opening a store checks its revision with one cheap query and imports Alembic only when
an upgrade is due. A store written by a newer flowopt (an unknown revision) is refused
rather than silently misread. The upgrade runs under an exclusive lock — a file lock
beside a SQLite database, a session advisory lock on PostgreSQL — and re-reads the
revision once it holds it, so many processes opening a brand-new store at the same
moment do not race to create tables (a known MLflow failure): one creates, the rest
wait and find the schema at head.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from flowopt.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")  # oldest first; the last one is head
HEAD = REVISIONS[-1]


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


ADVISORY_LOCK_KEY = 0x666C6F776F7074  # "flowopt": one key for every flowopt schema upgrade


@contextlib.contextmanager
def _creation_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Bring the store's schema to `HEAD` (create it if empty)."""
    revision = current_revision(engine)
    if revision == HEAD:
        return
    if revision is not None and revision not in REVISIONS:
        raise StoreError(f"this store has schema revision {revision}, newer than this flowopt "
                         f"understands (up to {HEAD})", hint="upgrade flowopt")
    with _creation_lock(engine):
        if current_revision(engine) == HEAD:  # another process upgraded it while we waited
            return
        migrate_to(engine, "head")


def migrate_to(engine: Engine, revision: str) -> None:
    """Run the Alembic scripts up to `revision` in one transaction (no lock: see `upgrade`)."""
    from alembic import command  # imported only by the one process that upgrades
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A batch migration recreates a table (copy, drop, rename); with foreign keys on,
            # dropping `runs` would cascade-delete every param, execution and metric. The
            # pragma is ignored inside a transaction, so it goes first.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
