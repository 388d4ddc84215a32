"""The mini-batch training loop every optimizer kind shares (imports torch).

`fit` never mutates its inputs (they are shared with other nodes, possibly running in
other threads): it trains a deep copy and returns a new `Model`. All randomness — batch
order and dropout masks — comes from the node's seeded generators.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterator

import torch

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context

from ..layers import set_dropout_generator

LOG_EVERY = 10  # steps per logged loss point: a smooth curve without a sync every step


def resolve_device(device: str, ctx: Context) -> str:
    """The `device` field, with ``auto`` meaning the run's device (``ctx.device``)."""
    if device == "auto":
        return ctx.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device "
                           "(use device: auto or cpu)")
    return device


def batches(n_rows: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless row-index batches: each epoch is a fresh permutation, cut into batches.

    A short final batch of an epoch is topped up from the next one, so every batch has
    exactly ``min(batch_size, n_rows)`` rows and every row is seen once per epoch.
    """
    batch_size = min(batch_size, n_rows)
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(n_rows, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def fit(model: Model, data: Dataset, loss: Loss, ctx: Context, *,
        make_optimizer: Callable[[Any], torch.optim.Optimizer], steps: int,
        batch_size: int, device: str, name: str) -> Model:
    """Train a copy of `model` on `data` for `steps` mini-batches; returns the new model.

    Logs the mean training loss of each `LOG_EVERY` steps as metric ``loss`` (at the last
    step of the window), reports progress every step (raising if the run is cancelled)
    and returns the module on the CPU, in eval mode.
    """
    if len(data) == 0:
        raise ValueError(f"{name}: the training dataset is empty")
    device = resolve_device(device, ctx)
    # Share the cores with the nodes running beside this one (see Context.threads).
    torch.set_num_threads(ctx.threads)
    module = copy.deepcopy(model.module).to(device).train()
    set_dropout_generator(module, ctx.torch_generator(stream=1, device=device))
    x, y = data.x.to(device), data.y.to(device)
    loss_fn = loss.build()
    optimizer = make_optimizer(module.parameters())
    window = torch.zeros((), device=device)  # summed on device: no host sync per step
    window_start, last_loss = 0, float("nan")
    order = batches(len(data), batch_size, ctx.torch_generator(stream=0))
    for step in range(1, steps + 1):
        ctx.progress(step, steps)
        rows = next(order).to(device)
        optimizer.zero_grad(set_to_none=True)
        value = loss_fn(module(x[rows]), y[rows])
        value.backward()
        optimizer.step()
        window += value.detach()
        if step % LOG_EVERY == 0 or step == steps:
            last_loss = (window / (step - window_start)).item()
            if not math.isfinite(last_loss):  # diverged: later steps would only be garbage
                raise FloatingPointError(f"{name}: the training loss became {last_loss} at "
                                         f"step {step}; try a lower lr")
            ctx.log_metric("loss", last_loss, step)
            window.zero_()
            window_start = step
    set_dropout_generator(module, None)
    module = module.to("cpu").eval()
    meta = {**model.meta, "optimizer": name, "steps": steps, "final_loss": last_loss}
    return Model(module=module, recipe=dict(model.recipe), meta=meta)
