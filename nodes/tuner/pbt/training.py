"""Pausable training for PBT: a `Trainable` over the optimizer nodes' `Trainer` (imports torch).

A member's state is `Trainer.checkpoint()` — weights, optimizer state, both generators,
the pending batch order, the step — as ``(tensors, meta)``. A segment builds a `Trainer`
with the member's *current* hyperparameters, restores the checkpoint into it and runs
on; that is how PBT changes params mid-run, and since restore is exact (the optimizer
nodes test it), a member trained in segments equals one trained straight through with
the same schedule — which is what makes replay reproduce the best member.

Only hyperparameters that live in the optimizer's param groups can change mid-run
(`MUTABLE`); anything else (a model width, a batch size) would need a new model or a
new data order, so searching it is refused before anything runs (`check_space`).
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

import json
import threading
import time
from collections import OrderedDict
from typing import Any, Mapping

import torch

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context
from flowopt.errors import FlowoptError

from ...optimizer.training import Trainer

OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
MUTABLE = {"sgd": ("lr", "momentum", "weight_decay"), "adam": ("lr", "weight_decay"),
           "adamw": ("lr", "weight_decay")}


def check_space(names: Any, optimizer: str) -> None:
    """Refuse searched params that training cannot change mid-run (one clear line)."""
    allowed = MUTABLE[optimizer]
    for name in names:
        if name not in allowed:
            raise FlowoptError(
                f"tuner.pbt: searched param '{name}' cannot change while a member trains "
                f"(PBT changes params mid-run; with optimizer '{optimizer}' it can change: "
                f"{', '.join(allowed)})",
                hint="search it with tuner.random or tuner.bayesopt instead")


def encode(state: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> bytes:
    """A checkpoint as safetensors bytes (the JSON meta in safetensors' metadata)."""
    from safetensors.torch import save

    tensors, meta = state
    return save({k: v.contiguous() for k, v in tensors.items()},
                metadata={"meta": json.dumps(meta, allow_nan=True)})


def decode(payload: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load

    tensors = load(payload)
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + header_len])
    return tensors, json.loads(header["__metadata__"]["meta"])


def _quiet_context(seed: int, threads: int, device: str, cancel: threading.Event) -> Context:
    return Context(run_id="pbt", node_id="pbt", seed=seed, device=device, cancel=cancel,
                   emit=lambda *_, **__: None, log_metric=lambda *_: None, threads=threads)


class TrainerTrainable:
    """Members that train `model` on `data` with a torch optimizer; score = accuracy on `val`.

    ``steps`` is the whole run's length (the Trainer's schedule position depends on it);
    ``fixed`` are optimizer options that are not searched (e.g. betas). Each member
    starts from the same weights, with its own batch order and dropout stream (seeded
    from ``seed`` and the member number). ``live`` is how many idle trainers are kept
    parked for the states they produced (see the module docstring; 0 turns it off).
    """

    def __init__(self, model: Model, data: Dataset, val: Dataset, loss: Loss, *,
                 optimizer: str = "adam", steps: int, batch_size: int = 64, seed: int = 0,
                 threads: int = 1, device: str = "cpu", fixed: Mapping[str, Any] | None = None,
                 cancel: threading.Event | None = None, schedule: Any = None,
                 live: int = 16) -> None:
        if optimizer not in OPTIMIZERS:
            raise FlowoptError(f"tuner.pbt: unknown optimizer '{optimizer}' "
                               f"(one of: {', '.join(OPTIMIZERS)})")
        self.model, self.data, self.val, self.loss = model, data, val, loss
        self.optimizer, self.steps, self.batch_size = optimizer, steps, batch_size
        self.seed, self.threads, self.device = seed, threads, device
        self.fixed = dict(fixed or {})
        self.schedule = schedule  # the learning-rate schedule's shape (None: constant)
        self.cancel = cancel or threading.Event()
        self.train_seconds = 0.0  # time inside Trainer.run (the "training steps"), all workers
        self._timing = threading.Lock()
        self.live = live
        # id(state) -> (state, params, the Trainer that produced it and may go on from it)
        self._parked: OrderedDict[int, tuple[Any, dict[str, Any], Trainer]] = OrderedDict()

    def _trainer(self, member: int, params: Mapping[str, Any]) -> Trainer:
        cls = getattr(torch.optim, OPTIMIZERS[self.optimizer])
        options = {**self.fixed, **{k: v for k, v in params.items()
                                    if k in MUTABLE[self.optimizer]}}
        ctx = _quiet_context(self.seed * 1_000_003 + member, self.threads, self.device,
                             self.cancel)
        return Trainer(self.model, self.data, self.loss, ctx,
                       make_optimizer=lambda p: cls(p, **options), steps=self.steps,
                       batch_size=self.batch_size, device=self.device,
                       name=f"tuner.pbt member {member}", schedule=self.schedule)

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
