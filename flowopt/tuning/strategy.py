"""The strategy contract: what a search algorithm implements to become a tuner kind.

A strategy only proposes and learns: ask → (the framework runs the owned subgraph) →
tell. The tuning layer (`flowopt.tuning`) owns everything else: running trials as child
runs through the scheduler, recording them, parallel trials, the failure limit, resume,
warm start and early stopping. This is Optuna's split between a sampler and its study:
samplers import the core, never the reverse.

Protocol, as the framework drives it:

* ``ask(pending)`` may be called several times before the matching ``tell``s: with
  ``parallel: q`` the framework keeps q trials in flight, and ``pending`` holds the
  params of trials still running (a strategy can avoid proposing them again, e.g. by
  fantasies or a constant liar).
* ``tell(observation)`` is called once per trial that ended, in the order they ended,
  from one thread only (strategies need no locks). Failed and pruned trials are told
  too (`Observation.status`); a strategy decides itself what to learn from them. A
  pruned trial's ``values`` are those of the last step it reported (``steps`` says how
  far it trained), a failed one's are None.
* On resume, ended trials of the interrupted run are told again (in trial-number order)
  before the first ``ask``; with ``warm_start: true`` the observations of earlier runs
  of the same pipeline over the same search space are told first. A strategy therefore
  must not assume that every ``tell`` follows one of its own ``ask``s.
* ``exhausted(pending)`` is asked before each ``ask``: True ends the search before
  ``trials`` (a finished grid).
* ``mode`` says which direction is better; values arrive as measured (not negated), so
  a strategy that minimises internally negates for ``"max"``. With several objectives
  (a strategy with ``multi_objective = True``) ``mode`` is a tuple, one per objective.
* ``budget`` is the tuner's ``trials`` count (the number of asks a fresh run makes), for
  sizing an initial design or a grid; for a strategy that owns training it is its
  ``population`` (or 1).

Params are native values: floats for continuous ranges (in the original, not log,
scale), ints for ``integer: true`` ranges, the choice itself for categorical domains.

**Capabilities** are class attributes, checked by the framework when the pipeline is
compiled (exit 2, one line naming the tuner, nothing run or stored):

* ``multi_objective`` (False): the strategy accepts several objectives. Binding
  several objectives (or a list ``mode``) to a strategy without it is refused.
* ``owns_training`` (False): the strategy trains the owned subgraph itself instead of
  asking for whole trials (PBT, Self-Tuning Networks); it implements
  ``run_owned(session)`` with a `flowopt.tuning.owned.TrainingSession` and returns the
  tuner's values. Its framework fields are ``mode`` and ``parallel`` only; ``trials``,
  ``max_failures``, ``warm_start`` and ``pruner`` mean nothing for it.
* ``extra_outputs`` (()): output ports beyond ``params`` and ``objective`` (PBT's
  ``schedule``).
* ``check_plan(plan, spec, kinds, configs, error)`` (optional static method): refuse
  more at compile time, raising ``error(path, message)`` (PBT: only fields training can
  change mid-run).

A pruner (early stopping, `flowopt.tuning.pruner`) works with any strategy that does
not own training and has one objective; nothing in the strategy changes for it.

Registering a new kind is one line after the class, or the decorator (both from
`flowopt.tuning`)::

    register_tuner("tuner.mine", Mine)

    @tuner("tuner.mine")
    class Mine(Strategy): ...
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pydantic

from flowopt.spec import Domain

Mode = Literal["max", "min"]
#: How a trial ended, as a strategy is told (a running or paused trial is never told).
Status = Literal["succeeded", "failed", "pruned"]
TOLD = ("succeeded", "failed", "pruned")


def as_values(value: Any) -> tuple[float, ...] | None:
    """A measured value as the values tuple: None stays None, a number becomes a 1-tuple,
    a sequence a tuple of floats."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy scalar
        return (float(value.item()),)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class Observation:
    """One trial that ended, as a strategy sees it.

    ``values``: one float per objective, in the order the objectives are bound; None
    when the trial failed or a value was missing or not finite. A float given for
    ``values`` is kept as a 1-tuple, so ``Observation(3, params, 0.25, "succeeded")``
    reads naturally for one objective. ``status`` is ``succeeded``, ``failed`` or
    ``pruned`` (stopped early: ``values`` are those at the last step it reported).
    ``steps``: training steps the trial consumed, when the framework knows them (a
    pruned trial, a trial of a tuner with a pruner); None otherwise.
    """

    number: int
    params: Mapping[str, Any]
    values: tuple[float, ...] | None
    status: Status = "succeeded"
    steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", as_values(self.values))
        if self.status not in TOLD:
            raise ValueError(f"observation status must be one of {', '.join(TOLD)}, "
                             f"got {self.status!r}")

    @property
    def objective(self) -> float | None:
        """The single objective (None when failed); an error with several objectives,
        where a strategy must read ``values``."""
        if self.values is None:
            return None
        if len(self.values) != 1:
            raise ValueError(f"trial {self.number} has {len(self.values)} objectives; "
                             "read .values")
        return self.values[0]

    @property
    def feasible(self) -> bool:
        """True when every value is there and finite (something to learn from)."""
        return self.values is not None and all(math.isfinite(v) for v in self.values)


class NoConfig(pydantic.BaseModel):
    """Config of a strategy with no `with:` fields of its own."""

    model_config = pydantic.ConfigDict(extra="forbid")


class Strategy(ABC):
    """Proposes trials and learns from them (see the module docstring for the protocol).

    Subclasses set ``Config`` (a pydantic model of their own ``with:`` fields, validated
    before anything runs) and the capability attributes they have.
    """

    Config: ClassVar[type[pydantic.BaseModel]] = NoConfig
    #: bump when proposals change for the same inputs (part of the tuner's cache key)
    version: ClassVar[int] = 1
    multi_objective: ClassVar[bool] = False
    owns_training: ClassVar[bool] = False
    extra_outputs: ClassVar[tuple[Any, ...]] = ()  # flowopt.registry.Port values

    def __init__(self, space: Mapping[str, Domain], *, mode: Any, seed: int, budget: int,
                 config: pydantic.BaseModel) -> None:
        self.space = dict(space)
        self.mode = mode
        self.seed = seed
        self.budget = budget
        self.config = config
        self.observations: list[Observation] = []

    @abstractmethod
    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The next trial's params (native values); `pending` = params of trials still running."""

    def tell(self, observation: Observation) -> None:
        """Learn from a trial that ended; subclasses may extend (call super)."""
        self.observations.append(observation)

    def exhausted(self, pending: Sequence[Mapping[str, Any]] = ()) -> bool:
        """True when there is nothing new to propose (a finished grid): the search then stops
        before ``trials``. Called before each ``ask`` with the same `pending`."""
        return False

    def run_owned(self, session: Any) -> dict[str, Any]:
        """Only for ``owns_training = True``: train with `session`
        (`flowopt.tuning.owned.TrainingSession`) and return the tuner's values."""
        raise NotImplementedError(f"{type(self).__name__} does not own training")


__all__ = ["Mode", "NoConfig", "Observation", "Status", "Strategy", "as_values"]
