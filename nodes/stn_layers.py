"""Self-Tuning Network layers and models (MacKay et al. 2019), imported lazily (torch).

An STN layer approximates how the best weights move with the hyperparameters λ by gating
each output unit (each output channel of a convolution) with a linear function of λ:

    out = W x + b + (V_w λ) ⊙ (W' x) + (V_b λ) ⊙ b'

``W, b`` are the *general* weights (those of the plain layer), ``W', b'`` the *response*
weights and ``V = [V_w; V_b]`` the hyper-gates, initialised to zero so that a fresh STN
layer computes exactly what the plain layer computes. What the gates see (the *gate
input*) is the unconstrained λ for an STN and the perturbation λ − λ_now for a Delta-STN
(Bae & Grosse 2020), whose gates are therefore silent at the current hyperparameters.

Hyperparameters live unconstrained (`Hyper.value` maps them into their domain): a
bounded range through a stretched sigmoid (in log space for ``log: true``), a one-sided
range through a softplus, an integer range through the stretched sigmoid over
``[low, high + 1)`` and then ``floor``. `StnMLP` and `StnCNN` mirror `layers.make_mlp` and
`layers.make_cnn`; their regularisers (dropout per layer, input noise, cutout) take one
value *per example* while training, so one batch sees many nearby λ. They hold the
current unconstrained λ as the buffer ``point``, so a stored STN model (recipe + weights,
builder ``stn``) predicts at its hyperparameters with a plain ``module(x)``; `to_plain`
folds the gates at ``point`` into a plain model of the base recipe (exactly: the gate of
a unit is a scalar, so ``W + diag(g_w) W'`` and ``b + g_b ⊙ b'`` are the plain weights).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ACTIVATIONS, _conv, _linear, cutout, make_cnn, make_mlp, rates


# --- hyperparameters ------------------------------------------------------------------

@dataclass(frozen=True)
class Hyper:
    """One tuned hyperparameter: its name in the model (``dropout.0``, ``input_noise``,
    ``cutout``) and its domain (``low`` / ``high`` may be ±inf for one-sided ranges)."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def value(self, u: torch.Tensor) -> torch.Tensor:
        """Unconstrained `u` → the hyperparameter (floored for an integer range)."""
        low, high = self.low, self.high + (1.0 if self.integer else 0.0)
        if self.log:
            low, high = math.log(low), math.log(high)
        if math.isinf(high) and math.isinf(low):
            out = u
        elif math.isinf(high):
            out = low + F.softplus(u)
        elif math.isinf(low):
            out = high - F.softplus(u)
        else:
            out = low + (high - low) * torch.sigmoid(u)
        if self.log:
            out = out.exp()
        if self.integer:
            out = torch.floor(out)
        # float32 rounding must not step outside the domain (e.g. exp(log(low)) < low)
        return out.clamp(min=None if math.isinf(self.low) else self.low,
                         max=None if math.isinf(self.high) else self.high)

    def unconstrained(self, value: float) -> float:
        """The unconstrained point whose `value` is `value` (pulled just inside open ends;
        an integer sits in the middle of its cell)."""
        low, high = self.low, self.high + (1.0 if self.integer else 0.0)
        v = float(value) + (0.5 if self.integer else 0.0)
        if self.log:
            low, high, v = math.log(low), math.log(high), math.log(v)
        if math.isinf(high) and math.isinf(low):
            return v
        if math.isinf(high) or math.isinf(low):
            gap = max(v - low if math.isinf(high) else high - v, 1e-6)
            return gap + math.log(-math.expm1(-gap))  # inverse softplus, stable
        fraction = min(max((v - low) / (high - low), 1e-4), 1 - 1e-4)
        return math.log(fraction) - math.log1p(-fraction)


def hypers(specs: list[dict[str, Any]]) -> list[Hyper]:
    return [Hyper(**spec) for spec in specs]


# --- layers ---------------------------------------------------------------------------

class _Gated(nn.Module):
    """The parameters every STN layer has: a general and a response layer (`_make`) and the
    gates, zero at the start so the layer begins as its plain self."""

    _make = None  # (fan_in, fan_out, generator) -> a plain layer with weight and bias

    def __init__(self, fan_in: int, fan_out: int, n_hyper: int, generator: torch.Generator):
        super().__init__()
        general = self._make(fan_in, fan_out, generator)
        response = self._make(fan_in, fan_out, generator)
        self.weight, self.bias = general.weight, general.bias
        self.response_weight, self.response_bias = response.weight, response.bias
        self.gate = nn.Parameter(torch.zeros(2 * fan_out, n_hyper))
        self.fan_out = fan_out


class StnLinear(_Gated):
    """`out = W x + b + (V_w h) ⊙ (W' x) + (V_b h) ⊙ b'` for a gate input `h` (batch, H)."""

    _make = staticmethod(_linear)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        g = F.linear(h, self.gate)
        return (F.linear(x, self.weight, self.bias)
                + g[:, :self.fan_out] * F.linear(x, self.response_weight)
                + g[:, self.fan_out:] * self.response_bias)

    @torch.no_grad()
    def folded(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain layer's weight and bias at one gate input `h` (H,)."""
        g = self.gate @ h
        return (self.weight + g[:self.fan_out, None] * self.response_weight,
                self.bias + g[self.fan_out:] * self.response_bias)


class StnConv2d(_Gated):
    """A 3×3 convolution (padding 1) gated per output channel, as `StnLinear`."""

    _make = staticmethod(_conv)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        g = F.linear(h, self.gate)[:, :, None, None]
        return (F.conv2d(x, self.weight, self.bias, padding=1)
                + g[:, :self.fan_out] * F.conv2d(x, self.response_weight, padding=1)
                + g[:, self.fan_out:] * self.response_bias[None, :, None, None])

    @torch.no_grad()
    def folded(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.gate @ h
        return (self.weight + g[:self.fan_out, None, None, None] * self.response_weight,
                self.bias + g[self.fan_out:] * self.response_bias)


def _dropout(x: torch.Tensor, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with one rate per example (`p`: (batch,), not differentiated)."""
    p = p.detach().reshape(-1, *([1] * (x.dim() - 1)))
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * (u >= p).to(x.dtype) / (1.0 - p)


# --- models ---------------------------------------------------------------------------

class _StnNet(nn.Module):
    """What `StnMLP` and `StnCNN` share: the hyperparameters, ``point``, values per example."""

    kind = ""
    n_drop = 0

    def __init__(self, base: dict[str, Any], hyper: list[dict[str, Any]], delta: bool):
        super().__init__()
        self.base, self.hyper_specs, self.delta = dict(base), [dict(h) for h in hyper], delta
        self.hyper = hypers(hyper)
        self.index = {h.name: i for i, h in enumerate(self.hyper)}
        self.fixed_drop = rates(base.get("dropout", 0.0), self.n_drop, "layers")
        self.register_buffer("point", torch.zeros(len(self.hyper)))
        self.generator: torch.Generator | None = None

    def values(self, u: torch.Tensor) -> torch.Tensor:
        """Unconstrained λ (batch, H) → hyperparameters (batch, H)."""
        if not self.hyper:
            return u
        return torch.stack([h.value(u[:, i]) for i, h in enumerate(self.hyper)], dim=1)

    def current(self) -> dict[str, float]:
        """The hyperparameters at ``point``, by name."""
        values = self.values(self.point[None, :])[0]
        return {h.name: float(values[i]) for i, h in enumerate(self.hyper)}

    def default_gate(self, batch: int) -> torch.Tensor:
        if self.delta:
            return self.point.new_zeros(batch, len(self.hyper))
        return self.point[None, :].expand(batch, -1)

    def _rate(self, values: torch.Tensor, name: str, fixed: float) -> torch.Tensor | float:
        i = self.index.get(name)
        return fixed if i is None else values[:, i]

    def _drop(self, x: torch.Tensor, values: torch.Tensor, layer: int) -> torch.Tensor:
        rate = self._rate(values, f"dropout.{layer}", self.fixed_drop[layer])
        if not self.training or (isinstance(rate, float) and rate == 0.0):
            return x
        if isinstance(rate, float):
            rate = x.new_full((x.shape[0],), rate)
        return _dropout(x, rate, self.generator)

    def _noise(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        level = self._rate(values, "input_noise", float(self.base.get("input_noise", 0.0)))
        if not self.training or (isinstance(level, float) and level == 0.0):
            return x
        if isinstance(level, float):
            level = x.new_full((x.shape[0],), level)
        if self.base.get("noise", "gaussian") == "masking":
            return _dropout(x, level.clamp(max=0.999), self.generator)
        noise = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return x + level.detach()[:, None] * noise

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None,
                values: torch.Tensor | None = None) -> torch.Tensor:
        """`gate`: what the hyper-gates see (batch, H), default: at ``point``; `values`:
        the hyperparameters of each example (batch, H), default: those at ``point``."""
        batch = x.shape[0]
        if gate is None:
            gate = self.default_gate(batch)
        if values is None:
            values = self.values(self.point[None, :]).expand(batch, -1)
        return self._forward(x, gate, values)

    def _forward(self, x: torch.Tensor, gate: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def linearised(self, x: torch.Tensor, gate: torch.Tensor,
                   values: torch.Tensor | None = None) -> torch.Tensor:
        """Delta-STN's linearised output: ``f(x; w) + J_w f(x; w) · Δw(gate)``.

        ``Δw(gate)`` is the weight perturbation the gates make for the gate input `gate`
        (``diag(V_w gate) W'``, ``(V_b gate) ⊙ b'`` per layer), so the second term is the
        Jacobian-vector product of the output in that direction: one forward pass in
        forward-mode AD with the gate input as a dual number (primal 0, tangent `gate`);
        the gates are linear in their input, so the tangent is exactly ``J_w f · Δw``.
        Reverse mode runs through both terms (the weights, gates and `gate` get their
        gradients). Dropout masks and noise are drawn once and shared by both terms.
        """
        import torch.autograd.forward_ad as fwAD

        if values is None:
            values = self.values(self.point[None, :]).expand(x.shape[0], -1)
        with fwAD.dual_level():
            out = self._forward(x, fwAD.make_dual(torch.zeros_like(gate), gate), values)
            primal, tangent = fwAD.unpack_dual(out)
        return primal if tangent is None else primal + tangent

    def stn_layers(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (StnLinear, StnConv2d))]

    def response_parameters(self) -> list[nn.Parameter]:
        """Response weights and hyper-gates (Delta-STN trains them on perturbed λ only)."""
        return [p for layer in self.stn_layers()
                for p in (layer.response_weight, layer.response_bias, layer.gate)]

    def general_parameters(self) -> list[nn.Parameter]:
        response = {id(p) for p in self.response_parameters()}
        return [p for p in self.parameters() if id(p) not in response]

    def plain_recipe(self) -> dict[str, Any]:
        """The base recipe with the hyperparameters at ``point`` (rates per layer)."""
        now = self.current()
        recipe = dict(self.base)
        drops = [now.get(f"dropout.{i}", rate) for i, rate in enumerate(self.fixed_drop)]
        if any(drops):
            recipe["dropout"] = drops
        for name in ("input_noise", "cutout"):
            if name in now:
                recipe[name] = int(now[name]) if name == "cutout" else now[name]
        return recipe

    @torch.no_grad()
    def to_plain(self) -> tuple[nn.Sequential, dict[str, Any]]:
        """A plain module of `plain_recipe` computing what this one computes at ``point``."""
        recipe = self.plain_recipe()
        build = make_mlp if recipe["builder"] == "mlp" else make_cnn
        module = build(**{k: v for k, v in recipe.items() if k != "builder"})
        plain = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        h = self.default_gate(1)[0]
        for target, layer in zip(plain, self.stn_layers(), strict=True):
            weight, bias = layer.folded(h)
            target.weight.copy_(weight)
            target.bias.copy_(bias)
        return module.to(self.point.device), recipe


class StnMLP(_StnNet):
    """`layers.make_mlp` with STN layers; hyperparameters ``dropout.i`` (after hidden
    layer i) and ``input_noise``."""

    kind = "mlp"

    def __init__(self, base: dict[str, Any], hyper: list[dict[str, Any]], delta: bool = False,
                 generator: torch.Generator | None = None):
        self.n_drop = len(base["hidden"])
        super().__init__(base, hyper, delta)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        widths = [base["n_inputs"], *base["hidden"], base["n_outputs"]]
        n = len(self.hyper)
        self.layers = nn.ModuleList(StnLinear(a, b, n, generator)
                                    for a, b in zip(widths, widths[1:], strict=False))
        self.activation = ACTIVATIONS[base.get("activation", "relu")]()

    def _forward(self, x: torch.Tensor, gate: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        x = self._noise(x, values)
        for i, layer in enumerate(self.layers[:-1]):
            x = self._drop(self.activation(layer(x, gate)), values, i)
        return self.layers[-1](x, gate)


class StnCNN(_StnNet):
    """`layers.make_cnn` with STN layers; hyperparameters ``dropout.i`` (after conv i, and
    ``dropout.<n convs>`` after the hidden layer), ``input_noise`` and ``cutout``."""

    kind = "cnn"

    def __init__(self, base: dict[str, Any], hyper: list[dict[str, Any]], delta: bool = False,
                 generator: torch.Generator | None = None):
        self.n_drop = len(base["channels"]) + 1
        super().__init__(base, hyper, delta)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        depth, height, width = base["image"]
        n, channels = len(self.hyper), base["channels"]
        self.convs = nn.ModuleList(StnConv2d(a, b, n, generator)
                                   for a, b in zip([depth, *channels], channels, strict=False))
        self.fc = StnLinear(channels[-1] * (height // 2) * (width // 2), base["hidden"], n,
                            generator)
        self.out = StnLinear(base["hidden"], base["n_outputs"], n, generator)

    def _forward(self, x: torch.Tensor, gate: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        x = self._noise(x, values).reshape(x.shape[0], *self.base["image"])
        size = self._rate(values, "cutout", float(self.base.get("cutout", 0)))
        if self.training and not (isinstance(size, float) and size == 0.0):
            if isinstance(size, float):
                size = x.new_full((x.shape[0],), size)
            x = cutout(x, size.detach(), self.generator)
        for i, conv in enumerate(self.convs):
            x = self._drop(F.relu(conv(x, gate)), values, i)
        x = F.max_pool2d(x, 2).flatten(1)
        x = self._drop(F.relu(self.fc(x, gate)), values, len(self.convs))
        return self.out(x, gate)


NETS = {"mlp": StnMLP, "cnn": StnCNN}


def tunable(base: dict[str, Any]) -> list[str]:
    """Names of the hyperparameters an STN of plain recipe `base` can tune."""
    if base.get("builder") == "mlp":
        return [f"dropout.{i}" for i in range(len(base["hidden"]))] + ["input_noise"]
    if base.get("builder") == "cnn":
        return ([f"dropout.{i}" for i in range(len(base["channels"]) + 1)]
                + ["input_noise", "cutout"])
    return []


def default_hyper(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Domains used when a model asks for STN layers itself (``stn: true``): dropout in
    [0, 0.95], input noise in [0, 1], cutout from 0 to half the image side."""
    out = []
    for name in tunable(base):
        if name == "cutout":
            out.append(asdict(Hyper(name, 0.0, float(base["image"][1] // 2), integer=True)))
        else:
            out.append(asdict(Hyper(name, 0.0, 0.95 if name.startswith("dropout") else 1.0)))
    return out


def build_stn(base: dict[str, Any], hyper: list[dict[str, Any]], delta: bool = False,
              generator: torch.Generator | None = None) -> _StnNet:
    """The STN of plain recipe `base` (builder ``mlp`` or ``cnn``) tuning `hyper`."""
    if base.get("builder") not in NETS:
        raise ValueError(f"no STN layers for model builder '{base.get('builder')}' "
                         f"(STN layers exist for: {', '.join(NETS)})")
    net = NETS[base["builder"]](base, hyper, delta, generator)
    for spec in net.hyper:
        start = base.get(spec.name.split(".")[0], 0.0)
        if spec.name.startswith("dropout"):
            start = net.fixed_drop[int(spec.name.split(".")[1])]
        net.point[net.index[spec.name]] = spec.unconstrained(
            min(max(float(start), spec.low), spec.high))
    return net


@torch.no_grad()
def load_general(net: _StnNet, module: nn.Module) -> None:
    """Copy the weights of `module` (a plain model of ``net.base``, or an STN) into `net`'s
    general weights (an STN's response weights and gates too, when their shapes match)."""
    if isinstance(module, _StnNet):
        for mine, theirs in zip(net.stn_layers(), module.stn_layers(), strict=True):
            for name in ("weight", "bias", "response_weight", "response_bias", "gate"):
                source = getattr(theirs, name)
                if getattr(mine, name).shape == source.shape:
                    getattr(mine, name).copy_(source)
        return
    plain = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for mine, theirs in zip(net.stn_layers(), plain, strict=True):
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)


def set_generator(net: nn.Module, generator: torch.Generator | None) -> None:
    for module in net.modules():
        if isinstance(module, _StnNet):
            module.generator = generator


def is_stn(module: Any) -> bool:
    return isinstance(module, _StnNet)
