"""What the scheduler tells a store, as a protocol — the engine never imports the store.

`flowopt.store.Store` implements `Recorder` on SQL; `MemoryRecorder` keeps everything in
process (tests, throw-away runs). Records are frozen values. A recorder must be safe to
call from worker threads: `save_outputs`, `load` and `log_metric` are called from them.
"""
from __future__ import annotations

import hashlib
import json
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
    parent_run_id: str | None = None  # a tuner's trial: the tuning run


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


def newest_run(trials: Iterable[Any], order: Mapping[str, Any]) -> list[Any]:
    """The trials of the run that sorts last by `order` (run id -> sort key)."""
    by_run: dict[str, list[Any]] = {}
    for trial in trials:
        by_run.setdefault(trial.run_id, []).append(trial)
    if not by_run:
        return []
    newest = max(by_run, key=lambda run_id: order[run_id])
    return sorted(by_run[newest], key=lambda t: t.number)


def one_per_child(trials: Iterable[Any]) -> list[Any]:
    """Finished trials (``trial.finished``), de-duplicated by child run (resumed copies share one), in order."""
    seen: set[str] = set()
    kept = []
    for trial in trials:
        if not trial.finished:
            continue
        ident = trial.trial_run_id or f"{trial.run_id}:{trial.node_id}:{trial.number}"
        if ident in seen:
            continue
        seen.add(ident)
        kept.append(trial)
    return kept


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
        self.trials: dict[tuple[str, str, int], Any] = {}  # (run, node, number) -> TrialInfo
        self.population: list[tuple[str, str, Any]] = []  # (run, node, event), in order
        self.checkpoints: dict[str, bytes] = {}
        self.pruner: list[tuple[str, str, dict[str, Any]]] = []  # (run, node, event), in order
        self.pruner_states: dict[tuple[str, str], Any] = {}  # (run, node) -> latest state

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

    # -- trials (flowopt.tuning.records.TrialRecorder; it imports this module) ---------
    def record_trial(self, trial: Any) -> None:
        with self._lock:
            self.trials[(trial.run_id, trial.node_id, trial.number)] = trial
            if trial.trial_run_id in self.runs:
                self.runs[trial.trial_run_id]["parent"] = trial.run_id

    def _tuning_trials(self, pipeline: str, exclude_run: str, **attributes: str) -> list[Any]:
        with self._lock:
            trials = list(self.trials.values())
        return [t for t in trials if t.run_id != exclude_run
                and self.runs[t.run_id]["info"].pipeline == pipeline
                and all(t.attributes.get(k) == v for k, v in attributes.items())]

    def resumable_trials(self, *, pipeline: str, node_id: str, tuner_key: str,
                         exclude_run: str) -> list[Any]:
        trials = [t for t in self._tuning_trials(pipeline, exclude_run, tuner_key=tuner_key)
                  if t.node_id == node_id]
        order = {run_id: index for index, run_id in enumerate(self.runs)}  # insertion = time
        return newest_run(trials, order)

    def warm_trials(self, *, pipeline: str, space_key: str, exclude_run: str) -> list[Any]:
        trials = self._tuning_trials(pipeline, exclude_run, space_key=space_key)
        return one_per_child(sorted(trials, key=lambda t: (t.started_at is None, t.started_at)))

    def run_outputs(self, run_id: str) -> dict[str, dict[str, ArtifactRef]]:
        with self._lock:
            return {r.node_id: dict(r.outputs) for r in self.executions
                    if r.run_id == run_id and r.status in ("succeeded", "cached")}

    # -- populations (flowopt.tuning.records.PopulationRecorder) ----------------------
    def record_population_events(self, run_id: str, node_id: str, events: Iterable[Any]) -> None:
        with self._lock:
            self.population.extend((run_id, node_id, e) for e in events)

    def population_events(self, run_id: str, node_id: str) -> list[Any]:
        with self._lock:
            return [e for r, n, e in self.population if r == run_id and n == node_id]

    def population_nodes(self, run_id: str) -> list[str]:
        with self._lock:
            return sorted({n for r, n, _ in self.population if r == run_id})

    def node_inputs(self, run_id: str, node_id: str) -> tuple[Mapping[str, Any],
                                                              dict[str, ArtifactRef]]:
        with self._lock:
            refs = next((dict(r.inputs) for r in self.executions if r.run_id == run_id
                         and r.node_id == node_id and r.status == "succeeded"), {})
        return self.runs[run_id]["info"].spec, refs

    def run_source_hash(self, run_id: str) -> str | None:
        source = self.runs[run_id]["info"].source
        if not source:
            return None
        from pathlib import Path

        path = Path(source)
        return content_hash(path.read_bytes()) if path.is_file() else None

    def save_checkpoint(self, label: str, payload: bytes, fmt: str,
                        checkpoint_id: str | None = None) -> str:
        checkpoint_id = checkpoint_id or new_id()
        with self._lock:
            self.checkpoints[checkpoint_id] = payload
        return checkpoint_id

    def load_checkpoint(self, checkpoint_id: str) -> bytes:
        return self.checkpoints[checkpoint_id]

    # -- pruners (flowopt.tuning.records.PrunerRecorder) ------------------------------
    def record_pruner_events(self, run_id: str, node_id: str,
                             events: Iterable[Mapping[str, Any]],
                             state: Mapping[str, Any] | None = None,
                             trials: Iterable[Any] = ()) -> None:
        for trial in trials:
            self.record_trial(trial)
        with self._lock:
            self.pruner.extend((run_id, node_id, dict(e)) for e in events)
            if state is not None:
                self.pruner_states[(run_id, node_id)] = json.loads(json.dumps(state))

    def pruner_state(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.pruner_states.get((run_id, node_id))

    def pruner_events(self, run_id: str, node_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for r, n, e in self.pruner if r == run_id and n == node_id]
