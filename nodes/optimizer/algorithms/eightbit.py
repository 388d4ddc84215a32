"""8-bit optimizers (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization").

`Adam8bit` (Adam or AdamW) and `Momentum8bit` (SGD with momentum) keep each state tensor
as uint8 codes of the paper's dynamic-tree map — signed for momentum, unsigned for the
second moment — with one float32 absmax scale per block of ``block_size`` values (2048 in
the paper). State is 2 bytes per parameter for Adam (1 for momentum) plus 4 bytes per block
per state, against 8 (4) in float32.

Two paths compute the same update:

* **CPU, float32, contiguous**: the fused numba kernels of
  `flowopt.nodes.optimizer.kernels` — per block: dequantize → update → requantize →
  write the weights, parallel over blocks, no temporaries. Used whenever that module is
  importable (``use_kernel=True``, the default).
* **anything else** (CUDA, other dtypes, or ``use_kernel=False``): the torch code below,
  which dequantizes the whole tensor, updates it and requantizes it. The update is
  computed from the full-precision new moments; only what is *stored* is quantized.

Nearest codes follow `flowopt.nodes.blockwise.codebook` exactly (ties to the lower code):
code = number of the map's float32 ``thresholds`` ≤ value, which `torch.bucketize` with
``right=True`` computes. An all-zero block has absmax 0 and the map's zero code.

Tensors with fewer than ``min_8bit_size`` elements (biases, small layers) keep float32
states, as bitsandbytes does (its default 4096): their share of memory is negligible and
quantizing a handful of values per block saves nothing.
"""
from __future__ import annotations

import importlib
import math
from typing import Any

import torch

from .base import ParameterwiseOptimizer

KERNELS = "flowopt.nodes.optimizer.kernels"
_KERNELS: Any = None


def cpu_kernels() -> Any:
    """`flowopt.nodes.optimizer.kernels` (numba), or None where it is not available."""
    global _KERNELS
    if _KERNELS is None:
        try:
            kernels = importlib.import_module(KERNELS)
        except ModuleNotFoundError as exc:
            if exc.name not in (KERNELS, "numba"):
                raise
            kernels = False
        _KERNELS = kernels
    return _KERNELS or None


def _kernel_ok(p: torch.Tensor) -> bool:
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()


class _Book:
    """A code map on a device: its values, thresholds and zero code as tensors."""

    _cache: dict[tuple[bool, str], "_Book"] = {}

    def __init__(self, signed: bool, device: torch.device):
        from ...blockwise.codebook import codebook

        book = codebook("dynamic", signed, 8)
        self.values = torch.tensor(book.values, device=device)
        self.thresholds = torch.tensor(book.thresholds, device=device)
        self.zero_code = book.zero_code

    @classmethod
    def get(cls, signed: bool, device: torch.device) -> "_Book":
        key = (signed, str(device))
        if key not in cls._cache:
            cls._cache[key] = cls(signed, device)
        return cls._cache[key]


def quantize(x: torch.Tensor, book: _Book, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise absmax quantization of a flat float32 tensor: (uint8 codes, float32 absmax)."""
    n = x.numel()
    blocks = -(-n // block_size)
    padded = torch.nn.functional.pad(x, (0, blocks * block_size - n)).view(blocks, block_size)
    absmax = padded.abs().amax(dim=1)
    normalized = padded / absmax[:, None]
    codes = torch.bucketize(normalized, book.thresholds, right=True).to(torch.uint8)
    codes[absmax == 0] = book.zero_code
    return codes.view(-1)[:n].clone(), absmax


def dequantize(codes: torch.Tensor, absmax: torch.Tensor, book: _Book,
               block_size: int) -> torch.Tensor:
    """``values[code] * absmax`` per block, float32, flat."""
    scale = absmax.repeat_interleave(block_size)[: codes.numel()]
    return book.values[codes.long()] * scale


class _Quantized(ParameterwiseOptimizer):
    """Shared by the 8-bit optimizers: state creation and dtype-preserving loading."""

    def _state(self, p: torch.Tensor, names: tuple[tuple[str, bool], ...], block_size: int,
               min_8bit_size: int) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = 0
            if p.numel() < min_8bit_size:
                for name, _ in names:
                    state[name] = torch.zeros(p.numel(), dtype=torch.float32, device=p.device)
            else:
                blocks = -(-p.numel() // block_size)
                for name, signed in names:
                    book = _Book.get(signed, p.device)
                    state[f"{name}_codes"] = torch.full((p.numel(),), book.zero_code,
                                                        dtype=torch.uint8, device=p.device)
                    state[f"{name}_absmax"] = torch.zeros(blocks, dtype=torch.float32,
                                                          device=p.device)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, but states keep their dtypes (torch would cast uint8 codes to float)."""
        saved = state_dict["state"]
        super().load_state_dict({**state_dict, "state": {}})
        params = [p for group in self.param_groups for p in group["params"]]
        for index, values in saved.items():
            p = params[int(index)]
            self.state[p] = {k: v.to(p.device).clone() if torch.is_tensor(v) else v
                             for k, v in values.items()}


class Adam8bit(_Quantized):
    """Adam/AdamW with 8-bit block-wise states.

    Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8 (Adam's, which the paper keeps:
    "without changes to the original optimizer hyperparameters"), weight_decay 0,
    decoupled False (True: AdamW), block_size 2048 (the paper's), min_8bit_size 4096
    (bitsandbytes'). The step, with bc1 = 1 − β1^t and bc2 = 1 − β2^t, is torch's Adam
    (the kernels' order of operations, `kernels.adam8bit_step_reference`)::

        g ← g + λθ (not decoupled) ;  θ ← θ(1 − lr·λ) (decoupled)
        m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
        θ ← θ − lr/bc1 · m/(√v/√bc2 + ε)
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False,
                 block_size: int = 2048, min_8bit_size: int = 4096, use_kernel: bool = True):
        if block_size <= 0:
            raise ValueError(f"Adam8bit: block_size must be positive, got {block_size}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "decoupled": decoupled})
        self.block_size, self.min_8bit_size, self.use_kernel = block_size, min_8bit_size, use_kernel

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        kernels = cpu_kernels() if self.use_kernel else None
        names = (("m", True), ("v", False))
        beta1, beta2 = group["betas"]
        options = {"lr": group["lr"], "beta1": beta1, "beta2": beta2, "eps": group["eps"],
                   "weight_decay": group["weight_decay"], "decoupled": group["decoupled"]}
        state = self._state(p, names, self.block_size, self.min_8bit_size)
        state["step"] += 1
        if "m" in state:  # a small tensor: float32 states
            theta = p.reshape(-1).float()  # a view when p is contiguous float32
            adam_update(theta, p.grad.reshape(-1).float(), state["m"], state["v"],
                        step=state["step"], **options)
            p.copy_(theta.view_as(p))
            return
        if kernels is not None and _kernel_ok(p):
            kernels.adam8bit_step(
                p.detach().view(-1).numpy(), p.grad.contiguous().view(-1).numpy(),
                state["m_codes"].numpy(), state["m_absmax"].numpy(),
                state["v_codes"].numpy(), state["v_absmax"].numpy(),
                step=state["step"], block_size=self.block_size, **options)
            return
        self._torch_step(p, state, options)

    def _torch_step(self, p: torch.Tensor, state: dict[str, Any], options: dict[str, Any]) -> None:
        size = self.block_size
        signed, unsigned = _Book.get(True, p.device), _Book.get(False, p.device)
        m = dequantize(state["m_codes"], state["m_absmax"], signed, size)
        v = dequantize(state["v_codes"], state["v_absmax"], unsigned, size)
        theta = p.reshape(-1).float()
        theta = adam_update(theta, p.grad.reshape(-1).float(), m, v, step=state["step"], **options)
        p.copy_(theta.view_as(p))
        state["m_codes"], state["m_absmax"] = quantize(m, signed, size)
        state["v_codes"], state["v_absmax"] = quantize(v, unsigned, size)


def adam_update(theta: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *,
                step: int, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, decoupled: bool) -> torch.Tensor:
    """The `Adam8bit` update on float32 tensors, in place on `theta`, `m`, `v`."""
    if weight_decay and not decoupled:
        grad = grad.add(theta, alpha=weight_decay)
    if weight_decay and decoupled:
        theta.mul_(1 - lr * weight_decay)
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    correction2 = math.sqrt(1 - beta2 ** step)
    return theta.addcdiv_(m, v.sqrt().div_(correction2).add_(eps), value=-lr / (1 - beta1 ** step))


class Momentum8bit(_Quantized):
    """SGD with an 8-bit block-wise momentum buffer; the update is `torch.optim.SGD`'s.

    Defaults: lr 1e-3, momentum 0.9 (the paper's 8-bit Momentum baselines use 0.9 — with
    momentum 0 there would be no state to quantize), dampening 0, nesterov False,
    weight_decay 0 (L2 added to the gradient), block_size 2048, min_8bit_size 4096::

        g ← g + λθ ;  b ← g (first step) or μ·b + (1 − dampening)·g
        θ ← θ − lr·(g + μ·b if nesterov else b)
    """

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.9,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 block_size: int = 2048, min_8bit_size: int = 4096, use_kernel: bool = True):
        if block_size <= 0 or momentum <= 0:
            raise ValueError("Momentum8bit: block_size and momentum must be positive")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "nesterov": nesterov, "weight_decay": weight_decay})
        self.block_size, self.min_8bit_size, self.use_kernel = block_size, min_8bit_size, use_kernel

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        kernels = cpu_kernels() if self.use_kernel else None
        options = {k: group[k] for k in ("lr", "momentum", "dampening", "nesterov",
                                         "weight_decay")}
        state = self._state(p, (("m", True),), self.block_size, self.min_8bit_size)
        state["step"] += 1
        if "m" in state:
            theta = p.reshape(-1).float()
            momentum_update(theta, p.grad.reshape(-1).float(), state["m"],
                            step=state["step"], **options)
            p.copy_(theta.view_as(p))
            return
        if kernels is not None and _kernel_ok(p):
            kernels.momentum8bit_step(
                p.detach().view(-1).numpy(), p.grad.contiguous().view(-1).numpy(),
                state["m_codes"].numpy(), state["m_absmax"].numpy(),
                step=state["step"], block_size=self.block_size, **options)
            return
        book = _Book.get(True, p.device)
        buffer = dequantize(state["m_codes"], state["m_absmax"], book, self.block_size)
        theta = p.reshape(-1).float()
        momentum_update(theta, p.grad.reshape(-1).float(), buffer, step=state["step"],
                        **options)
        p.copy_(theta.view_as(p))
        state["m_codes"], state["m_absmax"] = quantize(buffer, book, self.block_size)


def momentum_update(theta: torch.Tensor, grad: torch.Tensor, buffer: torch.Tensor, *, step: int,
                    lr: float, momentum: float, dampening: float, nesterov: bool,
                    weight_decay: float) -> None:
    """The `Momentum8bit` update on float32 tensors, in place on `theta` and `buffer`."""
    if weight_decay:
        grad = grad.add(theta, alpha=weight_decay)
    if step == 1:
        buffer.copy_(grad)
    else:
        buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
    direction = grad.add(buffer, alpha=momentum) if nesterov else buffer
    theta.add_(direction, alpha=-lr)
