"""`DiffGrad` (Dubey et al. 2020, "diffGrad: An Optimization Method for Convolutional Neural
Networks"), a torch optimizer following the authors' code (shivram1987/diffGrad).

Adam whose first moment is damped by a friction coefficient computed from the change of
the gradient between consecutive steps: ξ = sigmoid(|g_{t−1} − g_t|) ∈ [0.5, 1). Where the
gradient barely changes (a flat region or near an optimum) ξ ≈ 0.5 halves the step; where
it changes fast ξ → 1 and the step is Adam's. The previous gradient starts at zero.

Per step (bias corrections bc1 = 1 − β1^t, bc2 = 1 − β2^t), with L2 weight decay added
to the gradient as in the reference:

    g ← g + λ·θ
    m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
    ξ = 1/(1 + exp(−|g_prev − g|)) ;  g_prev ← g
    θ ← θ − lr·√bc2/bc1 · ξ·m/(√v + ε)
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import ParameterwiseOptimizer


class DiffGrad(ParameterwiseOptimizer):
    """diffGrad with the paper's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        grad, state = p.grad, self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            state["previous_grad"] = torch.zeros_like(p)
        if group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        m, v, previous = state["exp_avg"], state["exp_avg_sq"], state["previous_grad"]
        state["step"] += 1
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = v.sqrt().add_(group["eps"])
        friction = torch.sigmoid((previous - grad).abs())
        previous.copy_(grad)
        bc1, bc2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        p.addcdiv_(m * friction, denom, value=-group["lr"] * math.sqrt(bc2) / bc1)
