"""Lineage: where an artifact came from and what used it, across runs, in one query each.

Upstream follows ``artifact → the execution that produced it → the artifacts it
consumed → …`` as a recursive CTE (SQLite and PostgreSQL both have them), so a
1,000-node ancestry costs one round trip instead of one per node. It ends at the
source files the producing nodes read (`SourceFile`, by cache key). Downstream follows
``artifact → executions that consumed it → their outputs → …``; a cached execution in a
later run counts as a consumer too, since it re-used the artifact.

An artifact is named by its id, any unique prefix of it, or ``RUN:NODE[.PORT]`` (a run
id prefix and a node of that run; the port defaults to the node's only output).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from flowopt.errors import StoreError

from .queries import resolve_prefix
from .records import ArtifactRecord, Lineage, LineageEntry, SourceFile as SourceRecord
from .schema import Artifact, Edge, Execution, Run, SourceFile


def _upstream_ids(artifact_id: str) -> Any:
    anchor = select(Artifact.id.label("artifact_id")).where(Artifact.id == artifact_id)
    up = anchor.cte("up", recursive=True)
    produced, consumed = aliased(Artifact), aliased(Edge)
    up = up.union(select(consumed.artifact_id)
                  .join_from(up, produced, produced.id == up.c.artifact_id)
                  .join(consumed, and_(consumed.execution_id == produced.execution_id,
                                       consumed.role == "input")))
    return up


def _downstream_ids(artifact_id: str) -> Any:
    anchor = select(Artifact.id.label("artifact_id")).where(Artifact.id == artifact_id)
    down = anchor.cte("down", recursive=True)
    used, made = aliased(Edge), aliased(Edge)
    down = down.union(select(made.artifact_id)
                      .join_from(down, used, and_(used.artifact_id == down.c.artifact_id,
                                                  used.role == "input"))
                      .join(made, and_(made.execution_id == used.execution_id,
                                       made.role == "output")))
    return down


class LineageQueries:
    engine: Any
    location: str

    def resolve_artifact_id(self, name: str) -> str:
        """The full id of an artifact: an id prefix, or ``RUN:NODE[.PORT]``."""
        with self.engine.connect() as conn:
            if ":" not in name:
                return resolve_prefix(conn, Artifact.id, name, "artifact", self.location)
            run_part, _, node_part = name.partition(":")
            run_id = resolve_prefix(conn, Run.id, run_part, "run", self.location)
            rows = conn.execute(select(Execution.node_id, Edge.port, Edge.artifact_id)
                                .join(Edge, and_(Edge.execution_id == Execution.id,
                                                 Edge.role == "output"))
                                .where(Execution.run_id == run_id)).all()
        outputs = {(n, p): a for n, p, a in rows}
        if node_part in {n for n, _ in outputs}:
            ports = sorted(p for n, p in outputs if n == node_part)
            if len(ports) == 1:
                return outputs[(node_part, ports[0])]
            raise StoreError(f"node '{node_part}' of run {run_id[:12]} has several outputs: "
                             + ", ".join(f"{node_part}.{p}" for p in ports), hint="name one")
        node, _, port = node_part.rpartition(".")
        if (node, port) in outputs:
            return outputs[(node, port)]
        known = ", ".join(sorted(f"{n}.{p}" for n, p in outputs)) or "none"
        raise StoreError(f"run {run_id[:12]} has no output '{node_part}'", hint=f"outputs: {known}")

    def lineage(self, artifact: str, direction: str = "both") -> Lineage:
        """An artifact's ancestry (`direction` 'upstream'), descendants ('downstream') or
        both, with the source files its ancestry read."""
        if direction not in ("upstream", "downstream", "both"):
            raise StoreError(f"unknown lineage direction '{direction}'",
                             hint="upstream, downstream or both")
        artifact_id = self.resolve_artifact_id(artifact)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Artifact.id, Artifact.type, Artifact.size, Artifact.hash, Artifact.format,
                       Artifact.port, Execution.node_id, Execution.run_id)
                .outerjoin(Execution, Execution.id == Artifact.execution_id)
                .where(Artifact.id == artifact_id)).one()
            record = ArtifactRecord(id=row.id, node=row.node_id or "", port=row.port or "",
                                    type=row.type, size=row.size, hash=row.hash, format=row.format)
            upstream: tuple[LineageEntry, ...] = ()
            sources: tuple[SourceRecord, ...] = ()
            downstream: tuple[LineageEntry, ...] = ()
            if direction in ("upstream", "both"):
                upstream, sources = self._upstream(conn, artifact_id)
            if direction in ("downstream", "both"):
                downstream = self._downstream(conn, artifact_id)
        return Lineage(record, row.run_id, upstream, downstream, sources)

    @staticmethod
    def _upstream(conn: Any, artifact_id: str) -> tuple[tuple[LineageEntry, ...], tuple[SourceRecord, ...]]:
        up = _upstream_ids(artifact_id)
        rows = conn.execute(
            select(Artifact.id, Artifact.port, Artifact.type, Artifact.hash, Execution.node_id,
                   Execution.run_id, Execution.kind, Execution.status, Execution.cache_key,
                   Execution.position)
            .join_from(up, Artifact, Artifact.id == up.c.artifact_id)
            .join(Execution, Execution.id == Artifact.execution_id)
            .order_by(Execution.run_id, Execution.position.desc(), Artifact.port)).all()
        entries = tuple(LineageEntry(artifact=r.id, node=r.node_id, run_id=r.run_id, kind=r.kind,
                                     status=r.status, port=r.port, type=r.type, hash=r.hash)
                        for r in rows if r.id != artifact_id)
        files = conn.execute(
            select(Execution.node_id, SourceFile.field, SourceFile.path, SourceFile.hash,
                   SourceFile.size)
            .join_from(up, Artifact, Artifact.id == up.c.artifact_id)
            .join(Execution, Execution.id == Artifact.execution_id)
            .join(SourceFile, SourceFile.cache_key == Execution.cache_key)
            .order_by(SourceFile.path, Execution.node_id)).all()
        sources = tuple(dict.fromkeys(SourceRecord(node=f.node_id, field=f.field, path=f.path,
                                                   hash=f.hash, size=f.size) for f in files))
        return entries, sources

    @staticmethod
    def _downstream(conn: Any, artifact_id: str) -> tuple[LineageEntry, ...]:
        down = _downstream_ids(artifact_id)
        used, made, product = aliased(Edge), aliased(Edge), aliased(Artifact)
        rows = conn.execute(
            select(used.artifact_id.label("via"), made.artifact_id, made.port, product.type,
                   product.hash, Execution.node_id, Execution.run_id, Execution.kind,
                   Execution.status)
            .join_from(down, used, and_(used.artifact_id == down.c.artifact_id,
                                        used.role == "input"))
            .join(Execution, Execution.id == used.execution_id)
            .outerjoin(made, and_(made.execution_id == used.execution_id, made.role == "output"))
            .outerjoin(product, product.id == made.artifact_id)
            .order_by(Execution.run_id, Execution.position, made.port)).all()
        seen: set[tuple] = set()
        entries = []
        for r in rows:
            key = (r.artifact_id, r.run_id, r.node_id)
            if key in seen:
                continue
            seen.add(key)
            entries.append(LineageEntry(artifact=r.artifact_id, node=r.node_id, run_id=r.run_id,
                                        kind=r.kind, status=r.status, port=r.port, type=r.type,
                                        hash=r.hash, via=r.via))
        return tuple(entries)

    def record_sources(self, files: list[dict[str, Any]]) -> None:
        """Remember the files nodes read: ``{cache_key, field, path, hash, size}`` each."""
        if not files:
            return
        keys = sorted({f["cache_key"] for f in files})
        with self.engine.connect() as conn:
            known = set(conn.execute(select(SourceFile.cache_key, SourceFile.field)
                                     .where(SourceFile.cache_key.in_(keys))).all())
        new = [f for f in files if (f["cache_key"], f["field"]) not in known]
        if not new:
            return
        from sqlalchemy import insert
        from sqlalchemy.exc import IntegrityError

        try:
            self._write(lambda conn: conn.execute(insert(SourceFile), new))  # type: ignore[attr-defined]
        except IntegrityError:  # another process recorded the same file at the same moment
            pass
