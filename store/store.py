"""The SQL store: implements the engine's `Recorder` and answers queries about runs.

Writing. Blobs are written by worker threads as soon as a node returns (atomically,
content-addressed); small artifacts (≤ `INLINE_LIMIT` bytes: metrics, JSON) go inline in
the database instead. Rows are buffered and written in batches (executemany, one
transaction) every `FLUSH_ROWS` rows or `FLUSH_SECONDS`, and when the run ends — the
per-node cost of recording is a few list appends. A crash can lose at most the last
unflushed batch; those nodes are simply recomputed on the next run.

Reading. Queries return the frozen records of `records.py`, never ORM rows, and import
neither torch nor numba.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from flowopt.errors import StoreError
from flowopt.recording import ArtifactRef, ExecutionRecord, RunInfo, content_hash, new_id, utcnow

from .blobs import BlobStore
from .records import ArtifactRecord, NodeRecord, RunDetail, RunRecord
from .schema import Artifact, Edge, Execution, Metric, Param, Run

INLINE_LIMIT = 4096
FLUSH_ROWS = 2000
FLUSH_SECONDS = 2.0
_IN_CHUNK = 500  # SQLite's bound-parameter limit is the smallest we support
_OPEN: "weakref.WeakSet[Store]" = weakref.WeakSet()


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    """A flowopt store: a SQL database plus a directory of artifact blobs."""

    def __init__(self, url: str, artifact_root: str | os.PathLike, *, location: str | None = None):
        self.url, self.location = url, location or url
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.blobs = BlobStore(artifact_root)
        self._lock = threading.Lock()
        self._pending_artifacts: dict[str, dict[str, Any]] = {}
        self._rows: dict[type, list[dict[str, Any]]] = defaultdict(list)
        self._row_count = 0
        self._last_flush = time.monotonic()
        self._series_last: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        self._final_keys: dict[str, set[tuple[str, str]]] = defaultdict(set)
        _OPEN.add(self)

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, location: str | os.PathLike, *, create: bool = True) -> "Store":
        """Open (and create or upgrade) the store at a directory or SQLAlchemy URL."""
        location = os.fspath(location)
        if "://" in location:
            root = os.environ.get("FLOWOPT_ARTIFACT_ROOT") or str(Path(".flowopt") / "artifacts")
            if location.startswith("sqlite:///") and "FLOWOPT_ARTIFACT_ROOT" not in os.environ:
                root = str(Path(location[len("sqlite:///"):]).parent / "artifacts")
            store = cls(location, root, location=location)
        else:
            folder = Path(location)
            if not (folder / "flowopt.db").is_file() and not create:
                raise StoreError(f"no flowopt store at '{location}'",
                                 hint="run a pipeline first, or pass --store")
            folder.mkdir(parents=True, exist_ok=True)
            store = cls(f"sqlite:///{folder / 'flowopt.db'}", folder / "artifacts",
                        location=location)
        from .migrate import upgrade

        upgrade(store.engine)
        return store

    def close(self) -> None:
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
        with self.engine.begin() as conn:
            conn.execute(insert(Run), [{
                "id": run_id, "pipeline": info.pipeline, "status": "running", "seed": info.seed,
                "spec": dict(info.spec), "source": info.source, "host": socket.gethostname(),
                "pid": os.getpid(), "flowopt_version": __version__, "started_at": now,
                "heartbeat_at": now}])
            if info.params:
                conn.execute(insert(Param), [
                    {"run_id": run_id, "key": k, "value": v, "value_num": _numeric(v)}
                    for k, v in info.params.items()])
        return run_id

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
                "ended_at": record.ended_at, "seconds": record.seconds, "error": record.error})
            for port, ref in record.outputs.items():
                row = self._pending_artifacts.pop(ref.id, None)
                if row is not None:
                    self._rows[Artifact].append({**row, "execution_id": record.id})
                self._rows[Edge].append({"execution_id": record.id, "role": "output",
                                         "port": port, "artifact_id": ref.id})
            for port, ref in record.inputs.items():
                self._rows[Edge].append({"execution_id": record.id, "role": "input",
                                         "port": port, "artifact_id": ref.id})
            now = utcnow()
            for key, value in record.metrics.items():
                self._final_keys[record.run_id].add((record.node_id, key))
                self._rows[Metric].append({"run_id": record.run_id, "node_id": record.node_id,
                                           "key": key, "step": None, "value": value,
                                           "logged_at": now})
            self._row_count += 1 + len(record.outputs) + len(record.inputs) + len(record.metrics)
        self._maybe_flush()

    def log_metric(self, run_id: str, node_id: str, key: str, value: float,
                   step: int | None) -> None:
        with self._lock:
            self._rows[Metric].append({"run_id": run_id, "node_id": node_id, "key": key,
                                       "step": step, "value": value, "logged_at": utcnow()})
            self._series_last[run_id][(node_id, key)] = value
            self._row_count += 1

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        now = utcnow()
        with self._lock:
            finals = self._series_last.pop(run_id, {})
            ported = self._final_keys.pop(run_id, set())
            for (node_id, key), value in finals.items():
                if (node_id, key) not in ported:
                    self._rows[Metric].append({"run_id": run_id, "node_id": node_id, "key": key,
                                               "step": None, "value": value, "logged_at": now})
        self.flush()
        self._write(lambda conn: conn.execute(
            update(Run).where(Run.id == run_id).values(status=status, error=error,
                                                       ended_at=now, heartbeat_at=now)))

    def _maybe_flush(self) -> None:
        if self._row_count >= FLUSH_ROWS or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows in one transaction (parents before children)."""
        with self._lock:
            batches = [(table, self._rows.pop(table, [])) for table in (Execution, Artifact, Edge, Metric)]
            self._row_count = 0
            self._last_flush = time.monotonic()
        if not any(rows for _, rows in batches):
            return

        def write(conn: Any) -> None:
            for table, rows in batches:
                if rows:
                    conn.execute(insert(table), rows)

        self._write(write)

    def _write(self, work: Any, attempts: int = 8) -> None:
        """Run `work(conn)` in a transaction, retrying with backoff while the DB is locked."""
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    work(conn)
                return
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)

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
        return decode(type_name, fmt, payload)

    # -- queries ---------------------------------------------------------------------
    def resolve_run_id(self, prefix: str) -> str:
        """The full id of the one run whose id starts with `prefix`."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(Run.id).where(Run.id.startswith(prefix, autoescape=True))
                               .limit(2)).scalars().all()
        if not ids:
            raise StoreError(f"no run with id '{prefix}' in {self.location}")
        if len(ids) > 1:
            raise StoreError(f"run id prefix '{prefix}' is ambiguous", hint="give more characters")
        return ids[0]

    def runs(self, *, pipeline: str | None = None, status: str | None = None,
             limit: int | None = 50) -> list[RunRecord]:
        """Runs, newest first, with their params and final metrics."""
        query = select(Run.__table__).order_by(Run.started_at.desc(), Run.id)
        if pipeline:
            query = query.where(Run.pipeline == pipeline)
        if status:
            query = query.where(Run.status == status)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            ids = [r["id"] for r in rows]
            params, metrics = self._params_and_metrics(conn, ids)
        return [self._run_record(r, params[r["id"]], metrics[r["id"]]) for r in rows]

    def run(self, run_id: str) -> RunDetail:
        """One run in full: nodes (with lineage), artifacts, params, metrics."""
        run_id = self.resolve_run_id(run_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(Run.__table__).where(Run.id == run_id)).mappings().one()
            params, metrics = self._params_and_metrics(conn, [run_id])
            executions = conn.execute(select(Execution.__table__).where(Execution.run_id == run_id)
                                      .order_by(Execution.position)
                                      ).mappings().all()
            edges = conn.execute(
                select(Edge.execution_id, Edge.role, Edge.port.label("edge_port"),
                       *Artifact.__table__.columns)
                .join(Artifact, Artifact.id == Edge.artifact_id)
                .join(Execution, Execution.id == Edge.execution_id)
                .where(Execution.run_id == run_id).order_by(Edge.port)).mappings().all()
        by_execution: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"input": [], "output": []})
        node_of = {e["id"]: e["node_id"] for e in executions}
        artifacts: dict[str, ArtifactRecord] = {}
        for edge in edges:
            by_execution[edge["execution_id"]][edge["role"]].append(edge["id"])
            if edge["role"] == "output":
                artifacts[edge["id"]] = ArtifactRecord(
                    id=edge["id"], node=node_of[edge["execution_id"]], port=edge["edge_port"],
                    type=edge["type"], size=edge["size"], hash=edge["hash"], format=edge["format"])
        nodes = tuple(NodeRecord(
            id=e["node_id"], kind=e["kind"], status=e["status"], cache_key=e["cache_key"],
            seconds=e["seconds"], inputs=tuple(by_execution[e["id"]]["input"]),
            outputs=tuple(by_execution[e["id"]]["output"]), error=e["error"],
            execution_id=e["id"], config=e["config"]) for e in executions)
        record = self._run_record(row, params[run_id], metrics[run_id])
        return RunDetail(run=record, nodes=nodes, artifacts=tuple(artifacts.values()))

    def metric_series(self, run_id: str, key: str) -> list[tuple[int | None, float]]:
        """``(step, value)`` points of metric ``node.key`` in a run, in step order."""
        run_id = self.resolve_run_id(run_id)
        node_id, _, name = key.rpartition(".")
        with self.engine.connect() as conn:
            rows = conn.execute(select(Metric.step, Metric.value)
                                .where(Metric.run_id == run_id, Metric.node_id == node_id,
                                       Metric.key == name, Metric.step.is_not(None))
                                .order_by(Metric.step, Metric.id)).all()
        return [(step, value) for step, value in rows]

    @staticmethod
    def _params_and_metrics(conn: Any, ids: list[str]) -> tuple[dict, dict]:
        params: dict[str, dict[str, Any]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            for run_id, key, value in conn.execute(
                    select(Param.run_id, Param.key, Param.value).where(Param.run_id.in_(chunk))):
                params[run_id][key] = value
            for run_id, node_id, key, value in conn.execute(
                    select(Metric.run_id, Metric.node_id, Metric.key, Metric.value)
                    .where(Metric.run_id.in_(chunk), Metric.step.is_(None))
                    .order_by(Metric.id)):
                metrics[run_id][f"{node_id}.{key}"] = value
        return params, metrics

    @staticmethod
    def _run_record(row: Mapping[str, Any], params: dict, metrics: dict) -> RunRecord:
        return RunRecord(run_id=row["id"], pipeline=row["pipeline"], status=row["status"],
                         started_at=row["started_at"], ended_at=row["ended_at"],
                         params=params, metrics=metrics, seed=row["seed"], error=row["error"],
                         source=row["source"])
