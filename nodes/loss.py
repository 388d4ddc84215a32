"""Loss kinds, stored as recipes (JSON, not code).

A `Loss` artifact is ``{"builder": name, **config}``; the builders below turn it into
``fn(outputs, targets) -> scalar tensor`` (mean over the batch). Torch is imported inside
the functions, so importing the kinds stays light.

Every builder also declares the task it is for (`LOSS_TASKS`: classification losses take
class logits and integer targets, regression losses a value per row). The training loop
calls `check_task` before step 1, so a regression loss wired to a classifier fails with a
clear message instead of broadcasting shapes into a meaningless number. Where the task is
known statically (every built-in dataset but ``data.csv`` with ``task: auto``, which
infers it from the file) the compiler refuses the mismatch before anything runs
(`flowopt.nodes.facts`); `check_task` is the run-time backstop. Plugins add their builders
to `LOSS_TASKS`.
"""
from __future__ import annotations

import functools
from typing import Annotated, Any, Callable

from pydantic import Field

from flowopt.artifacts import Dataset, Loss, Model, register_builder
from flowopt.registry import node

from . import facts

LOSS_TASKS: dict[str, str] = {"cross_entropy": "classification", "spherical_z": "classification",
                              "stablemax": "classification", "focal": "classification",
                              "mse": "regression"}


def check_task(who: str, loss: Loss, model: Model, *datasets: Dataset | None) -> None:
    """Raise ValueError if the loss's task differs from the model's or a dataset's task."""
    builder = loss.recipe.get("builder")
    task = LOSS_TASKS.get(builder)
    if task is None:
        return  # a plugin's loss that declares no task: nothing to check against
    sources = [("model", model.meta.get("task"))]
    sources += [("dataset", d.meta.get("task")) for d in datasets if d is not None]
    for what, other in sources:
        if other is not None and other != task:
            raise ValueError(f"{who}: loss '{builder}' is a {task} loss, but the {what} is for "
                             f"{other} (use loss.mse for regression, loss.cross_entropy or "
                             "another classification loss for classifiers)")


# --- functions -------------------------------------------------------------------------

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


def _spherical_z(outputs: Any, targets: Any, *, a: float, b: float) -> Any:
    import torch.nn.functional as F

    mean = outputs.mean(dim=-1, keepdim=True)
    # Population standard deviation, σ = sqrt(S2/D − μ²) as in the paper; the clamp keeps
    # a constant output row (σ = 0) finite.
    std = (outputs - mean).square().mean(dim=-1, keepdim=True).clamp_min(1e-12).sqrt()
    z_target = ((outputs - mean) / std).gather(-1, targets[:, None]).squeeze(-1)
    return (F.softplus(a * (b - z_target)) / a).mean()


def log_stablemax(x: Any) -> Any:
    """log of StableMax over the last dim: s(x) = x + 1 (x ≥ 0), 1/(1 − x) (x < 0), normalised.

    log s is computed as log1p(x) or −log1p(−x), exact for small |x| and finite for any
    finite float32 input (s grows linearly, so the sum overflows only near 3e38).
    """
    import torch

    log_s = torch.where(x >= 0, torch.log1p(x.clamp_min(0)), -torch.log1p(-x.clamp_max(0)))
    return log_s - log_s.logsumexp(dim=-1, keepdim=True)


def _stablemax(logits: Any, targets: Any) -> Any:
    return -log_stablemax(logits).gather(-1, targets[:, None]).mean()


def _focal(logits: Any, targets: Any, *, gamma: float, alpha: list[float] | None) -> Any:
    import torch

    log_p = logits.log_softmax(dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha is not None:
        if len(alpha) != logits.shape[-1]:
            raise ValueError(f"loss.focal: alpha has {len(alpha)} weights, the model "
                             f"{logits.shape[-1]} classes")
        loss = loss * torch.tensor(alpha, dtype=loss.dtype, device=loss.device)[targets]
    return loss.mean()


# --- builders (recipe name -> function) ---------------------------------------------------

@register_builder("cross_entropy")
def build_cross_entropy(label_smoothing: float = 0.0, z_loss: float = 0.0) -> Callable[..., Any]:
    return functools.partial(_cross_entropy, label_smoothing=label_smoothing, z_loss=z_loss)


@register_builder("mse")
def build_mse() -> Callable[..., Any]:
    return _mse


@register_builder("spherical_z")
def build_spherical_z(a: float = 1.0, b: float = 3.0) -> Callable[..., Any]:
    return functools.partial(_spherical_z, a=a, b=b)


@register_builder("stablemax")
def build_stablemax() -> Callable[..., Any]:
    return _stablemax


@register_builder("focal")
def build_focal(gamma: float = 2.0, alpha: list[float] | None = None) -> Callable[..., Any]:
    return functools.partial(_focal, gamma=gamma, alpha=alpha)


# --- kinds -------------------------------------------------------------------------------

Positive = Annotated[float, Field(gt=0)]


@node("loss.cross_entropy", deterministic=True, describe=facts.loss("classification"))
def cross_entropy(label_smoothing: Annotated[float, Field(ge=0, le=1)] = 0.0,
                  z_loss: Annotated[float, Field(ge=0)] = 0.0) -> Loss:
    """Softmax cross-entropy over class logits (mean over the batch).

    Outputs: ``loss``. ``with:`` fields (defaults): ``label_smoothing`` (0.0; Szegedy et
    al. 2016, as in `torch.nn.functional.cross_entropy`), ``z_loss`` (0.0; adds
    z_loss · mean(logsumexp(logits)²), the auxiliary loss of PaLM, Chowdhery et al. 2022,
    studied in "Small-scale proxies for large-scale Transformer training instabilities",
    Wortsman et al. 2023, who use 1e-4).
    """
    return Loss(recipe={"builder": "cross_entropy", "label_smoothing": label_smoothing,
                        "z_loss": z_loss})


@node("loss.mse", deterministic=True, describe=facts.loss("regression"))
def mse() -> Loss:
    """Mean squared error for regression; a (batch, 1) output is compared with (batch,) targets.

    Outputs: ``loss``. No ``with:`` fields.
    """
    return Loss(recipe={"builder": "mse"})


@node("loss.spherical_z", deterministic=True, describe=facts.loss("classification"))
def spherical_z(a: Positive = 1.0, b: float = 3.0) -> Loss:
    """The Z-loss of de Brébisson & Vincent 2016, a shift- and scale-invariant spherical loss.

    With μ and σ the mean and (population) standard deviation of a row of logits and
    z_c = (o_c − μ)/σ the standardised logit of the true class, the loss is
    softplus(a·(b − z_c))/a, averaged over the batch. Adding a constant to, or multiplying
    by a positive constant, every logit of a row leaves it unchanged.

    Outputs: ``loss``. ``with:`` fields (defaults): ``a`` (1.0, the sharpness) and ``b``
    (3.0, where the hinge sits). The paper gives no universal values (it tunes both per
    task); z_c can be at most √(D − 1), which is 3 for the 10 digit classes, so b = 3 keeps
    pushing until the true class stands alone.
    """
    return Loss(recipe={"builder": "spherical_z", "a": a, "b": b})


@node("loss.stablemax", deterministic=True, describe=facts.loss("classification"))
def stablemax() -> Loss:
    """Cross-entropy on StableMax instead of softmax (Prieto et al. 2025, "Grokking at the
    Edge of Numerical Stability").

    StableMax(x)_i = s(x_i)/Σ_j s(x_j) with s(x) = x + 1 for x ≥ 0 and 1/(1 − x) for x < 0
    (continuous, with a continuous first derivative at 0). s grows linearly instead of
    exponentially, so the true class's probability does not round to exactly 1 in float32
    once its logit leads by a few tens — the "Softmax Collapse" that zeroes softmax's loss
    and gradient and stops learning. The reference code casts to float64; this one stays in
    the input's dtype and uses log1p, which is already stable (see `log_stablemax`).

    Outputs: ``loss``. No ``with:`` fields.
    """
    return Loss(recipe={"builder": "stablemax"})


@node("loss.focal", deterministic=True, describe=facts.loss("classification"))
def focal(gamma: Annotated[float, Field(ge=0)] = 2.0,
          alpha: list[Annotated[float, Field(ge=0)]] | None = None) -> Loss:
    """Focal loss (Lin et al. 2017): −α_t (1 − p_t)^γ log p_t on softmax probabilities.

    Down-weights examples the model already gets right, so training concentrates on the
    hard ones; γ = 0 and no α is plain cross-entropy.

    Outputs: ``loss``. ``with:`` fields (defaults): ``gamma`` (2.0, the paper's best value),
    ``alpha`` (none: no class weighting; else one weight per class, e.g. the paper's
    binary α = 0.25 for the rare class is ``[0.75, 0.25]``; the length is checked against
    the model's outputs on the first batch).
    """
    return Loss(recipe={"builder": "focal", "gamma": gamma,
                        "alpha": list(alpha) if alpha is not None else None})
