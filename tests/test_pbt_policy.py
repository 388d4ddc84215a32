"""PBT's exploit/explore policies: pure decision functions, seeded, domain-respecting."""
from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest

from flowopt.nodes.tuner.pbt.policy import (PbtConfig, badness, decision_rng, explore, perturb,
                                            quantile_size, sample, tournament, truncation)
from flowopt.spec import Domain

SCORES = {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6, 4: 0.5, 5: 0.4, 6: 0.3, 7: 0.2, 8: 0.1, 9: 0.0}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_a_member_in_the_bottom_fifth_copies_a_member_of_the_top_fifth():
    sources = {truncation(SCORES, 9, fraction=0.2, mode="max", rng=rng(s)) for s in range(50)}
    assert sources == {0, 1}
    sources = {truncation(SCORES, 8, fraction=0.2, mode="max", rng=rng(s)) for s in range(50)}
    assert sources == {0, 1}


def test_a_member_outside_the_bottom_quantile_keeps_its_weights():
    for member in range(8):
        assert truncation(SCORES, member, fraction=0.2, mode="max", rng=rng()) is None


def test_mode_min_turns_the_ranking_around():
    assert truncation(SCORES, 0, fraction=0.2, mode="min", rng=rng()) in {8, 9}
    assert truncation(SCORES, 9, fraction=0.2, mode="min", rng=rng()) is None


def test_the_fraction_is_configurable_and_the_quantile_never_overlaps():
    assert quantile_size(10, 0.2) == 2
    assert quantile_size(10, 0.25) == 3  # Ray Tune's default rounds up
    assert quantile_size(2, 0.2) == 1
    assert quantile_size(3, 0.5) == 1  # ceil(1.5) = 2 would overlap: capped at n // 2
    sources = {truncation(SCORES, 7, fraction=0.3, mode="max", rng=rng(s)) for s in range(60)}
    assert sources == {0, 1, 2}


def test_nan_and_infinite_scores_rank_worst_and_are_replaced():
    scores = {0: 0.1, 1: math.nan, 2: 0.5, 3: 0.3}
    assert badness(math.nan, "max") == badness(math.inf, "min") == badness(None, "max") == math.inf
    assert truncation(scores, 1, fraction=0.25, mode="max", rng=rng()) == 2
    assert truncation(scores, 0, fraction=0.25, mode="max", rng=rng()) is None
    scores[2] = math.inf  # +inf is not "best" when maximising: a diverged value
    assert truncation(scores, 2, fraction=0.25, mode="max", rng=rng()) == 3  # ties: by number


def test_a_population_that_diverged_entirely_copies_nobody():
    scores = {0: math.nan, 1: math.nan}
    assert truncation(scores, 1, fraction=0.5, mode="max", rng=rng()) is None


def test_binary_tournament_copies_the_rival_only_when_it_is_better():
    scores = {0: 0.2, 1: 0.9, 2: 0.5}
    picks = {tournament(scores, 2, mode="max", rng=rng(s)) for s in range(40)}
    assert picks == {1, None}  # rival 1 wins, rival 0 loses
    assert {tournament(scores, 1, mode="max", rng=rng(s)) for s in range(40)} == {None}
    assert {tournament(scores, 0, mode="max", rng=rng(s)) for s in range(40)} == {1, 2}


def test_perturbing_multiplies_by_a_configured_factor_and_clips_to_the_domain():
    domain = Domain(low=1e-4, high=0.1, log=True)
    values = {perturb(0.01, domain, (0.8, 1.2), rng(s)) for s in range(40)}
    assert sorted(values) == pytest.approx([0.008, 0.012])
    assert min(perturb(0.095, domain, (0.8, 1.2), rng(s)) for s in range(40)) == pytest.approx(0.076)
    assert max(perturb(0.095, domain, (0.8, 1.2), rng(s)) for s in range(40)) == 0.1
    assert sorted({perturb(1.0, Domain(low=0, high=10), (0.5, 3.0), rng(s))
                   for s in range(40)}) == [0.5, 3.0]


def test_integers_and_choices_step_to_a_neighbour():
    ints = Domain(low=1, high=5, integer=True)
    assert {perturb(3, ints, (0.8, 1.2), rng(s)) for s in range(40)} == {2, 4}
    assert {perturb(5, ints, (0.8, 1.2), rng(s)) for s in range(40)} == {4}
    choices = Domain(choices=["sgd", "adam", "lion"])
    assert {perturb("adam", choices, (0.8, 1.2), rng(s)) for s in range(40)} == {"sgd", "lion"}
    assert {perturb("sgd", choices, (0.8, 1.2), rng(s)) for s in range(40)} == {"adam"}


def test_resampling_draws_from_the_prior_with_the_configured_probability():
    domain = Domain(low=1e-4, high=0.1, log=True)
    space = {"lr": domain}
    config = PbtConfig(resample_probability=0.25)
    draws = [explore({"lr": 0.01}, space, config, rng(s))["lr"] for s in range(2000)]
    perturbed = sum(1 for d in draws if d in (pytest.approx(0.008), pytest.approx(0.012)))
    assert 0.70 < perturbed / len(draws) < 0.80
    assert all(1e-4 <= d <= 0.1 for d in draws)
    logs = np.log10([sample(domain, rng(s)) for s in range(2000)])
    assert abs(np.mean(logs) - (-2.5)) < 0.1  # log-uniform: the mean of log10 is the middle
    always = PbtConfig(resample_probability=1.0)
    assert len({explore({"lr": 0.01}, space, always, rng(s))["lr"] for s in range(20)}) == 20


def test_explore_passes_unsearched_params_through_and_is_seeded():
    space = {"lr": Domain(low=1e-4, high=0.1, log=True), "width": Domain(choices=[32, 64, 128])}
    params = {"lr": 0.01, "width": 64, "steps": 100}
    a = explore(params, space, PbtConfig(), decision_rng(3, 1, 40))
    b = explore(params, space, PbtConfig(), decision_rng(3, 1, 40))
    assert a == b and a["steps"] == 100 and a["width"] in (32, 64, 128)
    assert explore(params, space, PbtConfig(), decision_rng(3, 2, 40)) != a or \
        explore(params, space, PbtConfig(), decision_rng(3, 1, 44)) != a


def test_sampled_integers_stay_integers_inside_the_range():
    domain = Domain(low=2, high=6, integer=True)
    values = {sample(domain, rng(s)) for s in range(200)}
    assert values == {2, 3, 4, 5, 6}
    logged = {sample(Domain(low=1, high=64, integer=True, log=True), rng(s)) for s in range(300)}
    assert min(logged) >= 1 and max(logged) <= 64 and all(isinstance(v, int) for v in logged)


@pytest.mark.parametrize("field,value,needle", [
    ("population", 1, "population"), ("interval", 0, "interval"),
    ("fraction", 0.0, "fraction"), ("fraction", 0.6, "fraction"),
    ("factors", (0.8, 0.0), "factors must be finite and > 0"),
    ("factors", (-1.2,), "factors must be finite and > 0"),
])
def test_bad_configuration_is_refused_before_anything_runs(field, value, needle):
    with pytest.raises(pydantic.ValidationError) as info:
        PbtConfig(**{field: value})
    assert needle in str(info.value)


def test_the_defaults_are_the_papers():
    config = PbtConfig()
    assert (config.fraction, config.factors, config.resample_probability) == (0.2, (0.8, 1.2), 0.25)
    assert config.selection == "truncation"
