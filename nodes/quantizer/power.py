"""NUPES: non-uniform quantization by a power-exponent automorphism (Yvinec et al. 2023).

A weight is mapped by the power function ``x ↦ sign(x)·|x|^a`` (an automorphism of
(ℝ, ×): ``(xy)^a = x^a y^a``, which is what keeps integer-only inference possible),
quantized uniformly, and mapped back. Per output channel with magnitude ``t``:

    code  q = round(sign(w)·|w / t|^a · m),  m = 2^(b−1) − 1, |q| ≤ m
    value ŵ = t · sign(q)·(|q| / m)^(1/a)

so small weights get fine steps and large ones coarse steps — matched to bell-shaped
weight distributions, where a uniform grid wastes levels on the sparse tails. a = 1 is the
symmetric uniform grid.

Optimisation (the paper's two contributions, §3):
* the exponent ``a`` is learned by gradient descent (PowerQuant, the data-free
  predecessor, only searched it); it starts from a grid search over 0.25, 0.30, …, 1.00
  minimising the weight error;
* the weights are learned over the *entire* quantized space: a latent copy ``W̃`` may move
  any number of levels (not just round up or down, as AdaRound-style methods), with
  straight-through rounding.
Numerical stability (the paper's §3.2 concern): |x| is clamped away from 0 before the
power (the gradient of |x|^a in a is |x|^a·ln|x|), and a to [0.1, 1].

Modes: ``data_free`` minimises the weight reconstruction error ‖ŵ − W‖² (then W̃ = W:
there is no data to trade errors against), learning a and t; ``data_driven`` minimises
each layer's output error on the calibration set, learning a, t and W̃.
Optimiser settings are ours (the abstract gives none): Adam, `iters` steps of
`batch_size` rows, lr 1e-2 for a, and AdaQuant's relative rates for t and W̃.

Stored form: the codebook scheme of `artifact` — the per-tensor book
``sign(j)·(|j|/m)^(1/a)`` for ``j = code − m`` (computed in float64, rounded to float32)
and the per-channel float32 ``t``, so ŵ = book[code]·t exactly as decoded.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .artifact import Packer, quantizable_layers
from .calibration import RELATIVE_LR, _run, _spread
from .observers import record
from .rtn import param_name

EXPONENTS = [round(0.25 + 0.05 * i, 2) for i in range(16)]
EPS = 1e-6


def power_book(bits: int, exponent: float) -> np.ndarray:
    """The 2^bits float32 levels of code c: sign(j)·(|j|/m)^(1/a), j = c − m."""
    top = 2 ** (bits - 1) - 1
    j = np.arange(2 ** bits, dtype=np.float64) - top
    return (np.sign(j) * (np.abs(j) / top) ** (1.0 / exponent)).astype(np.float32)


def encode(weight: torch.Tensor, magnitude: torch.Tensor, exponent: float, bits: int) -> torch.Tensor:
    """Codes 0..2^bits−2 (uint8) of a (rows, values) weight, per-row magnitudes."""
    top = 2 ** (bits - 1) - 1
    u = (weight / magnitude[:, None]).clamp(-1, 1)
    q = torch.round(torch.sign(u) * u.abs().pow(exponent) * top)
    return (q + top).to(torch.uint8)


def decode(codes: torch.Tensor, magnitude: torch.Tensor, exponent: float, bits: int) -> torch.Tensor:
    """book[code] · magnitude in float32: exactly what the artifact decodes."""
    book = torch.from_numpy(power_book(bits, exponent))
    return book[codes.long()] * magnitude.to(torch.float32)[:, None]


def _differentiable(latent: torch.Tensor, magnitude: torch.Tensor, exponent: torch.Tensor,
                    bits: int) -> torch.Tensor:
    top = 2 ** (bits - 1) - 1
    a = exponent.clamp(0.1, 1.0)
    u = latent / magnitude[:, None]
    p = torch.sign(u) * u.abs().clamp(EPS, 1.0).pow(a) * top
    q = p + (torch.round(p) - p).detach()
    level = q.abs().clamp(EPS, top) / top
    return magnitude[:, None] * torch.sign(q) * level.pow(1.0 / a) * (q.detach() != 0)


def search_exponent(rows: torch.Tensor, bits: int) -> float:
    """The grid exponent with the least weight error (per-row max magnitudes)."""
    magnitude = rows.abs().amax(dim=1).clamp_min(1e-12)
    errors = [(decode(encode(rows, magnitude, a, bits), magnitude, a, bits) - rows).square().sum()
              for a in EXPONENTS]
    return EXPONENTS[int(torch.stack(errors).argmin())]


def fit_layer(layer: nn.Module, bits: int, *, x: torch.Tensor | None, y: torch.Tensor | None,
              iters: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Codes, magnitudes and exponent for one layer; data-driven when `x` is given."""
    weight = layer.weight.detach()
    rows = weight.reshape(weight.shape[0], -1)
    start = search_exponent(rows, bits)
    exponent = torch.tensor(start, requires_grad=True)
    magnitude = rows.abs().amax(dim=1).clamp_min(1e-12).clone().requires_grad_(True)
    latent = rows.clone().requires_grad_(x is not None)
    groups = [{"params": [exponent], "lr": 1e-2},
              {"params": [magnitude], "lr": RELATIVE_LR["scale"] * _spread(magnitude.mean())}]
    if x is not None:
        groups.append({"params": [latent], "lr": RELATIVE_LR["weight"] * _spread(weight.std())})
    optimizer = torch.optim.Adam(groups)
    for _ in range(iters):
        quantized = _differentiable(latent, magnitude.abs().clamp_min(1e-12), exponent, bits)
        if x is None:
            loss = F.mse_loss(quantized, rows)
        else:
            pick = torch.randperm(x.shape[0], generator=generator)[:batch_size]
            out = _run(layer, x[pick], quantized.reshape(weight.shape), layer.bias)
            loss = F.mse_loss(out, y[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        a = float(np.float32(exponent.clamp(0.1, 1.0)))
        t = magnitude.abs().clamp_min(1e-12).to(torch.float32)
        codes = encode(latent.detach(), t, a, bits)
    return codes.reshape(weight.shape), t.detach().clone(), a


def quantize_model(model: Any, calibration: Any, *, bits: int, iters: int, batch_size: int,
                   generator: torch.Generator) -> Any:
    """NUPES on every Linear/Conv weight: data-driven when a calibration set is given."""
    module = model.module
    names = [name for name, _ in quantizable_layers(module)]
    inputs = outputs = {}
    if calibration is not None:
        inputs = record(module, calibration.x, names)
        outputs = record(module, calibration.x, names, outputs=True)
    packer = Packer(model)
    exponents = {}
    for name, layer in quantizable_layers(module):
        codes, magnitude, exponent = fit_layer(layer, bits, x=inputs.get(name), y=outputs.get(name),
                                               iters=iters, batch_size=batch_size,
                                               generator=generator)
        exponents[name] = exponent
        packer.codebook(param_name(name, "weight"), codes.numpy(), magnitude.numpy(),
                        f"codebook.power.{param_name(name, 'weight')}", power_book(bits, exponent),
                        bits, list(codes.shape))
    mode = "data_driven" if calibration is not None else "data_free"
    return packer.finish("nupes", bits=bits, mode=mode, exponents=exponents)
