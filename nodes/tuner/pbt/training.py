"""Pausable training for PBT: a `Trainable` over the optimizer nodes' `Trainer` (imports torch).

A member's state is `Trainer.checkpoint()` — weights, optimizer state, both generators,
the pending batch order, the step — as ``(tensors, meta)``. A segment builds a `Trainer`
with the member's *current* hyperparameters, restores the checkpoint into it and runs
on; that is how PBT changes params mid-run, and since restore is exact (the optimizer
nodes test it), a member trained in segments equals one trained straight through with
the same schedule — which is what makes replay reproduce the best member.

Only the fields the optimizer kind declares ``mutable`` (`flowopt.training.Training`:
what its optimizer reads from its param groups at every step, and the schedule) can
change mid-run; anything else (a model width, a batch size) would need a new model or a
new data order, so searching it is refused before anything runs (`check_space`). The
trainer is the kind's own (``training.start``), so every optimizer kind trains here.
The score of a segment is the validation accuracy at its end (the objective PBT ranks).

Between segments the `Trainer` that produced a state is kept ("parked") beside it: a
member that continues from its own latest state with the same params — most ready
points keep — goes on with that live `Trainer` instead of building a new one and
restoring into it. Restore is exact, so both paths give the same bits; parking only
saves the rebuild (model copy, optimizer construction, state copies). A parked trainer
is claimed at most once, and only by the identical state object, so a checkpoint that
two members continue from is restored for the second (tested).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Mapping

import torch

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context
from flowopt.errors import FlowoptError
from flowopt.registry import REGISTRY, NodeKind

from ...optimizer.training import Trainer, decode_checkpoint, encode_checkpoint

SHARED = ("steps", "batch_size", "schedule", "on_nonfinite", "eval_every", "device")


def optimizer_kind(optimizer: str) -> NodeKind:
    """The optimizer kind a short name (``adam``) or a kind name names, if it can pause."""
    name = optimizer if "." in optimizer else f"optimizer.{optimizer}"
    try:
        kind = REGISTRY.get(name)
    except KeyError:
        kind = None
    if kind is None or kind.training is None:
        trainable = sorted(n for n in REGISTRY.names() if REGISTRY.get(n).training is not None)
        raise FlowoptError(f"tuner.pbt: unknown optimizer '{optimizer}' "
                           f"(one of: {', '.join(trainable)})")
    return kind


def check_space(names: Any, optimizer: str) -> None:
    """Refuse searched params that training cannot change mid-run (one clear line)."""
    allowed = optimizer_kind(optimizer).training.mutable
    for name in names:
        if name not in allowed:
            raise FlowoptError(
                f"tuner.pbt: searched param '{name}' cannot change while a member trains "
                f"(PBT changes params mid-run; with optimizer '{optimizer}' it can change: "
                f"{', '.join(allowed)})",
                hint="search it with tuner.random or tuner.bayesopt instead")


encode = encode_checkpoint  # a checkpoint as safetensors bytes (optimizer.training)
decode = decode_checkpoint


def _quiet_context(seed: int, threads: int, device: str, cancel: threading.Event) -> Context:
    return Context(run_id="pbt", node_id="pbt", seed=seed, device=device, cancel=cancel,
                   emit=lambda *_, **__: None, log_metric=lambda *_: None, threads=threads)


class TrainerTrainable:
    """Members that train `model` on `data` with an optimizer kind; score = accuracy on `val`.

    ``optimizer`` names the kind (``adam`` or ``optimizer.adam8bit``: any kind that
    declares training). ``steps`` is the whole run's length (the Trainer's schedule
    position depends on it); ``fixed`` are the kind's fields that are not searched (e.g.
    betas). Each member
    starts from the same weights, with its own batch order and dropout stream (seeded
    from ``seed`` and the member number). ``live`` is how many idle trainers are kept
    parked for the states they produced (see the module docstring; 0 turns it off).
    """

    def __init__(self, model: Model, data: Dataset, val: Dataset, loss: Loss, *,
                 optimizer: str = "adam", steps: int, batch_size: int = 64, seed: int = 0,
                 threads: int = 1, device: str = "cpu", fixed: Mapping[str, Any] | None = None,
                 cancel: threading.Event | None = None, schedule: Any = None,
                 live: int = 16) -> None:
        self.kind = optimizer_kind(optimizer)
        self.model, self.data, self.val, self.loss = model, data, val, loss
        self.optimizer, self.steps, self.batch_size = optimizer, steps, batch_size
        self.seed, self.threads, self.device = seed, threads, device
        self.fixed = dict(fixed or {})
        self.schedule = schedule  # the learning-rate schedule's shape (None: constant)
        self.cancel = cancel or threading.Event()
        self.train_seconds = 0.0  # time inside Trainer.run (the "training steps"), all workers
        self.builds = 0  # Trainers built (a start, or a restore a parked trainer did not spare)
        self._timing = threading.Lock()
        self.live = live
        # id(state) -> (state, params, the Trainer that produced it and may go on from it)
        self._parked: OrderedDict[int, tuple[Any, dict[str, Any], Trainer]] = OrderedDict()

    def _trainer(self, member: int, params: Mapping[str, Any]) -> Trainer:
        mutable = self.kind.training.mutable
        options = {**self.fixed, **{k: v for k, v in params.items() if k in mutable}}
        schedule = self.schedule.model_dump() if self.schedule is not None else "constant"
        config = self.kind.config.model_validate(
            {"schedule": schedule, **options, "steps": self.steps,
             "batch_size": self.batch_size, "device": self.device}).model_dump(mode="json")
        ctx = _quiet_context(self.seed * 1_000_003 + member, self.threads, self.device,
                             self.cancel)
        with self._timing:
            self.builds += 1
        return self.kind.training.start(
            config, {"model": self.model, "data": self.data, "loss": self.loss}, ctx)

    def start(self, member: int, params: Mapping[str, Any]) -> Any:
        trainer = self._trainer(member, params)
        return self._park(trainer.checkpoint(), params, trainer)

    def train(self, state: Any, params: Mapping[str, Any], steps: int) -> tuple[Any, float]:
        trainer = self._claim(state, params)
        if trainer is None:
            # Trainer.restore copies what training updates in place, so a checkpoint that
            # two members continue from (an exploit) is never changed under the other one.
            trainer = self._trainer(0, params).restore(*state)
        started = time.perf_counter()
        trainer.run(until=trainer.step + steps)
        with self._timing:
            self.train_seconds += time.perf_counter() - started
        new_state = trainer.checkpoint()  # copies: the trainer may go on without changing it
        score = self.score(trainer)
        return self._park(new_state, params, trainer), score

    def _park(self, state: Any, params: Mapping[str, Any], trainer: Trainer) -> Any:
        if self.live > 0:
            with self._timing:
                self._parked[id(state)] = (state, dict(params), trainer)
                while len(self._parked) > self.live:
                    self._parked.popitem(last=False)
        return state

    def _claim(self, state: Any, params: Mapping[str, Any]) -> Trainer | None:
        """The parked trainer that produced `state` with these `params`, taken (or None)."""
        with self._timing:
            entry = self._parked.get(id(state))
            if entry is None or entry[0] is not state or entry[1] != dict(params):
                return None  # e.g. an explored copy: the source may still go on with it
            del self._parked[id(state)]
        return entry[2]

    def score(self, trainer: Trainer) -> float:
        """A segment's score: accuracy on `val` (the pipeline node scores with its objective)."""
        return self.accuracy(trainer.module)

    @torch.no_grad()
    def accuracy(self, module: torch.nn.Module) -> float:
        was_training = module.training
        module.eval()
        outputs = module(self.val.x.to(self.device))
        module.train(was_training)
        return float((outputs.argmax(dim=-1) == self.val.y.to(self.device)).double().mean())

    def model_from(self, state: Any, params: Mapping[str, Any]) -> Model:
        """The trained `Model` held by a checkpoint."""
        tensors, meta = state
        return self._trainer(0, params).restore(tensors, meta).result()
