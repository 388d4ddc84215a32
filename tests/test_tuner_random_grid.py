"""tuner.random and tuner.grid: seeded draws and grids over every kind of domain."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from flowopt.graph import compile_pipeline
from flowopt.nodes.tuner.grid import GridConfig, GridSearch
from flowopt.nodes.tuner.random import RandomSearch
from flowopt.nodes.tuner.sampling import points
from flowopt.nodes.tuner.strategy import NoConfig, Observation
from flowopt.recording import MemoryRecorder
from flowopt.registry import load_plugin
from flowopt.scheduler import Scheduler
from flowopt.spec import Domain, PipelineSpec

PLUGIN = Path(__file__).parent / "plugins" / "tuning_toys.py"
load_plugin(str(PLUGIN))

SPACE = {"lr": Domain(low=1e-4, high=1e-1, log=True), "width": Domain(low=8, high=64, integer=True),
         "layers": Domain(low=1, high=100, integer=True, log=True),
         "act": Domain(choices=["relu", "tanh", "gelu"]), "p": Domain(low=0.0, high=0.5)}


def random_search(space=SPACE, seed=0, budget=100):
    return RandomSearch(space, mode="max", seed=seed, budget=budget, config=NoConfig())


def grid_search(space, seed=0, **config):
    return GridSearch(space, mode="min", seed=seed, budget=100, config=GridConfig(**config))


def draws(strategy, n):
    out = []
    for number in range(n):
        params = strategy.ask([])
        strategy.tell(Observation(number, params, 0.0, "succeeded"))
        out.append(params)
    return out


def test_random_search_is_reproducible_from_its_seed_and_differs_between_seeds():
    assert draws(random_search(seed=3), 20) == draws(random_search(seed=3), 20)
    assert draws(random_search(seed=3), 20) != draws(random_search(seed=4), 20)


def test_random_proposals_do_not_depend_on_how_parallel_trials_interleave():
    sequential = draws(random_search(), 6)
    strategy = random_search()
    first, second = strategy.ask([]), None
    second = strategy.ask([first])
    strategy.tell(Observation(1, second, 0.0, "succeeded"))
    third = strategy.ask([first])
    assert [first, second, third] == sequential[:3]


def test_random_values_are_native_and_inside_their_domains():
    for params in draws(random_search(), 300):
        assert isinstance(params["lr"], float) and 1e-4 <= params["lr"] <= 1e-1
        assert type(params["width"]) is int and 8 <= params["width"] <= 64
        assert type(params["layers"]) is int and 1 <= params["layers"] <= 100
        assert params["act"] in ("relu", "tanh", "gelu")
        assert 0.0 <= params["p"] <= 0.5


def test_log_ranges_are_uniform_in_the_logarithm():
    lrs = np.log10([p["lr"] for p in draws(random_search(), 2000)])
    # log10(lr) ~ U(-4, -1): each decade holds a third of the draws, mean -2.5
    counts = np.histogram(lrs, bins=[-4, -3, -2, -1])[0] / len(lrs)
    assert np.allclose(counts, 1 / 3, atol=0.04) and abs(lrs.mean() + 2.5) < 0.06


def test_integer_and_categorical_domains_cover_every_value_evenly():
    params = draws(random_search(), 3000)
    widths = np.bincount([p["width"] for p in params], minlength=65)[8:]
    assert (widths > 0).all() and widths.max() / widths.min() < 2.2  # 57 values, ~53 each
    acts = {a: sum(p["act"] == a for p in params) / len(params) for a in ("relu", "tanh", "gelu")}
    assert all(abs(share - 1 / 3) < 0.03 for share in acts.values())
    layers = np.array([p["layers"] for p in params])
    # uniform in log over [0.5, 100.5] (each integer owns its rounding cell), so
    # P(layers <= 10) = log(10.5 / 0.5) / log(100.5 / 0.5) = 0.574, not 10/100
    expected = math.log(10.5 / 0.5) / math.log(100.5 / 0.5)
    assert abs(np.mean(layers <= 10) - expected) < 0.03


def test_random_search_beats_a_grid_when_few_params_matter():
    """Bergstra & Bengio 2012 (fig. 1): with 9 trials over two params of which one matters,
    a 3x3 grid tries 3 values of the important one, random search tries 9."""
    space = {"x": Domain(low=0.0, high=1.0), "y": Domain(low=0.0, high=1.0)}
    target = 0.37

    def regret(strategy):
        return min(abs(p["x"] - target) for p in draws(strategy, 9))

    grid = regret(grid_search(space, grid_points=3))
    randoms = [regret(RandomSearch(space, mode="min", seed=s, budget=9, config=NoConfig()))
               for s in range(30)]
    assert grid == pytest.approx(0.13)
    assert np.mean(randoms) < grid / 2


def test_grid_points_per_domain():
    assert points(Domain(low=0, high=1), 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert points(Domain(low=1e-4, high=1, log=True), 5) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1])
    assert points(Domain(low=1, high=3, integer=True), 5) == [1, 2, 3]
    assert points(Domain(low=1, high=100, integer=True, log=True), 3) == [1, 10, 100]
    assert points(Domain(choices=["a", "b"]), 5) == ["a", "b"]
    assert points(Domain(low=0, high=1), 1) == [0.5]


def test_the_grid_is_the_product_of_the_axes_in_a_seeded_order():
    space = {"x": Domain(low=0, high=1), "c": Domain(choices=["a", "b"])}
    ordered = grid_search(space, grid_points=3, shuffle=False)
    assert ordered.grid == [{"x": x, "c": c} for x in (0.0, 0.5, 1.0) for c in ("a", "b")]
    shuffled = grid_search(space, grid_points=3, seed=1)
    assert sorted(map(str, shuffled.grid)) == sorted(map(str, ordered.grid))
    assert shuffled.grid == grid_search(space, grid_points=3, seed=1).grid
    assert shuffled.grid != ordered.grid


def test_the_grid_proposes_each_point_once_skipping_running_and_observed_ones():
    space = {"x": Domain(low=0, high=1), "c": Domain(choices=["a", "b"])}
    strategy = grid_search(space, grid_points=2, shuffle=False)
    strategy.tell(Observation(0, {"x": 1.0, "c": "a"}, 1.0, "succeeded"))  # e.g. a resumed trial
    first = strategy.ask([{"x": 0.0, "c": "b"}])  # that point is running
    assert first == {"x": 0.0, "c": "a"}
    second = strategy.ask([{"x": 0.0, "c": "b"}, first])
    assert second == {"x": 1.0, "c": "b"}
    assert strategy.exhausted([{"x": 0.0, "c": "b"}])
    with pytest.raises(RuntimeError):
        strategy.ask([{"x": 0.0, "c": "b"}])


def test_a_grid_smaller_than_the_budget_stops_after_the_last_point():
    spec = PipelineSpec.model_validate({
        "pipeline": "grid", "params": {"x": 0.0, "y": 0.0, "choice": "a"},
        "search": {"x": {"low": 0.0, "high": 2.0}, "choice": {"choices": ["a", "b"]}},
        "nodes": {"src": {"kind": "tunetoy.source"},
                  "f": {"kind": "tunetoy.quad", "in": {"base": "src"},
                        "with": {"x": "${params.x}", "choice": "${params.choice}"}},
                  "tune": {"kind": "tuner.grid", "in": {"objective": "f.value"},
                           "with": {"mode": "min", "trials": 20, "grid_points": 3,
                                    "parallel": 2}}}})
    recorder = MemoryRecorder()
    result = Scheduler(compile_pipeline(spec), recorder).run()
    seen = sorted((t.params["x"], t.params["choice"]) for t in recorder.trials.values())
    assert seen == [(x, c) for x in (0.0, 1.0, 2.0) for c in ("a", "b")]
    assert result.best["params"] == {"x": 1.0, "choice": "b"}
    assert result.best["objective"] == pytest.approx(1.0 + 4.0)  # base 1 + (y+2)^2 at y=0
