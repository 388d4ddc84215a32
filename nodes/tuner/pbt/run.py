"""PBT recorded in a flowopt store: a run row, events as they happen, checkpoints as artifacts.

`run_population` is the Python API without a pipeline (the ``tuner.pbt`` node runs the
same `Population` through `session.PopulationSession`): it opens a run (or continues one: ``resume=RUN``
reads that run's events back and carries on from each member's latest checkpoint —
finished segments are never retrained), drives a `Population`, and closes the run as
succeeded, failed or interrupted. `replay_best` retrains the best member from scratch
along its schedule, reading everything it needs from the store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from flowopt.recording import RunInfo
from flowopt.spec import Domain

from .policy import Mode, PbtConfig
from .population import Member, Population, Result, Trainable, fold, replay


@dataclass(frozen=True)
class PbtRun:
    run_id: str
    result: Result
    checkpoint_seconds: float  # encoding, writing, reading, decoding checkpoints


def run_population(store: Any, trainable: Trainable, space: Mapping[str, Domain],
                   config: PbtConfig, *, steps: int, encode: Any, decode: Any,
                   mode: Mode = "max", seed: int = 0, parallel: int = 1,
                   initial: Any = None, pipeline: str = "pbt", node_id: str = "pbt",
                   resume: str | None = None) -> PbtRun:
    """Run (or resume) PBT with every event and checkpoint in `store` (see module docstring)."""
    from flowopt.store.population import StoreCheckpoints, read_events, write_events

    if resume is not None:
        run_id = store.resolve_run_id(resume)
        previous = read_events(store.engine, run_id, node_id)
    else:
        spec = {"pipeline": pipeline, "pbt": {**config.model_dump(), "steps": steps,
                                              "space": {k: d.model_dump() for k, d in space.items()}}}
        run_id = store.begin_run(RunInfo(pipeline, seed, {}, spec))
        previous = []
    checkpoints = StoreCheckpoints(store, encode, decode, keep=4 * config.population)
    population = Population(trainable, space, config, steps=steps, mode=mode, seed=seed,
                            parallel=parallel, checkpoints=checkpoints, initial=initial,
                            on_event=lambda e: write_events(store.engine, run_id, node_id, [e]))
    try:
        result = population.run(resume=previous)
    except KeyboardInterrupt:
        store.end_run(run_id, "interrupted")
        raise
    except BaseException as exc:
        store.end_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    store.end_run(run_id, "succeeded")
    return PbtRun(run_id, result, checkpoints.seconds)


def best_member(store: Any, run_id: str, node_id: str = "pbt", mode: Mode = "max") -> Member:
    """The best member of a finished run, rebuilt from its events."""
    from flowopt.store.population import read_events

    from .policy import badness

    members = fold(read_events(store.engine, store.resolve_run_id(run_id), node_id))
    return min(members.values(), key=lambda m: (badness(m.score, mode), m.member))


def replay_best(store: Any, run_id: str, trainable: Trainable, node_id: str = "pbt",
                mode: Mode = "max") -> tuple[Member, Any, float]:
    """Retrain the best member from scratch along its schedule: ``(member, state, score)``."""
    member = best_member(store, run_id, node_id, mode)
    state, score = replay(trainable, member)
    return member, state, score
