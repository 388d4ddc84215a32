"""The Strategy contract: what a search algorithm implements to become a tuner kind.

A strategy only proposes and learns (STYLE item 6: ask -> run subgraph -> tell);
the tuning engine (``flowopt.tuning``) owns everything else: running trials as
subgraph runs through the scheduler, recording them as child runs, parallelism,
the failure limit, resume and warm start.

Protocol, as the engine drives it:

* ``ask(pending)`` may be called several times before the matching ``tell``s:
  with ``parallel: q`` the engine keeps q trials in flight, and ``pending`` holds
  the params of trials still running (so a strategy can avoid proposing them
  again, e.g. by fantasies or a constant liar).
* ``tell(observation)`` is called once per finished trial, in finishing order.
  Failed and non-finite trials are told too, with ``objective=None`` and
  ``status="failed"``; a strategy decides itself whether to learn from them.
* On resume, finished trials of the interrupted run are re-told from the store
  (in trial-number order) before the first ``ask``; with ``warm_start: true``
  the observations of earlier runs of the same pipeline over the same search
  space are told first. A strategy therefore must not assume that every
  ``tell`` follows one of its own ``ask``s.
* ``mode`` says which direction is better; objectives arrive as measured (not
  negated), so a strategy that minimises internally negates for ``"max"``.
* ``budget`` is the tuner's ``trials`` count (the number of asks a fresh run
  makes), useful for e.g. sizing an initial design or a grid.

Params are native values: floats for continuous ranges (in the original, not
log, scale), ints for ``integer: true`` ranges, the choice itself for
categorical domains.

Registering a new kind is one line after the class (see ``register_tuner``)::

    register_tuner("tuner.bayesopt", BayesOpt)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pydantic

from flowopt.spec import Domain

Mode = Literal["max", "min"]


@dataclass(frozen=True)
class Observation:
    """One finished trial as a strategy sees it."""

    number: int
    params: Mapping[str, Any]
    objective: float | None  # None when the trial failed or was non-finite
    status: str  # "succeeded" | "failed"
    values: tuple[float, ...] | None = None  # several objectives (None: failed or infeasible)


class NoConfig(pydantic.BaseModel):
    """Config of a strategy with no `with:` fields of its own."""

    model_config = pydantic.ConfigDict(extra="forbid")


class Strategy(ABC):
    """Proposes trials. ask() may be called several times before the matching tell()s (parallel trials)."""

    Config: ClassVar[type[pydantic.BaseModel]] = NoConfig

    def __init__(
        self,
        space: Mapping[str, Domain],
        *,
        mode: Mode,
        seed: int,
        budget: int,
        config: pydantic.BaseModel,
    ) -> None:
        self.space = dict(space)
        self.mode = mode
        self.seed = seed
        self.budget = budget
        self.config = config
        self.observations: list[Observation] = []

    @abstractmethod
    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The next trial's params (native values: floats, ints, choices); `pending` = params of trials still running."""

    def tell(self, observation: Observation) -> None:
        """Record a finished trial; subclasses may extend (call super)."""
        self.observations.append(observation)

    def exhausted(self, pending: Sequence[Mapping[str, Any]] = ()) -> bool:
        """True when there is nothing new to propose (a finished grid): the search then stops
        before ``trials``. Called before each ``ask`` with the same `pending`."""
        return False


def register_tuner(kind: str, strategy: type[Strategy]) -> type[Strategy]:
    """Make ``kind`` a tuner node driven by ``strategy``; returns the class (usable after a class body).

    The tuner's `with:` fields are the framework's (mode, trials, parallel,
    max_failures, warm_start, seed) plus the strategy's own ``Config``.
    """
    from flowopt.tuning.kinds import register_strategy

    register_strategy(kind, strategy)
    return strategy


def tuner(kind: str):
    """Decorator form of ``register_tuner``: ``@tuner("tuner.random") class RandomSearch(Strategy): ...``."""

    def wrap(strategy: type[Strategy]) -> type[Strategy]:
        return register_tuner(kind, strategy)

    return wrap
