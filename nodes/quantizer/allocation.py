"""Bit-width allocation across layers by integer programming (Hubara et al. 2021, §4).

Choose one width ``b_l`` per layer from a set of candidates to minimise the summed
measured degradation ``Σ_l ΔL_l(b_l)`` subject to a size budget
``Σ_l n_l · b_l ≤ budget · Σ_l n_l`` (``n_l``: the layer's weight count; the budget is an
average number of bits per weight). With one-hot indicators ``x_{l,k}`` this is the
paper's integer program: minimise ``Σ ΔL_{l,k} x_{l,k}`` s.t. ``Σ_k x_{l,k} = 1`` per layer
and the size constraint — solved exactly by scipy's `milp` (HiGHS branch and bound).
`brute_force` enumerates every allocation: the reference the tests hold `allocate` to.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np


class BudgetError(ValueError):
    """No allocation meets the budget."""


def smallest_average(sizes: Sequence[int], choices: Sequence[int]) -> float:
    """The smallest achievable average bits per weight: every layer at the lowest width."""
    return float(min(choices))


def _budget_bits(sizes: Sequence[int], budget: float) -> int:
    # Integers on both sides of the constraint: no float round-off decides feasibility.
    return int(np.floor(budget * int(np.sum(sizes)) + 1e-9))


def _check(sizes: Sequence[int], choices: Sequence[int], costs: np.ndarray, budget: float) -> None:
    if costs.shape != (len(sizes), len(choices)):
        raise ValueError(f"costs must be (layers, choices) = ({len(sizes)}, {len(choices)}), "
                         f"got {costs.shape}")
    if min(choices) * int(np.sum(sizes)) > _budget_bits(sizes, budget):
        raise BudgetError(f"no bit allocation meets {budget:g} bits per weight: the smallest "
                          f"achievable is {smallest_average(sizes, choices):g} (every layer at "
                          f"{min(choices)} bits)")


def allocate(sizes: Sequence[int], choices: Sequence[int], costs: np.ndarray,
             budget: float) -> list[int]:
    """The optimal width per layer (see the module docstring); raises `BudgetError`."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    costs = np.asarray(costs, dtype=np.float64)
    _check(sizes, choices, costs, budget)
    layers, k = costs.shape
    one_hot = np.kron(np.eye(layers), np.ones(k))  # row l sums layer l's indicators
    size_row = np.outer(np.asarray(sizes, np.float64), np.asarray(choices, np.float64)).reshape(1, -1)
    constraints = [LinearConstraint(one_hot, 1, 1),
                   LinearConstraint(size_row, -np.inf, _budget_bits(sizes, budget))]
    result = milp(costs.reshape(-1), constraints=constraints, integrality=np.ones(layers * k),
                  bounds=Bounds(0, 1))
    if result.status != 0 or result.x is None:
        raise BudgetError(f"the bit allocation program has no solution: {result.message}")
    picked = np.round(result.x).reshape(layers, k).argmax(axis=1)
    return [int(choices[i]) for i in picked]


def brute_force(sizes: Sequence[int], choices: Sequence[int], costs: np.ndarray,
                budget: float) -> tuple[list[int], float]:
    """Every allocation tried: the best one and its total cost (ties: the first found)."""
    costs = np.asarray(costs, dtype=np.float64)
    _check(sizes, choices, costs, budget)
    limit = _budget_bits(sizes, budget)
    best: tuple[list[int], float] = ([], float("inf"))
    for picks in itertools.product(range(len(choices)), repeat=len(sizes)):
        if sum(n * choices[k] for n, k in zip(sizes, picks, strict=True)) > limit:
            continue
        total = float(sum(costs[l, k] for l, k in enumerate(picks)))
        if total < best[1]:
            best = ([int(choices[k]) for k in picks], total)
    return best


def total_cost(choices: Sequence[int], costs: np.ndarray, picked: Sequence[int]) -> float:
    return float(sum(costs[l, list(choices).index(b)] for l, b in enumerate(picked)))
