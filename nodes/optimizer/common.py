"""What every optimizer kind shares: field types, the shared ``with:`` fields, `train`.

Torch-free on purpose: the kinds import this at registration time, and validating a
pipeline must not import torch. The optimizer classes and the loop are imported inside
`train` and the kinds' ``make`` functions, i.e. only when a node executes.
"""
from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from pydantic import Field, TypeAdapter

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context

from .schedules import Constant, Schedule

Rate = Annotated[float, Field(gt=0)]
Decay = Annotated[float, Field(ge=0)]
Steps = Annotated[int, Field(gt=0)]
BatchSize = Annotated[int, Field(gt=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Betas = tuple[Beta, Beta]
Device = Literal["auto", "cpu", "cuda"]
OnNonfinite = Literal["fail", "skip_step"]
EvalEvery = Annotated[int, Field(ge=0)]
CONSTANT = Constant()

SHARED_FIELDS_DOC = """\
Shared by every optimizer kind — ports: inputs ``model``, ``data`` (the training set),
``loss``, optional ``val`` (a held-out set evaluated during training); output ``model``
(a trained copy; its ``meta`` records the optimizer, steps, final loss, schedule,
skipped steps and ``state_bytes_per_param``). ``with:`` fields (defaults): ``steps``
(200 mini-batches), ``batch_size`` (64; drawn without replacement, a fresh permutation per
epoch), ``schedule`` (constant; or ``{name: cosine|linear|step|constant, warmup: fraction,
...}``, see `schedules`), ``on_nonfinite`` (fail: stop naming the step | skip_step: drop
that update), ``eval_every`` (50 steps between evaluations on ``val``; 0: only at the
end), ``device`` (auto: the run's device | cpu | cuda). Metrics logged: ``loss`` every 10
steps, ``lr`` every step, ``val_loss``/``val_accuracy`` when ``val`` is bound,
``state_bytes_per_param`` at the end."""

_SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)


def with_shared_fields(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Append `SHARED_FIELDS_DOC` to a kind's docstring (apply it below ``@node``)."""
    fn.__doc__ = f"{(fn.__doc__ or '').rstrip()}\n\n{SHARED_FIELDS_DOC}"
    return fn


def train(kind: str, make: Callable[[Any], Any], model: Model, data: Dataset, loss: Loss,
          val: Dataset | None, ctx: Context, *, steps: int, batch_size: int, device: str,
          schedule: Any, on_nonfinite: str, eval_every: int) -> Model:
    """Run the shared loop (`training.fit`) with the optimizer `make(params)` builds.

    Given a context with ``pause_training`` (`pausing`: a tuner with a ``pruner:``
    starting the training) the same `Trainer` is handed over instead of run.
    """
    from .training import Trainer, fit

    pause = getattr(ctx, "pause_training", None)
    if pause is not None:
        pause(Trainer(
            model, data, loss, ctx, make_optimizer=make, steps=steps, batch_size=batch_size,
            device=device, name=kind, schedule=_SCHEDULE.validate_python(schedule),
            on_nonfinite=on_nonfinite, val=val, eval_every=eval_every))
    # The engine hands configs over as validated JSON: the schedule arrives as a dict.
    return fit(model, data, loss, ctx, make_optimizer=make, steps=steps, batch_size=batch_size,
               device=device, name=kind, schedule=_SCHEDULE.validate_python(schedule),
               on_nonfinite=on_nonfinite, val=val, eval_every=eval_every)
