"""Where a store lives: a directory or a SQLAlchemy URL, plus its artifact root.

* A directory ``DIR`` is ``sqlite:///DIR/flowopt.db`` with blobs in ``DIR/artifacts``.
* A URL keeps its blobs under, in order: the URL's ``artifacts`` query parameter
  (``postgresql+psycopg://host/db?artifacts=/srv/flowopt-blobs``, removed before the URL
  reaches the driver), ``$FLOWOPT_ARTIFACTS``, a directory ``artifacts`` beside a SQLite
  file, else ``./.flowopt/artifacts``.

URLs are shown with the password masked, in every message and in `Store.location`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flowopt.errors import StoreError

ARTIFACTS_ENV = ("FLOWOPT_ARTIFACTS", "FLOWOPT_ARTIFACT_ROOT")  # the second: older name


@dataclass(frozen=True)
class Location:
    url: str  # what SQLAlchemy connects to (may hold a password)
    artifact_root: Path
    display: str  # safe to print
    folder: Path | None = None  # the store directory, for a directory location
    database_file: Path | None = None  # the SQLite file of a sqlite:/// URL


def _env_artifacts() -> str | None:
    return next((os.environ[name] for name in ARTIFACTS_ENV if os.environ.get(name)), None)


def safe_url(url: str) -> str:
    """The URL with its password masked (falls back to dropping everything before '@')."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL must still print safely
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


def resolve(location: str | os.PathLike, artifacts: str | os.PathLike | None = None) -> Location:
    """Split a store location into its database URL and artifact root."""
    text = os.fspath(location)
    if "://" not in text:
        folder = Path(text)
        root = Path(artifacts) if artifacts else folder / "artifacts"
        return Location(f"sqlite:///{folder / 'flowopt.db'}", root, text, folder)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreError(f"cannot read the store URL '{safe_url(text)}'",
                         hint="write a directory or a SQLAlchemy URL such as "
                              "postgresql+psycopg://user@host/db") from None
    query = dict(url.query)
    from_url = query.pop("artifacts", None)
    if isinstance(from_url, tuple):
        from_url = from_url[-1]
    url = url.set(query=query)
    chosen = artifacts or from_url or _env_artifacts()
    sqlite_file = (Path(url.database) if url.get_backend_name() == "sqlite"
                   and url.database not in (None, "", ":memory:") else None)
    if chosen is None and sqlite_file is not None:
        root = sqlite_file.parent / "artifacts"
    else:
        root = Path(chosen) if chosen else Path(".flowopt") / "artifacts"
    return Location(url.render_as_string(hide_password=False), root,
                    url.render_as_string(hide_password=True), database_file=sqlite_file)


def describe_connection_error(location: Location, exc: BaseException) -> StoreError:
    """One line about an unreachable database: host and database, never the password."""
    from sqlalchemy.engine import make_url

    url = make_url(location.url)
    where = url.host or url.database or location.display
    if url.port:
        where = f"{where}:{url.port}"
    reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0] if str(exc) else ""
    if url.password:
        reason = reason.replace(str(url.password), "***")
    if url.get_backend_name() == "sqlite":
        return StoreError(f"cannot open the store database {url.database}: {reason}",
                          hint="check that the store directory exists and is writable")
    return StoreError(f"cannot connect to the store database at {where} "
                      f"({url.get_backend_name()}, database '{url.database}'): {reason}",
                      hint="check that the server is running and the URL is right")
