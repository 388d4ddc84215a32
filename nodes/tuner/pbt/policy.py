"""PBT's exploit and explore steps as pure decision functions (no runner, no I/O).

STYLE item 6: a policy returns a decision value — which member to copy, which params to
use next — and the population controller acts on it. Every function takes its random
generator from the caller, who derives it from ``(seed, member, step)``, so a decision
depends only on what the member saw, not on thread timing.

Defaults and where they come from (Jaderberg et al. 2017, "Population Based Training of
Neural Networks", §3 and §4.1–4.3):

* exploit ``truncation``: rank the population by its latest scores; a member in the
  bottom ``fraction`` copies a uniformly chosen member of the top ``fraction``. The
  paper uses 20 % (``fraction=0.2``); Ray Tune's default is 0.25. The quantile holds
  ``ceil(fraction · n)`` members, capped at ``floor(n / 2)`` so the top and bottom never
  overlap (the same rounding as Ray Tune, so a population of two has one of each).
* exploit ``tournament`` (the paper's "binary tournament"): compare with one uniformly
  chosen other member and copy it when it scores better.
* explore ``perturb``: each continuous hyperparameter is multiplied by a factor drawn
  from ``factors`` (the paper's 0.8 / 1.2) and clipped to its domain; with probability
  ``resample_probability`` (0.25, the paper's "resample") it is drawn afresh from the
  prior instead. Integers and choices step to a neighbour (±1, ±1 position).
* A score that is NaN or ±inf counts as the worst possible, so a diverged member is
  always in the bottom quantile and is replaced by exploit.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pydantic
from pydantic import Field

from flowopt.spec import Domain

Mode = Literal["max", "min"]
Selection = Literal["truncation", "tournament"]


class PbtConfig(pydantic.BaseModel):
    """PBT's own `with:` fields, validated before anything runs (bad input → exit 2)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    population: int = Field(8, ge=2, description="members trained side by side")
    interval: int = Field(100, ge=1, description="training steps between two ready points")
    burn_in: int = Field(0, ge=0, description="steps before a member is first ready")
    selection: Selection = "truncation"
    fraction: float = Field(0.2, gt=0, le=0.5, description="truncation quantile (paper: 0.2)")
    factors: tuple[float, ...] = Field((0.8, 1.2), min_length=1,
                                       description="perturbation factors (paper: 0.8, 1.2)")
    resample_probability: float = Field(0.25, ge=0, le=1)

    @pydantic.field_validator("factors")
    @classmethod
    def _positive(cls, factors: tuple[float, ...]) -> tuple[float, ...]:
        if any(not f > 0 or not math.isfinite(f) for f in factors):
            raise ValueError(f"perturbation factors must be finite and > 0, got {list(factors)}")
        return factors


def badness(score: float | None, mode: Mode) -> float:
    """A number where lower is better; NaN, ±inf and missing scores are the worst (+inf)."""
    if score is None or not math.isfinite(score):
        return math.inf
    return -score if mode == "max" else score


def quantile_size(n: int, fraction: float) -> int:
    """Members in the top (and in the bottom) quantile: ceil(fraction·n), at most n // 2."""
    return max(1, min(math.ceil(fraction * n - 1e-9), n // 2))


def truncation(scores: Mapping[int, float | None], member: int, *, fraction: float,
               mode: Mode, rng: np.random.Generator) -> int | None:
    """The member to copy when `member` is in the bottom quantile, else None.

    `scores` holds each member's latest score (members that have none yet take part as
    the worst). Ties are broken by member number, so rankings are reproducible.
    """
    ranked = sorted(scores, key=lambda m: (badness(scores[m], mode), m))
    k = quantile_size(len(ranked), fraction)
    if member not in ranked[-k:]:
        return None
    # As in the paper, rank alone decides (ties broken by member number); only a member
    # with a finite score is worth copying (e.g. not when the whole population diverged).
    top = [m for m in ranked[:k] if m != member and math.isfinite(badness(scores[m], mode))]
    if not top:
        return None
    return int(top[rng.integers(len(top))])


def tournament(scores: Mapping[int, float | None], member: int, *, mode: Mode,
               rng: np.random.Generator) -> int | None:
    """Binary tournament: copy one uniformly chosen other member if it scores better."""
    others = sorted(m for m in scores if m != member)
    if not others:
        return None
    rival = others[rng.integers(len(others))]
    return rival if badness(scores[rival], mode) < badness(scores[member], mode) else None


def exploit(scores: Mapping[int, float | None], member: int, config: PbtConfig, *,
            mode: Mode, rng: np.random.Generator) -> int | None:
    """The configured selection rule: which member `member` should copy (None: keep its own)."""
    if config.selection == "tournament":
        return tournament(scores, member, mode=mode, rng=rng)
    return truncation(scores, member, fraction=config.fraction, mode=mode, rng=rng)


def sample(domain: Domain, rng: np.random.Generator) -> Any:
    """A draw from a domain's prior: uniform (log-uniform when `log`), or a uniform choice."""
    if domain.choices is not None:
        return domain.choices[int(rng.integers(len(domain.choices)))]
    low, high = float(domain.low), float(domain.high)
    if domain.integer:
        if domain.log:
            value = math.exp(rng.uniform(math.log(low), math.log(high + 1)))
            return int(min(max(math.floor(value), math.ceil(low)), math.floor(high)))
        return int(rng.integers(math.ceil(low), math.floor(high) + 1))
    if domain.log:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def _neighbour(index: int, size: int, rng: np.random.Generator) -> int:
    """One step left or right, reflected at the ends (a domain of one stays put)."""
    if size <= 1:
        return index
    step = -1 if rng.random() < 0.5 else 1
    moved = index + step
    return moved if 0 <= moved < size else index - step


def perturb(value: Any, domain: Domain, factors: Sequence[float],
            rng: np.random.Generator) -> Any:
    """One hyperparameter's explore step without resampling (see the module docstring)."""
    if domain.choices is not None:
        try:
            index = domain.choices.index(value)
        except ValueError:  # not one of the choices (e.g. set by hand): start afresh
            return sample(domain, rng)
        return domain.choices[_neighbour(index, len(domain.choices), rng)]
    low, high = float(domain.low), float(domain.high)
    if domain.integer:
        lo, hi = math.ceil(low), math.floor(high)
        return lo + _neighbour(int(value) - lo, hi - lo + 1, rng)
    factor = factors[int(rng.integers(len(factors)))]
    return float(min(max(float(value) * factor, low), high))


def explore(params: Mapping[str, Any], space: Mapping[str, Domain], config: PbtConfig,
            rng: np.random.Generator) -> dict[str, Any]:
    """New params for a member that has just exploited: each searched one perturbed or resampled.

    Params outside `space` are passed through unchanged. Names are visited in sorted
    order so the same generator state always gives the same result.
    """
    new = dict(params)
    for name in sorted(space):
        domain = space[name]
        if rng.random() < config.resample_probability or name not in params:
            new[name] = sample(domain, rng)
        else:
            new[name] = perturb(params[name], domain, config.factors, rng)
    return new


def decision_rng(seed: int, member: int, step: int, stream: int = 0) -> np.random.Generator:
    """The generator for one member's decision at one step (independent of timing).

    ``stream`` separates uses at the same step (0: decisions, 1: initial params, 2: the
    extra draws of the paired random search in ``benchmarks/pbt_baseline.py``).
    """
    return np.random.default_rng([seed & 0xFFFFFFFF, member, step, stream])


def initial_params(space: Mapping[str, Domain], seed: int, member: int) -> dict[str, Any]:
    """Member `member`'s initial draw from the priors (``stream=1`` of its step-0 generator)."""
    rng = decision_rng(seed, member, 0, stream=1)
    return {name: sample(space[name], rng) for name in sorted(space)}
