"""Schema migrations: every store is created and upgraded by the Alembic scripts.

Opening a store checks its revision with one cheap query and imports Alembic only when
an upgrade is due. A store written by a newer flowopt (an unknown revision) is refused
rather than silently misread. On SQLite the upgrade runs under an exclusive file lock,
so many processes opening a brand-new store at once do not race to create tables.
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
REVISIONS = ("0001", "0002")  # oldest first; the last one is head
HEAD = REVISIONS[-1]


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


@contextlib.contextmanager
def _creation_lock(engine: Engine) -> Iterator[None]:
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
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _creation_lock(engine):
        if current_revision(engine) == HEAD:
            return
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
