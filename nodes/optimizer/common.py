"""What every optimizer kind shares, declared once: ports, shared fields, training.

An optimizer kind is written as its algorithm alone — a function of the algorithm's own
``with:`` fields that returns ``make(params) -> torch optimizer`` — and `optimizer_kind`
turns it into a node kind:

* the ports (inputs ``model``, ``data``, ``loss``, optional ``val``; output ``model``)
  and the shared ``with:`` fields (`SHARED`: steps, batch_size, schedule, on_nonfinite,
  eval_every, device) are added here, once, after the algorithm's fields;
* ``mutable`` names the fields that may change between two training steps — the ones
  the optimizer reads from its param groups at every step (lr, weight_decay, betas or
  momentum where the algorithm has them) plus ``schedule`` (a pure function of the
  step, `schedules.factor`) — and becomes the kind's `flowopt.training.Training`
  declaration, with a pausable `training.Trainer` as its trainer. PBT, early stopping
  and Self-Tuning Networks read that declaration, so they work with every optimizer
  kind and refuse, at compile time, a search over a field not declared here.

Torch-free on purpose: the kinds import this at registration time, and validating a
pipeline must not import torch. The optimizer classes and the loop are imported inside
the ``make`` functions and `start`, i.e. only when a node trains.
"""
from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import Field, TypeAdapter

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context
from flowopt.registry import NodeFactory, node
from flowopt.training import Training

from .. import facts
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

#: The shared ``with:`` fields: name -> (type, default), in the order kinds list them.
SHARED: dict[str, tuple[Any, Any]] = {
    "steps": (Steps, 200), "batch_size": (BatchSize, 64), "schedule": (Schedule, CONSTANT),
    "on_nonfinite": (OnNonfinite, "fail"), "eval_every": (EvalEvery, 50),
    "device": (Device, "auto")}

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

#: kind name -> (algorithm, its field names, their defaults); filled by `optimizer_kind`.
_ALGORITHMS: dict[str, tuple[Callable[..., Any], list[str], dict[str, Any]]] = {}


def is_optimizer_kind(name: str) -> bool:
    """Whether `name` is a kind registered through `optimizer_kind` (once imported)."""
    return name in _ALGORITHMS


def optimizer_for(kind: str, config: Mapping[str, Any]) -> Callable[[Any], Any]:
    """``make(params)`` → the torch optimizer optimizer kind `kind` trains with, for its
    (validated) `config`; fields it lacks take the algorithm's defaults.

    The one constructor behind the node, its pausable `training.Trainer` (PBT, pruners)
    and the weight steps of ``tuner.stn``: whatever trains "with optimizer kind X" builds
    X's optimizer here, so a new kind needs no table anywhere else.
    """
    algorithm, names, defaults = _ALGORITHMS[kind]
    fields = {**defaults, **config}
    return algorithm(**{k: fields[k] for k in names})


def with_shared_fields(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Append `SHARED_FIELDS_DOC` to a kind's docstring."""
    fn.__doc__ = f"{(fn.__doc__ or '').rstrip()}\n\n{SHARED_FIELDS_DOC}"
    return fn


def train(kind: str, make: Callable[[Any], Any], model: Model, data: Dataset, loss: Loss,
          val: Dataset | None, ctx: Context, *, steps: int, batch_size: int, device: str,
          schedule: Any, on_nonfinite: str, eval_every: int) -> Model:
    """Run the shared loop (`training.fit`) with the optimizer `make(params)` builds."""
    from .training import fit

    # The engine hands configs over as validated JSON: the schedule arrives as a dict.
    return fit(model, data, loss, ctx, make_optimizer=make, steps=steps, batch_size=batch_size,
               device=device, name=kind, schedule=_SCHEDULE.validate_python(schedule),
               on_nonfinite=on_nonfinite, val=val, eval_every=eval_every)


def _encode(state: Any) -> bytes:
    from .training import encode_checkpoint

    return encode_checkpoint(state)


def _decode(payload: bytes) -> Any:
    from .training import decode_checkpoint

    return decode_checkpoint(payload)


def optimizer_kind(name: str, *, mutable: tuple[str, ...], version: int = 1
                   ) -> Callable[[Callable[..., Any]], NodeFactory]:
    """Register algorithm function `algorithm` as optimizer kind `name` (module docstring).

    `algorithm(**its fields) -> make(params)`; its docstring documents its fields and
    becomes the kind's, with the shared fields and the mutable ones appended.
    """
    def decorate(algorithm: Callable[..., Any]) -> NodeFactory:
        hints = typing.get_type_hints(algorithm, include_extras=True)
        own = list(inspect.signature(algorithm).parameters.values())
        clash = [p.name for p in own if p.name in SHARED or p.name in _PORTS]
        if clash:
            raise TypeError(f"optimizer kind '{name}': fields {clash} are shared or ports")
        names = [p.name for p in own]

        def start(config: Any, inputs: Any, ctx: Context) -> Any:
            """A pausable `training.Trainer` for a validated config (`flowopt.training`)."""
            from .training import Trainer

            make = optimizer_for(name, config)
            return Trainer(inputs["model"], inputs["data"], inputs["loss"], ctx,
                           make_optimizer=make, steps=config["steps"],
                           batch_size=config["batch_size"], device=config["device"], name=name,
                           schedule=_SCHEDULE.validate_python(config["schedule"]),
                           on_nonfinite=config["on_nonfinite"], val=inputs.get("val"),
                           eval_every=config["eval_every"], mutable=mutable)

        defaults = {p.name: p.default for p in own if p.default is not p.empty}
        _ALGORITHMS[name] = (algorithm, names, dict(defaults))
        defaults.update({k: d for k, (_, d) in SHARED.items()})

        def run(model: Model, data: Dataset, loss: Loss, ctx: Context,
                val: Dataset | None = None, **fields: Any) -> Model:
            fields = {**defaults, **fields}  # called directly (tests) with some fields
            make = optimizer_for(name, fields)
            return train(name, make, model, data, loss, val, ctx,
                         **{k: fields[k] for k in SHARED})

        parameters = [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        annotation=t) for p, t in _PORTS.items()]
        parameters.append(inspect.Parameter("val", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            default=None, annotation=Dataset | None))
        fields = [(p.name, hints.get(p.name, Any), p.default) for p in own]
        fields += [(k, t, d) for k, (t, d) in SHARED.items()]
        parameters += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d,
                                         annotation=t) for k, t, d in fields]
        run.__signature__ = inspect.Signature(parameters, return_annotation=Model)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": Model}
        run.__module__, run.__qualname__ = algorithm.__module__, algorithm.__qualname__
        run.__name__ = algorithm.__name__
        changeable = ", ".join(f"``{f}``" for f in mutable)
        run.__doc__ = (f"{(algorithm.__doc__ or '').rstrip()}\n\nMay change while it trains "
                       f"(PBT, early stopping): {changeable}.\n\n{SHARED_FIELDS_DOC}")
        declared = Training(mutable=mutable, start=start, encode=_encode, decode=_decode)
        return node(name, version=version, describe=facts.training, training=declared)(run)

    return decorate


_PORTS = {"model": Model, "data": Dataset, "loss": Loss, "ctx": Context}
