"""Calibration observers: what each quantized layer sees, and activation grids fitted to it.

Observers run the *float* model on the calibration set with forward hooks and record each
Linear/Conv layer's input (and output): the standard post-training recipe, where the
activation ranges come from a small unlabelled calibration set (Nagel et al. 2021, §3.4;
Hubara et al. 2021, §1). An activation grid is asymmetric and per tensor (activations
after a ReLU are one-sided; one grid per tensor keeps integer-only matmuls possible).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flowopt.artifacts import Dataset, Model

from .rtn import DEFAULT_PERCENTILE, Clipping, Grid, fit_grid

MAX_OBSERVED_VALUES = 1 << 22  # a range search over more values than this subsamples them


def check_calibration(model: Model, data: Dataset | None, kind: str) -> None:
    """Raise one clear line when `data`'s rows do not fit the model's input."""
    if data is None:
        return
    if len(data) == 0:
        raise ValueError(f"{kind}: the calibration dataset is empty")
    expected = model.recipe.get("n_inputs")
    got = tuple(data.x.shape[1:])
    if expected is not None and got != (int(expected),):
        raise ValueError(f"{kind}: the calibration dataset has rows of shape {list(got)}, but the "
                         f"model takes {expected} input features")
    if expected is None:
        try:
            with torch.no_grad():
                model.module.eval()(data.x[:1])
        except RuntimeError as exc:
            raise ValueError(f"{kind}: the calibration dataset (rows of shape {list(got)}) does "
                             f"not fit the model's input: {exc}") from None


def record(module: nn.Module, x: torch.Tensor, names: list[str],
           outputs: bool = False) -> dict[str, torch.Tensor]:
    """Each named layer's input (or output) on `x`, from one no-grad forward pass."""
    layers = dict(module.named_modules())
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def capture(layer: nn.Module, args: tuple, result: Any) -> None:
            seen[name] = (result if outputs else args[0]).detach()
        return capture

    handles = [layers[name].register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def activation_grid(values: torch.Tensor, bits: int, clipping: Clipping,
                    percentile: float = DEFAULT_PERCENTILE, seed: int = 0) -> Grid:
    """One asymmetric grid for all of `values` (subsampled above `MAX_OBSERVED_VALUES`)."""
    flat = values.reshape(1, -1).to(torch.float32)
    if flat.shape[1] > MAX_OBSERVED_VALUES and clipping != "minmax":
        keep = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(seed))
        flat = flat[:, keep[:MAX_OBSERVED_VALUES]]
    return fit_grid(flat, bits, symmetric=False, clipping=clipping, percentile=percentile)


def calibrate_inputs(module: nn.Module, x: torch.Tensor, names: list[str], bits: int,
                     clipping: Clipping, percentile: float = DEFAULT_PERCENTILE) -> dict[str, Grid]:
    """An input grid for each named layer, fitted to what it sees on the calibration set."""
    inputs = record(module, x, names)
    return {name: activation_grid(inputs[name], bits, clipping, percentile) for name in names}
