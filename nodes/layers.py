"""Torch building blocks for the model kinds (imported lazily: this module imports torch).

Nothing here touches torch's global RNG, because nodes run concurrently in threads and
global state would make results depend on scheduling: weights are initialised from an
explicit generator, and `SeededDropout` draws its masks from one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class SeededDropout(nn.Module):
    """Inverted dropout whose masks come from ``self.generator`` (set by the trainer).

    With no generator it falls back to torch's global RNG, like `nn.Dropout`.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_mlp(n_inputs: int, n_outputs: int, hidden: list[int], activation: str = "relu",
             dropout: float = 0.0, generator: torch.Generator | None = None) -> nn.Sequential:
    """Linear → activation (→ dropout) per hidden width, then a linear output layer.

    Weights and biases are drawn from U(−1/√fan_in, 1/√fan_in), PyTorch's default for
    `nn.Linear`, using `generator` (a fixed seed 0 when None, so rebuilding is repeatable).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    widths = [n_inputs, *hidden]
    for fan_in, fan_out in zip(widths, widths[1:], strict=False):
        layers += [_linear(fan_in, fan_out, generator), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(SeededDropout(dropout))
    layers.append(_linear(widths[-1], n_outputs, generator))
    return nn.Sequential(*layers)


def _linear(fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Linear:
    # skip_init: nn.Linear's own init would draw from the global RNG only to be overwritten.
    layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def set_dropout_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Point every `SeededDropout` inside `module` at `generator`."""
    for layer in module.modules():
        if isinstance(layer, SeededDropout):
            layer.generator = generator


def make_cnn(n_inputs: int, n_outputs: int, image: list[int], channels: list[int],
             hidden: int, generator: torch.Generator | None = None) -> nn.Sequential:
    """Rows of `n_inputs` pixels → image → (3×3 conv, ReLU) per channel width → 2×2 max-pool
    → linear `hidden` → ReLU → linear output.

    Convolutions pad by 1, so only the pool halves the image. Every weight and bias is
    drawn from U(−1/√fan_in, 1/√fan_in) (PyTorch's default bound for both layer types)
    using `generator` (a fixed seed 0 when None, so rebuilding is repeatable).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    depth, height, width = image
    if depth * height * width != n_inputs:
        raise ValueError(f"an image of {image} holds {depth * height * width} values, "
                         f"not the {n_inputs} inputs")
    layers: list[nn.Module] = [nn.Unflatten(1, (depth, height, width))]
    for fan_in, fan_out in zip([depth, *channels], channels, strict=False):
        layers += [_conv(fan_in, fan_out, generator), nn.ReLU()]
    layers += [nn.MaxPool2d(2), nn.Flatten(),
               _linear(channels[-1] * (height // 2) * (width // 2), hidden, generator), nn.ReLU(),
               _linear(hidden, n_outputs, generator)]
    return nn.Sequential(*layers)


def _conv(fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Conv2d:
    layer = nn.utils.skip_init(nn.Conv2d, fan_in, fan_out, 3, padding=1)
    bound = 1.0 / math.sqrt(fan_in * 9)
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer
