"""`AdamP` (Heo et al. 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights"), a torch optimizer following the authors' code (clovaai/AdamP).

It is Adam, except that for a weight that looks scale-invariant the radial component of
the update (the part along the weight itself, which only grows ‖θ‖ and so shrinks the
effective step size) is projected out. A weight is taken as scale-invariant when the
gradient is nearly orthogonal to it: |cos(g, θ)| < δ/√(dim) — first per output channel
(rows of θ viewed as (size(0), −1)), then for the whole layer. Projected weights also get
their weight decay scaled by ``wd_ratio``. One-dimensional parameters (biases, norm
scales) are never projected.

Per step (bias corrections bc1 = 1 − β1^t, bc2 = 1 − β2^t):

    m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
    d = m / (√v/√bc2 + ε)   (nesterov: (β1·m + (1 − β1)·g) in place of m)
    d ← d − θ̂·⟨θ̂, d⟩  with θ̂ = θ/(‖θ‖ + ε), per channel or layer, if scale-invariant
    θ ← θ·(1 − lr·λ·r) − (lr/bc1)·d          (r = wd_ratio if projected, else 1)
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .base import ParameterwiseOptimizer
import torch.nn.functional as F


class AdamP(ParameterwiseOptimizer):
    """AdamP with the paper's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    delta 0.1, wd_ratio 0.1, nesterov off, weight_decay 0."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, delta: float = 0.1,
                 wd_ratio: float = 0.1, nesterov: bool = False):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "delta": delta,
                                  "wd_ratio": wd_ratio, "nesterov": nesterov})

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        grad, state = p.grad, self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        state["step"] += 1
        bc1, bc2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v.sqrt() / math.sqrt(bc2)).add_(group["eps"])
        if group["nesterov"]:
            direction = (beta1 * m + (1 - beta1) * grad) / denom
        else:
            direction = m / denom
        ratio = 1.0
        if p.dim() > 1:
            direction, ratio = project(p, grad, direction, group["delta"],
                                       group["wd_ratio"], group["eps"])
        if group["weight_decay"] > 0:
            p.mul_(1 - group["lr"] * group["weight_decay"] * ratio)
        p.add_(direction, alpha=-group["lr"] / bc1)


def _channels(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.size(0), -1)


def _layer(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(1, -1)


def project(p: torch.Tensor, grad: torch.Tensor, direction: torch.Tensor, delta: float,
            wd_ratio: float, eps: float) -> tuple[torch.Tensor, float]:
    """Remove the radial component of `direction` if `p` looks scale-invariant.

    Returns the (possibly projected) direction and the weight-decay ratio to use.
    """
    expand = [-1] + [1] * (p.dim() - 1)
    views: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (_channels, _layer)
    for view in views:
        cosine = F.cosine_similarity(view(grad), view(p), dim=1, eps=eps).abs()
        if cosine.max() < delta / math.sqrt(view(p).size(1)):
            unit = p / view(p).norm(dim=1).view(expand).add(eps)
            direction = direction - unit * view(unit * direction).sum(dim=1).view(expand)
            return direction, wd_ratio
    return direction, 1.0
