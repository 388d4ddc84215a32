"""Exact hypervolume and hypervolume improvement, as numba kernels.

Convention: **minimisation**. The hypervolume of points ``P`` with respect to a
reference point ``r`` is the Lebesgue measure of ``{z : z ≤ r and p ≤ z for some p ∈ P}``;
a point not strictly better than ``r`` in every objective contributes nothing. Callers
that maximise negate first (`flowopt.tuning.pareto` does).

Algorithms, chosen by the number of objectives d:

* d = 1: ``r - min(P)``.
* d = 2: the sweep — sort by the first objective, walk keeping the best second objective
  seen; each point that lowers it adds one rectangle. O(n log n).
* d = 3: the sweep over the third objective (Fonseca, Paquete & López-Ibáñez 2006, "An
  improved dimension-sweep algorithm for the hypervolume indicator"): points in
  increasing third objective enter a 2-D staircase; the volume is the sum of slabs
  ``area(staircase) × height``. The staircase is kept sorted and its area updated on each
  insertion, O(n²) in the worst case, ~n log n on fronts.
* d ≥ 4: WFG (While, Bradstreet & Barone 2012, "A fast way of calculating exact
  hypervolumes"): ``HV(P) = Σ_k exclusive(p_k, {p_k+1, ...})`` with the points sorted by
  *decreasing* last objective, so every point of the "limit set" ``max(p_k, p_j)`` shares
  ``p_k``'s last objective and each exclusive volume is a slab of height ``r_d - p_k,d`` times
  a (d-1)-dimensional exclusive volume — the recursion drops one dimension per level and
  ends in the 3-D sweep. Dominated points are removed from each limit set first.

`hvi_point` is the hypervolume a point adds to a set, ``HV(P ∪ {x}) - HV(P)``, computed
as ``vol([x, r]) - HV({max(x, p) : p ∈ P})`` — the part of x's box already covered is the
hypervolume of the points clipped to that box. It is the inner loop of the expected
hypervolume improvement (`flowopt.nodes.tuner.bayesopt.multi`), evaluated for every
candidate under every posterior sample, so it is serial numba.

Every kernel is checked against brute force (inclusion–exclusion and a grid of cells)
on random fronts in tests/test_hypervolume.py. numba is imported here: import this
module lazily (the engine does, only when a tuner has several objectives).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _hv2d_sorted(x, y, rx, ry):
    """2-D hypervolume of points sorted by x ascending (any order among equal x)."""
    area = 0.0
    best = ry
    for i in range(x.shape[0]):
        if x[i] >= rx:
            break
        if y[i] < best:
            area += (rx - x[i]) * (best - y[i])
            best = y[i]
    return area


@njit(cache=True)
def _hv2d(points, ref):
    order = np.argsort(points[:, 0], kind="mergesort")
    x = np.ascontiguousarray(points[order, 0])
    y = np.ascontiguousarray(points[order, 1])
    return _hv2d_sorted(x, y, ref[0], ref[1])


@njit(cache=True)
def _hv3d(points, ref):
    """3-D dimension sweep: slabs of the 2-D staircase of the points below each height."""
    n = points.shape[0]
    order = np.argsort(points[:, 2], kind="mergesort")
    # The staircase: mutually non-dominated (x, y), x ascending and y descending.
    sx = np.empty(n + 1)
    sy = np.empty(n + 1)
    m = 0
    area = 0.0
    volume = 0.0
    rx, ry, rz = ref[0], ref[1], ref[2]
    for idx in range(n):
        p = order[idx]
        px, py, pz = points[p, 0], points[p, 1], points[p, 2]
        if pz >= rz:
            break
        if px < rx and py < ry:
            # The first staircase step with x >= px: it (when x equals px) or the one
            # before it (the lowest step left of p) are the only ones that can dominate p.
            pos = 0
            while pos < m and sx[pos] < px:
                pos += 1
            dominated = (pos > 0 and sy[pos - 1] <= py) or (
                pos < m and sx[pos] == px and sy[pos] <= py)
            if not dominated:
                # Area p adds: its box minus what steps already cover, computed over the
                # x-intervals between p and the steps it does not dominate.
                end = pos
                while end < m and sy[end] >= py:
                    end += 1
                # steps pos..end-1 are dominated by p (x > px, y >= py): remove them
                upper = sy[pos - 1] if pos > 0 else ry
                left = px
                added = 0.0
                for k in range(pos, end):
                    added += (sx[k] - left) * (upper - py)
                    left = sx[k]
                    upper = sy[k]
                right = sx[end] if end < m else rx
                added += (right - left) * (upper - py)
                area += added
                removed = end - pos
                if removed == 0:
                    for k in range(m, pos, -1):
                        sx[k] = sx[k - 1]
                        sy[k] = sy[k - 1]
                    m += 1
                elif removed > 1:
                    shift = removed - 1
                    for k in range(pos + 1, m - shift):
                        sx[k] = sx[k + shift]
                        sy[k] = sy[k + shift]
                    m -= shift
                sx[pos] = px
                sy[pos] = py
        nxt = points[order[idx + 1], 2] if idx + 1 < n else rz
        if nxt > rz:
            nxt = rz
        volume += area * (nxt - pz)
    return volume


@njit(cache=True)
def _dominates(a, b):
    """a weakly better in every objective and strictly in one (minimisation)."""
    strict = False
    for j in range(a.shape[0]):
        if a[j] > b[j]:
            return False
        if a[j] < b[j]:
            strict = True
    return strict


@njit(cache=True)
def _nondominated(points):
    """Rows of `points` no other row dominates (duplicates: the first copy only —
    a copy adds no volume)."""
    n = points.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    for i in range(n):
        if not keep[i]:
            continue
        for j in range(n):
            if i == j or not keep[j]:
                continue
            if _dominates(points[j], points[i]):
                keep[i] = False
                break
            if j < i:
                same = True
                for k in range(points.shape[1]):
                    if points[j, k] != points[i, k]:
                        same = False
                        break
                if same:
                    keep[i] = False
                    break
    return points[keep]


@njit(cache=True)
def _slabs(points, ref):
    """WFG's set-up: the points inside the box, non-dominated, by decreasing last objective."""
    inside = np.ones(points.shape[0], dtype=np.bool_)
    for i in range(points.shape[0]):
        for j in range(points.shape[1]):
            if points[i, j] >= ref[j]:
                inside[i] = False
                break
    front = _nondominated(points[inside])
    order = np.argsort(-front[:, front.shape[1] - 1], kind="mergesort")
    return front[order]


@njit(cache=True)
def _limit(front, k):
    """Box volume (all but the last objective) of point k, and its limit set: the later
    points clipped to k's box, without their last objective."""
    n, d = front.shape
    pk = front[k]
    limit = np.empty((n - k - 1, d - 1))
    for i in range(n - k - 1):
        q = front[k + 1 + i]
        for j in range(d - 1):
            limit[i, j] = q[j] if q[j] > pk[j] else pk[j]
    return limit


@njit(cache=True)
def _box(p, ref, d):
    v = 1.0
    for j in range(d):
        v *= ref[j] - p[j]
    return v


# WFG, one function per dimension: numba cannot cache recursive functions, and each level
# drops one objective, so 4, 5 and 6 objectives are three short functions ending in the
# 3-D sweep. More objectives go through `_wfg_python`, which recurses in Python.
@njit(cache=True)
def _hv4(points, ref):
    front = _slabs(points, ref)
    sub = ref[:3].copy()
    total = 0.0
    for k in range(front.shape[0]):
        covered = _hv3d(_limit(front, k), sub) if k + 1 < front.shape[0] else 0.0
        total += (ref[3] - front[k, 3]) * (_box(front[k], ref, 3) - covered)
    return total


@njit(cache=True)
def _hv5(points, ref):
    front = _slabs(points, ref)
    sub = ref[:4].copy()
    total = 0.0
    for k in range(front.shape[0]):
        covered = _hv4(_limit(front, k), sub) if k + 1 < front.shape[0] else 0.0
        total += (ref[4] - front[k, 4]) * (_box(front[k], ref, 4) - covered)
    return total


@njit(cache=True)
def _hv6(points, ref):
    front = _slabs(points, ref)
    sub = ref[:5].copy()
    total = 0.0
    for k in range(front.shape[0]):
        covered = _hv5(_limit(front, k), sub) if k + 1 < front.shape[0] else 0.0
        total += (ref[5] - front[k, 5]) * (_box(front[k], ref, 5) - covered)
    return total


MAX_NUMBA_OBJECTIVES = 6


@njit(cache=True)
def _hv(points, ref):
    """Hypervolume of any points (dominated ones allowed) for 1–6 objectives."""
    n, d = points.shape
    if n == 0:
        return 0.0
    if d == 1:
        best = ref[0]
        for i in range(n):
            if points[i, 0] < best:
                best = points[i, 0]
        return ref[0] - best
    if d == 2:
        return _hv2d(points, ref)
    if d == 3:
        return _hv3d(points, ref)
    if d == 4:
        return _hv4(points, ref)
    if d == 5:
        return _hv5(points, ref)
    return _hv6(points, ref)


def _wfg_python(points: np.ndarray, ref: np.ndarray) -> float:
    """WFG above six objectives: the same slabs, recursing in Python down to `_hv6`."""
    d = points.shape[1]
    if d <= MAX_NUMBA_OBJECTIVES:
        return float(_hv(np.ascontiguousarray(points), np.ascontiguousarray(ref)))
    front = _slabs(np.ascontiguousarray(points), ref)
    total = 0.0
    for k in range(len(front)):
        covered = _wfg_python(_limit(front, k), ref[:-1].copy()) if k + 1 < len(front) else 0.0
        total += (ref[-1] - front[k, -1]) * (float(np.prod(ref[:-1] - front[k, :-1])) - covered)
    return total


@njit(cache=True)
def hvi_point(front, x, ref):
    """``HV(front ∪ {x}) - HV(front)`` (see the module docstring)."""
    d = x.shape[0]
    box = 1.0
    for j in range(d):
        if x[j] >= ref[j]:
            return 0.0
        box *= ref[j] - x[j]
    n = front.shape[0]
    clipped = np.empty((n, d))
    for i in range(n):
        for j in range(d):
            clipped[i, j] = front[i, j] if front[i, j] > x[j] else x[j]
    covered = _hv(clipped, ref)
    gain = box - covered
    return gain if gain > 0.0 else 0.0


@njit(cache=True)
def hvi_batch(fronts, sizes, values, ref):
    """Improvement of each candidate under each sample: ``out[s, c]`` is
    ``hvi_point(fronts[s, :sizes[s]], values[s, c], ref)`` (at most six objectives)."""
    samples, cands = values.shape[0], values.shape[1]
    out = np.zeros((samples, cands))
    for s in range(samples):
        front = fronts[s, :sizes[s]]
        for c in range(cands):
            out[s, c] = hvi_point(front, values[s, c], ref)
    return out


@njit(cache=True)
def front_mask(points):
    """Rows no other row dominates (minimisation; equal rows all kept), by the same
    sort-and-cull as `flowopt.tuning.pareto.pareto_mask` — for the many small fronts
    of posterior samples, where the numpy version's per-row overhead dominates."""
    n, d = points.shape
    order = np.argsort(points[:, d - 1], kind="mergesort")
    for j in range(d - 2, -1, -1):      # lexicographic: stable sorts, last key first
        order = order[np.argsort(points[order, j], kind="mergesort")]
    mask = np.zeros(n, dtype=np.bool_)
    kept = np.empty(n, dtype=np.int64)
    count = 0
    for idx in range(n):
        i = order[idx]
        dominated = False
        for k in range(count):
            if _dominates(points[kept[k]], points[i]):
                dominated = True
                break
        if not dominated:
            kept[count] = i
            count += 1
            mask[i] = True
    return mask


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of `points` (n × d, minimisation) below `ref` (d)."""
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, len(ref)))
    r = np.ascontiguousarray(np.asarray(ref, dtype=np.float64))
    if len(pts) == 0:
        return 0.0
    pts = pts[np.all(pts < r, axis=1)]
    if len(pts) == 0:
        return 0.0
    if len(r) > MAX_NUMBA_OBJECTIVES:
        return _wfg_python(pts, r)
    return float(_hv(pts, r))


__all__ = ["front_mask", "hvi_batch", "hvi_point", "hypervolume"]
