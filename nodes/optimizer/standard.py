"""Optimizer kinds with full-precision state: sgd, adam, adamw (torch.optim), lion, adamp,
diffgrad, stable_spam (this package's torch optimizers, imported when a node runs).

Each function is the algorithm alone: its own ``with:`` fields, with where each default
comes from, returning ``make(params)``; `common.optimizer_kind` adds the ports, the
shared fields and the training declaration (``mutable``: what its optimizer reads from
its param groups at every step, so it may change while a model trains).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .common import Beta, Betas, Decay, Rate, optimizer_kind

#: lr and weight decay, the Adam family's betas, and the schedule (common's docstring)
ADAM_MUTABLE = ("lr", "betas", "weight_decay", "schedule")


def _torch_optim(name: str, **options: Any) -> Any:
    def make(params: Any) -> Any:
        import torch

        return getattr(torch.optim, name)(params, **options)

    return make


@optimizer_kind("optimizer.sgd", mutable=("lr", "momentum", "weight_decay", "schedule"))
def sgd(lr: Rate = 1e-3, momentum: Beta = 0.0, nesterov: bool = False,
        weight_decay: Decay = 0.0) -> Any:
    """Mini-batch stochastic gradient descent (Robbins & Monro 1951), `torch.optim.SGD`.

    ``with:`` fields, PyTorch's defaults: ``lr`` (1e-3), ``momentum`` (0.0; heavy-ball
    momentum as in Sutskever et al. 2013), ``nesterov`` (false; needs momentum > 0),
    ``weight_decay`` (0.0, L2 added to the gradient); plus the shared fields (ports,
    steps, batch_size, schedule, on_nonfinite, eval_every, device: see `optimizer`).
    """
    if nesterov and momentum == 0:
        raise ValueError("optimizer.sgd: nesterov needs momentum > 0")
    return _torch_optim("SGD", lr=lr, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay)


@optimizer_kind("optimizer.adam", mutable=ADAM_MUTABLE)
def adam(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
         weight_decay: Decay = 0.0) -> Any:
    """Adam (Kingma & Ba 2015), `torch.optim.Adam`.

    ``with:`` fields with the paper's (and PyTorch's) defaults: ``lr`` (1e-3), ``betas``
    ([0.9, 0.999]), ``eps`` (1e-8), ``weight_decay`` (0.0, L2 added to the gradient);
    plus the shared fields (see `optimizer`).
    """
    return _torch_optim("Adam", lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@optimizer_kind("optimizer.adamw", mutable=ADAM_MUTABLE)
def adamw(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
          weight_decay: Decay = 0.01) -> Any:
    """AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019), `torch.optim.AdamW`.

    ``with:`` fields (defaults): ``lr`` (1e-3), ``betas`` ([0.9, 0.999]), ``eps`` (1e-8),
    as in Adam; ``weight_decay`` (0.01, PyTorch's default; applied as θ ← θ − lr·λ·θ, not
    through the gradient); plus the shared fields (see `optimizer`).
    """
    return _torch_optim("AdamW", lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@optimizer_kind("optimizer.lion", mutable=ADAM_MUTABLE)
def lion(lr: Rate = 1e-4, betas: Betas = (0.9, 0.99), weight_decay: Decay = 0.0) -> Any:
    """Lion, sign of interpolated momentum (Chen et al. 2023), `algorithms.lion.Lion`.

    One state tensor (the momentum); float32 CPU tensors are updated by a fused numba
    kernel. ``with:`` fields (defaults): ``lr`` (1e-4: the paper recommends a learning
    rate 3–10× below AdamW's, whose usual value is 1e-3), ``betas`` ([0.9, 0.99], the
    paper's), ``weight_decay`` (0.0, as in the reference code; decoupled and scaled by lr;
    the paper suggests 3–10× AdamW's value — with λ > 0 the weights stay within
    ‖θ‖∞ ≤ 1/λ); plus the shared fields (see `optimizer`).
    """
    def make(params: Any) -> Any:
        from .algorithms.lion import Lion

        return Lion(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)

    return make


@optimizer_kind("optimizer.adamp", mutable=ADAM_MUTABLE)
def adamp(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
          weight_decay: Decay = 0.0, delta: Annotated[float, Field(gt=0)] = 0.1,
          wd_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1, nesterov: bool = False) -> Any:
    """AdamP: Adam without the radial update on scale-invariant weights (Heo et al. 2021).

    ``with:`` fields, defaults of the paper's code (clovaai/AdamP): ``lr`` (1e-3),
    ``betas`` ([0.9, 0.999]), ``eps`` (1e-8), ``weight_decay`` (0.0, decoupled),
    ``delta`` (0.1, the cosine threshold δ/√dim that detects scale invariance),
    ``wd_ratio`` (0.1, weight-decay multiplier for projected weights), ``nesterov``
    (false); plus the shared fields (see `optimizer`).
    """
    def make(params: Any) -> Any:
        from .algorithms.adamp import AdamP

        return AdamP(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                     delta=delta, wd_ratio=wd_ratio, nesterov=nesterov)

    return make


@optimizer_kind("optimizer.diffgrad", mutable=ADAM_MUTABLE)
def diffgrad(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
             weight_decay: Decay = 0.0) -> Any:
    """diffGrad: Adam with a friction coefficient from the gradient change (Dubey et al. 2020).

    ``with:`` fields, defaults of the paper's code (shivram1987/diffGrad): ``lr`` (1e-3),
    ``betas`` ([0.9, 0.999]), ``eps`` (1e-8), ``weight_decay`` (0.0, L2 added to the
    gradient); plus the shared fields (see `optimizer`).
    """
    def make(params: Any) -> Any:
        from .algorithms.diffgrad import DiffGrad

        return DiffGrad(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    return make


@optimizer_kind("optimizer.stable_spam", mutable=ADAM_MUTABLE)
def stable_spam(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
                weight_decay: Decay = 0.0, gamma1: Beta = 0.7, gamma2: Beta = 0.9,
                theta: Beta = 0.999, reset_every: Annotated[int, Field(ge=0)] = 1000) -> Any:
    """Stable-SPAM: Adam with adaptive spike clipping, norm normalisation and momentum
    reset (Huang et al. 2025).

    ``with:`` fields, defaults of the paper's code (TianjinYellow/StableSPAM): ``lr``
    (1e-3), ``betas`` ([0.9, 0.999]), ``eps`` (1e-8), ``weight_decay`` (0.0, decoupled),
    ``gamma1`` (0.7) and ``gamma2`` (0.9), the EMA rates of the gradient norm and its
    square, ``theta`` (0.999, the EMA rate of max|g| for spike clipping), ``reset_every``
    (1000 steps between momentum resets, ΔT; 0: never); plus the shared fields (see
    `optimizer`).
    """
    def make(params: Any) -> Any:
        from .algorithms.stable_spam import StableSPAM

        return StableSPAM(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                          gamma1=gamma1, gamma2=gamma2, theta=theta, reset_every=reset_every)

    return make
