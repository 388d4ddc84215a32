"""``tuner.grid``: exhaustive search over a grid.

The grid is the product, over the searched params, of every choice of a categorical
param and ``grid_points`` evenly spaced values of each range (geometric for ``log:
true``; for ``integer: true`` at most one point per integer). Points are visited in a
seeded random order by default — as Optuna's ``GridSampler`` does — so a budget smaller
than the grid still spreads over it; ``shuffle: false`` visits them in product order.
A point already observed (a resumed run, or ``warm_start``) or still running is not
proposed again; the search stops early once every point has been proposed.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import pydantic
from pydantic import Field

from flowopt.tuning import Strategy, register_tuner

from .sampling import params_key, points


class GridConfig(pydantic.BaseModel):
    """``grid_points`` (default 5: ends plus three interior points, enough to see a
    curvature; our choice) and ``shuffle`` (default true, following Optuna's GridSampler)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    grid_points: Annotated[int, Field(ge=1, le=1000)] = 5
    shuffle: bool = True


class GridSearch(Strategy):
    """Grid search: every combination of choices and ``grid_points`` values per range.

    Ports: ``objective`` (in, a metric port); ``params``, ``objective`` and the best
    trial's outputs (out). ``with:``: the framework's (mode, trials, parallel,
    max_failures, warm_start) plus ``grid_points`` (5) and ``shuffle`` (true).
    """

    multi_objective = True  # proposals ignore the objectives: any number works

    Config = GridConfig

    def __init__(self, space, *, mode, seed, budget, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, mode=mode, seed=seed, budget=budget, config=config)
        axes = [points(domain, config.grid_points) for domain in self.space.values()]
        names = list(self.space)
        self.grid = [dict(zip(names, combo)) for combo in itertools.product(*axes)]
        if config.shuffle:
            import numpy as np

            order = np.random.default_rng(seed).permutation(len(self.grid))
            self.grid = [self.grid[i] for i in order]
        self._asked: set[str] = set()

    def _taken(self, pending: Sequence[Mapping[str, Any]]) -> set[str]:
        return (self._asked | {params_key(o.params) for o in self.observations}
                | {params_key(p) for p in pending})

    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        taken = self._taken(pending)
        for point in self.grid:
            key = params_key(point)
            if key not in taken:
                self._asked.add(key)
                return dict(point)
        raise RuntimeError("the grid is exhausted")  # the engine checks exhausted() first

    def exhausted(self, pending: Sequence[Mapping[str, Any]] = ()) -> bool:
        taken = self._taken(pending)
        return all(params_key(point) in taken for point in self.grid)


register_tuner("tuner.grid", GridSearch)
