"""Drawing and listing values of one search `Domain` (shared by tuner.random and tuner.grid).

Conventions (the same as Optuna's distributions, so results compare): a log range is
uniform in ``log(value)``; an integer range covers the integers in ``[ceil(low),
floor(high)]``, and an integer log range is uniform in ``log`` over ``[lo - 0.5, hi +
0.5]`` then rounded, so every integer owns an equal share of the log scale. Values are
native Python: float, int, or the choice itself.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from flowopt.spec import Domain


def integer_bounds(domain: Domain) -> tuple[int, int]:
    lo, hi = math.ceil(domain.low), math.floor(domain.high)  # type: ignore[arg-type]
    if lo > hi:
        raise ValueError(f"integer range [{domain.low}, {domain.high}] holds no integer")
    return lo, hi


def draw(domain: Domain, rng: Any) -> Any:
    """One value of `domain` from numpy Generator `rng` (consumes exactly one uniform)."""
    u = float(rng.random())
    if domain.choices is not None:
        return domain.choices[min(int(u * len(domain.choices)), len(domain.choices) - 1)]
    low, high = float(domain.low), float(domain.high)  # type: ignore[arg-type]
    if domain.integer:
        lo, hi = integer_bounds(domain)
        if domain.log:
            a, b = math.log(lo - 0.5), math.log(hi + 0.5)  # lo >= 1: low > 0
            value = round(math.exp(a + u * (b - a)))
        else:
            value = math.floor(lo - 0.5 + u * (hi - lo + 1) + 0.5)
        return int(min(max(value, lo), hi))
    if domain.log:
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    return float(min(max(value, low), high))


def points(domain: Domain, count: int) -> list[Any]:
    """`count` evenly spaced values of a range (geometric if log; ends included), or every
    choice; an integer range gives at most its number of integers, without repeats."""
    if domain.choices is not None:
        return list(domain.choices)
    low, high = float(domain.low), float(domain.high)  # type: ignore[arg-type]
    if domain.integer:
        low, high = map(float, integer_bounds(domain))
        if high - low + 1 <= count:
            return list(range(int(low), int(high) + 1))
    if count == 1:
        fractions = [0.5]
    else:
        fractions = [i / (count - 1) for i in range(count)]
    if domain.log:
        a, b = math.log(low), math.log(high)
        values = [math.exp(a + f * (b - a)) for f in fractions]
        if count > 1:
            values[0], values[-1] = low, high  # exactly the ends, not exp(log(end))
    else:
        values = [low + f * (high - low) for f in fractions]
    if domain.integer:
        return list(dict.fromkeys(int(round(v)) for v in values))
    return values


def params_key(params: Mapping[str, Any]) -> str:
    """An identity for a params mapping (values compared as canonical JSON)."""
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True)
