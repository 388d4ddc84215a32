"""The mini-batch training loop every optimizer kind shares (imports torch).

`fit` never mutates its inputs (they are shared with other nodes, possibly running in
other threads): it trains a deep copy and returns a new `Model`. All randomness — batch
order and dropout masks — comes from the node's seeded generators.

The loop lives in `Trainer`, whose whole state is explicit so that training can pause and
resume (Population Based Training): `Trainer.checkpoint` returns the weights, the
optimizer state (8-bit codes and scales included), both generators' states, the pending
batch order, the step and the loss window as ``(tensors, meta)`` — flat tensors plus JSON,
storable with safetensors like any artifact (`encode_checkpoint`) — and `Trainer.restore`
puts them back, so a run resumed at step k is bit-identical to an uninterrupted one. The
lr schedule is a pure function of the step (`schedules.factor`), so it needs no state of
its own. `Trainer` is the `flowopt.training.PausableTrainer` every optimizer kind
declares (`common.optimizer_kind`); `Trainer.update` changes its mutable fields between
two steps (PBT, Self-Tuning Networks).
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any, Callable, Mapping

import torch

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context

from ..layers import set_dropout_generator
from ..loss import check_task
from .schedules import Constant, factor

LOG_EVERY = 10  # steps per logged loss point: a smooth curve without a sync every step


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or ±inf (``on_nonfinite: fail``); `step` says when.

    A tuner can catch it and treat the member as dead.
    """

    def __init__(self, name: str, value: float, step: int):
        self.step = step
        super().__init__(f"{name}: the training loss became {value} at step {step}; "
                         "try a lower lr (or on_nonfinite: skip_step)")


def resolve_device(device: str, ctx: Context) -> str:
    """The `device` field, with ``auto`` meaning the run's device (``ctx.device``)."""
    if device == "auto":
        return ctx.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device "
                           "(use device: auto or cpu)")
    return device


class BatchOrder:
    """Endless row-index batches: each epoch is a fresh permutation, cut into batches.

    A short final batch of an epoch is topped up from the next one, so every batch has
    exactly ``min(batch_size, n_rows)`` rows and every row is seen once per epoch. The
    generator's state and the pending rows are the whole state (`state_dict`).
    """

    def __init__(self, n_rows: int, batch_size: int, generator: torch.Generator):
        self.n_rows, self.batch_size = n_rows, min(batch_size, n_rows)
        self.generator = generator
        self.pending = torch.empty(0, dtype=torch.long)

    def __iter__(self) -> "BatchOrder":
        return self

    def __next__(self) -> torch.Tensor:
        while len(self.pending) < self.batch_size:
            self.pending = torch.cat([self.pending,
                                      torch.randperm(self.n_rows, generator=self.generator)])
        rows, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
        return rows

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state(), "pending": self.pending.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.pending = state["pending"].clone()


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in tensors of the optimizer's per-parameter state (codes, scales, moments)."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if torch.is_tensor(v))


class Trainer:
    """One training run of `steps` mini-batches; `run` may be called in pieces.

    Logged metrics (``ctx.log_metric``): ``loss`` — the mean training loss of each
    `LOG_EVERY` steps; ``lr`` — the learning rate of every step; with a ``val`` dataset,
    ``val_loss`` (the training loss function) and, for classification, ``val_accuracy``
    every ``eval_every`` steps and at the end; at the end ``state_bytes_per_param``.

    Non-finite losses: with ``on_nonfinite="fail"`` the first NaN/inf step is tracked on
    the device (no host sync per step) and `NonFiniteLoss` names it at the next logging
    point; with ``"skip_step"`` each step's loss is checked on the host before the update
    (one sync per step on CUDA) and a non-finite step leaves weights and state untouched.
    """

    def __init__(self, model: Model, data: Dataset, loss: Loss, ctx: Context, *,
                 make_optimizer: Callable[[Any], torch.optim.Optimizer], steps: int,
                 batch_size: int, device: str, name: str, schedule: Any = None,
                 on_nonfinite: str = "fail", val: Dataset | None = None,
                 eval_every: int = 0, mutable: tuple[str, ...] = ()):
        if len(data) == 0:
            raise ValueError(f"{name}: the training dataset is empty")
        check_task(name, loss, model, data, val)
        self.ctx, self.name, self.steps = ctx, name, steps
        self.schedule = schedule if schedule is not None else Constant()
        self.on_nonfinite, self.eval_every = on_nonfinite, eval_every
        self.mutable = mutable  # fields `update` may change (the kind's declaration)
        self.model_in, self.device = model, resolve_device(device, ctx)
        # Share the cores with the nodes running beside this one (see Context.threads).
        torch.set_num_threads(ctx.threads)
        self.module = copy.deepcopy(model.module).to(self.device).train()
        self.dropout_generator = ctx.torch_generator(stream=1, device=self.device)
        set_dropout_generator(self.module, self.dropout_generator)
        self.x, self.y = data.x.to(self.device), data.y.to(self.device)
        self.val = val
        self.loss_fn = loss.build()
        self.optimizer = make_optimizer(self.module.parameters())
        if getattr(self.optimizer, "use_kernel", False) and self.device == "cpu":
            import numba  # the optimizer's numba kernels share the cores like torch does

            numba.set_num_threads(max(1, min(ctx.threads, numba.config.NUMBA_NUM_THREADS)))
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.order = BatchOrder(len(data), batch_size, ctx.torch_generator(stream=0))
        self.step = 0
        # Summed on the device: no host sync per step.
        self.window = torch.zeros((), device=self.device)
        self.window_steps, self.skipped, self.last_loss = 0, 0, float("nan")
        self.first_bad = torch.zeros((), dtype=torch.long, device=self.device)
        self.val_curve: list[list[float]] = []
        self._snapshot: torch.nn.Module | None = None  # see snapshot()

    # -- the loop --------------------------------------------------------------------
    def run(self, until: int | None = None) -> "Trainer":
        """Train up to step `until` (default: all `steps`)."""
        until = self.steps if until is None else min(until, self.steps)
        while self.step < until:
            self.step += 1
            self._one_step(self.step)
        return self

    def _one_step(self, step: int) -> None:
        ctx = self.ctx
        ctx.progress(step, self.steps)
        lr_factor = factor(self.schedule, step, self.steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * lr_factor
        rows = next(self.order).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        value = self.loss_fn(self.module(self.x[rows]), self.y[rows])
        value.backward()
        finite = torch.isfinite(value.detach())
        if self.on_nonfinite == "skip_step" and not bool(finite):
            self.skipped += 1
        else:
            if self.on_nonfinite == "fail":
                self.first_bad = torch.where((self.first_bad == 0) & ~finite,
                                             torch.full_like(self.first_bad, step), self.first_bad)
            self.optimizer.step()
            self.window += value.detach()
            self.window_steps += 1
        ctx.log_metric("lr", self.base_lrs[0] * lr_factor, step)
        if step % LOG_EVERY == 0 or step == self.steps:
            self._log_loss(step)
        if self.val is not None and self.eval_every and (
                step % self.eval_every == 0 or step == self.steps):
            self._evaluate(step)

    def _log_loss(self, step: int) -> None:
        if self.on_nonfinite == "fail":
            bad = int(self.first_bad.item())
            if bad:  # diverged: later steps would only be garbage
                raise NonFiniteLoss(self.name, float("nan"), bad)
        if self.window_steps:
            self.last_loss = (self.window / self.window_steps).item()
            if not math.isfinite(self.last_loss):  # a finite loss summed past float range
                raise NonFiniteLoss(self.name, self.last_loss, step)
            self.ctx.log_metric("loss", self.last_loss, step)
        self.window.zero_()
        self.window_steps = 0

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        val = self.val
        assert val is not None
        self.module.eval()
        outputs = self.module(val.x.to(self.device))
        targets = val.y.to(self.device)
        self.ctx.log_metric("val_loss", self.loss_fn(outputs, targets).item(), step)
        if val.meta.get("task") == "classification":
            accuracy = (outputs.argmax(dim=-1) == targets).double().mean().item()
            self.ctx.log_metric("val_accuracy", accuracy, step)
            self.val_curve.append([step, accuracy])
        self.module.train()

    def update(self, fields: Mapping[str, Any]) -> None:
        """Change mutable fields from the next step on (`flowopt.training.PausableTrainer`).

        ``lr`` sets the base rate the schedule multiplies; ``schedule`` the schedule
        (a pure function of the step); any other field is set in every param group,
        where the optimizer reads it at each step (``betas`` as a tuple).
        """
        from .schedules import Schedule
        from pydantic import TypeAdapter

        refused = [k for k in fields if k not in self.mutable]
        if refused:
            raise ValueError(f"{self.name}: '{refused[0]}' cannot change while it trains "
                             f"(it can change: {', '.join(self.mutable) or 'nothing'})")
        for key, value in fields.items():
            if key == "lr":
                self.base_lrs = [float(value)] * len(self.optimizer.param_groups)
            elif key == "schedule":
                self.schedule = TypeAdapter(Schedule).validate_python(value)
            else:
                for group in self.optimizer.param_groups:
                    group[key] = tuple(value) if isinstance(value, list) else value

    # -- results and checkpoints -----------------------------------------------------
    def result(self) -> Model:
        """The trained model, on the CPU in eval mode, with what was learned in ``meta``."""
        meta = self._meta()
        self.ctx.log_metric("state_bytes_per_param", meta["state_bytes_per_param"], None)
        return Model(module=self._eval_copy(), recipe=dict(self.model_in.recipe), meta=meta)

    def snapshot(self) -> Model:
        """`result` as of now, for scoring between segments (PBT's ready points).

        The module is one eval-mode CPU copy kept beside the trainer and refreshed from
        the live weights at each call, instead of a new deep copy every time; so the
        returned `Model` is only valid until the next `snapshot` or training step.
        """
        if self._snapshot is None:
            self._snapshot = self._eval_copy()
        else:
            with torch.no_grad():
                live = self.module.state_dict()
                for key, value in self._snapshot.state_dict().items():
                    value.copy_(live[key])
        return Model(module=self._snapshot, recipe=dict(self.model_in.recipe), meta=self._meta())

    def _eval_copy(self) -> torch.nn.Module:
        module = copy.deepcopy(self.module)
        set_dropout_generator(module, None)
        return module.to("cpu").eval()

    def _meta(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self.module.parameters())
        meta = {**self.model_in.meta, "optimizer": self.name, "steps": self.steps,
                "final_loss": self.last_loss, "schedule": self.schedule.model_dump(),
                "skipped_steps": self.skipped,
                "state_bytes_per_param": state_bytes(self.optimizer) / max(1, n_params)}
        if self.val_curve:
            meta["val_curve"] = self.val_curve
        return meta

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue this run: ``(tensors, JSON meta)``, all copies."""
        tensors = {f"module.{k}": v.detach().cpu().clone()
                   for k, v in self.module.state_dict().items()}
        scalars = optimizer_state(self.optimizer, "optimizer", tensors)
        for key, value in self.order.state_dict().items():
            tensors[f"order.{key}"] = value
        tensors["dropout_generator"] = self.dropout_generator.get_state().cpu()
        tensors["window"] = self.window.detach().cpu().clone()
        tensors["first_bad"] = self.first_bad.detach().cpu().clone()
        meta = {"step": self.step, "steps": self.steps, "window_steps": self.window_steps,
                "skipped": self.skipped, "last_loss": self.last_loss,
                "val_curve": self.val_curve, "optimizer_scalars": scalars}
        return tensors, meta

    def restore(self, tensors: Any, meta: dict[str, Any] | None = None) -> "Trainer":
        """Continue from `checkpoint`'s output (same kind, config, data and seed), given as
        the ``(tensors, meta)`` pair or as its two parts."""
        if meta is None:
            tensors, meta = tensors
        if meta["steps"] != self.steps:
            raise ValueError(f"{self.name}: checkpoint is for a run of {meta['steps']} steps, "
                             f"this one has {self.steps}")
        self.module.load_state_dict({k[len("module."):]: v for k, v in tensors.items()
                                     if k.startswith("module.")})
        load_optimizer_state(self.optimizer, "optimizer", tensors, meta["optimizer_scalars"])
        self.order.load_state_dict({"generator": tensors["order.generator"],
                                    "pending": tensors["order.pending"]})
        self.dropout_generator.set_state(tensors["dropout_generator"])
        self.window = tensors["window"].to(self.device).clone()
        self.first_bad = tensors["first_bad"].to(self.device).clone()
        self.step, self.window_steps = int(meta["step"]), int(meta["window_steps"])
        self.skipped, self.last_loss = int(meta["skipped"]), float(meta["last_loss"])
        self.val_curve = [list(point) for point in meta["val_curve"]]
        return self


def optimizer_state(optimizer: torch.optim.Optimizer, prefix: str,
                    tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Put `optimizer`'s state tensors into `tensors` as ``PREFIX.INDEX.KEY`` (CPU copies);
    returns its other state values as ``{"INDEX.KEY": value}`` (JSON meta). The param
    groups are not saved: a restored run rebuilds them from its config."""
    scalars: dict[str, Any] = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{index}.{key}"] = value.detach().cpu().clone()
            else:
                scalars[f"{index}.{key}"] = value
    return scalars


def load_optimizer_state(optimizer: torch.optim.Optimizer, prefix: str,
                         tensors: Mapping[str, torch.Tensor], scalars: Mapping[str, Any]) -> None:
    """Load what `optimizer_state` saved under `prefix` back into `optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(f"{prefix}."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            # A copy: torch keeps CPU state tensors by reference, and training would
            # then write into the checkpoint (which PBT members share).
            state.setdefault(int(index), {})[name] = value.clone()
    for key, value in scalars.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def encode_checkpoint(state: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> bytes:
    """A `Trainer.checkpoint` as safetensors bytes (the JSON meta in safetensors' metadata)."""
    from safetensors.torch import save

    tensors, meta = state
    return save({k: v.contiguous() for k, v in tensors.items()},
                metadata={"meta": json.dumps(meta, allow_nan=True)})


def decode_checkpoint(payload: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`encode_checkpoint`'s bytes back as ``(tensors, meta)``."""
    from safetensors.torch import load

    tensors = load(payload)
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + header_len])
    return tensors, json.loads(header["__metadata__"]["meta"])


def fit(model: Model, data: Dataset, loss: Loss, ctx: Context, *,
        make_optimizer: Callable[[Any], torch.optim.Optimizer], steps: int,
        batch_size: int, device: str, name: str, **options: Any) -> Model:
    """Train a copy of `model` on `data` for `steps` mini-batches; returns the new model.

    `options` are `Trainer`'s: ``schedule``, ``on_nonfinite``, ``val``, ``eval_every``.
    """
    trainer = Trainer(model, data, loss, ctx, make_optimizer=make_optimizer, steps=steps,
                      batch_size=batch_size, device=device, name=name, **options)
    return trainer.run().result()
