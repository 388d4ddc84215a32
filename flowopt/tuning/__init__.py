"""Tuning: the engine layer that turns search algorithms into tuner nodes.

A tuner node runs the subgraph between searched params and an objective as trials. This
package owns the public tuner API; tuner kinds (`flowopt.nodes.tuner`, plugins) import
it, never the reverse, and the compiler and the scheduler reach it only through the
``owner`` hook of its kinds (`flowopt.owners`), so it imports them and not vice versa.

The contract (what a plugin uses):

* `Strategy` (ask / tell / exhausted, capability flags ``multi_objective``,
  ``owns_training``), `Observation` (``values``, ``objective``, ``status``, ``steps``)
  — `strategy`; `register_tuner` and the `tuner` decorator — `owner`;
* `FrozenTrial` (what a recorder stores and returns) and `Trial` (live, the loop's
  own), the recorder protocols `TrialRecorder`, `PopulationRecorder`,
  `CheckpointRecorder`, `TuningRecorder` — `records`;
* `Pruner` (early stopping as a pure policy returning decisions, JSON state) and
  `register_pruner` — `pruner`;
* `Host` (what an owner node may use of its run) — `flowopt.owners`;
* `TrainingSession` (what a strategy that owns training gets) — `owned`;
* `Training` / `PausableTrainer` (a kind that trains and can pause) — `flowopt.training`.

The machinery: `kinds` (a `Strategy` class plus the framework's ``with:`` fields make a
node kind), `subgraph` (what each tuner owns, checked at compile time), `owner` (the
hook), `trials` (ask → run → tell), `owned` (tuners that own training).
"""
from __future__ import annotations

from flowopt.owners import Host
from flowopt.training import PausableTrainer, Training

from .owned import TrainingSession
from .owner import register_tuner, tuner
from .pruner import DECISIONS, Decision, Pruner, register_pruner
from . import pruners as _pruners  # noqa: E402,F401 - registers median, asha, hyperband
from .records import (FINISHED, STATUSES, CheckpointRecorder, FrozenTrial, PopulationRecorder,
                      Trial, TrialInfo, TrialRecorder, TuningRecorder)
from .strategy import Mode, NoConfig, Observation, Strategy

__all__ = ["DECISIONS", "FINISHED", "STATUSES", "CheckpointRecorder", "Decision",
           "FrozenTrial", "Host", "Mode", "NoConfig", "Observation", "PausableTrainer",
           "PopulationRecorder", "Pruner", "Strategy", "Training", "TrainingSession", "Trial",
           "TrialInfo", "TrialRecorder", "TuningRecorder", "register_pruner", "register_tuner",
           "tuner"]
