"""Bit allocation by integer programming: exact (equal to brute force on ≤ 6 layers), within
budget, and an unmeetable budget names the smallest achievable size."""
from __future__ import annotations

import numpy as np
import pytest

from flowopt.nodes.quantizer.allocation import BudgetError, allocate, brute_force, total_cost

CHOICES = [2, 3, 4, 8]


def _problem(seed: int, layers: int):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 5000, layers).tolist()
    # Degradation falls with the width, faster for some layers than others (as measured).
    sensitivity = rng.lognormal(0, 1.5, layers)
    costs = sensitivity[:, None] * 4.0 ** -np.array(CHOICES, float)[None, :]
    costs *= rng.uniform(0.8, 1.25, costs.shape)
    return sizes, costs


@pytest.mark.parametrize("seed", range(12))
def test_the_integer_program_finds_the_brute_force_optimum(seed):
    layers = 1 + seed % 6
    sizes, costs = _problem(seed, layers)
    budget = float(np.random.default_rng(seed).uniform(2.2, 7.5))
    picked = allocate(sizes, CHOICES, costs, budget)
    best, best_cost = brute_force(sizes, CHOICES, costs, budget)
    assert total_cost(CHOICES, costs, picked) == pytest.approx(best_cost, rel=1e-9)
    assert picked == best  # continuous random costs: the optimum is unique
    assert sum(n * b for n, b in zip(sizes, picked)) <= budget * sum(sizes)


def test_a_larger_budget_never_costs_more_and_the_largest_buys_full_width():
    sizes, costs = _problem(99, 5)
    totals = [total_cost(CHOICES, costs, allocate(sizes, CHOICES, costs, b))
              for b in (2.0, 3.0, 4.0, 6.0, 8.0)]
    assert totals == sorted(totals, reverse=True)
    assert allocate(sizes, CHOICES, costs, 8.0) == [8] * 5
    assert allocate(sizes, CHOICES, costs, 2.0) == [2] * 5


def test_mixed_precision_puts_the_bits_where_the_degradation_is():
    sizes = [1000, 1000]
    costs = np.array([[100.0, 50.0, 10.0, 0.0], [1.0, 0.5, 0.1, 0.0]])  # layer 0 is sensitive
    assert allocate(sizes, CHOICES, costs, 5.0) == [8, 2]


def test_an_unmeetable_budget_says_the_smallest_achievable_size():
    with pytest.raises(BudgetError, match=r"1.5 bits per weight: the smallest achievable is 2 "
                                          r"\(every layer at 2 bits\)"):
        allocate([10, 20], CHOICES, np.zeros((2, 4)), 1.5)
