"""`Lion` (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), a torch optimizer.

Per parameter, with momentum m (the only state):

    c = β1·m + (1 − β1)·g
    θ ← θ − lr·(sign(c) + λ·θ)            (decoupled weight decay, scaled by lr)
    m ← β2·m + (1 − β2)·g

On the CPU a float32 contiguous parameter is updated by the fused numba kernel
`flowopt.nodes.optimizer.kernels.lion_step` (one pass over θ, g, m; no temporaries); any
other tensor (CUDA, other dtypes) takes the torch path below, which is also the
reference the kernel is tested against. sign(0) = 0 in both. With weight decay λ, the
iterates settle inside the box ‖θ‖∞ ≤ 1/λ (Chen, Liu et al. 2023, "Lion Secretly Solves
Constrained Optimization"): tested in tests/test_nodes_optimizers.py.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import ParameterwiseOptimizer
from .eightbit import cpu_kernels


class Lion(ParameterwiseOptimizer):
    """Lion; defaults from the paper: betas (0.9, 0.99), lr 1e-4 (3–10× below AdamW's)."""

    def __init__(self, params: Any, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, use_kernel: bool = True):
        if lr <= 0 or not all(0 <= b < 1 for b in betas) or weight_decay < 0:
            raise ValueError(f"Lion: bad lr={lr}, betas={betas} or weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})
        self.use_kernel = use_kernel

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        kernels = cpu_kernels() if self.use_kernel else None
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        m = state["exp_avg"]
        if kernels is not None and _kernel_ok(p):
            kernels.lion_step(p.detach().view(-1).numpy(),
                              p.grad.contiguous().view(-1).numpy(),
                              m.view(-1).numpy(), lr=lr, beta1=beta1, beta2=beta2,
                              weight_decay=wd)
        else:
            lion_update(p, p.grad, m, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd)


def lion_update(p: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, *, lr: float,
                beta1: float, beta2: float, weight_decay: float) -> None:
    """One Lion step in torch, in place on `p` and `m`."""
    direction = (m * beta1).add_(grad, alpha=1 - beta1).sign_()
    if weight_decay:
        p.mul_(1 - lr * weight_decay)
    p.add_(direction, alpha=-lr)
    m.mul_(beta2).add_(grad, alpha=1 - beta2)


def _kernel_ok(p: torch.Tensor) -> bool:
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()
