"""Random search on PBT's budget, paired with its population: was exploit/explore worth it?

Measuring apparatus shared by ``benchmarks/pbt.py`` and ``tests/test_claims_pbt.py``
(which loads this file by its path); not part of the package.

The paper's claim is that PBT, on the compute of a random search, ends better. At small
scale the draws dominate: four members drawn afresh can all be worse (or better) than
four others. So the baseline here is paired: its first trials are the population's own
initial draws — each trained straight through from the member's initial weights with
the member's batch order, i.e. the population with exploit/explore switched off — and
then further draws (a stream of their own) until it has trained at least as many steps
as the population did. The population usually trains a little more than population ×
steps (a copy of an older checkpoint re-trains steps); the baseline gets that as whole
extra runs, so the comparison errs in random search's favour.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowopt.nodes.tuner.pbt.policy import Mode, badness, decision_rng, initial_params, sample
from flowopt.nodes.tuner.pbt.population import Trainable
from flowopt.spec import Domain


@dataclass(frozen=True)
class RandomSearch:
    best: float  # the best final score
    trials: tuple[tuple[dict[str, Any], float], ...]  # (params, final score) in order
    steps_trained: int


def random_search(trainable: Trainable, space: Mapping[str, Domain], *, population: int,
                  budget: int, steps: int, seed: int, mode: Mode = "max") -> RandomSearch:
    """Whole `steps`-step runs, the population's draws first, until `budget` steps are spent."""
    trials: list[tuple[dict[str, Any], float]] = []
    spent = 0
    while len(trials) < population or spent < budget:
        k = len(trials)
        params = (initial_params(space, seed, k) if k < population else
                  {name: sample(space[name], decision_rng(seed, k, 0, stream=2))
                   for name in sorted(space)})
        _, score = trainable.train(trainable.start(k, params), params, steps)
        trials.append((params, float(score)))
        spent += steps
    best = min((score for _, score in trials), key=lambda s: badness(s, mode))
    return RandomSearch(best, tuple(trials), spent)
