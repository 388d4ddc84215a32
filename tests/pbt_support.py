"""Scaffolding for the PBT tests (loaded by path; not part of the package).

* The toy problem of the PBT paper (Jaderberg et al. 2017, §4 / Figure 2) as a `Trainable`.

Maximise Q(θ) = 1.2 − (θ₀² + θ₁²), but train θ by gradient ascent on the surrogate
Q̂(θ|h) = 1.2 − (h₀θ₀² + h₁θ₁²): a member with h = [1, 0] only ever shrinks θ₀, one with
[0, 1] only θ₁, so neither alone gets past Q = 1.2 − 0.81. PBT's exploit lets one member
take the other's θ and its explore changes h, so the population reaches Q near 1.2.
The paper starts from θ = [0.9, 0.9] with the two h above; the step size 0.01 and
score Q(θ) (the true objective, not the surrogate) are as in its Figure 2. Pure numpy,
deterministic: a state is a fresh array per step, never mutated.

* `run_population`: a `Population` recorded in a recorder — a run row, events as they
  happen, checkpoints — through the recorder protocol, as the ``tuner.pbt`` node records
  it (`session.PopulationSession`), for tests of the controller without a pipeline;
  ``resume=RUN`` continues a killed one. `best_member` / `replay_best` read it back.

* `kill_when`: a CLI run SIGKILLed once the store shows it got far enough (resume tests
  of ``tuner.pbt`` and ``tuner.stn``); `load_benchmark`: a ``benchmarks/`` module.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from flowopt.nodes.tuner.pbt.checkpoints import RecorderCheckpoints
from flowopt.nodes.tuner.pbt.policy import Mode, PbtConfig, badness
from flowopt.nodes.tuner.pbt.population import (Member, Population, Result, Trainable, fold,
                                                replay, settled)
from flowopt.recording import RunInfo
from flowopt.spec import Domain

THETA0 = (0.9, 0.9)
PAPER_H = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})


def q(theta: np.ndarray) -> float:
    """The true objective Q(θ) = 1.2 − (θ₀² + θ₁²)."""
    return float(1.2 - np.sum(theta ** 2))


class ToyTrainable:
    """Gradient ascent on Q̂(θ|h) with step size `lr`; the score is Q(θ)."""

    def __init__(self, lr: float = 0.01, theta0: tuple[float, float] = THETA0) -> None:
        self.lr, self.theta0 = lr, theta0

    def start(self, member: int, params: Mapping[str, Any]) -> np.ndarray:
        return np.array(self.theta0, dtype=np.float64)

    def train(self, state: np.ndarray, params: Mapping[str, Any],
              steps: int) -> tuple[np.ndarray, float]:
        h = np.array([params["h0"], params["h1"]], dtype=np.float64)
        theta = state.copy()
        for _ in range(steps):
            theta = theta + self.lr * (-2.0 * h * theta)  # ∇Q̂(θ|h) = −2 h ⊙ θ
        return theta, q(theta)


@dataclass(frozen=True)
class PbtRun:
    run_id: str
    result: Result
    checkpoint_seconds: float  # encoding, writing, reading, decoding checkpoints


def run_population(recorder: Any, trainable: Trainable, space: Mapping[str, Domain],
                   config: PbtConfig, *, steps: int, encode: Any, decode: Any,
                   mode: Mode = "max", seed: int = 0, parallel: int = 1,
                   initial: Any = None, pipeline: str = "pbt", node_id: str = "pbt",
                   resume: str | None = None) -> PbtRun:
    """Run (or resume) PBT with every event and checkpoint in `recorder` (module docstring)."""
    if resume is not None:
        run_id = recorder.resolve_run_id(resume)
        previous = settled(recorder.population_events(run_id, node_id))
    else:
        spec = {"pipeline": pipeline, "pbt": {**config.model_dump(), "steps": steps,
                                              "space": {k: d.model_dump() for k, d in space.items()}}}
        run_id = recorder.begin_run(RunInfo(pipeline, seed, {}, spec))
        previous = []
    checkpoints = RecorderCheckpoints(recorder, encode, decode, keep=4 * config.population)
    population = Population(
        trainable, space, config, steps=steps, mode=mode, seed=seed, parallel=parallel,
        checkpoints=checkpoints, initial=initial,
        on_event=lambda e: recorder.record_population_events(run_id, node_id, [e]))
    try:
        result = population.run(resume=previous)
    except KeyboardInterrupt:
        recorder.end_run(run_id, "interrupted")
        raise
    except BaseException as exc:
        recorder.end_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    recorder.end_run(run_id, "succeeded")
    return PbtRun(run_id, result, checkpoints.seconds)


def best_member(recorder: Any, run_id: str, node_id: str = "pbt", mode: Mode = "max") -> Member:
    """The best member of a finished run, rebuilt from its events."""
    members = fold(recorder.population_events(recorder.resolve_run_id(run_id), node_id))
    return min(members.values(), key=lambda m: (badness(m.score, mode), m.member))


def replay_best(recorder: Any, run_id: str, trainable: Trainable, node_id: str = "pbt",
                mode: Mode = "max") -> tuple[Member, Any, float]:
    """Retrain the best member from scratch along its schedule: ``(member, state, score)``."""
    member = best_member(recorder, run_id, node_id, mode)
    state, score = replay(trainable, member)
    return member, state, score


def kill_when(command: list[str], ready: Any, *, timeout: float = 120) -> bool:
    """Start `command` and SIGKILL it as soon as ``ready()`` is true (polled every 0.2 s
    while it runs); False if it ended, or `timeout` passed, first."""
    import os
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            if ready():
                os.kill(process.pid, signal.SIGKILL)
                return True
        return False
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def load_benchmark(name: str) -> Any:
    """A module of ``benchmarks/`` (e.g. ``pbt_baseline``), loaded by its path."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"flowopt_benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
