"""Multi-objective building blocks: Pareto filtering, reference points, NSGA-II's sorting,
and the strategies' claims (tuner.nsga2 and tuner.bayesopt with several objectives find
larger hypervolumes than random search, averaged over seeds)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowopt.spec import Domain
from flowopt.tuning.pareto import (check_reference_point, hypervolume, infer_reference_point,
                                   pareto_mask, to_loss)


def reference_mask(losses: np.ndarray) -> np.ndarray:
    """O(n²): a row is on the front when no other row dominates it."""
    n = len(losses)
    ok = np.all(np.isfinite(losses), axis=1)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        if not ok[i]:
            continue
        out[i] = not any(ok[j] and np.all(losses[j] <= losses[i]) and np.any(losses[j] < losses[i])
                         for j in range(n) if j != i)
    return out


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 40), st.booleans(), st.integers(0, 2**32 - 1))
def test_pareto_mask_equals_the_quadratic_reference(d, n, coarse, seed):
    rng = np.random.default_rng(seed)
    losses = rng.random((n, d))
    if coarse:
        losses = np.round(losses * 3) / 3      # duplicates and ties
    if n and seed % 3 == 0:
        losses[rng.integers(n), rng.integers(d)] = np.nan   # an infeasible trial
    np.testing.assert_array_equal(pareto_mask(losses), reference_mask(losses))


def test_duplicates_are_all_on_the_front_and_nan_never():
    losses = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [np.nan, 0.0], [3.0, 3.0]])
    assert pareto_mask(losses).tolist() == [True, True, True, False, False]


def test_directions_turn_into_losses():
    assert to_loss([[0.9, 100.0]], ["max", "min"]).tolist() == [[-0.9, 100.0]]


def test_reference_point_is_botorchs_nadir_minus_a_tenth_of_the_range():
    # maximise accuracy, minimise bytes; front: (0.9, 300), (0.8, 100); (0.7, 400) dominated
    losses = to_loss([[0.9, 300.0], [0.8, 100.0], [0.7, 400.0]], ["max", "min"])
    ref = infer_reference_point(losses)
    # nadir (0.8, 300), range (0.1, 200) -> (0.79, 320) in objective units
    assert (-ref[0], ref[1]) == pytest.approx((0.79, 320.0))
    # one point: value minus a tenth of its magnitude, in the worse direction
    assert infer_reference_point(np.array([[2.0, -4.0]])).tolist() == pytest.approx([2.2, -3.6])
    # a flat objective still gets a margin
    flat = infer_reference_point(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert flat[0] > 1.0 and flat[1] > 0.0


def test_the_search_keeps_the_fronts_nadir_but_a_margin_of_the_observed_range():
    # ZDT1's first front is often the one point (0, 1), which dominates the rest: BoTorch's
    # rule gives it a box of width 1e-7 in the first loss, where nothing can improve
    losses = np.array([[0.0, 1.0], [0.5, 3.0], [1.0, 2.0]])
    alone = infer_reference_point(losses)
    assert alone[0] == pytest.approx(1e-8) and alone[1] == pytest.approx(1.1)
    searched = infer_reference_point(losses, spread=losses)
    assert searched.tolist() == pytest.approx([0.1, 1.2])  # nadir (0, 1) + 0.1 * range (1, 2)
    # a front as wide as the observations: the same point as BoTorch's rule
    wide = np.array([[0.0, 2.0], [2.0, 0.0], [1.0, 1.5]])
    assert infer_reference_point(wide, spread=wide).tolist() == pytest.approx(
        infer_reference_point(wide).tolist())


def test_reference_point_checks():
    assert check_reference_point(None, 2) is None
    assert check_reference_point([0.8, 4e4], 2) is None
    assert "expected 2" in check_reference_point([0.8], 2)
    assert "finite" in check_reference_point([0.8, float("nan")], 2)


# -- NSGA-II's sorting --------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.integers(2, 3), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_nondominated_ranks_peel_fronts(d, n, seed):
    from flowopt.nodes.tuner.nsga2 import nondominated_ranks

    losses = np.round(np.random.default_rng(seed).random((n, d)) * 5) / 5
    ranks = nondominated_ranks(losses)
    remaining = np.arange(n)
    rank = 0
    while remaining.size:
        front = remaining[reference_mask(losses[remaining])]
        assert set(np.flatnonzero(ranks == rank)) == set(front.tolist())
        remaining = np.setdiff1d(remaining, front)
        rank += 1


def test_crowding_distance_and_elite_selection():
    from flowopt.nodes.tuner.nsga2 import crowding_distance, select_elite

    front = np.array([[0.0, 4.0], [1.0, 3.0], [2.0, 1.0], [4.0, 0.0]])
    dist = crowding_distance(front)
    assert math.isinf(dist[0]) and math.isinf(dist[3])
    assert dist[1] == pytest.approx(2 / 4 + 3 / 4) and dist[2] == pytest.approx(3 / 4 + 3 / 4)
    losses = np.vstack([front, [[5.0, 5.0]]])
    chosen, _, _ = select_elite(losses, 3)
    assert sorted(chosen.tolist()) == [0, 2, 3]       # the least crowded interior point goes


# -- strategies on test problems ---------------------------------------------------------
@dataclass(frozen=True)
class Obs:
    number: int
    params: dict
    objective: float | None
    status: str
    values: tuple | None = None


def branin_currin(p: dict) -> tuple[float, float]:
    x1, x2 = 15 * p["x0"] - 5, 15 * p["x1"]
    b = (x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2 \
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
    u, v = p["x0"], p["x1"]
    c = (1 - math.exp(-1 / (2 * v))) if v > 0 else 1.0
    c *= (2300 * u ** 3 + 1900 * u ** 2 + 2092 * u + 60) / (100 * u ** 3 + 500 * u ** 2 + 4 * u + 20)
    return b, c


def zdt1(p: dict) -> tuple[float, float]:
    x = np.array([p[f"x{i}"] for i in range(len(p))])
    g = 1 + 9 * x[1:].mean()
    return float(x[0]), float(g * (1 - math.sqrt(x[0] / g)))


def run(cls: Any, problem: Any, dims: int, evals: int, seed: int, config: Any = None,
        parallel: int = 1) -> np.ndarray:
    space = {f"x{i}": Domain(low=0.0, high=1.0) for i in range(dims)}
    strat = cls(space, mode=["min", "min"], seed=seed, budget=evals, config=config)
    values = []
    number = 0
    while number < evals:
        batch = []
        for _ in range(min(parallel, evals - number)):
            batch.append(strat.ask(batch))
        for params in batch:
            v = problem(params)
            values.append(v)
            strat.tell(Obs(number, params, None, "succeeded", v))
            number += 1
    return np.array(values)


def test_nsga2_beats_random_search_on_zdt1():
    from flowopt.nodes.tuner.nsga2 import NSGA2, NSGA2Config
    from flowopt.nodes.tuner.random import RandomSearch

    ref = np.array([11.0, 11.0])
    config = NSGA2Config(population_size=20)
    ga = [hypervolume(run(NSGA2, zdt1, 6, 300, s, config), ref) for s in range(3)]
    rs = [hypervolume(run(RandomSearch, zdt1, 6, 300, s), ref) for s in range(3)]
    assert np.mean(ga) > np.mean(rs) + 5.0     # measured: ≈ 117.0 against ≈ 105.6


def test_nsga2_refuses_nothing_it_cannot_propose_and_never_repeats():
    from flowopt.nodes.tuner.nsga2 import NSGA2, NSGA2Config

    space = {"a": Domain(choices=[1, 2, 3]), "b": Domain(low=0, high=3, integer=True)}
    strat = NSGA2(space, mode=["min", "max"], seed=0, budget=12,
                  config=NSGA2Config(population_size=4))
    seen = set()
    for i in range(12):
        p = strat.ask([])
        assert p["a"] in (1, 2, 3) and 0 <= p["b"] <= 3
        seen.add((p["a"], p["b"]))
        strat.tell(Obs(i, p, None, "succeeded", (float(p["a"]), float(p["b"]))))
    assert len(seen) == 12


@pytest.mark.slow
def test_nehvi_beats_random_search_on_branin_currin():
    from flowopt.nodes.tuner.bayesopt import BayesOpt
    from flowopt.nodes.tuner.random import RandomSearch

    ref = np.array([18.0, 6.0])
    bo = [hypervolume(run(BayesOpt, branin_currin, 2, 30, s), ref) for s in range(3)]
    rs = [hypervolume(run(RandomSearch, branin_currin, 2, 30, s), ref) for s in range(3)]
    assert np.mean(bo) > np.mean(rs) + 30.0     # max 59.36; measured ≈ 55.0 against ≈ 2.4


@pytest.mark.slow
def test_nehvi_batches_are_distinct_and_still_good():
    from flowopt.nodes.tuner.bayesopt import BayesOpt

    ref = np.array([18.0, 6.0])
    values = run(BayesOpt, branin_currin, 2, 24, 0, parallel=3)
    assert len({tuple(v) for v in values}) == 24
    assert hypervolume(values, ref) > 45.0      # measured 53.7


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.booleans(), st.integers(0, 2**32 - 1))
def test_numba_front_mask_equals_the_quadratic_reference(d, n, coarse, seed):
    from flowopt.tuning.hypervolume import front_mask

    losses = np.random.default_rng(seed).random((n, d))
    if coarse:
        losses = np.round(losses * 3) / 3
    np.testing.assert_array_equal(front_mask(losses), reference_mask(losses))


def test_nehvi_without_noise_is_the_exact_ehvi_within_monte_carlo_error():
    """With (almost) noiseless observations the sampled fronts are the observed front, and
    the acquisition's mean improvement is the expected hypervolume improvement: checked
    against brute-force sampling of the candidate's posterior (200 000 draws)."""
    from flowopt.nodes.tuner.bayesopt import gp as gpmod
    from flowopt.nodes.tuner.bayesopt.multi import _NEHVI
    from flowopt.tuning.hypervolume import hvi_point

    rng = np.random.default_rng(3)
    X = rng.uniform(size=(8, 2))
    y = np.column_stack([np.sin(3 * X[:, 0]) + X[:, 1], np.cos(2 * X[:, 1]) - X[:, 0]])
    hyper = gpmod.Hyper(np.array([4.0, 4.0]), 1.0, 1e-8)
    models = [(gpmod.GP(X, y[:, j], hyper), 0.0, 1.0) for j in range(2)]  # standardised as is
    losses = -y
    ref = losses.max(axis=0) + 0.5
    samples = 4096
    scorer = _NEHVI(models, X, ref, samples, np.random.default_rng(0), observed=losses)
    front = losses[pareto_mask(losses)]
    cands = rng.uniform(size=(5, 2))
    got = np.exp(scorer(cands))
    for c, value in zip(cands, got):
        means = np.array([m.posterior(c[None])[0][0] for m, _, _ in models])
        sds = np.sqrt([m.posterior(c[None])[1][0] for m, _, _ in models])
        draws = -(means + sds * rng.standard_normal((200_000, 2)))
        exact = np.array([hvi_point(front, d, ref) for d in draws])
        error = exact.std() / np.sqrt(samples)            # the acquisition's own MC error
        assert value == pytest.approx(exact.mean(), abs=4 * error + 1e-9)


def dtlz2(p: dict) -> tuple[float, float, float]:
    x = np.array([p[f"x{i}"] for i in range(len(p))])
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return ((1 + g) * math.cos(a) * math.cos(b), (1 + g) * math.cos(a) * math.sin(b),
            (1 + g) * math.sin(a))


def test_each_objectives_gp_expects_its_worst_observation_away_from_the_data(monkeypatch):
    """The constant prior mean of every objective's GP is that objective's worst observation
    (standardised, signed larger-is-better: the minimum), whatever the objective's direction;
    PRIOR_MEAN = "fitted" gives the least-squares constant of the single-objective model."""
    from flowopt.nodes.tuner.bayesopt import BayesOpt, multi

    rng = np.random.default_rng(0)
    space = {f"x{i}": Domain(low=0.0, high=1.0) for i in range(3)}
    strat = BayesOpt(space, mode=["min", "max"], seed=0, budget=20)
    X = rng.random((12, 3))
    values = np.column_stack([np.sin(4 * X[:, 0]) + X[:, 1], X[:, 2] ** 2 - X[:, 0]])
    models = strat._fit(X, values)
    for j, (model, mean, std) in enumerate(models):
        worst = values[:, j].max() if j == 0 else values[:, j].min()   # min / max modes
        assert model.mean == pytest.approx(model.y.min())
        assert mean + std * model.mean == pytest.approx(-worst if j == 0 else worst)
    monkeypatch.setattr(multi, "PRIOR_MEAN", "fitted")
    strat = BayesOpt(space, mode=["min", "max"], seed=0, budget=20)
    for model, _, _ in strat._fit(X, values):
        assert model.prior_mean is None and model.mean > model.y.min() + 0.3


def run_dtlz2(seed: int, evals: int, ref: list[float], cls: Any = None) -> np.ndarray:
    """DTLZ2 with 6 params as the benchmark runs it: budget 100 (a 10-point design), the
    first `evals` trials, the reference point given."""
    from flowopt.nodes.tuner.bayesopt import BayesOpt

    cls = cls or BayesOpt
    space = {f"x{i}": Domain(low=0.0, high=1.0) for i in range(6)}
    strat = cls(space, mode=["min"] * 3, seed=seed, budget=100, config=cls.Config())
    strat.reference_point = ref
    values = []
    for number in range(evals):
        params = strat.ask([])
        values.append(dtlz2(params))
        strat.tell(Obs(number, params, None, "succeeded", values[-1]))
    return np.array(values)


@pytest.mark.slow
def test_the_worst_observation_as_prior_mean_beats_the_fitted_one_and_random_search_early(
        monkeypatch):
    """DTLZ2 (6 params, 3 objectives) after 25 trials at [1.1]³, 5 seeds: with the fitted
    constant the model sends parameters it has not learned to the cube's faces and does
    worse than random search; with the worst observation it does better than both."""
    from flowopt.nodes.tuner.bayesopt import multi
    from flowopt.nodes.tuner.random import RandomSearch

    ref = [1.1, 1.1, 1.1]
    worst = np.mean([hypervolume(run_dtlz2(s, 25, ref), np.array(ref)) for s in range(5)])
    rs = np.mean([hypervolume(run_dtlz2(s, 25, ref, RandomSearch), np.array(ref))
                  for s in range(5)])
    monkeypatch.setattr(multi, "PRIOR_MEAN", "fitted")
    fitted = np.mean([hypervolume(run_dtlz2(s, 25, ref), np.array(ref)) for s in range(5)])
    assert worst > fitted + 0.05          # measured 0.318 against 0.204
    assert worst > rs + 0.04              # random search ≈ 0.23
