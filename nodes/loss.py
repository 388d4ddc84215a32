"""Loss kinds: ``loss.cross_entropy`` and ``loss.mse``, stored as recipes (JSON, not code).

A `Loss` artifact is ``{"builder": name, **config}``; the builders below turn it into
``fn(outputs, targets) -> scalar tensor``.
"""
from __future__ import annotations

import functools
from typing import Annotated, Any, Callable

from pydantic import Field

from flowopt.artifacts import Loss, register_builder
from flowopt.registry import node


def _cross_entropy(logits: Any, targets: Any, *, label_smoothing: float, z_loss: float) -> Any:
    import torch.nn.functional as F

    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    if z_loss:
        loss = loss + z_loss * logits.logsumexp(dim=-1).square().mean()
    return loss


def _mse(outputs: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    if outputs.dim() == targets.dim() + 1 and outputs.shape[-1] == 1:
        outputs = outputs.squeeze(-1)  # a one-output regression model gives (batch, 1)
    return F.mse_loss(outputs, targets.to(outputs.dtype))


@register_builder("cross_entropy")
def build_cross_entropy(label_smoothing: float = 0.0, z_loss: float = 0.0) -> Callable[..., Any]:
    return functools.partial(_cross_entropy, label_smoothing=label_smoothing, z_loss=z_loss)


@register_builder("mse")
def build_mse() -> Callable[..., Any]:
    return _mse


@node("loss.cross_entropy", deterministic=True)
def cross_entropy(label_smoothing: Annotated[float, Field(ge=0, le=1)] = 0.0,
                  z_loss: Annotated[float, Field(ge=0)] = 0.0) -> Loss:
    """Softmax cross-entropy over class logits (mean over the batch).

    Outputs: ``loss``. ``with:`` fields (defaults): ``label_smoothing`` (0.0; Szegedy et
    al. 2016, as in `torch.nn.functional.cross_entropy`), ``z_loss`` (0.0; adds
    z_loss · mean(logsumexp(logits)²), the auxiliary loss of PaLM, Chowdhery et al. 2022).
    """
    return Loss(recipe={"builder": "cross_entropy", "label_smoothing": label_smoothing,
                        "z_loss": z_loss})


@node("loss.mse", deterministic=True)
def mse() -> Loss:
    """Mean squared error for regression; a (batch, 1) output is compared with (batch,) targets.

    Outputs: ``loss``. No ``with:`` fields.
    """
    return Loss(recipe={"builder": "mse"})
