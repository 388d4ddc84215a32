"""Frozen records returned by store queries (never ORM rows), with their JSON shapes.

The ``to_json`` methods produce the contract of DESIGN.md §4, shared by ``--json``
output, the Python API and the tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping


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

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "pipeline": self.pipeline, "status": self.status,
                "started_at": _iso(self.started_at), "ended_at": _iso(self.ended_at),
                "params": dict(self.params), "metrics": dict(self.metrics),
                "seed": self.seed, "error": self.error, "source": self.source}


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

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "cache_key": self.cache_key, "seconds": self.seconds,
                "inputs": list(self.inputs), "outputs": list(self.outputs), "error": self.error,
                "execution_id": self.execution_id, "config": dict(self.config)}


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
class RunDetail:
    run: RunRecord
    nodes: tuple[NodeRecord, ...]
    artifacts: tuple[ArtifactRecord, ...]
    trials: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.run.to_json(), "nodes": [n.to_json() for n in self.nodes],
                "artifacts": [a.to_json() for a in self.artifacts],
                "trials": [dict(t) for t in self.trials]}
