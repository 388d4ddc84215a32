"""`StableSPAM` (Huang et al. 2025, "Stable-SPAM: How to Train in 4-Bit More Stably than
16-Bit Adam"), a torch optimizer following the authors' code (TianjinYellow/StableSPAM).

Adam (with decoupled weight decay) whose gradient is first tamed, per parameter tensor:

1. Adaptive spike clipping. M_t = θ·M_{t−1} + (1 − θ)·max|g| tracks the historical
   maximum, M̂ = M_t/(1 − θ^t); entries with |g| > M̂ are scaled to g·M̂/max|g|.
2. Adaptive gradient-norm normalisation. With n = ‖g‖ (after clipping),
   m_n ← γ1·m_n + (1 − γ1)·n and v_n ← γ2·v_n + (1 − γ2)·n², bias-corrected, the
   gradient is rescaled to g/n · m̂_n/(√v̂_n + ε).
3. Momentum reset (from SPAM): every ``reset_every`` steps the Adam moments are zeroed and
   their bias correction restarts.

Two deliberate departures from the reference code, both towards the paper's Algorithm 1:
the reset zeroes the moments *before* this step's update (the reference rebinds
``state["exp_avg"]`` after taking local references, so the reset step still uses the old
moments and its gradient is lost), and the norm statistics keep their own step count (the
reference restarts their bias correction at every reset too). The reference's optional
cosine decay of γ1 and β1 over ``total_T`` steps (off by default) is not implemented.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import ParameterwiseOptimizer


class StableSPAM(ParameterwiseOptimizer):
    """Stable-SPAM with the reference defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    weight_decay 0, gamma1 0.7, gamma2 0.9, theta (γ3) 0.999, reset_every 1000."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, gamma1: float = 0.7,
                 gamma2: float = 0.9, theta: float = 0.999, reset_every: int = 1000):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "gamma1": gamma1,
                                  "gamma2": gamma2, "theta": theta, "reset_every": reset_every})

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        gamma1, gamma2, theta, eps = group["gamma1"], group["gamma2"], group["theta"], group["eps"]
        state = self.state[p]
        if not state:
            state.update(t=0, step=0, max_ema=0.0, norm_ema=0.0, norm_sq_ema=0.0,
                         exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["t"] += 1
        t = state["t"]
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        grad = p.grad.clone()
        # 1. spike clipping against the bias-corrected EMA of max|g|
        peak = grad.abs().max().item()
        state["max_ema"] = theta * state["max_ema"] + (1 - theta) * peak
        limit = state["max_ema"] / (1 - theta ** t)
        spikes = grad.abs() > limit
        if bool(spikes.any()):
            grad[spikes] = grad[spikes] / peak * limit
        # 2. normalise the norm to its bias-corrected first/second-moment ratio
        norm = grad.norm().item()
        state["norm_ema"] = gamma1 * state["norm_ema"] + (1 - gamma1) * norm
        state["norm_sq_ema"] = gamma2 * state["norm_sq_ema"] + (1 - gamma2) * norm ** 2
        m_hat = state["norm_ema"] / (1 - gamma1 ** t)
        v_hat = state["norm_sq_ema"] / (1 - gamma2 ** t)
        if norm > 0:
            grad.mul_(m_hat / (v_hat ** 0.5 + eps) / norm)
        # 3. momentum reset, then Adam
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if group["reset_every"] and t % group["reset_every"] == 0:
            m.zero_()
            v.zero_()
            state["step"] = 0
        state["step"] += 1
        bc1, bc2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v.sqrt() / bc2 ** 0.5).add_(eps)
        p.addcdiv_(m, denom, value=-group["lr"] / bc1)
