"""Writing and reading tuner trials: the `Store` half of `flowopt.tuning.records.TrialRecorder`.

A mixin of `Store`. Trial rows are written directly (one small transaction each, not
through the row buffer) because resume depends on them: after a ``kill -9`` every
trial that finished is in the table, and its child run was flushed when it ended. A
trial row also makes its child run a child: ``runs.parent_run_id`` is set in the same
transaction (once: a resumed copy of a trial leaves its child run where it was).

Which earlier run a tuner resumes from is decided here, from the rows: the newest
(by start time) tuning run of the same pipeline and node whose trials carry the same
``tuner_key``, unless that run is still alive — ``running`` and, on this host, its
process exists, or on another host its heartbeat is fresh (`liveness`).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, select, update

from flowopt.recording import ArtifactRef

from .liveness import HOST, STALE_SECONDS, pid_alive
from .rows import clean_text
from .schema import Artifact, Edge, Execution, PrunerEvent, PrunerState, Run, Trial

FULL_ID = 32  # hex digits of a run id (`flowopt.recording.new_id`); shorter is a prefix


def _trial_info(row: Any) -> Any:
    """A trial row as the frozen record (`flowopt.tuning.records.FrozenTrial`)."""
    from flowopt.tuning.records import FrozenTrial

    objectives = row.get("objectives")
    return FrozenTrial(run_id=row["run_id"], node_id=row["node_id"], number=row["number"],
                       params=row["params"] or {}, status=row["status"],
                       trial_run_id=row["trial_run_id"],
                       values=row["objective"] if objectives is None else tuple(objectives),
                       started_at=row["started_at"], ended_at=row["ended_at"],
                       seconds=row["seconds"] or 0.0, error=row["error"],
                       steps=row.get("steps"), rung=row.get("rung"),
                       attributes=row["attributes"] or {})


def _alive(status: str, host: str | None, pid: int | None, beat: datetime | None) -> bool:
    if status != "running":
        return False
    if host == HOST and pid:
        return pid_alive(pid)
    if beat is None:
        return False
    beat = beat if beat.tzinfo else beat.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - beat).total_seconds() < STALE_SECONDS


def _upsert_trial(conn: Any, trial: Any) -> None:
    """Write trial ``(run_id, node_id, number)`` in `conn`'s transaction (see record_trial)."""
    key = {"run_id": trial.run_id, "node_id": trial.node_id, "number": trial.number}
    values = {"trial_run_id": trial.trial_run_id, "params": dict(trial.params),
              "objective": trial.objective, "status": trial.status,
              "objectives": list(trial.values) if trial.values and len(trial.values) > 1
              else None,
              "started_at": trial.started_at, "ended_at": trial.ended_at,
              "seconds": trial.seconds, "error": clean_text(trial.error),
              "attributes": dict(trial.attributes),
              "steps": getattr(trial, "steps", None), "rung": getattr(trial, "rung", None)}
    changed = conn.execute(update(Trial).where(
        Trial.run_id == trial.run_id, Trial.node_id == trial.node_id,
        Trial.number == trial.number).values(**values)).rowcount
    if not changed:
        conn.execute(insert(Trial), [{**key, **values}])
    if trial.trial_run_id:
        conn.execute(update(Run).where(Run.id == trial.trial_run_id,
                                       Run.parent_run_id.is_(None))
                     .values(parent_run_id=trial.run_id))


class TuningStore:
    engine: Any

    def record_trial(self, trial: Any) -> None:
        """Insert or update trial ``(run_id, node_id, number)``; set its child run's parent."""
        self._write(lambda conn: _upsert_trial(conn, trial))  # type: ignore[attr-defined]

    def _tuning_rows(self, pipeline: str, exclude_run: str, node_id: str | None = None) -> list:
        query = (select(Trial.__table__, Run.started_at.label("run_started_at"),
                        Run.status.label("run_status"), Run.host, Run.pid, Run.heartbeat_at)
                 .join(Run, Run.id == Trial.run_id)
                 .where(Run.pipeline == pipeline, Trial.run_id != exclude_run))
        if node_id is not None:
            query = query.where(Trial.node_id == node_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(Trial.started_at, Trial.number)).mappings())

    def resumable_trials(self, *, pipeline: str, node_id: str, tuner_key: str,
                         exclude_run: str) -> list[Any]:
        """The trials of the run this tuner resumes from (module docstring); [] if none."""
        rows = [r for r in self._tuning_rows(pipeline, exclude_run, node_id)
                if (r["attributes"] or {}).get("tuner_key") == tuner_key]
        runs = {r["run_id"]: r for r in rows}
        candidates = [r for r in runs.values()
                      if not _alive(r["run_status"], r["host"], r["pid"], r["heartbeat_at"])]
        if not candidates:
            return []
        newest = max(candidates, key=lambda r: r["run_started_at"])["run_id"]
        return sorted((_trial_info(r) for r in rows if r["run_id"] == newest),
                      key=lambda t: t.number)

    def warm_trials(self, *, pipeline: str, space_key: str, exclude_run: str) -> list[Any]:
        """Finished trials of earlier tuning runs over the same space, one per child run."""
        from flowopt.tuning.records import one_per_child

        rows = [r for r in self._tuning_rows(pipeline, exclude_run)
                if (r["attributes"] or {}).get("space_key") == space_key]
        return one_per_child(_trial_info(r) for r in rows)

    def record_pruner_events(self, run_id: str, node_id: str, events: Any,
                             state: Any = None, trials: Any = ()) -> None:
        """Append a tuner's pruner log, replace its pruner's state and write the trial
        rows the decision changed, in one transaction
        (`flowopt.tuning.records.PrunerRecorder`)."""
        now = datetime.now(timezone.utc)
        rows = [{"run_id": run_id, "node_id": node_id, "event": e["event"],
                 "number": e["number"], "step": e.get("step"), "value": e.get("value"),
                 "checkpoint_id": e.get("checkpoint_id"), "status": e.get("status"),
                 "logged_at": now} for e in events]

        def write(conn: Any) -> None:
            for trial in trials:
                _upsert_trial(conn, trial)
            if rows:
                conn.execute(insert(PrunerEvent), rows)
            if state is not None:
                where = (PrunerState.run_id == run_id) & (PrunerState.node_id == node_id)
                if not conn.execute(update(PrunerState).where(where).values(
                        state=dict(state), updated_at=now)).rowcount:
                    conn.execute(insert(PrunerState), [{"run_id": run_id, "node_id": node_id,
                                                        "state": dict(state),
                                                        "updated_at": now}])

        self._write(write)  # type: ignore[attr-defined]

    def pruner_events(self, run_id: str, node_id: str) -> list[dict[str, Any]]:
        """A tuner's pruner log in a run, in the order it was recorded."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(PrunerEvent.event, PrunerEvent.number, PrunerEvent.step,
                       PrunerEvent.value, PrunerEvent.checkpoint_id, PrunerEvent.status)
                .where(PrunerEvent.run_id == run_id, PrunerEvent.node_id == node_id)
                .order_by(PrunerEvent.id)).mappings()
            return [dict(row) for row in rows]

    def pruner_state(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        """A tuner's pruner state as last stored in a run (None if none)."""
        with self.engine.connect() as conn:
            return conn.execute(select(PrunerState.state).where(
                PrunerState.run_id == run_id, PrunerState.node_id == node_id)).scalar()

    def run_outputs(self, run_id: str) -> dict[str, dict[str, ArtifactRef]]:
        """``node_id -> {port: ref}`` of a run's succeeded or cached executions; pass a
        ref to `Store.load` for the value. `run_id` may be any unique prefix, as on the
        command line; an unknown or ambiguous one raises `StoreError`."""
        if len(run_id) < FULL_ID:
            run_id = self.resolve_run_id(run_id)  # type: ignore[attr-defined]
        self.flush()  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Execution.node_id, Edge.port, Artifact.id, Artifact.type, Artifact.hash,
                       Artifact.size)
                .join(Edge, (Edge.execution_id == Execution.id) & (Edge.role == "output"))
                .join(Artifact, Artifact.id == Edge.artifact_id)
                .where(Execution.run_id == run_id,
                       Execution.status.in_(("succeeded", "cached")))).all()
        outputs: dict[str, dict[str, ArtifactRef]] = {}
        for node_id, port, aid, atype, digest, size in rows:
            outputs.setdefault(node_id, {})[port] = ArtifactRef(aid, atype, digest, size)
        if not outputs:
            self.resolve_run_id(run_id)  # type: ignore[attr-defined]  # no such run: say so
        return outputs


__all__ = ["TuningStore"]
