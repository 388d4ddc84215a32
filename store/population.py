"""PBT lineage in the store: ``population_events`` rows, written and read back as records.

Each exploit/explore decision of a ``tuner.pbt`` node is one row (schema.PopulationEvent),
written as it happens, in its own short transaction — a killed run keeps every decision
it made, and the resumed run rebuilds its members from them. Events are ordered by their
autoincrement id, which is the order the controller made them in.

Checkpoints are artifacts of type ``checkpoint`` that belong to no execution (``port``
names the member and step); events refer to them by artifact id, so copying a member is
recording the source's id, and resuming is loading it. What a checkpoint holds, and
when to write one, is PBT's business (`flowopt.nodes.tuner.pbt.checkpoints`): it reaches
this module only through the recorder protocol (`PopulationStore`).

The store does not import the node library: `write_events` takes any objects with the
event's attributes (``member, step, event, new_params, old_params, from_member, score,
from_score, checkpoint_id``), and reads return `PopulationEventRecord`, which has the same
attributes, so the controller's ``fold`` accepts them directly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from flowopt.recording import content_hash, new_id, utcnow

from .schema import Artifact, PopulationEvent

FIELDS = ("member", "step", "event", "new_params", "old_params", "from_member", "score",
          "from_score", "checkpoint_id")


@dataclass(frozen=True)
class PopulationEventRecord:
    id: int
    run_id: str
    node_id: str
    member: int
    step: int
    event: str
    new_params: Mapping[str, Any] | None
    old_params: Mapping[str, Any] | None
    from_member: int | None
    score: float | None
    from_score: float | None
    checkpoint_id: str | None
    logged_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "node_id": self.node_id, "member": self.member,
                "step": self.step, "event": self.event, "from_member": self.from_member,
                "old_params": self.old_params, "new_params": self.new_params,
                "score": _finite(self.score), "from_score": _finite(self.from_score),
                "checkpoint_id": self.checkpoint_id}


@dataclass(frozen=True)
class ScheduleRow:
    """One point of a member's history: from ``step`` on it trains with ``params``."""

    member: int
    step: int
    event: str
    params: Mapping[str, Any]
    score: float | None
    from_member: int | None

    def to_json(self) -> dict[str, Any]:
        return {"member": self.member, "step": self.step, "event": self.event,
                "params": dict(self.params), "score": _finite(self.score),
                "from_member": self.from_member}


def _finite(value: float | None) -> float | None:
    """NaN/inf as JSON null (a diverged member's score): JSON has no NaN."""
    return value if value is None or math.isfinite(value) else None


def _score(value: Any) -> float | None:
    # SQLite stores NaN as NULL; keep a diverged score NaN in memory and NULL on disk.
    return None if value is None or not math.isfinite(float(value)) else float(value)


def write_events(engine: Engine, run_id: str, node_id: str, events: Iterable[Any],
                 *, attempts: int = 8) -> int:
    """Insert events (objects with the event attributes) in one transaction; returns the count.

    Retries with backoff while SQLite reports the database locked (other writers).
    """
    now = utcnow()
    rows = []
    for e in events:
        row = {name: getattr(e, name) for name in FIELDS}
        row["new_params"] = dict(row["new_params"]) if row["new_params"] is not None else None
        row["old_params"] = dict(row["old_params"]) if row["old_params"] is not None else None
        row["score"], row["from_score"] = _score(row["score"]), _score(row["from_score"])
        rows.append({**row, "run_id": run_id, "node_id": node_id, "logged_at": now})
    if rows:
        _retry(lambda conn: conn.execute(insert(PopulationEvent), rows), engine, attempts)
    return len(rows)


def read_events(engine: Engine, run_id: str, node_id: str | None = None
                ) -> list[PopulationEventRecord]:
    """A run's population events in the order they were made (optionally one node's)."""
    table = PopulationEvent.__table__
    query = select(table).where(table.c.run_id == run_id).order_by(table.c.id)
    if node_id is not None:
        query = query.where(table.c.node_id == node_id)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [PopulationEventRecord(
        id=r["id"], run_id=r["run_id"], node_id=r["node_id"], member=r["member"],
        step=r["step"], event=r["event"], new_params=r["new_params"],
        old_params=r["old_params"], from_member=r["from_member"],
        score=math.nan if r["score"] is None and r["event"] in ("keep", "finish", "exploit")
        else r["score"],
        from_score=r["from_score"], checkpoint_id=r["checkpoint_id"],
        logged_at=r["logged_at"]) for r in rows]


def tuner_nodes(engine: Engine, run_id: str) -> list[str]:
    """The ids of the nodes of a run that recorded population events."""
    table = PopulationEvent.__table__
    with engine.connect() as conn:
        return list(conn.execute(select(table.c.node_id).where(table.c.run_id == run_id)
                                 .distinct().order_by(table.c.node_id)).scalars())


def run_spec(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """The pipeline spec run `run_id` recorded (None for an unknown run)."""
    from .schema import Run

    with engine.connect() as conn:
        spec = conn.execute(select(Run.spec).where(Run.id == run_id)).scalar_one_or_none()
    return spec if isinstance(spec, dict) else None


def tuner_inputs(engine: Engine, run_id: str, node_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(pipeline spec, {port: ArtifactRef})`` a run's tuner node read: what replay needs
    to train again on the same inputs (the tuner's input edges are its frontier)."""
    from flowopt.recording import ArtifactRef

    from .schema import Edge, Execution

    spec = run_spec(engine, run_id)
    if spec is None:
        raise KeyError(f"no run {run_id}")
    with engine.connect() as conn:
        rows = conn.execute(
            select(Edge.port, Artifact.id, Artifact.type, Artifact.hash, Artifact.size)
            .join(Execution, Execution.id == Edge.execution_id)
            .join(Artifact, Artifact.id == Edge.artifact_id)
            .where(Execution.run_id == run_id, Execution.node_id == node_id,
                   Execution.status == "succeeded", Edge.role == "input")).all()
    return spec, {port: ArtifactRef(aid, atype, digest, size)
                  for port, aid, atype, digest, size in rows}


def schedule_rows(events: Iterable[Any], member: int) -> list[ScheduleRow]:
    """A member's own history as rows: start, each ready point, each copy, the finish.

    ``params`` is what the member trains with from ``step`` on; ``score`` the score it
    had reached at that point (None where it has none, e.g. at the start or right
    after an explore, whose score is the copied one's).
    """
    rows: list[ScheduleRow] = []
    params: Mapping[str, Any] = {}
    for e in events:
        if e.member != member:
            continue
        if e.event in ("start", "explore", "exploit"):
            params = dict(e.new_params or {})
        score = e.from_score if e.event == "explore" else e.score
        rows.append(ScheduleRow(member=member, step=e.step, event=e.event, params=params,
                                score=score, from_member=e.from_member))
    return rows


def schedule(engine: Engine, run_id: str, member: int, node_id: str | None = None, *,
             as_frame: bool = False) -> Any:
    """Member `member`'s hyperparameter schedule in a run, as frozen rows or a DataFrame.

    ``as_frame=True`` returns a pandas DataFrame with one column per hyperparameter
    (pandas is an optional dependency: the `test` extra installs it).
    """
    rows = schedule_rows(read_events(engine, run_id, node_id), member)
    if not as_frame:
        return rows
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the test extra
        raise ImportError("schedule(as_frame=True) needs pandas; pip install pandas") from exc
    return pd.DataFrame([{"member": r.member, "step": r.step, "event": r.event,
                          "score": r.score, "from_member": r.from_member, **r.params}
                         for r in rows])


class PopulationStore:
    """The `Store` half of `flowopt.tuning.records.PopulationRecorder` (a mixin of `Store`).

    Events and checkpoint rows are written at once, each in its own short transaction,
    not through the store's row buffer: resume depends on them after a ``kill -9``.
    """

    engine: Any

    def record_population_events(self, run_id: str, node_id: str, events: Iterable[Any]) -> None:
        write_events(self.engine, run_id, node_id, events)

    def population_events(self, run_id: str, node_id: str) -> list[PopulationEventRecord]:
        return read_events(self.engine, run_id, node_id)

    def population_nodes(self, run_id: str) -> list[str]:
        return tuner_nodes(self.engine, run_id)

    def node_inputs(self, run_id: str, node_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return tuner_inputs(self.engine, run_id, node_id)

    def run_source_hash(self, run_id: str) -> str | None:
        from .schema import Run

        with self.engine.connect() as conn:
            return conn.execute(select(Run.source_hash).where(Run.id == run_id)).scalar()

    def save_checkpoint(self, label: str, payload: bytes, fmt: str,
                        checkpoint_id: str | None = None) -> str:
        """A ``checkpoint`` artifact of no execution (``port`` = `label`); returns its id
        (`checkpoint_id` if given: a caller that writes behind names it in advance)."""
        from .store import INLINE_LIMIT

        digest = content_hash(payload)
        inline = payload if len(payload) <= INLINE_LIMIT else None
        if inline is None:
            self.blobs.put(digest, payload)  # type: ignore[attr-defined]
        checkpoint_id = checkpoint_id or new_id()
        row = {"id": checkpoint_id, "hash": digest, "type": "checkpoint", "format": fmt,
               "size": len(payload), "inline": inline, "execution_id": None,
               "port": label, "created_at": utcnow()}
        _retry(lambda conn: conn.execute(insert(Artifact), [row]), self.engine)
        return checkpoint_id

    def load_checkpoint(self, checkpoint_id: str) -> bytes:
        with self.engine.connect() as conn:
            row = conn.execute(select(Artifact.hash, Artifact.inline, Artifact.type)
                               .where(Artifact.id == checkpoint_id)).one_or_none()
        if row is None or row.type != "checkpoint":
            raise KeyError(f"no checkpoint '{checkpoint_id}' in the store")
        return row.inline if row.inline is not None else self.blobs.get(row.hash)  # type: ignore[attr-defined]


def _retry(work: Any, engine: Engine, attempts: int = 8) -> None:
    """Run `work(conn)` in a transaction, retrying with backoff while SQLite is locked."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                work(conn)
            return
        except OperationalError as exc:
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)
