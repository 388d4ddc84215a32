"""Optimizer kinds: ``optimizer.sgd``, ``optimizer.adam``, ``optimizer.adamw``.

Each trains a copy of its input model with the shared loop in `training` (imported
lazily, as it imports torch) and torch.optim's implementation of the algorithm.

Ports: inputs ``model`` (Model), ``data`` (Dataset), ``loss`` (Loss); output ``model``.
``with:`` fields shared by all (defaults): ``steps`` (200 mini-batches), ``batch_size``
(64; batches are drawn without replacement, a fresh permutation per epoch), ``device``
(auto: the run's device, CUDA when present | cpu | cuda). The training loss is logged
every 10 steps as the metric ``NODE.loss``.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from flowopt.artifacts import Dataset, Loss, Model
from flowopt.context import Context
from flowopt.registry import node

Rate = Annotated[float, Field(gt=0)]
Decay = Annotated[float, Field(ge=0)]
Steps = Annotated[int, Field(gt=0)]
BatchSize = Annotated[int, Field(gt=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Device = Literal["auto", "cpu", "cuda"]


def _fit(kind: str, model: Model, data: Dataset, loss: Loss, ctx: Context, steps: int,
         batch_size: int, device: str, optimizer: str, **options: Any) -> Model:
    import torch

    from .training import fit

    cls = getattr(torch.optim, optimizer)
    return fit(model, data, loss, ctx, make_optimizer=lambda params: cls(params, **options),
               steps=steps, batch_size=batch_size, device=device, name=kind)


@node("optimizer.sgd")
def sgd(model: Model, data: Dataset, loss: Loss, ctx: Context, lr: Rate = 1e-3,
        momentum: Beta = 0.0, nesterov: bool = False, weight_decay: Decay = 0.0,
        steps: Steps = 200, batch_size: BatchSize = 64, device: Device = "auto") -> Model:
    """Mini-batch stochastic gradient descent (Robbins & Monro 1951), `torch.optim.SGD`.

    Inputs: ``model``, ``data``, ``loss``. Output: ``model`` (a trained copy). ``with:``
    fields, PyTorch's defaults: ``lr`` (1e-3), ``momentum`` (0.0; heavy-ball momentum as
    in Sutskever et al. 2013), ``nesterov`` (false; needs momentum > 0), ``weight_decay``
    (0.0, L2 added to the gradient); and, shared by every optimizer, ``steps`` (200),
    ``batch_size`` (64), ``device`` (auto), described in the module docstring.
    """
    if nesterov and momentum == 0:
        raise ValueError("optimizer.sgd: nesterov needs momentum > 0")
    return _fit("optimizer.sgd", model, data, loss, ctx, steps, batch_size, device, "SGD",
                lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


@node("optimizer.adam")
def adam(model: Model, data: Dataset, loss: Loss, ctx: Context, lr: Rate = 1e-3,
         betas: tuple[Beta, Beta] = (0.9, 0.999), eps: Rate = 1e-8,
         weight_decay: Decay = 0.0, steps: Steps = 200, batch_size: BatchSize = 64,
         device: Device = "auto") -> Model:
    """Adam (Kingma & Ba 2015), `torch.optim.Adam`.

    Inputs: ``model``, ``data``, ``loss``. Output: ``model`` (a trained copy). ``with:``
    fields with the paper's (and PyTorch's) defaults: ``lr`` (1e-3),
    ``betas`` ([0.9, 0.999]), ``eps`` (1e-8), ``weight_decay`` (0.0, L2 added to the
    gradient); and, shared by every optimizer, ``steps`` (200), ``batch_size`` (64),
    ``device`` (auto).
    """
    return _fit("optimizer.adam", model, data, loss, ctx, steps, batch_size, device, "Adam",
                lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@node("optimizer.adamw")
def adamw(model: Model, data: Dataset, loss: Loss, ctx: Context, lr: Rate = 1e-3,
          betas: tuple[Beta, Beta] = (0.9, 0.999), eps: Rate = 1e-8,
          weight_decay: Decay = 0.01, steps: Steps = 200, batch_size: BatchSize = 64,
          device: Device = "auto") -> Model:
    """AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019), `torch.optim.AdamW`.

    Inputs: ``model``, ``data``, ``loss``. Output: ``model`` (a trained copy). ``with:``
    fields (defaults): ``lr`` (1e-3), ``betas`` ([0.9, 0.999]), ``eps`` (1e-8), as in
    Adam; ``weight_decay`` (0.01, PyTorch's default; applied as θ ← θ − lr·λ·θ, not
    through the gradient); and, shared by every optimizer, ``steps`` (200),
    ``batch_size`` (64), ``device`` (auto).
    """
    return _fit("optimizer.adamw", model, data, loss, ctx, steps, batch_size, device, "AdamW",
                lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
