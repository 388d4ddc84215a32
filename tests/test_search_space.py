"""The unit-cube transform of a search space (nodes/tuner/space.py)."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from flowopt.nodes.tuner.space import SearchSpace
from flowopt.spec import Domain


def test_a_float_range_maps_linearly_onto_the_unit_interval():
    s = SearchSpace({"x": Domain(low=-5, high=10)})
    assert s.dim == 1
    assert s.encode({"x": 2.5}) == pytest.approx([0.5])
    assert s.decode(np.array([0.2]))["x"] == pytest.approx(-2.0)


def test_a_log_range_is_uniform_in_the_logarithm():
    s = SearchSpace({"lr": Domain(low=1e-4, high=1e-2, log=True)})
    assert s.encode({"lr": 1e-3}) == pytest.approx([0.5])
    assert s.decode(np.array([0.25]))["lr"] == pytest.approx(10 ** -3.5)
    assert s.decode(np.array([1.0]))["lr"] <= 1e-2  # never outside the range after exp(log(.))


def test_every_integer_owns_a_cell_of_equal_width():
    s = SearchSpace({"n": Domain(low=1, high=4, integer=True)})
    grid = np.linspace(0, 1, 4001)[:, None]
    counts = Counter(s.decode(u)["n"] for u in grid)
    assert sorted(counts) == [1, 2, 3, 4]
    assert all(abs(c / 4001 - 0.25) < 0.002 for c in counts.values())


def test_a_log_integer_range_rounds_in_the_original_scale():
    s = SearchSpace({"width": Domain(low=1, high=100, log=True, integer=True)})
    for v in range(1, 101):
        u = s.encode({"width": v})
        assert s.decode(u)["width"] == v
        assert isinstance(s.decode(u)["width"], int)
    # the cell boundary between 9 and 10 lies at 9.5 in the original scale
    t = lambda v: (math.log(v) - math.log(0.5)) / (math.log(100.5) - math.log(0.5))  # noqa: E731
    assert s.decode(np.array([t(9.49)]))["width"] == 9
    assert s.decode(np.array([t(9.51)]))["width"] == 10


def test_choices_are_one_hot_and_decode_to_the_largest_coordinate():
    s = SearchSpace({"act": Domain(choices=["relu", "tanh", "gelu"]), "x": Domain(low=0, high=1)})
    assert s.dim == 4
    assert list(s.encode({"act": "gelu", "x": 0.0})) == [0, 0, 1, 0]
    assert s.decode(np.array([0.1, 0.7, 0.3, 0.5]))["act"] == "tanh"
    assert list(s.continuous) == [3]


def test_a_boolean_choice_is_not_confused_with_the_integer_one():
    s = SearchSpace({"c": Domain(choices=[1, True])})
    assert list(s.encode({"c": True})) == [0, 1]
    assert s.key({"c": True}) != s.key({"c": 1})


def test_snapping_is_idempotent_and_does_not_change_the_decoded_params():
    s = SearchSpace({"a": Domain(low=1, high=50, integer=True, log=True),
                     "b": Domain(choices=["x", "y", "z"]), "c": Domain(low=0.1, high=10, log=True)})
    U = np.random.default_rng(0).random((200, s.dim))
    snapped = s.snap(U)
    assert np.allclose(s.snap(snapped), snapped)
    for u, v in zip(U, snapped):
        assert s.decode(u) == pytest.approx(s.decode(v))
        assert np.allclose(s.encode(s.decode(u)), v)


def test_the_sobol_design_spreads_choices_evenly_and_continues_where_it_stopped():
    s = SearchSpace({"act": Domain(choices=["a", "b", "c", "d"]), "x": Domain(low=0, high=1)})
    design = s.sobol(16, seed=3)
    counts = Counter(s.decode(u)["act"] for u in design)
    assert counts == {"a": 4, "b": 4, "c": 4, "d": 4}
    assert np.allclose(np.vstack([s.sobol(8, seed=3), s.sobol(8, seed=3, skip=8)]), design)
    assert not np.allclose(s.sobol(16, seed=4), design)


def test_size_counts_the_points_of_a_finite_space_and_is_none_with_a_float():
    assert SearchSpace({"n": Domain(low=0, high=9, integer=True),
                        "c": Domain(choices=[1, 2, 3])}).size == 30
    assert SearchSpace({"x": Domain(low=0, high=1)}).size is None


def test_an_empty_space_and_an_integer_range_without_integers_are_refused():
    with pytest.raises(ValueError, match="empty"):
        SearchSpace({})
    with pytest.raises(ValueError, match="no integer"):
        SearchSpace({"n": Domain(low=0.2, high=0.8, integer=True)})
