"""`ParameterwiseOptimizer`: the step loop shared by the optimizers that update each
parameter on its own (all of flowopt's). Subclasses write only `update`."""
from __future__ import annotations

from typing import Any

import torch


class ParameterwiseOptimizer(torch.optim.Optimizer):
    """`step` evaluates the closure (gradients enabled), then calls `update(p, group)` for
    every parameter that has a gradient, under `torch.no_grad`."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
        return loss

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Update `p` in place from `p.grad`, with the hyperparameters of its `group`."""
        raise NotImplementedError
