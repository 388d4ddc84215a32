"""Frozen records returned by store queries (never ORM rows), with their JSON shapes.

The ``to_json`` methods produce the contract in docs/cli.md, shared by ``--json``
output, the Python API and the tests.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes; every stored time is UTC)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    pipeline: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    seed: int = 0
    error: str | None = None
    source: str | None = None
    parent_run_id: str | None = None  # set on a tuner's trial runs

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "pipeline": self.pipeline, "status": self.status,
                "started_at": _iso(self.started_at), "ended_at": _iso(self.ended_at),
                "params": dict(self.params), "metrics": dict(self.metrics),
                "seed": self.seed, "error": self.error, "source": self.source,
                "parent_run_id": self.parent_run_id}

    def flat(self) -> dict[str, Any]:
        """One flat row (``params.X``, ``metrics.X`` columns) for tables and DataFrames."""
        return {"run_id": self.run_id, "pipeline": self.pipeline, "status": self.status,
                "started_at": self.started_at, "ended_at": self.ended_at, "seconds": self.seconds,
                **{f"params.{k}": v for k, v in self.params.items()},
                **{f"metrics.{k}": v for k, v in self.metrics.items()}}


class Runs(list):
    """The result of `Store.runs`: a list of `RunRecord`s, plus notes about the filter
    (e.g. a metric no run has) and a pandas view."""

    def __init__(self, records: Iterable[RunRecord] = (), notes: Iterable[str] = ()):
        super().__init__(records)
        self.notes: tuple[str, ...] = tuple(notes)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self]

    def to_pandas(self) -> Any:
        """A DataFrame, one row per run (needs pandas: ``pip install flowopt[pandas]``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Runs.to_pandas needs pandas: pip install 'flowopt[pandas]'") from None
        return pd.DataFrame([r.flat() for r in self])


@dataclass(frozen=True)
class MetricPoint:
    """One point of a metric series; ``step`` None is the node's final value."""

    node: str
    key: str
    step: int | None
    value: float
    logged_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "key": self.key, "step": self.step, "value": self.value,
                "logged_at": _iso(self.logged_at)}


@dataclass(frozen=True)
class NodeRecord:
    id: str
    kind: str
    status: str
    cache_key: str
    seconds: float
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    error: str | None
    execution_id: str
    config: Mapping[str, Any] = field(default_factory=dict)
    reused_from: Any = None  # a cached node: the `browse.Reuse` that computed its outputs

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "cache_key": self.cache_key, "seconds": self.seconds,
                "inputs": list(self.inputs), "outputs": list(self.outputs), "error": self.error,
                "execution_id": self.execution_id, "config": dict(self.config),
                **({"reused_from": self.reused_from.to_json()} if self.reused_from else {})}


@dataclass(frozen=True)
class ArtifactRecord:
    id: str
    node: str
    port: str
    type: str
    size: int
    hash: str
    format: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "port": self.port, "type": self.type,
                "size": self.size, "hash": self.hash, "format": self.format}


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a tuner node (its work is the child run ``trial_run_id``)."""

    node: str
    number: int
    params: Mapping[str, Any]
    objective: float | None
    status: str
    trial_run_id: str | None
    seconds: float = 0.0
    error: str | None = None
    steps: int = 0  # training steps the trial ran (0: unknown, e.g. it failed)
    rung: int | None = None  # with a pruner: the last rung reached
    objectives: tuple[float | None, ...] | None = None  # several objectives, in order
    from_run: str | None = None  # set when a cached tuner node reused an earlier run's trials

    def to_json(self) -> dict[str, Any]:
        """A one-objective trial has ``objective``; a multi-objective one ``objectives``
        (non-finite values as null: the output is strict JSON)."""
        data = {"number": self.number, "params": dict(self.params), "status": self.status,
                "node": self.node, "trial_run_id": self.trial_run_id,
                "seconds": self.seconds, "error": self.error, "steps": self.steps,
                "rung": self.rung}
        if self.objectives is not None:
            data["objectives"] = [v if v is not None and math.isfinite(v) else None
                                  for v in self.objectives]
        else:
            data["objective"] = self.objective
        if self.from_run:
            data["from_run"] = self.from_run
        return data


@dataclass(frozen=True)
class RunDetail:
    run: RunRecord
    nodes: tuple[NodeRecord, ...]
    artifacts: tuple[ArtifactRecord, ...]
    trials: tuple[TrialRecord, ...] = ()
    # Final metrics a cached run shows from the executions it reused: NODE.KEY -> run id.
    reused_metrics: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.run.to_json(), "nodes": [n.to_json() for n in self.nodes],
                "artifacts": [a.to_json() for a in self.artifacts],
                "trials": [t.to_json() for t in self.trials],
                **({"reused_metrics": dict(self.reused_metrics)} if self.reused_metrics else {})}


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: every param and final metric of any of them, per run."""

    runs: tuple[RunRecord, ...]
    params: Mapping[str, tuple[Any, ...]]  # key -> one value per run (None where absent)
    metrics: Mapping[str, tuple[float | None, ...]]

    @staticmethod
    def differs(values: tuple[Any, ...]) -> bool:
        return len({repr(v) for v in values}) > 1

    def to_json(self) -> dict[str, Any]:
        ids = [r.run_id for r in self.runs]

        def table(values: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
            return {k: {"values": dict(zip(ids, v)), "differs": self.differs(v)}
                    for k, v in values.items()}

        return {"runs": [r.to_json() for r in self.runs], "params": table(self.params),
                "metrics": table(self.metrics),
                "different": {"params": [k for k, v in self.params.items() if self.differs(v)],
                              "metrics": [k for k, v in self.metrics.items() if self.differs(v)]}}


@dataclass(frozen=True)
class LineageEntry:
    """An artifact in another's ancestry (upstream) or descendants (downstream), with the
    node execution that produced or consumed it."""

    artifact: str | None
    node: str
    run_id: str
    kind: str
    status: str
    port: str | None = None
    type: str | None = None
    hash: str | None = None
    via: str | None = None  # downstream: the artifact this execution consumed

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "node": self.node, "run_id": self.run_id,
                "kind": self.kind, "status": self.status, "port": self.port, "type": self.type,
                "hash": self.hash, **({"via": self.via} if self.via else {})}


@dataclass(frozen=True)
class SourceFile:
    """A file a node read (a `Path` field of its config), with its content hash."""

    node: str
    field: str
    path: str
    hash: str | None
    size: int | None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "field": self.field, "path": self.path, "hash": self.hash,
                "size": self.size}


@dataclass(frozen=True)
class Lineage:
    artifact: ArtifactRecord
    run_id: str | None
    upstream: tuple[LineageEntry, ...]
    downstream: tuple[LineageEntry, ...]
    sources: tuple[SourceFile, ...]

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact.id, "node": self.artifact.node, "run_id": self.run_id,
                "hash": self.artifact.hash, "type": self.artifact.type,
                "upstream": [e.to_json() for e in self.upstream],
                "downstream": [e.to_json() for e in self.downstream],
                "sources": [s.to_json() for s in self.sources]}
