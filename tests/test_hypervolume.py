"""Exact hypervolume (flowopt.tuning.hypervolume) against brute force on random fronts.

Two independent references: inclusion–exclusion over every subset of points (exact,
exponential, small sets) and the grid of cells cut by every coordinate (exact, polynomial
for fixed d). Fronts are drawn by hypothesis, with ties (coordinates on a coarse grid)
as often as not, and dominated points and points outside the reference box mixed in.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowopt.tuning.hypervolume import hvi_batch, hvi_point, hypervolume


def inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), k):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.clip(ref - corner, 0.0, None)))
    return total


def grid_cells(points: np.ndarray, ref: np.ndarray) -> float:
    """Sum the cells of the grid cut at every coordinate that some point dominates."""
    d = len(ref)
    axes = [np.unique(np.concatenate([points[:, j][points[:, j] < ref[j]], [ref[j]]]))
            for j in range(d)]
    total = 0.0
    for idx in itertools.product(*(range(len(a) - 1) for a in axes)):
        lower = np.array([axes[j][i] for j, i in enumerate(idx)])
        upper = np.array([axes[j][i + 1] for j, i in enumerate(idx)])
        if np.any(np.all(points <= lower, axis=1)):
            total += float(np.prod(upper - lower))
    return total


@st.composite
def fronts(draw, dims: tuple[int, ...], max_points: int):
    d = draw(st.sampled_from(dims))
    n = draw(st.integers(0, max_points))
    coarse = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pts = rng.random((n, d))
    if coarse:
        pts = np.round(pts * 4) / 4     # ties in every coordinate
    ref = np.full(d, draw(st.sampled_from([0.75, 1.0, 1.3])))
    return pts, ref


@settings(max_examples=150, deadline=None)
@given(fronts((1, 2, 3, 4, 5, 6), 8))
def test_hypervolume_equals_inclusion_exclusion(case):
    pts, ref = case
    assert hypervolume(pts, ref) == pytest.approx(inclusion_exclusion(pts, ref), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(fronts((2, 3, 4), 14))
def test_hypervolume_equals_grid_of_cells(case):
    pts, ref = case
    assert hypervolume(pts, ref) == pytest.approx(grid_cells(pts, ref), abs=1e-12)


def test_more_than_six_objectives_recurse_in_python():
    rng = np.random.default_rng(3)
    pts, ref = rng.random((7, 7)), np.full(7, 1.0)
    assert hypervolume(pts, ref) == pytest.approx(inclusion_exclusion(pts, ref), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(fronts((1, 2, 3, 4, 5), 7), st.integers(0, 2**32 - 1))
def test_improvement_of_a_point_is_the_difference_of_hypervolumes(case, seed):
    pts, ref = case
    x = np.random.default_rng(seed).random(len(ref))
    expected = hypervolume(np.vstack([pts, x]), ref) - hypervolume(pts, ref)
    got = hvi_point(np.ascontiguousarray(pts.reshape(-1, len(ref))), x, ref)
    assert got == pytest.approx(expected, abs=1e-12)


def test_batch_improvement_matches_point_by_point():
    rng = np.random.default_rng(0)
    fronts_ = np.full((3, 5, 2), np.inf)
    sizes = np.array([5, 2, 0])
    for s in range(3):
        fronts_[s, : sizes[s]] = rng.random((sizes[s], 2))
    values = rng.random((3, 4, 2))
    ref = np.ones(2)
    out = hvi_batch(fronts_, sizes, values, ref)
    for s in range(3):
        for c in range(4):
            assert out[s, c] == pytest.approx(hvi_point(fronts_[s, : sizes[s]], values[s, c], ref))


def test_known_values():
    # two points in 2-D: the union of [1,3]x[2,3] and [2,3]x[1,3]
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0])) == 3.0
    # a point on the reference point's face adds nothing
    assert hypervolume(np.array([[3.0, 0.0]]), np.array([3.0, 3.0])) == 0.0
    assert hypervolume(np.zeros((0, 3)), np.ones(3)) == 0.0
    # the unit cube's corner dominates everything: the whole box
    assert hypervolume(np.zeros((1, 4)), np.ones(4)) == 1.0
