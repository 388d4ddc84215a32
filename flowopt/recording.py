"""What the scheduler tells a store, as a protocol — the engine never imports the store.

`flowopt.store.Store` implements `Recorder` on SQL; `MemoryRecorder` keeps everything in
process (tests, throw-away runs). Records are frozen values. A recorder must be safe to
call from worker threads: `save_outputs`, `load` and `log_metric` are called from them.
"""
from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Protocol

from .artifacts import decode, encode


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact: id, type, content hash and size in bytes."""

    id: str
    type: str
    hash: str
    size: int


@dataclass(frozen=True)
class ExecutionRecord:
    """One node's execution within a run (``status``: succeeded, cached, failed, skipped)."""

    run_id: str
    node_id: str
    kind: str
    kind_version: int
    cache_key: str
    status: str
    config: Mapping[str, Any]
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = 0.0
    inputs: Mapping[str, ArtifactRef] = field(default_factory=dict)
    outputs: Mapping[str, ArtifactRef] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    position: int = 0  # the node's index in the graph's topological order
    id: str = field(default_factory=new_id)


@dataclass(frozen=True)
class RunInfo:
    """What a recorder needs to open a run."""

    pipeline: str
    seed: int
    params: Mapping[str, Any]
    spec: Mapping[str, Any]
    source: str | None = None


class Recorder(Protocol):
    location: str

    def begin_run(self, info: RunInfo) -> str: ...

    def find_cached(self, cache_keys: Iterable[str]) -> dict[str, dict[str, ArtifactRef]]:
        """``cache_key -> {port: ref}`` for keys with a succeeded execution."""

    def save_outputs(self, node_id: str, values: Mapping[str, Any]) -> dict[str, ArtifactRef]: ...

    def load(self, ref: ArtifactRef) -> Any: ...

    def record_execution(self, record: ExecutionRecord) -> None: ...

    def log_metric(self, run_id: str, node_id: str, key: str, value: float,
                   step: int | None) -> None: ...

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None: ...


def content_hash(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=20).hexdigest()


class MemoryRecorder:
    """An in-process recorder: same semantics as the store, nothing on disk."""

    location = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, tuple[str, str, bytes]] = {}
        self.executions: list[ExecutionRecord] = []
        self.metrics: list[tuple[str, str, str, float, int | None]] = []

    def begin_run(self, info: RunInfo) -> str:
        run_id = new_id()
        self.runs[run_id] = {"info": info, "status": "running", "error": None}
        return run_id

    def find_cached(self, cache_keys: Iterable[str]) -> dict[str, dict[str, ArtifactRef]]:
        wanted = set(cache_keys)
        with self._lock:
            return {r.cache_key: dict(r.outputs) for r in self.executions
                    if r.status == "succeeded" and r.cache_key in wanted}

    def save_outputs(self, node_id: str, values: Mapping[str, Any]) -> dict[str, ArtifactRef]:
        refs = {}
        for port, value in values.items():
            type_name, fmt, payload = encode(value)
            ref = ArtifactRef(new_id(), type_name, content_hash(payload), len(payload))
            with self._lock:
                self.blobs[ref.id] = (type_name, fmt, payload)
            refs[port] = ref
        return refs

    def load(self, ref: ArtifactRef) -> Any:
        return decode(*self.blobs[ref.id])

    def record_execution(self, record: ExecutionRecord) -> None:
        with self._lock:
            self.executions.append(record)

    def log_metric(self, run_id: str, node_id: str, key: str, value: float,
                   step: int | None) -> None:
        with self._lock:
            self.metrics.append((run_id, node_id, key, value, step))

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self.runs[run_id].update(status=status, error=error)
