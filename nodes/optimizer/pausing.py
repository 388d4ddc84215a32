"""An optimizer node's training as a `flowopt.tuning.pausable.PausableTraining` (imports torch).

What a tuner with a ``pruner:`` drives instead of calling `training.fit`: the very
`Trainer` the node would have run, stopped at rungs and checkpointed in between.
Checkpoints are `Trainer.checkpoint` — weights, optimizer state, both generators, the
pending batch order, the step — as safetensors bytes (JSON meta in its metadata), and
`Trainer.restore` is exact, so a trial paused, checkpointed and resumed ends with the
same bits as one trained straight through (tested in tests/test_early_stopping.py).
"""
from __future__ import annotations

import json
from typing import Any

from .training import Trainer


class PausableTrainer:
    """`Trainer` behind the pausable-training protocol; the node's one output is ``model``."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.steps = trainer.steps

    @property
    def step(self) -> int:
        return self.trainer.step

    def run(self, until: int) -> None:
        self.trainer.run(until=until)

    def checkpoint(self) -> bytes:
        from safetensors.torch import save

        tensors, meta = self.trainer.checkpoint()
        return save({k: v.contiguous() for k, v in tensors.items()},
                    metadata={"meta": json.dumps(meta, allow_nan=True)})

    def restore(self, payload: bytes) -> None:
        from safetensors.torch import load

        header = json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")])
        self.trainer.restore(load(payload), json.loads(header["__metadata__"]["meta"]))

    def snapshot(self) -> dict[str, Any]:
        return {"model": self.trainer.snapshot()}

    def result(self) -> dict[str, Any]:
        return {"model": self.trainer.result()}
