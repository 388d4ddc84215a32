"""Pareto fronts of several objectives: directions, dominance, reference points, hypervolume.

Policy, shared by every multi-objective tuner and by the tuning loop's result:

* **Directions.** Objectives arrive as measured, one ``mode`` (``max`` | ``min``) each.
  `to_loss` turns them into *losses* (``min`` kept, ``max`` negated) so that everything
  below minimises; reports convert back.
* **Dominance.** ``a`` dominates ``b`` when it is no worse in every objective and better
  in one. Equal vectors do not dominate each other, so duplicates are all on the front
  (as in Optuna); they add no hypervolume. A trial whose objectives are not all finite is
  infeasible and never on the front.
* **Front.** `pareto_mask` sorts the losses lexicographically — a dominating vector always
  sorts before the vectors it dominates — and compares each vector only with the front
  kept so far: O(n · front · d) instead of all pairs (dominance is transitive, so a vector
  dominated by a dropped one is dominated by a kept one too).
* **Reference point.** Given, or inferred as BoTorch's ``infer_reference_point`` does
  (Ishibuchi et al. 2011 found 0.1 a robust factor): the nadir of the front minus 0.1 of
  its range in the maximisation view — i.e. ``worst + 0.1 · range`` per loss; one point:
  ``value ∓ 0.1 · |value|``; a zero range counts as 1e-7.
* **Hypervolume.** Exact (`flowopt.tuning.hypervolume`, numba, imported on first use).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_RANGE = 1e-7  # BoTorch's MIN_Y_RANGE: a flat objective still gets a margin


def modes_of(mode: str | Sequence[str]) -> list[str]:
    """A tuner's ``mode`` as a list: one direction per objective."""
    return [mode] if isinstance(mode, str) else list(mode)


def observed_values(observation: object, count: int) -> np.ndarray | None:
    """A strategy's `Observation` as an objective vector, or None when infeasible.

    Reads ``values`` (several objectives) and falls back to ``objective`` (one), so a
    strategy written for several objectives also reads single-objective histories."""
    values = getattr(observation, "values", None)
    if values is None:
        single = getattr(observation, "objective", None)
        values = None if single is None else (single,)
    if values is None or len(values) != count:
        return None
    arr = np.asarray(values, dtype=float)
    return arr if np.all(np.isfinite(arr)) else None


def signs(modes: Sequence[str]) -> np.ndarray:
    """+1 for ``min`` and -1 for ``max``: ``loss = sign · value``."""
    bad = [m for m in modes if m not in ("max", "min")]
    if bad:
        raise ValueError(f"mode must be max or min, got {bad[0]!r}")
    return np.array([1.0 if m == "min" else -1.0 for m in modes])


def to_loss(values: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str]) -> np.ndarray:
    """Objective vectors (rows) as losses: every column minimised."""
    arr = np.asarray(values, dtype=float).reshape(-1, len(modes))
    return arr * signs(modes)


def feasible(values: np.ndarray) -> np.ndarray:
    """Rows whose every objective is finite (NaN or ±inf makes a trial infeasible)."""
    arr = np.asarray(values, dtype=float)
    return np.all(np.isfinite(arr), axis=1) if arr.size else np.zeros(len(arr), dtype=bool)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Loss vector `a` dominates `b` (no worse anywhere, better somewhere)."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(losses: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (see the module docstring)."""
    arr = np.asarray(losses, dtype=float)
    n = len(arr)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    arr = arr.reshape(n, -1)
    ok = np.all(np.isfinite(arr), axis=1)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return mask
    sub = arr[idx]
    order = np.lexsort(sub.T[::-1])
    kept: list[int] = []
    for i in order:
        row = sub[i]
        if kept:
            front = sub[kept]
            if np.any(np.all(front <= row, axis=1) & np.any(front < row, axis=1)):
                continue
        kept.append(int(i))
    mask[idx[kept]] = True
    return mask


def infer_reference_point(losses: np.ndarray, *, spread: np.ndarray | None = None) -> np.ndarray:
    """A reference point (losses) from the observed front (module docstring).

    With `spread` (the losses of every feasible observation) the margin beyond the
    front's nadir is 0.1 of the larger of the front's range and the observations' range
    per loss: the nadir stays the front's, but a front that is one point, or flat in one
    loss, still gets a box a search can improve in (the front's own range gives it none)."""
    arr = np.asarray(losses, dtype=float)
    arr = arr[feasible(arr)] if arr.size else arr
    if len(arr) == 0:
        raise ValueError("no feasible observation to infer a reference point from")
    front = arr[pareto_mask(arr)]
    nadir = front.max(axis=0)
    if len(front) == 1:
        width = np.abs(front[0])
    else:
        width = nadir - front.min(axis=0)
    if spread is not None:
        seen = np.asarray(spread, dtype=float).reshape(-1, arr.shape[1])
        seen = seen[feasible(seen)]
        if len(seen) > 1:
            width = np.maximum(width, seen.max(axis=0) - seen.min(axis=0))
    return nadir + 0.1 * np.maximum(width, MIN_RANGE)


def check_reference_point(point: Sequence[float] | None, count: int) -> str | None:
    """Why `point` is not a reference point for `count` objectives, or None."""
    if point is None:
        return None
    if len(point) != count:
        return f"reference_point has {len(point)} values; expected {count} (one per objective)"
    for value in point:
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(float(value)):
            shown = "NaN or null" if value is None else repr(value)
            return f"reference_point values must be finite numbers, got {shown}"
    return None


def hypervolume(losses: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of the losses' dominated region below `ref` (losses)."""
    arr = np.asarray(losses, dtype=float).reshape(-1, len(ref))
    arr = arr[feasible(arr)]
    if len(arr) == 0:
        return 0.0
    from .hypervolume import hypervolume as exact

    return exact(arr[pareto_mask(arr)], np.asarray(ref, dtype=float))


def hypervolume_trace(losses: np.ndarray, ref: np.ndarray) -> list[float]:
    """Hypervolume after each row in turn (the search's progress curve)."""
    arr = np.asarray(losses, dtype=float).reshape(-1, len(ref))
    return [hypervolume(arr[: i + 1], ref) for i in range(len(arr))]


__all__ = ["MIN_RANGE", "check_reference_point", "dominates", "feasible", "hypervolume",
           "hypervolume_trace", "infer_reference_point", "modes_of", "observed_values", "pareto_mask",
           "signs", "to_loss"]
