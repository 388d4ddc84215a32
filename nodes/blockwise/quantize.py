"""Block-wise absmax quantization of flat float32 arrays (numba kernels + numpy spec).

API (the quantizer and optimizer nodes code against these names):

* ``quantize_blockwise(x, book, block_size, out_codes=None, out_absmax=None)
  -> (codes uint8[n], absmax float32[ceil(n / block_size)])``
* ``dequantize_blockwise(codes, absmax, book, block_size, out=None) -> float32[n]``
* ``pack_nibbles(codes) -> uint8[ceil(n / 2)]`` / ``unpack_nibbles(packed, n) -> uint8[n]``
  for 4-bit maps: code ``2i`` in the low nibble of byte i, code ``2i+1`` in the high one.
* ``encode_normalized(normalized, book) -> uint8[n]``: the lookup alone (no scaling).
* ``quantize_blockwise_reference`` / ``dequantize_blockwise_reference``: plain numpy,
  the specification the kernels are tested against bit for bit.

Semantics. Block b is ``x[b*block_size : (b+1)*block_size]`` (the last one may be
short); ``absmax[b] = max |x|`` over the block; code i is the exact nearest code (see
`codebook`) of ``x[i] / absmax[b]`` computed as one float32 division. An all-zero block
gets absmax 0 and ``book.zero_code`` everywhere. Dequantization is
``book.values[code] * absmax`` in float32 (codes past the map's end decode to 0, so a
corrupt 4-bit stream cannot read outside the map).

Choices. ``block_size`` is any positive integer: the kernels need no alignment (the
paper uses 2048 for optimizer states; bitsandbytes accepts powers of two 64..4096).
``x`` must already be float32, one-dimensional and C-contiguous: converting silently
would hide a copy of the whole tensor. Non-finite input (NaN, ±inf) is refused with a
``ValueError`` naming the first offending index — found from the absmax, so the check
costs nothing in the hot loop; caller-supplied output arrays then hold unspecified
values. (The fused optimizer kernels instead let non-finite values propagate; see
`flowopt.nodes.optimizer.kernels`.) Both kernels run in parallel over blocks with
numba's threads; the numba module is imported on the first call only.
"""
from __future__ import annotations

import numpy as np

from .codebook import Codebook, nearest_code_reference

__all__ = ["dequantize_blockwise", "dequantize_blockwise_reference", "encode_normalized", "pack_nibbles",
           "quantize_blockwise", "quantize_blockwise_reference", "unpack_nibbles"]


def check_block_size(block_size: int) -> int:
    """``block_size`` if it is a positive integer, else ``ValueError``."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size <= 0:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return int(block_size)


def block_count(n: int, block_size: int) -> int:
    """Number of absmax scales for ``n`` values: ``ceil(n / block_size)``."""
    return -(-n // block_size)


def _flat(name: str, a: np.ndarray, dtype: type, size: int | None = None) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1 or not a.flags.c_contiguous:
        got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a 1-d C-contiguous {np.dtype(dtype)} array, got {got}")
    if size is not None and a.size != size:
        raise ValueError(f"{name} must have {size} elements, got {a.size}")
    return a


def _refuse_nonfinite(x: np.ndarray, absmax: np.ndarray, block_size: int) -> None:
    bad = np.flatnonzero(~np.isfinite(absmax))
    if bad.size:
        s = int(bad[0]) * block_size
        i = s + int(np.flatnonzero(~np.isfinite(x[s:s + block_size]))[0])
        raise ValueError(f"cannot quantize non-finite values: x[{i}] is {x[i]}")


def quantize_blockwise(x: np.ndarray, book: Codebook, block_size: int,
                       out_codes: np.ndarray | None = None,
                       out_absmax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-block absmax scales and exact nearest codes of ``x`` (numba, parallel over blocks)."""
    block_size = check_block_size(block_size)
    x = _flat("x", x, np.float32)
    nb = block_count(x.size, block_size)
    codes = (np.empty(x.size, np.uint8) if out_codes is None
             else _flat("out_codes", out_codes, np.uint8, x.size))
    absmax = (np.empty(nb, np.float32) if out_absmax is None
              else _flat("out_absmax", out_absmax, np.float32, nb))
    if x.size:
        from .jit import quantize_kernel

        quantize_kernel(x, x.view(np.uint32), block_size, book.table, book.table_thresholds,
                        book.table_entries, book.search, book.table_exact,
                        np.uint8(book.size - 1), np.uint8(book.zero_code), codes, absmax)
        _refuse_nonfinite(x, absmax, block_size)
    return codes, absmax


def encode_normalized(normalized: np.ndarray, book: Codebook, *, vector: bool = True) -> np.ndarray:
    """Exact nearest codes of values already divided by their scale (numba, parallel).

    The per-value lookup `quantize_blockwise` uses, for callers with their own scales.
    ``vector=False`` forces the scalar lookup (the tests compare both paths).
    """
    x = _flat("normalized", normalized, np.float32)
    codes = np.empty(x.size, np.uint8)
    if x.size:
        from .jit import encode_kernel

        encode_kernel(x, book.table, book.table_thresholds, book.table_entries, book.search,
                      book.table_exact, np.uint8(book.size - 1), bool(vector), codes)
    return codes


def _padded_values(book: Codebook) -> np.ndarray:
    values = np.zeros(256, np.float32)
    values[: book.size] = book.values
    return values


def dequantize_blockwise(codes: np.ndarray, absmax: np.ndarray, book: Codebook, block_size: int,
                         out: np.ndarray | None = None) -> np.ndarray:
    """``book.values[codes] * absmax`` per block, float32 (numba, parallel over blocks)."""
    block_size = check_block_size(block_size)
    codes = _flat("codes", codes, np.uint8)
    absmax = _flat("absmax", absmax, np.float32, block_count(codes.size, block_size))
    out = np.empty(codes.size, np.float32) if out is None else _flat("out", out, np.float32, codes.size)
    if codes.size:
        from .jit import dequantize_kernel

        dequantize_kernel(codes, absmax, block_size, _padded_values(book), out)
    return out


def quantize_blocks_reference(x: np.ndarray, values: np.ndarray,
                              block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The numpy specification without the finiteness check (NaN blocks: absmax NaN, top code).

    The optimizer references use it: there non-finite values propagate.
    """
    n = x.size
    nb = block_count(n, block_size)
    padded = np.zeros(nb * block_size, np.float32)
    padded[:n] = x
    blocks = padded.reshape(nb, block_size)
    absmax = np.max(np.abs(blocks), axis=1) if nb else np.zeros(0, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = blocks / absmax[:, None]
    zero = nearest_code_reference(np.zeros(1, np.float32), values)[0]
    codes = np.where(absmax[:, None] == 0, zero, nearest_code_reference(normalized, values))
    return codes.reshape(-1)[:n].astype(np.uint8), absmax.astype(np.float32)


def quantize_blockwise_reference(x: np.ndarray, book: Codebook,
                                 block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain-numpy `quantize_blockwise`: same results, bit for bit, and the same errors."""
    block_size = check_block_size(block_size)
    x = _flat("x", x, np.float32)
    codes, absmax = quantize_blocks_reference(x, book.values, block_size)
    _refuse_nonfinite(x, absmax, block_size)
    return codes, absmax


def dequantize_blockwise_reference(codes: np.ndarray, absmax: np.ndarray, book: Codebook,
                                   block_size: int) -> np.ndarray:
    """Plain-numpy `dequantize_blockwise`."""
    block_size = check_block_size(block_size)
    codes = np.asarray(codes, np.uint8)
    scale = np.repeat(np.asarray(absmax, np.float32), block_size)[: codes.size]
    return (_padded_values(book)[codes] * scale).astype(np.float32)


def pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """Two 4-bit codes per byte: ``codes[2i]`` low nibble, ``codes[2i+1]`` high nibble."""
    codes = np.asarray(codes, np.uint8).reshape(-1)
    if codes.size and int(codes.max()) > 15:
        raise ValueError(f"pack_nibbles needs codes < 16, got {int(codes.max())}")
    padded = np.zeros(codes.size + (codes.size & 1), np.uint8)
    padded[: codes.size] = codes
    return (padded[0::2] | (padded[1::2] << np.uint8(4))).astype(np.uint8)


def unpack_nibbles(packed: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` codes stored by `pack_nibbles`."""
    packed = np.asarray(packed, np.uint8).reshape(-1)
    if not 0 <= n <= 2 * packed.size:
        raise ValueError(f"cannot unpack {n} codes from {packed.size} bytes")
    out = np.empty(2 * packed.size, np.uint8)
    out[0::2] = packed & np.uint8(15)
    out[1::2] = packed >> np.uint8(4)
    return out[:n]
