"""The SQL store: implements the engine's `Recorder` and answers queries about runs.

Writing. Blobs are written by worker threads as soon as a node returns (atomically,
content-addressed); small artifacts (≤ `INLINE_LIMIT` bytes: metrics, JSON) go inline in
the database instead. Rows are buffered and written in batches (executemany, one
transaction) every `FLUSH_ROWS` rows or `FLUSH_SECONDS`, and when the run ends — the
per-node cost of recording is a few list appends, and a single `log_metric` is three
array appends (no SQL; `rows.MetricBuffer` keeps a point in 24 bytes). A row the
database refuses is dropped alone, with a warning (`rows.write_each`); NaN metrics are
stored as NULL and read back as NaN (`schema.MetricValue`). A background thread
(`liveness.Heartbeat`) flushes every `FLUSH_SECONDS` while a run is open (sooner when
`FLUSH_ROWS` rows wait) and stamps its heartbeat; an ``atexit`` hook flushes on a
normal exit. A ``kill -9`` loses at most the last second of rows; those nodes are
simply recomputed on the next run.

Many writers. SQLite runs in WAL mode with a busy timeout, and every write transaction
is retried with exponential backoff while the database is locked (or, on PostgreSQL, on a
deadlock or serialization failure), so "database is locked" never reaches the user.

Reading (`queries.Queries`, `lineage.LineageQueries`) and upkeep
(`integrity.Integrity`) are mixins: this module is the writing half.
"""
from __future__ import annotations

import os
import random
import socket
import threading
import time
import weakref
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from flowopt.errors import StoreError
from flowopt.recording import ArtifactRef, ExecutionRecord, RunInfo, content_hash, new_id, utcnow

from .blobs import BlobStore
from .browse import BrowseQueries
from .integrity import Integrity
from .lineage import LineageQueries
from .liveness import FLUSH_SECONDS, Heartbeat, track
from .location import Location, describe_connection_error, resolve, root_to_record, settle_root
from .queries import IN_CHUNK, Queries
from .rows import ROW_ERRORS, MetricBuffer, clean_text, write_each
from .schema import Artifact, Edge, Execution, Metric, Param, Run, StoreInfo
from .tuning import TuningStore
from .population import PopulationStore

INLINE_LIMIT = 4096
FLUSH_ROWS = 2000  # buffered rows that wake the flusher early
BLOCK_ROWS = 8 * FLUSH_ROWS  # buffered rows at which a logger flushes itself (backpressure)
_IN_CHUNK = IN_CHUNK
_OPEN: "weakref.WeakSet[Store]" = weakref.WeakSet()
_RETRYABLE = ("locked", "busy", "deadlock", "could not serialize")


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: the next pragma may wait for a lock
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store(Queries, LineageQueries, Integrity, TuningStore, PopulationStore, BrowseQueries):
    """A flowopt store: a SQL database plus a directory of artifact blobs.

    ``Store(location)`` opens (creating or upgrading) the store at a directory or a
    SQLAlchemy URL; see `flowopt.store.location` for where its artifacts live.
    """

    def __init__(self, location: str | os.PathLike, artifact_root: str | os.PathLike | None = None,
                 *, create: bool = True, artifacts: str | os.PathLike | None = None):
        if artifact_root is None:
            where = resolve(location, artifacts)
            if where.folder is not None:
                _check_folder(where, create)
            elif where.database_file is not None and create:
                _make_folder(where.database_file.parent)
        else:  # an explicit database URL and artifact root
            where = Location(os.fspath(location), Path(artifact_root), os.fspath(location),
                             root_named="artifact_root")
        if where.database is not None:
            _refuse_empty_database(where.database, where.display)
        self.url, self.location = where.url, where.display
        try:
            self.engine: Engine = create_engine(where.url, future=True)
        except ImportError as exc:
            raise StoreError(f"no database driver for '{where.display}': {exc}",
                             hint="for PostgreSQL: pip install 'flowopt[postgres]'") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending_artifacts: dict[str, dict[str, Any]] = {}
        self._rows: dict[type, list[dict[str, Any]]] = defaultdict(list)
        self._metrics = MetricBuffer()
        self.dropped_rows = 0  # rows the database refused (see `rows.write_each`)
        self._row_count = 0
        self._last_flush = time.monotonic()
        self._series_last: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        self._final_keys: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._heartbeat = Heartbeat(self)
        _OPEN.add(self)
        track(self)
        from .migrate import upgrade

        try:
            upgrade(self.engine)
        except StoreError:
            self.engine.dispose()
            raise
        except DBAPIError as exc:
            self.engine.dispose()
            raise describe_connection_error(where, exc) from None
        except OSError as exc:  # e.g. the lock file beside a SQLite database in a read-only folder
            self.engine.dispose()
            raise StoreError(f"cannot open the store at '{where.display}': "
                             f"{exc.strerror or exc}",
                             hint="check that the store directory is writable") from None
        try:
            self.artifact_root = self._own_root(where)
        except BaseException:
            self.engine.dispose()
            raise
        self.blobs = BlobStore(self.artifact_root)

    def _own_root(self, where: Location) -> Path:
        """The artifact root recorded in the store (recording the chosen one if none is)."""
        def read() -> str | None:
            with self.engine.connect() as conn:
                return conn.execute(select(StoreInfo.value)
                                    .where(StoreInfo.key == "artifact_root")).scalar()

        recorded = read()
        if recorded is None:
            try:
                self._write(lambda conn: conn.execute(
                    insert(StoreInfo).values(key="artifact_root", value=root_to_record(where))))
            except IntegrityError:
                pass  # another process recorded it first: theirs stands
            except OperationalError:
                return where.artifact_root  # a read-only store: answer queries, record nothing
            recorded = read()
        return settle_root(where, recorded)

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, location: str | os.PathLike, *, create: bool = True,
             artifacts: str | os.PathLike | None = None) -> "Store":
        """Open (and create or upgrade) the store at a directory or SQLAlchemy URL.

        With ``create=False`` (queries) a missing store directory is an error rather than
        a new empty store. Unreachable databases and unwritable directories raise a
        one-line `StoreError` that never shows a password. Same as ``Store(location)``.
        """
        return cls(location, create=create, artifacts=artifacts)

    def close(self) -> None:
        self._heartbeat.stop()
        self.flush()
        self.engine.dispose()

    @staticmethod
    def dispose_all() -> None:
        """Close every open store's connections (tests dropping a database need this)."""
        for store in list(_OPEN):
            store.engine.dispose()

    # -- Recorder: writing -----------------------------------------------------------
    def begin_run(self, info: RunInfo) -> str:
        from flowopt import __version__

        run_id = new_id()
        now = utcnow()
        row = {"id": run_id, "pipeline": info.pipeline, "status": "running", "seed": info.seed,
               "spec": dict(info.spec), "source": info.source,
               "source_hash": _file_hash(info.source), "host": socket.gethostname(),
               "pid": os.getpid(), "flowopt_version": __version__, "started_at": now,
               "heartbeat_at": now, **self._run_extras(info)}
        params = [{"run_id": run_id, "key": k, "value": v, "value_num": _numeric(v)}
                  for k, v in info.params.items()]

        def write(conn: Any) -> None:
            conn.execute(insert(Run), [row])
            if params:
                conn.execute(insert(Param), params)

        self._write(write)
        self._heartbeat.opened(run_id)
        return run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Add params to a run after it started (a tuner's best: ``TUNER.NAME``); a key the
        run already has keeps its value."""
        def write(conn: Any) -> None:
            have = set(conn.execute(select(Param.key).where(Param.run_id == run_id)).scalars())
            rows = [{"run_id": run_id, "key": k, "value": v, "value_num": _numeric(v)}
                    for k, v in params.items() if k not in have]
            if rows:
                conn.execute(insert(Param), rows)

        self._write(write)

    def _run_extras(self, info: RunInfo) -> dict[str, Any]:
        """Extra columns of a new run row (``parent_run_id`` of a trial run)."""
        parent = getattr(info, "parent_run_id", None)
        return {"parent_run_id": parent} if parent else {}

    def find_cached(self, cache_keys: Iterable[str]) -> dict[str, dict[str, ArtifactRef]]:
        keys = list(dict.fromkeys(cache_keys))
        found: dict[str, dict[str, ArtifactRef]] = {}
        executions: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                rows = conn.execute(
                    select(Execution.cache_key, Execution.id, Edge.port, Artifact.id, Artifact.type,
                           Artifact.hash, Artifact.size, Artifact.inline.is_(None))
                    .join(Edge, (Edge.execution_id == Execution.id) & (Edge.role == "output"))
                    .join(Artifact, Artifact.id == Edge.artifact_id)
                    .where(Execution.status == "succeeded",
                           Execution.cache_key.in_(keys[start:start + _IN_CHUNK]))
                    .order_by(Execution.ended_at))
                for key, execution, port, aid, atype, digest, size, in_blob in rows:
                    if executions.setdefault(key, execution) != execution:
                        continue  # keep one execution's outputs per key
                    if in_blob and not self.blobs.exists(digest):
                        executions[key] = "missing"
                        found.pop(key, None)
                        continue
                    found.setdefault(key, {})[port] = ArtifactRef(aid, atype, digest, size)
        return found

    def save_outputs(self, node_id: str, values: Mapping[str, Any]) -> dict[str, ArtifactRef]:
        from flowopt.artifacts import encode

        refs = {}
        for port, value in values.items():
            type_name, fmt, payload = encode(value)
            digest = content_hash(payload)
            inline = payload if len(payload) <= INLINE_LIMIT else None
            if inline is None:
                self.blobs.put(digest, payload)
            ref = ArtifactRef(new_id(), type_name, digest, len(payload))
            with self._lock:
                self._pending_artifacts[ref.id] = {
                    "id": ref.id, "hash": digest, "type": type_name, "format": fmt,
                    "size": len(payload), "inline": inline, "port": port,
                    "created_at": utcnow()}
            refs[port] = ref
        return refs

    def record_execution(self, record: ExecutionRecord) -> None:
        with self._lock:
            self._rows[Execution].append({
                "id": record.id, "run_id": record.run_id, "node_id": record.node_id,
                "position": record.position, "kind": record.kind, "kind_version": record.kind_version,
                "cache_key": record.cache_key, "status": record.status,
                "config": dict(record.config), "started_at": record.started_at,
                "ended_at": record.ended_at, "seconds": record.seconds,
                "error": clean_text(record.error)})
            for port, ref in record.outputs.items():
                row = self._pending_artifacts.pop(ref.id, None)
                if row is not None:
                    self._rows[Artifact].append({**row, "execution_id": record.id})
                self._rows[Edge].append({"execution_id": record.id, "role": "output",
                                         "port": port, "artifact_id": ref.id})
            for port, ref in record.inputs.items():
                self._rows[Edge].append({"execution_id": record.id, "role": "input",
                                         "port": port, "artifact_id": ref.id})
            now = time.time()
            for key, value in record.metrics.items():
                self._final_keys[record.run_id].add((record.node_id, key))
                self._metrics.add(record.run_id, record.node_id, key, float(value), None, now)
            self._row_count += 1 + len(record.outputs) + len(record.inputs) + len(record.metrics)
        self._maybe_flush()

    def log_metric(self, run_id: str, node_id: str, key: str, value: float,
                   step: int | None) -> None:
        with self._lock:
            self._metrics.add(run_id, node_id, key, value, step, time.time())
            if step is None:  # a final value already: end_run must not copy one more
                self._final_keys[run_id].add((node_id, key))
            else:
                self._series_last[run_id][(node_id, key)] = value
            self._row_count += 1
            waiting = self._row_count
        if waiting >= FLUSH_ROWS:  # by size as well as by time: a fast logger must not
            self._flush_full(waiting)  # grow the buffer without bound

    def log_metrics(self, run_id: str, node_id: str,
                    points: Iterable[tuple[str, float, int | None]]) -> None:
        """Many ``(key, value, step)`` points at once (one lock, one timestamp)."""
        now = time.time()
        with self._lock:
            last, finals = self._series_last[run_id], self._final_keys[run_id]
            for key, value, step in points:
                self._metrics.add(run_id, node_id, key, value, step, now)
                if step is None:
                    finals.add((node_id, key))
                else:
                    last[(node_id, key)] = value
                self._row_count += 1
            waiting = self._row_count
        if waiting >= FLUSH_ROWS:
            self._flush_full(waiting)

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        now = utcnow()
        with self._lock:
            finals = self._series_last.pop(run_id, {})
            ported = self._final_keys.pop(run_id, set())
            for (node_id, key), value in finals.items():
                if (node_id, key) not in ported:
                    self._metrics.add(run_id, node_id, key, value, None, now.timestamp())
        self.flush()
        error = clean_text(error)
        self._write(lambda conn: conn.execute(
            update(Run).where(Run.id == run_id).values(status=status, error=error,
                                                       ended_at=now, heartbeat_at=now)))
        self._heartbeat.closed(run_id)

    def _flush_full(self, waiting: int) -> None:
        """A full buffer: the background flusher writes it without holding up the logger,
        unless it has fallen `BLOCK_ROWS` behind (or is not running), when the logger
        writes the batch itself."""
        if waiting >= BLOCK_ROWS or not self._heartbeat.running:
            self.flush()
        else:
            self._heartbeat.wake()

    def _maybe_flush(self) -> None:
        if self._row_count >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows in one transaction (parents before children).

        One flush at a time: the background thread and a node ending may both flush,
        and a batch's execution rows must land before another batch's edges to them."""
        with self._flush_lock:
            with self._lock:
                batches = [(table, self._rows.pop(table, []))
                           for table in (Execution, Artifact, Edge)]
                metrics = self._metrics.take()
                self._row_count = 0
                self._last_flush = time.monotonic()
            if not any(rows for _, rows in batches) and not len(metrics):
                return

            def write(conn: Any) -> None:
                for table, rows in batches:
                    if rows:
                        conn.execute(insert(table), rows)
                if len(metrics):
                    _insert_metric_points(conn, list(metrics.rows()))

            def write_each_row(conn: Any) -> int:
                dropped = sum(write_each(conn, rows, lambda c, r, t=table: c.execute(insert(t), [r]),
                                         table.__tablename__) for table, rows in batches)
                return dropped + write_each(conn, list(metrics.rows()),
                                            lambda c, r: _insert_metric_points(c, [r]), "metric")

            try:
                try:
                    self._write(write)
                except OperationalError:
                    raise
                except ROW_ERRORS:  # one bad row: write them one by one, drop only the bad
                    self.dropped_rows += self._write(write_each_row)
            except BaseException:
                with self._lock:  # keep the rows for the next flush rather than lose them
                    for table, rows in reversed(batches):
                        self._rows[table][:0] = rows
                    self._metrics.restore(metrics)
                    self._row_count += sum(len(rows) for _, rows in batches) + len(metrics)
                raise

    def _write(self, work: Any, attempts: int = 12) -> Any:
        """Run `work(conn)` in a transaction, retrying with jittered exponential backoff
        while the database is locked (SQLite) or a transaction lost a deadlock (PostgreSQL)."""
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except OperationalError as exc:
                message = str(exc).lower()
                if not any(word in message for word in _RETRYABLE) or attempt == attempts - 1:
                    raise
                time.sleep(min(2.0, 0.02 * 2 ** attempt) * (0.5 + random.random()))

    def load(self, ref: ArtifactRef) -> Any:
        from flowopt.artifacts import decode

        with self._lock:
            pending = self._pending_artifacts.get(ref.id) or next(
                (r for r in self._rows.get(Artifact, []) if r["id"] == ref.id), None)
        if pending is not None:
            type_name, fmt, inline = pending["type"], pending["format"], pending["inline"]
        else:
            with self.engine.connect() as conn:
                row = conn.execute(select(Artifact.type, Artifact.format, Artifact.inline)
                                   .where(Artifact.id == ref.id)).one_or_none()
            if row is None:
                raise StoreError(f"no artifact '{ref.id}' in the store")
            type_name, fmt, inline = row
        payload = inline if inline is not None else self.blobs.get(ref.hash)
        if content_hash(payload) != ref.hash:
            raise StoreError(f"artifact {ref.id} is corrupt: its content does not match its "
                             f"hash {ref.hash[:12]}",
                             hint="run `flowopt store check --repair`; the node that made it "
                                  "will run again")
        return decode(type_name, fmt, payload)


_METRIC_SQL = ("INSERT INTO metrics (run_id, node_id, key, step, value, logged_at) "
               "VALUES (?, ?, ?, ?, ?, ?)")


def _insert_metric_points(conn: Any, rows: list[tuple]) -> None:
    """Metric points ``(run, node, key, step, value, unix time)``. On SQLite straight to
    the driver's executemany: SQLAlchemy's per-row parameter processing costs about as
    much as SQLite's insert itself. Times are written exactly as SQLAlchemy writes them
    there: naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``; points logged within the same second
    share the formatted date and time. NaN is written as NULL (see `schema.MetricValue`)."""
    if conn.dialect.name != "sqlite":
        conn.execute(insert(Metric), [
            {"run_id": r, "node_id": n, "key": k, "step": s, "value": v,
             "logged_at": datetime.fromtimestamp(t, timezone.utc)} for r, n, k, s, v, t in rows])
        return
    second, prefix = -1, ""
    values = []
    for run_id, node_id, key, step, value, moment in rows:
        whole = int(moment)
        if whole != second:
            second, prefix = whole, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
        values.append((run_id, node_id, key, step, None if value != value else value,
                       f"{prefix}.{int((moment - whole) * 1e6):06d}"))
    conn.exec_driver_sql(_METRIC_SQL, values)


def _file_hash(path: str | None) -> str | None:
    """The content hash of the pipeline file a run starts from (``pbt replay --pipeline``
    checks it is handed the same file); None when there is no such file."""
    if not path:
        return None
    try:
        return content_hash(Path(path).read_bytes())
    except OSError:
        return None


def _refuse_empty_database(database: Path, display: str, wait: float = 1.0) -> None:
    """A zero-byte database file is not an empty store but a damaged one (a truncation, a
    copy that failed): opening it would silently start a new store over it. SQLite makes
    the file a moment before it writes the first page, so a brand-new store another
    process is creating is given `wait` seconds to grow."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if database.stat().st_size > 0:
                return
        except OSError:
            return  # absent (a new store) or unreadable (reported when it is opened)
        if time.monotonic() >= deadline:
            raise StoreError(f"the store database {database} is empty (0 bytes): it is not a "
                             f"flowopt store, and '{display}' will not be recreated over it",
                             hint="restore it from a backup, or delete the file to start a new, "
                                  "empty store")
        time.sleep(0.05)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store directory '{folder}': "
                         f"{exc.strerror or exc}") from None


def _check_folder(where: Location, create: bool) -> None:
    folder = where.folder
    assert folder is not None
    if not (folder / "flowopt.db").is_file():
        if not create:
            raise StoreError(f"no flowopt store at '{where.display}'",
                             hint="run a pipeline first, or pass --store")
        _make_folder(folder)
    if create and not os.access(folder, os.W_OK):
        raise StoreError(f"the store directory '{folder}' is not writable",
                         hint="choose another directory with --store, or fix its permissions")
