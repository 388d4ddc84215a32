"""Learning-rate schedules: the ``schedule`` field every optimizer kind shares.

A schedule is a small pydantic model picked by its ``name`` (a discriminated union), so a
pipeline writes ``schedule: {name: cosine, warmup: 0.05}`` and a bad name or field is a
validation error before anything runs; a bare string (``schedule: cosine``, handy with
``-s nodes.train.with.schedule=linear``) means that schedule with its defaults.

`factor(schedule, step, steps)` is the multiplier of the base ``lr`` at 1-based step
``step`` of ``steps``; it is pure arithmetic (no torch), so the training loop, a
checkpointed run resumed at step k and the tests all compute the same value. Design
decisions:

* ``warmup`` is a *fraction* of the steps, not a step count: then every value the field
  accepts is valid for every ``steps``, and the check is pydantic's (exit 2), not a
  failure in the middle of a run. Warm-up is linear from lr/W at step 1 to lr at step W
  (not from 0: a step with lr 0 would be wasted).
* After warm-up, progress p = (s − W)/(T − W) with s = step − 1 runs over [0, 1), so the
  first post-warm-up step uses the full lr and the last one has not quite reached the
  final lr (torch's `CosineAnnealingLR` with ``T_max = steps`` behaves the same way).
* ``final`` is the end value as a fraction of lr (0 by default, as in the papers below).
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Fraction = Annotated[float, Field(ge=0, lt=1)]


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    warmup: Fraction = 0.0


class Constant(_Schedule):
    """lr throughout (after an optional linear warm-up)."""

    name: Literal["constant"] = "constant"


class Cosine(_Schedule):
    """Warm-up, then half a cosine from lr to ``final``·lr (Loshchilov & Hutter 2017, SGDR)."""

    name: Literal["cosine"] = "cosine"
    final: Annotated[float, Field(ge=0, le=1)] = 0.0


class Linear(_Schedule):
    """Warm-up, then a straight line from lr to ``final``·lr.

    Defazio et al. 2023 ("When, why and how much?") find linear decay to zero matches or
    beats cosine; hence ``final`` defaults to 0.
    """

    name: Literal["linear"] = "linear"
    final: Annotated[float, Field(ge=0, le=1)] = 0.0


class Step(_Schedule):
    """Warm-up, then lr·gamma^⌊(s − W)/every⌋ (torch's `StepLR`; its default gamma 0.1)."""

    name: Literal["step"] = "step"
    every: Annotated[int, Field(gt=0)]
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1


def _from_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


Schedule = Annotated[Union[Constant, Cosine, Linear, Step],
                     Field(discriminator="name"), BeforeValidator(_from_name)]


def factor(schedule: _Schedule, step: int, steps: int) -> float:
    """The multiplier of the base lr at 1-based `step` of `steps` (see the module docstring)."""
    warmup = round(schedule.warmup * steps)
    s = step - 1
    if s < warmup:
        return (s + 1) / warmup
    if isinstance(schedule, Step):
        return schedule.gamma ** ((s - warmup) // schedule.every)
    if isinstance(schedule, Constant):
        return 1.0
    progress = (s - warmup) / (steps - warmup)
    if isinstance(schedule, Cosine):
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return schedule.final + (1.0 - schedule.final) * shape
