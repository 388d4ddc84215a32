"""Layer-wise calibration (AdaQuant) and bias correction, after Hubara et al. 2021,
"Improving Post Training Neural Quantization: Layer-wise Calibration and Integer Programming".

AdaQuant fits each Linear/Conv layer on its own: it minimises the layer's output error
``‖layer(X) − layer_q(X_q)‖²`` over the calibration set, jointly in a weight perturbation V
(``W_q = Q(W + V)``: the rounding may move anywhere, not only up or down), the weight
scales, the bias and — when activations are quantized — the input grid's scale and
zero-point. Rounding passes gradients straight through; the scales get LSQ's gradient
(what autograd gives ``round_ste(w / s) · s``). Adam, 100 iterations of 50 rows, as the
paper's code (CalibTIP, ``utils/adaquant.py``). Its learning rates (1e-5 weights, 1e-3
bias, 1e-3 weight range, 1e-1 input range) are absolute values tuned for ImageNet
magnitudes; the same code carries, commented out, the scale-free form "factor × the
quantity's spread", which we use so that small models get the same *relative* steps:
``RELATIVE_LR`` holds the ImageNet constants divided by typical ImageNet spreads
(weights: lr/std(W) ≈ 1e-5/0.02; weight range: 1e-3/0.5; bias: 1e-3/0.1; input range:
1e-1/10), each multiplied here by this layer's own spread.

* parallel mode fits every layer on the float model's inputs (independent fits: what the
  integer program needs, one fit per layer and bit width);
* sequential mode (the paper's better variant) feeds each layer what the already-quantized
  layers before it produce, so later layers correct earlier errors.

Weights use a symmetric grid per output channel (or per tensor), starting from the
MSE-optimal range; its integer zero-point makes the artifact's codes mean exactly what
was fitted. Input grids are asymmetric per tensor.

Bias correction ("model global statistics tuning", §5 of the paper, for networks without
batch norm): layer by layer, the mean of each output channel of the quantized network on
the calibration set is pulled back to the float network's, by subtracting the difference
from the bias (as CalibTIP's ``correct_bias.py`` does).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .artifact import Packer, fake_quantize, quantizable_layers
from .observers import activation_grid, record
from .rtn import as_rows, fit_grid, param_name

RELATIVE_LR = {"weight": 5e-4, "scale": 2e-3, "bias": 1e-2, "input": 1e-2}


@dataclass(frozen=True)
class Fitted:
    """One layer quantized at `bits`: codes on a symmetric per-channel grid, bias, input grid."""

    layer: str
    bits: int
    codes: torch.Tensor  # uint8, weight shape
    scale: torch.Tensor  # (out_channels,) float32
    bias: torch.Tensor | None
    input_bits: int | None = None
    input_scale: float = 1.0
    input_zero: int = 0

    @property
    def weight(self) -> torch.Tensor:
        """Exactly what the artifact decodes: (code − 2^(bits−1)) · scale, float32."""
        rows = self.codes.reshape(self.scale.numel(), -1).float() - float(2 ** (self.bits - 1))
        return (rows * self.scale[:, None]).reshape(self.codes.shape)


def _spread(value: torch.Tensor) -> float:
    value = float(value.detach())
    return value if value > 0 and value == value else 1e-3  # a constant or 1-element tensor


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _run(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor,
         bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return layer._conv_forward(x, weight, bias)


def fit_layer(name: str, layer: nn.Module, x: torch.Tensor, y: torch.Tensor, bits: int, *,
              input_bits: int | None, iters: int, batch_size: int, per_channel: bool = True,
              generator: torch.Generator, lr: dict[str, float] = RELATIVE_LR) -> Fitted:
    """AdaQuant on one layer: inputs `x` (float or quantized upstream), float outputs `y`."""
    weight = layer.weight.detach()
    grid = fit_grid(as_rows(weight, per_channel), bits, symmetric=True, clipping="mse")
    top = 2 ** (bits - 1) - 1
    view = (grid.scale.numel(),) + (1,) * (weight.dim() - 1)
    perturbation = torch.zeros_like(weight, requires_grad=True)
    scale = grid.scale.clone().requires_grad_(True)
    bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    # Spreads in each parameter's own units (scales: range / levels; zero-point: codes).
    groups = [{"params": [perturbation], "lr": lr["weight"] * _spread(weight.std())},
              {"params": [scale], "lr": lr["scale"] * _spread(grid.scale.mean())}]
    if bias is not None:
        groups.append({"params": [bias], "lr": lr["bias"] * _spread(bias.detach().std())})
    in_scale = in_zero = None
    if input_bits is not None:
        start = activation_grid(x, input_bits, "mse")
        in_scale = start.scale.reshape(()).clone().requires_grad_(True)
        in_zero = start.zero_point.reshape(()).clone().requires_grad_(True)
        groups += [{"params": [in_scale], "lr": lr["input"] * _spread(start.scale)},
                   {"params": [in_zero], "lr": lr["input"] * (2 ** input_bits - 1)}]
    optimizer = torch.optim.Adam(groups)

    def quantized_weight() -> torch.Tensor:
        s = scale.abs().clamp_min(1e-12).reshape(view)
        return torch.clamp(_round_ste((weight + perturbation) / s), -top, top) * s

    def quantized_input(batch: torch.Tensor) -> torch.Tensor:
        if input_bits is None:
            return batch
        s, z = in_scale.abs().clamp_min(1e-12), _round_ste(in_zero)
        codes = torch.clamp(_round_ste(batch / s) + z, 0, 2 ** input_bits - 1)
        return (codes - z) * s

    rows = x.shape[0]
    for _ in range(iters):
        pick = torch.randperm(rows, generator=generator)[:batch_size]
        loss = F.mse_loss(_run(layer, quantized_input(x[pick]), quantized_weight(), bias), y[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final_scale = scale.abs().clamp_min(1e-12).to(torch.float32)
        codes = torch.clamp(torch.round((weight + perturbation) / final_scale.reshape(view)),
                            -top, top) + 2 ** (bits - 1)
        fitted = Fitted(name, bits, codes.to(torch.uint8), final_scale.clone(),
                        None if bias is None else bias.detach().clone())
        if input_bits is not None:
            fitted = replace(fitted, input_bits=input_bits,
                             input_scale=float(in_scale.abs().clamp_min(1e-12)),
                             input_zero=int(torch.clamp(torch.round(in_zero), 0,
                                                        2 ** input_bits - 1)))
    return fitted


def apply(module: nn.Module, fits: dict[str, Fitted]) -> nn.Module:
    """A copy of `module` running the fitted layers (for measuring; the artifact uses `pack`)."""
    module = copy.deepcopy(module).eval()
    layers = dict(module.named_modules())
    with torch.no_grad():
        for name, fit in fits.items():
            layer = layers[name]
            layer.weight.copy_(fit.weight)
            if fit.bias is not None:
                layer.bias.copy_(fit.bias)
            if fit.input_bits is not None:
                layer.register_forward_pre_hook(_InputHook(fit))
    return module


class _InputHook:
    def __init__(self, fit: Fitted):
        self.bits, self.zero = fit.input_bits, fit.input_zero
        self.scale = torch.tensor(fit.input_scale, dtype=torch.float32)

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (fake_quantize(args[0], self.scale, self.zero, self.bits), *args[1:])


def fit_model(module: nn.Module, x: torch.Tensor, bits: dict[str, int], *,
              input_bits: int | None, sequential: bool, iters: int, batch_size: int,
              per_channel: bool,
              generator: torch.Generator, progress: Any = None) -> dict[str, Fitted]:
    """AdaQuant every quantizable layer at its `bits` (parallel or sequential)."""
    layers = dict(quantizable_layers(module))
    names = list(layers)
    float_inputs = record(module, x, names)
    float_outputs = record(module, x, names, outputs=True)
    fits: dict[str, Fitted] = {}
    for index, name in enumerate(names):
        inputs = float_inputs[name]
        if sequential and fits:
            inputs = record(apply(module, fits), x, [name])[name]
        fits[name] = fit_layer(name, layers[name], inputs, float_outputs[name], bits[name],
                               input_bits=input_bits, iters=iters, batch_size=batch_size,
                               per_channel=per_channel, generator=generator)
        if progress is not None:
            progress(index + 1, len(names))
    return fits


def correct_biases(module: nn.Module, x: torch.Tensor, fits: dict[str, Fitted]) -> dict[str, Fitted]:
    """Shift each layer's bias so its output channels' means on `x` match the float model's."""
    float_outputs = record(module, x, list(fits), outputs=True)
    corrected = dict(fits)
    for name, fit in fits.items():
        if fit.bias is None:
            continue
        seen = record(apply(module, corrected), x, [name], outputs=True)[name]
        dims = [d for d in range(seen.dim()) if d != 1]
        shift = (seen - float_outputs[name]).mean(dim=dims)
        corrected[name] = replace(fit, bias=(fit.bias - shift).to(torch.float32))
    return corrected


def pack(model: Any, fits: dict[str, Fitted], **meta: Any) -> Any:
    """The `QuantizedModel` of the fitted layers (uniform symmetric codes, float biases)."""
    packer = Packer(model)
    for name, fit in fits.items():
        packer.uniform(param_name(name, "weight"), fit.codes.numpy(), fit.scale.numpy(), None,
                       fit.bits, list(fit.codes.shape))
        if fit.bias is not None:
            packer.float(param_name(name, "bias"), fit.bias)
        if fit.input_bits is not None:
            packer.input_quantizer(name, fit.input_bits, fit.input_scale, fit.input_zero)
    return packer.finish("layerwise", **meta)


def task_loss(module: nn.Module, data: Any) -> float:
    """The network's loss on `data`: cross-entropy for classification, else squared error."""
    with torch.no_grad():
        out = module(data.x)
        if data.meta.get("task") == "classification":
            return float(F.cross_entropy(out, data.y))
        return float(F.mse_loss(out.reshape(data.y.shape), data.y))


def quantize_model(model: Any, calibration: Any, *, bits: int, choices: list[int],
                   budget: float | None, input_bits: int | None, sequential: bool,
                   per_channel: bool,
                   bias_correction: bool, iters: int, batch_size: int,
                   generator: torch.Generator, progress: Any = None) -> Any:
    """AdaQuant at fixed `bits`, or at the widths the integer program picks under `budget`.

    For the program, every layer is fitted at every candidate width in parallel mode and
    its degradation ΔL_{l,b} measured as the paper's code does: the calibration loss with
    only that layer at b bits and the others at the widest candidate (its "base
    precision"), minus the loss with all at the base, floored at 1e-6.
    """
    from .allocation import allocate

    module, x = model.module, calibration.x
    layers = dict(quantizable_layers(module))
    names = list(layers)
    options = dict(input_bits=input_bits, iters=iters, batch_size=batch_size,
                   per_channel=per_channel, generator=generator)
    meta: dict[str, Any] = {}
    if budget is None:
        widths = {name: bits for name in names}
    else:
        candidates = {b: fit_model(module, x, {n: b for n in names}, sequential=False, **options)
                      for b in choices}
        base = candidates[max(choices)]
        base_loss = task_loss(apply(module, base), calibration)
        costs = [[max(task_loss(apply(module, {**base, name: candidates[b][name]}), calibration)
                      - base_loss, 1e-6) for b in choices] for name in names]
        sizes = [layers[name].weight.numel() for name in names]
        widths = dict(zip(names, allocate(sizes, choices, torch.tensor(costs).numpy(), budget),
                          strict=True))
        meta["degradation"] = {name: dict(zip(map(str, choices), row, strict=True))
                               for name, row in zip(names, costs, strict=True)}
        if not sequential:
            fits = {name: candidates[widths[name]][name] for name in names}
    if budget is None or sequential:
        fits = fit_model(module, x, widths, sequential=sequential, progress=progress, **options)
    if bias_correction:
        fits = correct_biases(module, x, fits)
    return pack(model, fits, allocation=widths, **meta)
