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


class InputNoise(SeededDropout):
    """Noise on the inputs while training: ``gaussian`` adds N(0, p²) to every value,
    ``masking`` zeroes each value with probability p (rescaled by 1/(1 − p), as dropout).

    A `SeededDropout` so that the trainer points it at the same seeded generator.
    """

    def __init__(self, p: float, kind: str = "gaussian"):
        super().__init__(p)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "masking":
            return super().forward(x)
        if not self.training or self.p == 0.0:
            return x
        return x + self.p * torch.randn(x.shape, generator=self.generator, device=x.device,
                                        dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, kind={self.kind}"


class Cutout(SeededDropout):
    """Cutout (DeVries & Taylor 2017) while training: a ``size``×``size`` square of each
    image (batch, channels, height, width), centred on a random pixel, is set to zero."""

    def __init__(self, size: int):
        super().__init__(float(size))
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.size <= 0:
            return x
        sizes = torch.full((x.shape[0],), float(self.size), device=x.device)
        return cutout(x, sizes, self.generator)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def cutout(x: torch.Tensor, sizes: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Zero a square of side ``sizes[i]`` (whole pixels) around a random centre of image i."""
    batch, _, height, width = x.shape
    # drawn where the images are, from the trainer's generator (which lives there too)
    cy = torch.randint(height, (batch,), generator=generator, device=x.device)
    cx = torch.randint(width, (batch,), generator=generator, device=x.device)
    half = torch.div(sizes, 2, rounding_mode="floor")
    top, left = cy - half, cx - half
    rows = torch.arange(height, device=x.device)[None, :]
    cols = torch.arange(width, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + sizes[:, None])
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + sizes[:, None])
    hole = in_rows[:, :, None] & in_cols[:, None, :]
    return x * (~hole)[:, None, :, :].to(x.dtype)


def rates(dropout: float | list[float], n: int, what: str) -> list[float]:
    """A dropout rate per layer: one number for all `n`, or a list of `n` rates."""
    if isinstance(dropout, (int, float)):
        return [float(dropout)] * n
    if len(dropout) != n:
        raise ValueError(f"dropout: {len(dropout)} rates for {n} {what}")
    return [float(rate) for rate in dropout]


def make_mlp(n_inputs: int, n_outputs: int, hidden: list[int], activation: str = "relu",
             dropout: float | list[float] = 0.0, generator: torch.Generator | None = None,
             input_noise: float = 0.0, noise: str = "gaussian") -> nn.Sequential:
    """(Input noise →) linear → activation (→ dropout) per hidden width, then a linear
    output layer. ``dropout`` is one rate or a list with one rate per hidden layer.

    Weights and biases are drawn from U(−1/√fan_in, 1/√fan_in), PyTorch's default for
    `nn.Linear`, using `generator` (a fixed seed 0 when None, so rebuilding is repeatable).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = [InputNoise(input_noise, noise)] if input_noise > 0 else []
    widths = [n_inputs, *hidden]
    for (fan_in, fan_out), rate in zip(zip(widths, widths[1:], strict=False),
                                       rates(dropout, len(hidden), "hidden layers"), strict=True):
        layers += [_linear(fan_in, fan_out, generator), ACTIVATIONS[activation]()]
        if rate > 0:
            layers.append(SeededDropout(rate))
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
             hidden: int, generator: torch.Generator | None = None,
             dropout: float | list[float] = 0.0, input_noise: float = 0.0,
             noise: str = "gaussian", cutout: int = 0) -> nn.Sequential:
    """Rows of `n_inputs` pixels (→ input noise) → image (→ cutout) → (3×3 conv, ReLU
    (→ dropout)) per channel width → 2×2 max-pool → linear `hidden` → ReLU (→ dropout) →
    linear output. ``dropout`` is one rate or one per convolution plus one for `hidden`.

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
    drops = rates(dropout, len(channels) + 1, "convolutions and one hidden layer")
    layers: list[nn.Module] = [InputNoise(input_noise, noise)] if input_noise > 0 else []
    layers.append(nn.Unflatten(1, (depth, height, width)))
    if cutout > 0:
        layers.append(Cutout(cutout))
    for fan_in, fan_out, rate in zip([depth, *channels], channels, drops, strict=False):
        layers += [_conv(fan_in, fan_out, generator), nn.ReLU()]
        if rate > 0:
            layers.append(SeededDropout(rate))
    layers += [nn.MaxPool2d(2), nn.Flatten(),
               _linear(channels[-1] * (height // 2) * (width // 2), hidden, generator), nn.ReLU()]
    if drops[-1] > 0:
        layers.append(SeededDropout(drops[-1]))
    layers.append(_linear(hidden, n_outputs, generator))
    return nn.Sequential(*layers)


def _conv(fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Conv2d:
    layer = nn.utils.skip_init(nn.Conv2d, fan_in, fan_out, 3, padding=1)
    bound = 1.0 / math.sqrt(fan_in * 9)
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer
