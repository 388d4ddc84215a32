"""Where a store lives: a directory or a SQLAlchemy URL, plus its artifact root.

* A directory ``DIR`` is ``sqlite:///DIR/flowopt.db`` with blobs in ``DIR/artifacts``.
* A URL keeps its blobs under, in order: the URL's ``artifacts`` query parameter
  (``postgresql+psycopg://host/db?artifacts=/srv/flowopt-blobs``, removed before the URL
  reaches the driver), ``$FLOWOPT_ARTIFACTS``, a directory ``artifacts`` beside a SQLite
  file, else ``./.flowopt/artifacts``.

That choice is made once: the root belongs to the store. `Store` records it in the
database (``store_info``) when the store is created and uses the recorded root from then
on, whatever the current directory; a later location that *names* another root
(``artifacts=``, ``?artifacts=``, ``$FLOWOPT_ARTIFACTS`` for a URL) is an error rather
than a second, wrong root (`settle_root`). A root inside a SQLite store's directory is
recorded relative to the database file, so the directory can be moved as a whole.

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
    root_named: str | None = None  # what named the artifact root, if anything did

    @property
    def database(self) -> Path | None:
        """The SQLite database file, if the store is one."""
        return self.folder / "flowopt.db" if self.folder is not None else self.database_file


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
        return Location(f"sqlite:///{folder / 'flowopt.db'}", root, text, folder,
                        root_named="--artifacts" if artifacts else None)
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
    env = _env_artifacts()
    chosen = artifacts or from_url or env
    named = ("--artifacts" if artifacts else "the URL's ?artifacts=" if from_url
             else "$FLOWOPT_ARTIFACTS" if env else None)
    sqlite_file = (Path(url.database) if url.get_backend_name() == "sqlite"
                   and url.database not in (None, "", ":memory:") else None)
    if chosen is None and sqlite_file is not None:
        root = sqlite_file.parent / "artifacts"
    else:
        root = Path(chosen) if chosen else Path(".flowopt") / "artifacts"
    return Location(url.render_as_string(hide_password=False), root,
                    url.render_as_string(hide_password=True), database_file=sqlite_file,
                    root_named=named)


def root_to_record(where: Location) -> str:
    """How the chosen root is written down: relative to a SQLite file's directory when it
    lies inside it, else absolute."""
    root = where.artifact_root.absolute()
    database = where.database
    if database is not None:
        try:
            return root.relative_to(database.absolute().parent).as_posix() or "."
        except ValueError:
            pass
    return str(root)


def recorded_root(where: Location, recorded: str) -> Path:
    """The artifact root a store recorded, as a path."""
    path = Path(recorded)
    if not path.is_absolute() and where.database is not None:
        return where.database.parent / path
    return path


def settle_root(where: Location, recorded: str) -> Path:
    """The store's own root; an error if the location named a different one."""
    root = recorded_root(where, recorded)
    if where.root_named and os.path.realpath(where.artifact_root) != os.path.realpath(root):
        raise StoreError(f"the store at '{where.display}' keeps its artifacts in {root}, but "
                         f"{where.root_named} names {where.artifact_root}",
                         hint="a store has one artifact root, recorded when it was created: "
                              "drop the other root, or name the store it belongs to")
    return root


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
        damaged = any(word in reason.lower() for word in ("malformed", "not a database"))
        return StoreError(f"cannot open the store database {url.database}: {reason}",
                          hint="the file is damaged (truncated or overwritten): restore it "
                               "from a backup; flowopt does not repair or recreate it"
                          if damaged else "check that the store directory exists and is writable")
    return StoreError(f"cannot connect to the store database at {where} "
                      f"({url.get_backend_name()}, database '{url.database}'): {reason}",
                      hint="check that the server is running and the URL is right")
