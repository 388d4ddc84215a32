"""Uniform round-to-nearest quantization: grids, range setting (clipping) and rounding.

Everything works on a 2-d float32 view ``(rows, values)``: one grid per row (per output
channel) or, with a single row, per tensor. Codes are unsigned: an asymmetric grid has
codes 0..2^b−1 and an integer zero-point; a symmetric grid has the fixed zero-point
2^(b−1) and codes 1..2^b−1, i.e. the signed integers −(2^(b−1)−1)..2^(b−1)−1 (the
"restricted" range that keeps the grid symmetric, as in Nagel et al. 2021, §2.2).

Range setting (``clipping``), as reviewed in Nagel et al. 2021 (A White Paper on Neural
Network Quantization, §3.4):
* ``minmax`` — the full range of the values (always including 0);
* ``percentile`` — the p-th percentile of the values (of |values| when symmetric);
  p = 99.99 by default, the default of NVIDIA's pytorch-quantization histogram calibrator;
* ``mse`` — the range α·(min-max range) minimising the squared rounding error, α searched
  over the grid 0.01, 0.02, …, 1.00 (100 candidates) per row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from flowopt.artifacts import Dataset, Model, QuantizedModel

Clipping = Literal["minmax", "percentile", "mse"]
MSE_GRID = 100
DEFAULT_PERCENTILE = 99.99


@dataclass(frozen=True)
class Grid:
    """One uniform grid per row: ``w ≈ (code − zero_point) · scale``."""

    bits: int
    symmetric: bool
    scale: torch.Tensor  # (rows,) float32
    zero_point: torch.Tensor  # (rows,) float32 holding integers

    @property
    def code_range(self) -> tuple[int, int]:
        return (1, 2 ** self.bits - 1) if self.symmetric else (0, 2 ** self.bits - 1)

    def quantize(self, rows: torch.Tensor) -> torch.Tensor:
        """Nearest codes (float tensor of integers) of a ``(rows, values)`` tensor."""
        low, high = self.code_range
        scaled = rows / self.scale[:, None] + self.zero_point[:, None]
        return torch.clamp(torch.round(scaled), low, high)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.zero_point[:, None]) * self.scale[:, None]


def grid_for_range(low: torch.Tensor, high: torch.Tensor, bits: int, symmetric: bool) -> Grid:
    """The grid covering [low, high] per row (extended to contain 0; empty ranges get scale 1)."""
    low, high = torch.minimum(low, torch.zeros_like(low)), torch.maximum(high, torch.zeros_like(high))
    if symmetric:
        magnitude = torch.maximum(-low, high)
        scale = magnitude / (2 ** (bits - 1) - 1)
        zero = torch.full_like(scale, float(2 ** (bits - 1)))
    else:
        scale = (high - low) / (2 ** bits - 1)
        zero = torch.zeros_like(scale)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.float32)
    if not symmetric:
        zero = torch.clamp(torch.round(-low / scale), 0, 2 ** bits - 1)
    return Grid(bits, symmetric, scale, zero.to(torch.float32))


def fit_grid(rows: torch.Tensor, bits: int, symmetric: bool, clipping: Clipping = "minmax",
             percentile: float = DEFAULT_PERCENTILE) -> Grid:
    """Choose a grid per row of `rows` by the `clipping` rule (module docstring)."""
    rows = rows.detach().to(torch.float32)
    low, high = rows.min(dim=1).values, rows.max(dim=1).values
    if clipping == "percentile":
        q = percentile / 100.0
        if symmetric:
            high = torch.quantile(rows.abs(), q, dim=1)
            low = -high
        else:
            low, high = torch.quantile(rows, 1 - q, dim=1), torch.quantile(rows, q, dim=1)
    grid = grid_for_range(low, high, bits, symmetric)
    if clipping != "mse":
        return grid
    best_error = torch.full_like(grid.scale, float("inf"))
    best_low, best_high = low.clone(), high.clone()
    for step in range(1, MSE_GRID + 1):
        alpha = step / MSE_GRID
        candidate = grid_for_range(alpha * low, alpha * high, bits, symmetric)
        error = (candidate.dequantize(candidate.quantize(rows)) - rows).square().sum(dim=1)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_low = torch.where(better, alpha * low, best_low)
        best_high = torch.where(better, alpha * high, best_high)
    return grid_for_range(best_low, best_high, bits, symmetric)


def as_rows(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """``(out_channels, rest)`` for per-channel grids, ``(1, all)`` for one grid per tensor."""
    return weight.reshape(weight.shape[0], -1) if per_channel else weight.reshape(1, -1)


def quantize_model(model: Model, calibration: Dataset | None, *, bits: int, symmetric: bool,
                   per_channel: bool, clipping: Clipping, percentile: float,
                   activation_bits: int | None, activation_clipping: Clipping) -> QuantizedModel:
    """Round every Linear/Conv weight to its grid; calibrate input grids if asked."""
    from .artifact import Packer, quantizable_layers
    from .observers import calibrate_inputs

    packer = Packer(model)
    names = []
    for name, layer in quantizable_layers(model.module):
        names.append(name)
        weight = layer.weight.detach()
        rows = as_rows(weight, per_channel)
        grid = fit_grid(rows, bits, symmetric, clipping, percentile)
        packer.uniform(param_name(name, "weight"), grid.quantize(rows).to(torch.uint8).numpy(),
                       grid.scale.numpy(), None if symmetric else grid.zero_point.numpy(),
                       bits, list(weight.shape))
    if activation_bits is not None:
        if calibration is None:
            raise ValueError("quantizer.uniform: activation_bits needs a calibration dataset "
                             "(bind in: {calibration: ...})")
        grids = calibrate_inputs(model.module, calibration.x, names, activation_bits,
                                 activation_clipping, percentile)
        for name, grid in grids.items():
            packer.input_quantizer(name, activation_bits, float(grid.scale[0]),
                                   int(grid.zero_point[0]))
    return packer.finish("uniform", bits=bits)


def param_name(layer: str, parameter: str) -> str:
    """State-dict key of a layer's parameter (a bare module's own layer name is "")."""
    return f"{layer}.{parameter}" if layer else parameter
