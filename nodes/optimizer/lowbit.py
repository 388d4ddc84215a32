"""Optimizer kinds with 8-bit state: adam8bit, adamw8bit, momentum8bit (`eightbit`).

``block_size`` must be a positive multiple of 64: the CPU kernels run in parallel over
blocks and write each block's uint8 codes, so blocks that start on a 64-byte boundary
never share a cache line between two threads (no false sharing). The paper uses 2048.
The algorithms read lr, betas (momentum) and weight decay from their param groups at
every step, so those may change while a model trains (`common.optimizer_kind`).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .common import Beta, Betas, Decay, Rate, optimizer_kind
from .standard import ADAM_MUTABLE

BlockSize = Annotated[int, Field(ge=64, multiple_of=64)]
MinSize = Annotated[int, Field(ge=0)]


def _adam8bit(decoupled: bool, **options: Any) -> Any:
    def make(params: Any) -> Any:
        from .algorithms.eightbit import Adam8bit

        return Adam8bit(params, decoupled=decoupled, **options)

    return make


@optimizer_kind("optimizer.adam8bit", mutable=ADAM_MUTABLE)
def adam8bit(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
             weight_decay: Decay = 0.0, block_size: BlockSize = 2048,
             min_8bit_size: MinSize = 4096) -> Any:
    """Adam with 8-bit block-wise quantized states (Dettmers et al. 2022), `algorithms.eightbit.Adam8bit`.

    First moment in the signed, second in the unsigned dynamic-tree map, one float32
    absmax per block: ≈ 2 bytes of state per parameter (+ 8 per block) instead of 8. On
    the CPU one fused numba kernel per tensor. ``with:`` fields (defaults): ``lr`` (1e-3),
    ``betas`` ([0.9, 0.999]), ``eps`` (1e-8) — Adam's, which the paper keeps unchanged;
    ``weight_decay`` (0.0, L2 added to the gradient); ``block_size`` (2048, the paper's;
    a positive multiple of 64); ``min_8bit_size`` (4096, bitsandbytes' default: smaller
    tensors keep float32 states); plus the shared fields (see `optimizer`).
    """
    return _adam8bit(False, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                     block_size=block_size, min_8bit_size=min_8bit_size)


@optimizer_kind("optimizer.adamw8bit", mutable=ADAM_MUTABLE)
def adamw8bit(lr: Rate = 1e-3, betas: Betas = (0.9, 0.999), eps: Rate = 1e-8,
              weight_decay: Decay = 0.01, block_size: BlockSize = 2048,
              min_8bit_size: MinSize = 4096) -> Any:
    """AdamW with 8-bit block-wise quantized states, `algorithms.eightbit.Adam8bit(decoupled=True)`.

    As ``optimizer.adam8bit`` — ``lr`` (1e-3), ``betas`` ([0.9, 0.999]), ``eps`` (1e-8),
    ``block_size`` (2048), ``min_8bit_size`` (4096) — except that ``weight_decay`` (0.01,
    PyTorch's AdamW default) is decoupled: θ ← θ(1 − lr·λ) before the Adam step.
    """
    return _adam8bit(True, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                     block_size=block_size, min_8bit_size=min_8bit_size)


@optimizer_kind("optimizer.momentum8bit", mutable=("lr", "momentum", "weight_decay", "schedule"))
def momentum8bit(lr: Rate = 1e-3, momentum: Annotated[float, Field(gt=0, lt=1)] = 0.9,
                 dampening: Beta = 0.0, nesterov: bool = False, weight_decay: Decay = 0.0,
                 block_size: BlockSize = 2048, min_8bit_size: MinSize = 4096) -> Any:
    """SGD with an 8-bit block-wise momentum buffer (Dettmers et al. 2022), `algorithms.eightbit.Momentum8bit`.

    The update is `torch.optim.SGD`'s; the buffer is stored in the signed dynamic map,
    ≈ 1 byte per parameter (+ 4 per block). ``with:`` fields (defaults): ``lr`` (1e-3,
    PyTorch's), ``momentum`` (0.9, the paper's Momentum baselines; must be > 0),
    ``dampening`` (0.0), ``nesterov`` (false), ``weight_decay`` (0.0, L2),
    ``block_size`` (2048), ``min_8bit_size`` (4096); plus the shared fields.
    """
    if nesterov and dampening:
        raise ValueError("optimizer.momentum8bit: nesterov needs dampening 0")

    def make(params: Any) -> Any:
        from .algorithms.eightbit import Momentum8bit

        return Momentum8bit(params, lr=lr, momentum=momentum, dampening=dampening,
                            nesterov=nesterov, weight_decay=weight_decay,
                            block_size=block_size, min_8bit_size=min_8bit_size)

    return make
