"""Block-wise dynamic quantization of weights (Dettmers et al. 2022, "8-bit Optimizers via
Block-wise Quantization"), on the shared kernels of `flowopt.nodes.blockwise`.

Each weight tensor is flattened and cut into blocks of ``block_size`` values; a block is
scaled by its absolute maximum and every value gets the exact nearest code of a signed
code map (the dynamic-tree map, or a linear one). The artifact stores the codes (4-bit
codes two per byte), one float32 absmax per block and the map once per model, as the
``codebook`` scheme of `artifact`: ``w = map[code] · absmax[block]``, the same float32
product the dequantize kernel computes.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from flowopt.artifacts import Model, QuantizedModel

from .artifact import Packer, quantizable_layers
from .rtn import param_name

BLOCK_SIZES = (64, 128, 256, 512, 1024, 2048, 4096)


def quantize_model(model: Model, *, bits: int, code_map: Literal["dynamic", "linear"],
                   block_size: int) -> QuantizedModel:
    """Quantize every Linear/Conv weight block-wise with the numba kernels."""
    from flowopt.nodes.blockwise.codebook import codebook
    from flowopt.nodes.blockwise.quantize import quantize_blockwise

    book = codebook(code_map, True, bits)
    book_name = f"codebook.{code_map}.signed.{bits}"
    packer = Packer(model)
    for name, layer in quantizable_layers(model.module):
        weight = layer.weight.detach()
        flat = np.ascontiguousarray(weight.reshape(-1).numpy(), dtype=np.float32)
        codes, absmax = quantize_blockwise(flat, book, block_size)
        packer.codebook(param_name(name, "weight"), codes, absmax, book_name, book.values,
                        bits, list(weight.shape), block_size=block_size)
    return packer.finish("blockwise", bits=bits)
