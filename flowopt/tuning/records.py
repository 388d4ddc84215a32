"""Trial records and the recorder protocols a tuner writes through.

Two types, as in Optuna (`Trial` / `FrozenTrial`): a loop may keep a live `Trial` for a
trial in flight whose state changes many times (reports, pauses, promotions) — mutable,
touched by the loop's thread only — and hands frozen `FrozenTrial` snapshots
(`Trial.freeze`) to the recorder, which stores them and returns frozen ones; nothing
outside a loop ever sees a live trial. (The plain ask → run → tell loop, whose trials
change state only when they start and end, keeps frozen records and replaces them.)

Trial states::

    running ──► succeeded            (every objective produced and finite)
       │   ├──► failed               (a node failed, a compile error, an objective missing
       │   │                          or not finite; `error` says which)
       │   ├──► paused ──► running   (a pruner paused it at a rung; promoted, it resumes
       │   │      │                   from its checkpoint)
       │   │      └──► pruned        (never promoted: ended for good)
       │   ├──► pruned               (stopped early by the pruner)
       │   └──► interrupted          (Ctrl-C; re-run on resume)

``succeeded``, ``failed`` and ``pruned`` are final (`FINISHED`): a resumed run copies
those and re-runs the rest. A trial is written when it starts (``running``, with its
child run's id, which also makes that run a child of the tuning run), at each change
of state, and when it ends (with its values, steps and timings).

``values`` holds one float per objective (None while running, or when failed);
``objective`` is the single value of a one-objective tuner. ``steps`` counts the
training steps the trial consumed (None when the framework does not count them: no
pruner, no training node) and ``rung`` the highest rung it reached under a pruner.

``attributes`` carries the framework's identities: ``tuner_key`` (the tuner node's cache
key, what resume matches) and ``space_key`` (a hash of the search space and the
objectives, what ``warm_start`` matches), ``resumed_from`` on copies, ``owned`` on the
member rows of a tuner that owns training, plus anything a strategy or pruner adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol

from flowopt.recording import ArtifactRef, newest_run, one_per_child

from .strategy import Observation, as_values

STATUSES = ("running", "paused", "succeeded", "failed", "pruned", "interrupted")
FINISHED = ("succeeded", "failed", "pruned")


@dataclass(frozen=True)
class FrozenTrial:
    """One trial of tuner node `node_id` in tuning run `run_id` (0-based `number`), as stored.

    ``values`` accepts a float for one objective (kept as a 1-tuple).
    """

    run_id: str
    node_id: str
    number: int
    params: Mapping[str, Any]
    status: str  # one of STATUSES
    trial_run_id: str | None = None
    values: tuple[float, ...] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = 0.0
    error: str | None = None
    steps: int | None = None
    rung: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", as_values(self.values))

    @property
    def objective(self) -> float | None:
        """The first objective's value (the only one of a one-objective tuner), or None."""
        return None if not self.values else self.values[0]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def moved(self, run_id: str, **attributes: Any) -> "FrozenTrial":
        """This trial as a row of another tuning run (resume)."""
        return replace(self, run_id=run_id, attributes={**self.attributes, **attributes})

    def observation(self) -> Observation:
        """What a strategy is told about this (finished) trial."""
        values = self.values if self.status in ("succeeded", "pruned") else None
        return Observation(number=self.number, params=dict(self.params), values=values,
                           status=self.status, steps=self.steps)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        """The ``runs show --json`` trial object (non-finite values as null)."""
        def finite(v: float | None) -> float | None:
            return v if v is None or v == v and abs(v) != float("inf") else None

        data = {"number": self.number, "params": dict(self.params),
                "objective": finite(self.objective), "status": self.status,
                "steps": self.steps, "rung": self.rung, "node": self.node_id,
                "trial_run_id": self.trial_run_id, "seconds": self.seconds,
                "error": self.error}
        if self.values is not None and len(self.values) > 1:
            data["objectives"] = [finite(v) for v in self.values]
        return data


#: The earlier name of `FrozenTrial` (kept for plugins and the store).
TrialInfo = FrozenTrial


@dataclass
class Trial:
    """A trial in flight, as the tuning loop keeps it (mutable; the loop's thread only).

    ``reports`` maps each training step the trial reported at (a pruner's rung or
    evaluation point) to the values measured there. `freeze` makes the record a
    recorder stores.
    """

    run_id: str
    node_id: str
    number: int
    params: dict[str, Any]
    status: str = "running"
    trial_run_id: str | None = None
    values: tuple[float, ...] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = 0.0
    error: str | None = None
    steps: int | None = None
    rung: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    reports: dict[int, tuple[float, ...]] = field(default_factory=dict)

    def freeze(self) -> FrozenTrial:
        return FrozenTrial(run_id=self.run_id, node_id=self.node_id, number=self.number,
                           params=dict(self.params), status=self.status,
                           trial_run_id=self.trial_run_id, values=self.values,
                           started_at=self.started_at, ended_at=self.ended_at,
                           seconds=self.seconds, error=self.error, steps=self.steps,
                           rung=self.rung, attributes=dict(self.attributes))

    @classmethod
    def thaw(cls, frozen: FrozenTrial) -> "Trial":
        """A live trial continuing a stored one (a paused trial promoted after a restart)."""
        return cls(run_id=frozen.run_id, node_id=frozen.node_id, number=frozen.number,
                   params=dict(frozen.params), status=frozen.status,
                   trial_run_id=frozen.trial_run_id, values=frozen.values,
                   started_at=frozen.started_at, ended_at=frozen.ended_at,
                   seconds=frozen.seconds, error=frozen.error, steps=frozen.steps,
                   rung=frozen.rung, attributes=dict(frozen.attributes))


class TrialRecorder(Protocol):
    """The trial half of a recorder (`flowopt.store.Store` and `MemoryRecorder` have it).

    Every method returns frozen records, never rows of the store.
    """

    def record_trial(self, trial: FrozenTrial) -> None:
        """Insert or update the row ``(run_id, node_id, number)``; sets the child run's parent."""

    def resumable_trials(self, *, pipeline: str, node_id: str, tuner_key: str,
                         exclude_run: str) -> list[FrozenTrial]:
        """The trials of the newest other tuning run of this tuner (same key) that is not
        still running in a live process; empty if there is none."""

    def warm_trials(self, *, pipeline: str, space_key: str,
                    exclude_run: str) -> list[FrozenTrial]:
        """Finished trials of earlier tuning runs over the same space, one per child run,
        oldest first."""

    def run_outputs(self, run_id: str) -> dict[str, dict[str, ArtifactRef]]:
        """``node_id -> {port: ref}`` of a run's succeeded or cached executions."""


class CheckpointRecorder(Protocol):
    """Checkpoints: opaque bytes, immutable, shared by id (a paused trial, a PBT member)."""

    def save_checkpoint(self, label: str, payload: bytes, fmt: str,
                        checkpoint_id: str | None = None) -> str:
        """Store checkpoint bytes at once; returns its id (`checkpoint_id`, when the caller
        chose it in advance, else a new one)."""

    def load_checkpoint(self, checkpoint_id: str) -> bytes:
        """The bytes of a saved checkpoint (KeyError if there is none)."""


class PopulationRecorder(CheckpointRecorder, Protocol):
    """What a tuner that owns training (`flowopt.tuning.owned`, e.g. PBT) writes besides
    trials: population events (objects with the attributes of `EVENT_FIELDS`) and
    checkpoints; and what ``flowopt pbt replay`` reads back. `flowopt.store.Store` and
    `MemoryRecorder` have it."""

    def record_population_events(self, run_id: str, node_id: str, events: Iterable[Any]) -> None:
        """Append events, in order, at once (a killed run keeps every decision it made)."""

    def population_events(self, run_id: str, node_id: str) -> list[Any]:
        """A node's events in a run, in the order they were recorded."""

    def population_nodes(self, run_id: str) -> list[str]:
        """The nodes of a run that recorded population events, sorted."""

    def node_inputs(self, run_id: str, node_id: str) -> tuple[Mapping[str, Any],
                                                              dict[str, ArtifactRef]]:
        """``(pipeline spec, {port: ref})`` that node `node_id` of run `run_id` read when it
        succeeded (empty refs if it did not): what a replay trains on again."""

    def run_source_hash(self, run_id: str) -> str | None:
        """The content hash of the pipeline file run `run_id` was started from (None if
        it had none): what a replay checks a pipeline file given for its plugins against."""


#: The attributes of a population event (`PopulationRecorder.record_population_events`).
EVENT_FIELDS = ("member", "step", "event", "new_params", "old_params", "from_member", "score",
                "from_score", "checkpoint_id")


class PrunerRecorder(CheckpointRecorder, Protocol):
    """What a tuner with a pruner (`flowopt.tuning.pruning`) writes besides trials: its
    log, in order — each entry ``{event, number, step, value, checkpoint_id, status}``
    (a trial started or resumed up to ``step``, a report with the paused state's
    checkpoint and the decision, a tell, an end) — and, in the same transaction, the
    pruner's `Pruner.state` after it and the trial rows the decision changed; plus the
    checkpoints of paused trials. A killed run is continued from them.
    `flowopt.store.Store` and `MemoryRecorder` have it."""

    def record_pruner_events(self, run_id: str, node_id: str,
                             events: Iterable[Mapping[str, Any]],
                             state: Mapping[str, Any] | None = None,
                             trials: Iterable[FrozenTrial] = ()) -> None:
        """Append events, replace the pruner's stored state (if given) and write `trials`
        (as `TrialRecorder.record_trial`), all at once."""

    def pruner_events(self, run_id: str, node_id: str) -> list[dict[str, Any]]:
        """A tuner's pruner log in a run, in the order it was recorded."""

    def pruner_state(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        """The pruner's latest stored state in a run (None if none was stored)."""


class TuningRecorder(TrialRecorder, PopulationRecorder, Protocol):
    """Everything the tuning layer asks of a recorder, besides the engine's `Recorder`."""


__all__ = ["EVENT_FIELDS", "FINISHED", "STATUSES", "CheckpointRecorder", "FrozenTrial",
           "PopulationRecorder", "PrunerRecorder", "Trial", "TrialInfo", "TrialRecorder",
           "TuningRecorder", "newest_run", "one_per_child"]
