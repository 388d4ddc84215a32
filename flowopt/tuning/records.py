"""What the tuning loop tells a recorder about trials: `TrialInfo` and `TrialRecorder`.

A trial is written twice: when it starts (``running``, with its child run's id, which
also makes that run a child of the tuning run) and when it ends (``succeeded`` or
``failed``, with the objective and timings). The trials of a run form a complete list
even after a resume: finished trials read back from an interrupted run are copied into
the new tuning run under their numbers (``attributes["resumed_from"]`` names the run
they came from; their child runs are shared, not re-run).

``attributes`` carries the framework's identities: ``tuner_key`` (the tuner node's cache
key, what resume matches) and ``space_key`` (a hash of the search space and the
objective, what ``warm_start`` matches), plus anything a strategy adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol

from flowopt.recording import ArtifactRef

FINISHED = ("succeeded", "failed")


@dataclass(frozen=True)
class TrialInfo:
    """One trial of tuner node `node_id` in tuning run `run_id` (0-based `number`)."""

    run_id: str
    node_id: str
    number: int
    params: Mapping[str, Any]
    status: str  # running | succeeded | failed
    trial_run_id: str | None = None
    objective: float | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = 0.0
    error: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    #: several objectives, in order (``objective`` is then the first); None with one
    values: tuple[float, ...] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def moved(self, run_id: str, **attributes: Any) -> "TrialInfo":
        """This trial as a row of another tuning run (resume)."""
        return replace(self, run_id=run_id, attributes={**self.attributes, **attributes})

    def to_json(self) -> dict[str, Any]:
        data = {"number": self.number, "params": dict(self.params), "objective": self.objective,
                "status": self.status, "node": self.node_id, "trial_run_id": self.trial_run_id,
                "seconds": self.seconds, "error": self.error}
        if self.values is not None and len(self.values) > 1:
            del data["objective"]
            data["objectives"] = [v if v == v and abs(v) != float("inf") else None
                                  for v in self.values]
        return data


class TrialRecorder(Protocol):
    """The trial half of a recorder (`flowopt.store.Store` and `MemoryRecorder` have it)."""

    def record_trial(self, trial: TrialInfo) -> None:
        """Insert or update the row ``(run_id, node_id, number)``; sets the child run's parent."""

    def resumable_trials(self, *, pipeline: str, node_id: str, tuner_key: str,
                         exclude_run: str) -> list[TrialInfo]:
        """The trials of the newest other tuning run of this tuner (same key) that is not
        still running in a live process; empty if there is none."""

    def warm_trials(self, *, pipeline: str, space_key: str,
                    exclude_run: str) -> list[TrialInfo]:
        """Finished trials of earlier tuning runs over the same space, one per child run,
        oldest first."""

    def run_outputs(self, run_id: str) -> dict[str, dict[str, ArtifactRef]]:
        """``node_id -> {port: ref}`` of a run's succeeded or cached executions."""


class PopulationRecorder(Protocol):
    """What a tuner that owns training (`flowopt.tuning.owned`, e.g. PBT) writes besides
    trials: population events (objects with the attributes of
    ``flowopt.store.population.FIELDS``) and checkpoints (opaque bytes, immutable, shared
    by id). `flowopt.store.Store` and `MemoryRecorder` have it."""

    def record_population_events(self, run_id: str, node_id: str, events: Iterable[Any]) -> None:
        """Append events, in order, at once (a killed run keeps every decision it made)."""

    def population_events(self, run_id: str, node_id: str) -> list[Any]:
        """A node's events in a run, in the order they were recorded."""

    def save_checkpoint(self, label: str, payload: bytes, fmt: str,
                        checkpoint_id: str | None = None) -> str:
        """Store checkpoint bytes at once; returns its id (`checkpoint_id`, when the caller
        chose it in advance, else a new one)."""

    def load_checkpoint(self, checkpoint_id: str) -> bytes:
        """The bytes of a saved checkpoint (KeyError if there is none)."""


def newest_run(trials: Iterable[TrialInfo], order: Mapping[str, Any]) -> list[TrialInfo]:
    """The trials of the run that sorts last by `order` (run id -> sort key)."""
    by_run: dict[str, list[TrialInfo]] = {}
    for trial in trials:
        by_run.setdefault(trial.run_id, []).append(trial)
    if not by_run:
        return []
    newest = max(by_run, key=lambda run_id: order[run_id])
    return sorted(by_run[newest], key=lambda t: t.number)


def one_per_child(trials: Iterable[TrialInfo]) -> list[TrialInfo]:
    """Finished trials, de-duplicated by child run (resumed copies share one), in order."""
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
