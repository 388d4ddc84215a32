"""``tuner.nsga2``: the non-dominated sorting genetic algorithm II (Deb, Pratap, Agarwal &
Meyarivan 2002, "A fast and elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC 6(2)).

Defaults are Optuna's ``NSGAIISampler``'s, so results compare: ``population_size`` 50,
``crossover_prob`` 0.9, uniform crossover with ``swapping_prob`` 0.5, and ``mutation_prob``
1/(number of params), a mutated param being drawn afresh from its domain.

Policy:

* **Generations.** Proposal k (counting trials told plus trials running, as
  `tuner.random` does) belongs to generation ``k // population_size``. Generation 0 is
  drawn at random (`sampling.draw`, seeded by ``(seed, k)``).
* **Parents** (elitist, Deb's "(μ + λ)" step): from every finished feasible trial told so
  far, the best ``population_size`` by non-dominated rank, ties in the last admitted rank
  broken by crowding distance (larger first; the front's extremes are infinite). Taking
  every trial told, rather than only the previous parents and children, makes the
  selection a function of the history alone — resume and ``warm_start`` give the same
  parents as an uninterrupted run — and with (μ + λ) selection a trial once cut stays cut
  unless better trials are lost, which never happens. Trials still running are not parents
  (their objectives are unknown); infeasible ones (a non-finite objective, a failure) never
  are.
* **Children.** Two parents by binary crowded tournaments (lower rank wins, then larger
  crowding distance, then the first drawn); with probability ``crossover_prob`` each param
  comes from either parent with probability ``swapping_prob``, otherwise the child copies
  the first parent; then each param is redrawn from its domain with probability
  ``mutation_prob``. A child equal to a trial seen or running is redrawn (up to 32 times)
  so that a converged population keeps exploring.

Refused at compile time (one line, exit 2): one objective (`check_plan`), and a population
below 4 (two tournaments need at least four parents to choose between).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import pydantic
from pydantic import Field

from flowopt.tuning.pareto import modes_of, observed_values

from .sampling import draw, params_key
from .strategy import Strategy, register_tuner


class NSGA2Config(pydantic.BaseModel):
    """``with:`` fields of ``tuner.nsga2`` (Optuna NSGAIISampler's defaults)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    population_size: Annotated[int, Field(ge=4)] = 50
    crossover_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    swapping_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    mutation_prob: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


def nondominated_ranks(losses: np.ndarray) -> np.ndarray:
    """Rank 0 for the Pareto front, 1 for the front once it is removed, ... (Deb's fast
    non-dominated sort, O(M N²))."""
    n = len(losses)
    le = np.all(losses[:, None, :] <= losses[None, :, :], axis=2)
    lt = np.any(losses[:, None, :] < losses[None, :, :], axis=2)
    dom = le & lt                       # dom[i, j]: i dominates j
    count = dom.sum(axis=0)             # how many dominate j
    ranks = np.full(n, -1)
    current = np.flatnonzero(count == 0)
    rank = 0
    while current.size:
        ranks[current] = rank
        count = count - dom[current].sum(axis=0)
        count[ranks >= 0] = -1
        current = np.flatnonzero(count == 0)
        rank += 1
    return ranks


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """Deb's crowding distance within one front (extremes infinite)."""
    n, m = losses.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(losses[:, j], kind="stable")
        col = losses[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def select_elite(losses: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the `size` best rows (rank, then crowding), with every row's rank and
    crowding distance (computed per front)."""
    ranks = nondominated_ranks(losses)
    crowd = np.zeros(len(losses))
    chosen: list[int] = []
    for r in range(int(ranks.max()) + 1 if len(ranks) else 0):
        members = np.flatnonzero(ranks == r)
        crowd[members] = crowding_distance(losses[members])
        if len(chosen) + len(members) <= size:
            chosen.extend(members.tolist())
        else:
            order = np.argsort(-crowd[members], kind="stable")
            chosen.extend(members[order[: size - len(chosen)]].tolist())
        if len(chosen) >= size:
            break
    return np.array(chosen, dtype=int), ranks, crowd


class NSGA2(Strategy):
    """NSGA-II (Deb et al. 2002): elitist non-dominated sorting with crowding distance.

    Ports: ``objective`` (in, a list of metric ports, two or more); the Pareto trials
    (out). ``with:``: the framework's (mode as a list, trials, parallel, reference_point,
    ...) and population_size (50), crossover_prob (0.9), swapping_prob (0.5),
    mutation_prob (1/params). Seeded by the node's seed.
    """

    Config = NSGA2Config
    config: NSGA2Config
    multi_objective = True

    def __init__(self, space, *, mode, seed, budget, config=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, mode=mode, seed=seed, budget=budget,
                         config=config if config is not None else NSGA2Config())
        self.modes = modes_of(mode)
        self.loss_sign = np.array([1.0 if m == "min" else -1.0 for m in self.modes])

    @staticmethod
    def check_plan(plan: Any, spec: Any, kinds: Any, configs: Any, error: Any) -> None:
        """One objective is refused: NSGA-II ranks by Pareto dominance."""
        objectives = getattr(plan, "objectives", None) or (plan.objective,)
        if len(objectives) < 2:
            raise error(("nodes", plan.node_id, "in", "objective"),
                        f"tuner.nsga2 needs two or more objectives; '{plan.node_id}' has one",
                        hint="list several metric ports: in: {objective: [a.metric, b.metric]}")

    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        index = len(self.observations) + len(pending)
        rng = np.random.default_rng([self.seed, index])
        pop = self.config.population_size
        parents = self._parents()
        seen = {params_key(o.params) for o in self.observations} | {params_key(p) for p in pending}
        child: dict[str, Any] = {}
        for _ in range(32):
            if index < pop or len(parents[0]) < 2:
                child = {name: draw(domain, rng) for name, domain in self.space.items()}
            else:
                child = self._child(parents, rng)
            if params_key(child) not in seen:
                break
        return child

    # -- selection and variation --------------------------------------------------------
    def _parents(self) -> tuple[list[Mapping[str, Any]], np.ndarray, np.ndarray]:
        """(params, rank, crowding) of the elite population (module docstring)."""
        rows, params = [], []
        for o in self.observations:
            values = observed_values(o, len(self.modes))
            if values is not None:
                rows.append(values * self.loss_sign)
                params.append(o.params)
        if not rows:
            return [], np.zeros(0), np.zeros(0)
        losses = np.array(rows)
        chosen, _, _ = select_elite(losses, self.config.population_size)
        elite = losses[chosen]
        ranks = nondominated_ranks(elite)
        crowd = np.zeros(len(elite))
        for r in np.unique(ranks):
            members = np.flatnonzero(ranks == r)
            crowd[members] = crowding_distance(elite[members])
        return [params[i] for i in chosen], ranks, crowd

    @staticmethod
    def _tournament(rng: np.random.Generator, ranks: np.ndarray, crowd: np.ndarray) -> int:
        a, b = (int(i) for i in rng.integers(len(ranks), size=2))
        if ranks[a] != ranks[b]:
            return a if ranks[a] < ranks[b] else b
        return b if crowd[b] > crowd[a] else a

    def _child(self, parents: tuple[list[Mapping[str, Any]], np.ndarray, np.ndarray],
               rng: np.random.Generator) -> dict[str, Any]:
        params, ranks, crowd = parents
        first = params[self._tournament(rng, ranks, crowd)]
        second = params[self._tournament(rng, ranks, crowd)]
        if rng.random() < self.config.crossover_prob:
            child = {name: (second[name] if rng.random() < self.config.swapping_prob
                            else first[name]) for name in self.space}
        else:
            child = {name: first[name] for name in self.space}
        rate = self.config.mutation_prob
        if rate is None:
            rate = 1.0 / max(len(self.space), 1)
        for name, domain in self.space.items():
            if rng.random() < rate:
                child[name] = draw(domain, rng)
        return child


register_tuner("tuner.nsga2", NSGA2)
