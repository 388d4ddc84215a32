"""The store's tables: typed SQLAlchemy 2 models, boring on purpose.

Lineage is plain foreign keys: an `Execution` belongs to a `Run`; an `Artifact` names
the execution that produced it; `Edge` rows say which execution consumed (``input``) or
returned (``output``) which artifact — a cached execution lists the artifacts it reused
as outputs, so every run has a complete picture. Params keep their JSON value and, when
numeric, a float copy for comparisons in queries. Metric rows with ``step`` NULL are a
node's final values (metric ports, and the last point of each logged series). A metric
``value`` NULL is NaN: SQLite cannot keep a NaN in a REAL column, and one convention on
both databases keeps filters alike (NaN matches no comparison); ±inf are stored as is.
Tuning adds two tables: a `Trial` row per trial of a tuner node (each trial is itself a
child `Run`, ``parent_run_id`` pointing at the tuning run, so its executions, artifacts
and metrics are recorded like any run's), and a `PopulationEvent` row per PBT
exploit/explore decision. `SourceFile` rows name the files (and their content hashes)
that nodes read, where lineage ends. Timestamps are UTC. Schema changes go through the Alembic
migrations in ``migrations/``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import json
import math

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class JSONText(TypeDecorator):
    """JSON kept as text. SQLite gives a column declared JSON numeric affinity, which turns
    the text '2.0' into the integer 2; storing TEXT keeps every value's type exactly."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, allow_nan=True)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:  # a damaged row: show it as such, never break the whole query
            return Unreadable()


class Unreadable(str):
    """A stored value that cannot be decoded (e.g. a param row holding invalid JSON): it
    reads as ``<unreadable>`` in its place, so one damaged row never breaks a listing."""

    def __new__(cls) -> "Unreadable":
        return super().__new__(cls, "<unreadable>")


class MetricValue(TypeDecorator):
    """A metric's float: NaN is written as NULL and read back as NaN (module docstring)."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> float | None:
        return None if value is None or value != value else value

    def process_result_value(self, value: Any, dialect: Any) -> float:
        return math.nan if value is None else value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSONText}


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]]
    source: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    flowopt_version: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    source_hash: Mapped[str | None] = mapped_column(String(64))  # of the pipeline file
    parent_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True)  # a trial's tuning run


class Param(Base):
    __tablename__ = "params"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Optional[Any]] = mapped_column(JSONText)  # a YAML null is SQL NULL
    value_num: Mapped[float | None] = mapped_column(Float)


class Execution(Base):
    __tablename__ = "executions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)  # the node's place in the graph's order
    kind: Mapped[str] = mapped_column(String(200))
    kind_version: Mapped[int] = mapped_column(Integer)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)


class Artifact(Base):
    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(40))
    format: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    inline: Mapped[bytes | None] = mapped_column(LargeBinary)
    execution_id: Mapped[str | None] = mapped_column(ForeignKey("executions.id", ondelete="SET NULL"),
                                                     index=True)
    port: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Edge(Base):
    __tablename__ = "edges"
    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"),
                                              primary_key=True)
    role: Mapped[str] = mapped_column(String(6), primary_key=True)  # input | output
    port: Mapped[str] = mapped_column(String(200), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"),
                                             index=True)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key", "run_id", "node_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    step: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(MetricValue, nullable=True)  # NULL is NaN
    logged_at: Mapped[datetime]


class Trial(Base):
    """One trial of a tuner node; its work is the child run ``trial_run_id``."""

    __tablename__ = "trials"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"),
                                                     index=True)
    params: Mapped[dict[str, Any]]
    objective: Mapped[float | None] = mapped_column(Float)
    #: every objective of a multi-objective trial (JSON list; NULL with one objective)
    objectives: Mapped[list[float] | None] = mapped_column(JSONText)
    status: Mapped[str] = mapped_column(String(20))  # running | succeeded | failed | pruned
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONText)  # strategy-specific
    steps: Mapped[int | None] = mapped_column(Integer)  # training steps run (with a pruner)
    rung: Mapped[int | None] = mapped_column(Integer)  # with a pruner: the last rung reached


class PrunerEvent(Base):
    """One event of a tuner's pruner (flowopt.tuning.pruners), in the order it happened:
    ``add`` (``step`` = the first stop), ``issue`` (train on to ``step``), ``report``
    (``value`` at ``step``, ``checkpoint_id`` the paused state), ``fail``, and ``tell``
    (the strategy was told ``value`` with ``status``: a resumed run re-tells them)."""

    __tablename__ = "pruner_events"
    __table_args__ = (Index("ix_pruner_events_run", "run_id", "node_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(10))
    number: Mapped[int] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    checkpoint_id: Mapped[str | None] = mapped_column(String(32))  # artifact id
    status: Mapped[str | None] = mapped_column(String(20))  # tell: the status told
    logged_at: Mapped[datetime]


class PrunerState(Base):
    """A tuner's pruner state (`flowopt.tuning.pruner.Pruner.state`) as of its last
    decision in a run: what a resumed run rebuilds the pruner from."""

    __tablename__ = "pruner_states"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONText)
    updated_at: Mapped[datetime]


class PopulationEvent(Base):
    """A PBT decision: at ``step``, ``member`` copied ``from_member`` and/or changed params."""

    __tablename__ = "population_events"
    __table_args__ = (Index("ix_population_events_run", "run_id", "node_id", "member"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(200))
    member: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(20))  # exploit | explore | start | finish
    from_member: Mapped[int | None] = mapped_column(Integer)
    old_params: Mapped[dict[str, Any] | None] = mapped_column(JSONText)
    new_params: Mapped[dict[str, Any] | None] = mapped_column(JSONText)
    score: Mapped[float | None] = mapped_column(Float)
    from_score: Mapped[float | None] = mapped_column(Float)
    checkpoint_id: Mapped[str | None] = mapped_column(String(32))  # artifact id
    logged_at: Mapped[datetime]


class StoreInfo(Base):
    """Facts about the store itself, e.g. ``artifact_root``: where its blobs live."""

    __tablename__ = "store_info"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SourceFile(Base):
    """A file a node reads (a `Path` field of its config), by cache key: the file's content
    hash is part of the key, so one key always means the same bytes. Lineage ends here."""

    __tablename__ = "source_files"
    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(200), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    hash: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
