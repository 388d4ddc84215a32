"""Tuner kinds: nodes that run the subgraph between searched params and an objective.

Each kind is a `flowopt.tuning.Strategy` registered with ``register_tuner``; the tuning
layer (``flowopt.tuning``) owns the contract and runs the trials (``strategy.py`` here
only re-exports the contract for older imports). Importing a strategy's module registers
its kind: add new import lines above the last two lines, which publish every registered
tuner kind as a Python-API factory (``tuner.random(score.accuracy, mode="max",
trials=16)``) under its short name.
"""
from . import grid, random  # noqa: F401 - registers tuner.grid and tuner.random
from . import bayesopt  # noqa: F401 - registers tuner.bayesopt
from . import nsga2  # noqa: F401 - registers tuner.nsga2
from .pbt import node as _pbt  # noqa: F401 - registers tuner.pbt
from .stn import node as _stn  # noqa: F401 - registers tuner.stn

from flowopt.tuning.kinds import factories as _factories  # noqa: E402

globals().update(_factories())
