"""``tuner.random``: random search (Bergstra & Bengio 2012, "Random Search for
Hyper-Parameter Optimization", JMLR 13).

Each trial's params are drawn independently from the search space — uniform, log-uniform
for ``log: true``, uniform over the integers for ``integer: true``, uniform over
``choices`` (conventions in `sampling`). The draw for the i-th proposal uses its own
generator seeded with ``(seed, i)``, where i counts the trials told plus those still
running, so the sequence does not depend on how parallel trials interleave and a resumed
run proposes what the interrupted one would have. No ``with:`` fields of its own.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowopt.tuning import Strategy, register_tuner

from .sampling import draw


class RandomSearch(Strategy):
    """Random search (Bergstra & Bengio 2012): independent draws from the search space.

    Ports: ``objective`` (in, a metric port); ``params``, ``objective`` and the best
    trial's outputs (out). ``with:``: mode, trials, parallel, max_failures, warm_start
    (the framework's; see docs/tuners.md). Seeded by the node's seed.
    """

    multi_objective = True  # proposals ignore the objectives: any number works

    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import numpy as np

        index = len(self.observations) + len(pending)
        rng = np.random.default_rng([self.seed, index])
        return {name: draw(domain, rng) for name, domain in self.space.items()}


register_tuner("tuner.random", RandomSearch)
