"""`BayesOpt` as an ask/tell strategy (nodes/tuner/bayesopt/strategy.py)."""
from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest

from flowopt.nodes.tuner.bayesopt import BayesOpt, BayesOptConfig
from flowopt.nodes.tuner.space import SearchSpace
from flowopt.nodes.tuner.strategy import Observation
from flowopt.spec import Domain

BRANIN_SPACE = {"x1": Domain(low=-5, high=10), "x2": Domain(low=0, high=15)}
BRANIN_MIN = 0.397887


def branin(x1: float, x2: float) -> float:
    return ((x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def make(space, mode="min", seed=0, budget=30, **config) -> BayesOpt:
    return BayesOpt(space, mode=mode, seed=seed, budget=budget, config=BayesOptConfig(**config))


def run(strategy: BayesOpt, f, n: int, start: int = 0) -> list[float]:
    values = []
    for i in range(start, start + n):
        params = strategy.ask([])
        value = f(**params)
        strategy.tell(Observation(i, params, value, "succeeded"))
        values.append(value)
    return values


def test_the_initial_design_is_the_seeded_sobol_sequence():
    s = make(BRANIN_SPACE, initial_design=4)
    asked = [s.ask([]) for _ in range(4)]       # nothing told yet: all from the design
    cube = SearchSpace(BRANIN_SPACE)
    expected = [cube.decode(u) for u in cube.sobol(4, seed=0)]
    assert asked == expected


def test_bayesopt_beats_random_search_on_branin_after_30_evaluations():
    """The tutorial's claim at small scale: the GP model finds better points than random
    sampling with the same budget (random: the mean over 5 seeds)."""
    bo = min(run(make(BRANIN_SPACE, seed=0), branin, 30)) - BRANIN_MIN
    cube = SearchSpace(BRANIN_SPACE)
    random_regret = np.mean([
        min(branin(**cube.decode(u)) for u in cube.random(30, np.random.default_rng(seed)))
        for seed in range(5)]) - BRANIN_MIN
    assert bo < 0.05
    assert bo < random_regret / 10


def test_minimising_f_proposes_the_same_points_as_maximising_minus_f():
    a, b = make(BRANIN_SPACE, "min", seed=1), make(BRANIN_SPACE, "max", seed=1)
    for i in range(13):
        pa, pb = a.ask([]), b.ask([])
        assert pa == pytest.approx(pb)
        a.tell(Observation(i, pa, branin(**pa), "succeeded"))
        b.tell(Observation(i, pb, -branin(**pb), "succeeded"))


def test_the_uniform_initial_design_draws_seeded_points_that_are_not_the_sobol_sequence(monkeypatch):
    from flowopt.nodes.tuner.bayesopt import strategy

    monkeypatch.setattr(strategy, "INITIAL_DESIGN", "uniform")
    first = [make(BRANIN_SPACE, initial_design=4, seed=5).ask([]) for _ in range(2)]
    s = make(BRANIN_SPACE, initial_design=4, seed=5)
    asked = [s.ask([]) for _ in range(4)]
    cube = SearchSpace(BRANIN_SPACE)
    assert first[0] == first[1] == asked[0]                # seeded
    assert asked != [cube.decode(u) for u in cube.sobol(4, seed=5)]
    assert len({tuple(p.values()) for p in asked}) == 4
    assert all(-5 <= p["x1"] <= 10 and 0 <= p["x2"] <= 15 for p in asked)


def test_without_local_candidates_every_candidate_is_quasi_random_and_the_search_still_works(monkeypatch):
    from flowopt.nodes.tuner.bayesopt import strategy

    s = make(BRANIN_SPACE, seed=0)
    values = run(s, branin, 12)
    gp, ys = s._fit([o for o in s.observations])
    cands, n_local = s._candidates_continuous(gp, ys)
    assert n_local == 5 * 33 and len(cands) == n_local + s.config.candidates
    monkeypatch.setattr(strategy, "LOCAL_CANDIDATES", 0)
    cands, n_local = s._candidates_continuous(gp, ys)
    assert n_local == 0 and len(cands) == s.config.candidates
    values += run(s, branin, 18, start=12)
    assert min(values) - BRANIN_MIN < 0.05


def test_the_batched_refinement_raises_every_starts_log_ei_about_as_far_as_one_search_per_start(monkeypatch):
    from flowopt.nodes.tuner.bayesopt import strategy
    from flowopt.nodes.tuner.bayesopt.acquisition import log_ei_grad

    s = make(BRANIN_SPACE, seed=1)
    run(s, branin, 15)
    gp, ys = s._fit([o for o in s.observations])
    best = float(ys.max())
    starts = s.cube.sobol(10, seed=3)
    before, _ = log_ei_grad(gp, starts, best)
    after = {}
    for how in ("batched", "each"):
        monkeypatch.setattr(strategy, "REFINE", how)
        after[how], _ = log_ei_grad(gp, s._lbfgs_ei(gp, best, starts), best)
    assert np.all(after["batched"] >= before)
    assert np.mean(after["batched"] > before + 1e-3) >= 0.8   # most starts moved uphill
    # both reach the same best value and, start by start, about the same local optimum
    assert after["batched"].max() == pytest.approx(after["each"].max(), abs=1e-3)
    assert np.median(np.abs(after["batched"] - after["each"])) < 1e-2


def test_integer_and_categorical_spaces_get_no_duplicate_proposal_until_exhausted():
    space = {"n": Domain(low=1, high=3, integer=True), "act": Domain(choices=["a", "b", "c"])}
    s = make(space, initial_design=3)
    seen = set()
    for i in range(9):
        params = s.ask([])
        key = (params["n"], params["act"])
        assert key not in seen
        assert isinstance(params["n"], int)
        seen.add(key)
        s.tell(Observation(i, params, float(params["n"]) + (params["act"] == "b"), "succeeded"))
        assert s.exhausted() == (i == 8)


def test_a_large_integer_space_also_gets_no_duplicates_and_finds_the_optimum():
    space = {"a": Domain(low=0, high=200, integer=True), "b": Domain(low=1, high=1000, integer=True, log=True)}
    s = make(space, initial_design=6)
    seen = set()
    f = lambda a, b: (a - 137) ** 2 / 1e3 + (math.log(b) - math.log(20)) ** 2  # noqa: E731
    for i in range(25):
        params = s.ask([])
        assert (params["a"], params["b"]) not in seen
        seen.add((params["a"], params["b"]))
        s.tell(Observation(i, params, f(**params), "succeeded"))
    best = min(s.observations, key=lambda o: o.objective).params
    assert abs(best["a"] - 137) <= 8 and 12 <= best["b"] <= 33


def test_a_log_scaled_range_is_searched_in_its_logarithm():
    space = {"lr": Domain(low=1e-6, high=1.0, log=True)}
    s = make(space, initial_design=5)
    design = [s.ask([])["lr"] for _ in range(5)]
    assert sum(v < 1e-3 for v in design) >= 2             # linear spacing would give none
    s = make(space, initial_design=4)
    values = run(s, lambda lr: (math.log10(lr) + 4.5) ** 2, 14)
    best = min(s.observations, key=lambda o: o.objective).params["lr"]
    assert min(values) < 0.01 and 10**-4.7 < best < 10**-4.3


def test_parallel_asks_with_pending_trials_return_distinct_points():
    s = make(BRANIN_SPACE, seed=2)
    run(s, branin, 12)
    pending: list[dict] = []
    for _ in range(4):
        pending.append(s.ask(pending))
    cube = SearchSpace(BRANIN_SPACE)
    U = cube.encode_many(pending)
    gaps = [np.linalg.norm(U[i] - U[j]) for i in range(4) for j in range(i)]
    assert min(gaps) > 1e-3                                  # q different proposals
    # without pending trials, the first proposal again: the others moved away because of it
    alone = cube.encode(s.ask([]))
    assert np.linalg.norm(alone - U[0]) < 1e-3


def test_told_observations_before_the_first_ask_skip_the_initial_design():
    cube = SearchSpace(BRANIN_SPACE)
    s = make(BRANIN_SPACE, initial_design=10, seed=3)
    rng = np.random.default_rng(3)
    for i, u in enumerate(cube.random(10, rng)):
        p = cube.decode(u)
        s.tell(Observation(i, p, branin(**p), "succeeded"))
    first = s.ask([])
    sobol_first = cube.decode(cube.sobol(1, seed=3)[0])
    assert first != sobol_first                              # the model, not the design
    values = run(s, branin, 12, start=10)
    assert min(values) - BRANIN_MIN < 0.3


def test_failed_trials_are_not_modelled_and_never_proposed_again():
    space = {"n": Domain(low=0, high=5, integer=True)}
    s = make(space, initial_design=2)
    for i in range(6):
        p = s.ask([])
        if p["n"] in (1, 4):
            s.tell(Observation(i, p, None, "failed"))
        else:
            s.tell(Observation(i, p, float(p["n"]), "succeeded"))
    assert sorted(o.params["n"] for o in s.observations) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("acquisition", ["nei", "kg"])
def test_noisy_ei_and_knowledge_gradient_find_the_optimum_of_a_noisy_function(acquisition):
    rng = np.random.default_rng(4)
    f = lambda x: -(x - 0.3) ** 2 * 10 + 0.1 * rng.standard_normal()  # noqa: E731
    s = make({"x": Domain(low=0, high=1)}, mode="max", acquisition=acquisition,
             initial_design=4, candidates=256)
    run(s, f, 14)
    assert abs(s.recommend()["x"] - 0.3) < 0.15          # f within 2.3 σ of the optimum


def test_recommend_prefers_the_posterior_mean_over_a_lucky_noisy_observation():
    s = make({"x": Domain(low=0, high=1)}, mode="max", noise=0.1)
    xs = np.linspace(0, 1, 21)
    noise = 0.03 * np.random.default_rng(5).standard_normal(21)
    noise[4] = 0.25                                       # x = 0.2 got lucky
    for i, x in enumerate(xs):
        s.tell(Observation(i, {"x": float(x)}, -(x - 0.5) ** 2 + noise[i], "succeeded"))
    assert max(s.observations, key=lambda o: o.objective).params["x"] == pytest.approx(0.2)
    assert abs(s.recommend()["x"] - 0.5) <= 0.1


def test_the_config_rejects_unknown_fields_and_acquisitions():
    with pytest.raises(pydantic.ValidationError):
        BayesOptConfig(acquisition="ucb")
    with pytest.raises(pydantic.ValidationError):
        BayesOptConfig(initial_desing=5)
    with pytest.raises(pydantic.ValidationError):
        BayesOptConfig(noise=-1.0)
