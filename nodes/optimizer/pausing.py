"""Optimizer kinds' `flowopt.training.Training` declaration, until each kind declares its own.

Every optimizer kind trains through `common.train`; given a context with
``pause_training`` (as `start` below builds), `train` hands over the very `Trainer` it
would have run instead of running it. `declare` attaches the declaration to each
optimizer kind that has none yet: ``start`` calls the kind's function that way, the
checkpoint is `Trainer.checkpoint` — weights, optimizer state, both generators, the
pending batch order, the step — as safetensors bytes (JSON meta in its metadata), and
`Trainer.restore` is exact, so a trial paused, checkpointed and resumed ends with the
same bits as one trained straight through (tests/test_early_stopping.py).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from flowopt.context import Context
from flowopt.registry import REGISTRY
from flowopt.training import Training

#: Fields the optimizer reads from its param groups at every step (all kinds have them).
MUTABLE = ("lr", "weight_decay")


class _Opened(Exception):
    def __init__(self, trainer: Any):
        super().__init__("training opened")
        self.trainer = trainer


class _Opening(Context):
    """A context that makes `common.train` hand over its Trainer (module docstring)."""

    def pause_training(self, trainer: Any) -> None:
        raise _Opened(trainer)


class PausableTrainer:
    """`training.Trainer` behind `flowopt.training.PausableTrainer`."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.steps = trainer.steps

    @property
    def step(self) -> int:
        return self.trainer.step

    def run(self, until: int | None = None) -> Any:
        return self.trainer.run(until=until)

    def update(self, fields: Mapping[str, Any]) -> None:
        raise ValueError("this declaration changes no field mid-run")

    def checkpoint(self) -> Any:
        return self.trainer.checkpoint()

    def restore(self, state: Any) -> "PausableTrainer":
        self.trainer.restore(*state)
        return self

    def snapshot(self) -> Any:
        return self.trainer.snapshot()

    def result(self) -> Any:
        return self.trainer.result()


def encode(state: Any) -> bytes:
    from safetensors.torch import save

    tensors, meta = state
    return save({k: v.contiguous() for k, v in tensors.items()},
                metadata={"meta": json.dumps(meta, allow_nan=True)})


def decode(payload: bytes) -> Any:
    from safetensors.torch import load

    header = json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")])
    return load(payload), json.loads(header["__metadata__"]["meta"])


def _start(kind: Any) -> Any:
    def start(config: Mapping[str, Any], inputs: Mapping[str, Any], ctx: Context) -> Any:
        opening = _Opening(run_id=ctx.run_id, node_id=ctx.node_id, seed=ctx.seed,
                           device=ctx._device, cancel=ctx._cancel, emit=ctx._emit,
                           log_metric=ctx._log_metric, threads=ctx.threads)
        try:
            kind.call(opening, dict(inputs), dict(config))
        except _Opened as opened:
            return PausableTrainer(opened.trainer)
        raise RuntimeError(f"{kind.name} did not hand over its training")

    return start


def declare(names: tuple[str, ...]) -> None:
    """Attach the declaration to each of these kinds that has none (module docstring)."""
    for name in names:
        kind = REGISTRY.get(name)
        if getattr(kind, "training", None) is None:
            object.__setattr__(kind, "training", Training(
                mutable=MUTABLE, start=_start(kind), encode=encode, decode=decode))
