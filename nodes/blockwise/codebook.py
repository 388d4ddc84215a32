"""Code maps and the exact nearest-code lookup (numpy only; numba lives in `jit`).

API (the optimizer and quantizer nodes code against these names):

* ``dynamic_map(signed, bits=8)`` — the dynamic-tree map of Dettmers et al., "8-bit
  Optimizers via Block-wise Quantization" (2022), as float32, sorted, ``2**bits`` values.
  For ``bits=8`` it is bit-identical to bitsandbytes' ``create_dynamic_map(signed)``.
  For other widths (2..8) it is bitsandbytes' construction with
  ``max_exponent_bits = bits - 1`` (one decade of linear fractions per exponent bit), the
  choice that makes the construction yield exactly ``2**bits`` values; for signed 4-bit it
  equals bitsandbytes' ``create_dynamic_map(True, total_bits=4)`` with its 240 padding
  zeros dropped (bitsandbytes' default refuses unsigned 4-bit).
* ``linear_map(signed, bits=8)`` — ``2**bits`` evenly spaced values in [-1, 1] or [0, 1],
  i.e. ``torch.linspace`` (= bitsandbytes' ``create_linear_map(signed, 8, add_zero=False)``
  for 8 bits). The signed linear map has an even count, hence no exact zero.
* ``Codebook.build(values)`` / ``codebook(name, signed, bits)`` (cached) — a sorted map
  plus the tables of the fast lookup.
* ``nearest_code_reference(normalized, values)`` — the specification of the nearest code.
* ``encode`` (numba, from `flowopt.nodes.blockwise.jit`, re-exported here lazily).

Nearest code, exactly: code k of value x is the k minimising |x - values[k]| in exact
arithmetic; a tie (x exactly on a midpoint) goes to the lower code. Midpoints of two
float32 values are exact in float64, so the reference is ``searchsorted`` over float64
midpoints. NaN gets the top code (where ``searchsorted`` puts it); -inf code 0, +inf the
top code.

Fast lookup (docs/kernels.md habit 4): a 65,536-entry table indexed by the top 16 bits of the
float32 (sign, exponent, 7 mantissa bits) gives the code of the bucket's smallest value;
if the bucket holds a midpoint, one compare against ``table_thresholds`` (the smallest
float32 above it) adds 1. That is exact when no bucket holds two midpoints — checked at
build time (``table_exact``); otherwise kernels fall back to a branch-free binary search
over ``search``. ``table_entries`` packs both tables into one uint32 per bucket for the
8-lane AVX2 encoder (one gather instead of two): ``code << 17 | limit``, where ``limit``
is the threshold's low 16 bits, flipped for negative buckets so that an unsigned compare
of the value's (equally flipped) low 16 bits decides, and 0x10000 (never reached) for a
bucket without a midpoint. Every map this module ships is table-exact. The one inexactness is
unreachable from arithmetic: signalling NaNs whose payload fits in the low 16 bits share
a bucket with ±inf and encode like it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Codebook", "codebook", "dynamic_map", "linear_map",
           "nearest_code_reference"]

MapName = Literal["dynamic", "linear"]


def _torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps, dtype=float32)`` bit for bit, without torch.

    torch computes ``step = (end - start) / (steps - 1)`` in float32 and each entry as
    ``start + step*i`` (first half) or ``end - step*(steps-1-i)`` (second half) with a
    fused multiply-add; the float64 product-sum below is exact, so one rounding to float32
    reproduces the FMA (docs/kernels.md habit 7: plain np.linspace differs by an ulp).
    """
    s, e = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([s], np.float32)
    step = np.float64((e - s) / np.float32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    low = np.float64(s) + step * i
    high = np.float64(e) - step * (steps - 1 - i)
    return np.where(i < steps // 2, low, high).astype(np.float32)


def _check_bits(bits: int, low: int) -> None:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not low <= bits <= 8:
        raise ValueError(f"bits must be an integer in [{low}, 8], got {bits!r}")


def dynamic_map(signed: bool, bits: int = 8) -> np.ndarray:
    """The dynamic-tree map: per decade 10^-k, linearly spaced fractions in [0.1, 1].

    Built exactly like bitsandbytes' ``create_dynamic_map(signed, bits - 1, bits)``: the
    decade with exponent i carries the midpoints of ``2**i + 1`` (signed) or
    ``2**(i+1) + 1`` (unsigned, the sign bit becomes a fraction bit) linspace boundaries
    in [0.1, 1], scaled by ``10**(i - bits + 2)``; then 0 and 1 are added.
    """
    _check_bits(bits, 2)
    exponent_bits = bits - 1
    data: list[np.ndarray] = []
    for i in range(exponent_bits):
        items = 2 ** i + 1 if signed else 2 ** (i + 1) + 1
        bounds = _torch_linspace(0.1, 1.0, items)
        means = (bounds[:-1] + bounds[1:]) / np.float32(2.0)
        # torch multiplies a float32 tensor by a Python scalar in float32
        scale = np.float32(10.0 ** (-(exponent_bits - 1) + i))
        data.append(scale * means)
        if signed:
            data.append(-scale * means)
    data.append(np.array([0.0, 1.0], np.float32))
    values = np.sort(np.concatenate(data).astype(np.float32))
    if values.size != 2 ** bits or np.unique(values).size != values.size:
        raise AssertionError(f"dynamic map construction gave {values.size} values")
    return values


def linear_map(signed: bool, bits: int = 8) -> np.ndarray:
    """``2**bits`` evenly spaced float32 values from -1 (signed) or 0 to 1 (torch.linspace)."""
    _check_bits(bits, 1)
    return _torch_linspace(-1.0 if signed else 0.0, 1.0, 2 ** bits)


def _midpoints(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64)
    return (v[:-1] + v[1:]) / 2.0  # exact: two float32 summed in float64


def nearest_code_reference(normalized: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of the sorted ``values`` (ties to the lower code), uint8.

    The specification every kernel is tested against bit for bit: the number of exact
    midpoints strictly below x. NaN maps to the top code.
    """
    with np.errstate(invalid="ignore"):  # NaN payloads
        x = np.asarray(normalized, dtype=np.float32).astype(np.float64)
    return np.searchsorted(_midpoints(np.asarray(values, np.float32)), x, side="left").astype(np.uint8)


def _above(mid: np.ndarray) -> np.ndarray:
    """Smallest float32 strictly greater than each float64 midpoint."""
    f = mid.astype(np.float32)
    return np.where(f.astype(np.float64) > mid, f, np.nextafter(f, np.float32(np.inf))).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Codebook:
    """A sorted code map and its lookup tables. Build with `Codebook.build` or `codebook`.

    ``values``: float32, strictly increasing, 2..256 entries. ``thresholds``: float32,
    ``len(values) - 1``: x gets code k+1 or higher iff ``x >= thresholds[k]``.
    ``search``: thresholds padded with +inf to ``2**ceil(log2 n) - 1`` entries for the
    branch-free binary search. ``table``/``table_thresholds``: 65,536 entries each, see
    the module docstring; ``table_entries``: both packed into one uint32 per bucket;
    ``table_exact`` says whether the tables may be used.
    """

    values: np.ndarray
    thresholds: np.ndarray
    search: np.ndarray
    table: np.ndarray
    table_thresholds: np.ndarray
    table_entries: np.ndarray
    table_exact: bool

    @property
    def size(self) -> int:
        return int(self.values.size)

    @property
    def zero_code(self) -> int:
        """The code an all-zero block gets (nearest to 0; ties go low)."""
        return int(nearest_code_reference(np.zeros(1, np.float32), self.values)[0])

    @classmethod
    def build(cls, values: Any) -> Codebook:
        v = np.ascontiguousarray(values, dtype=np.float32)
        if v.ndim != 1 or not 2 <= v.size <= 256:
            raise ValueError(f"a code map needs 2..256 values in one dimension, got shape {v.shape}")
        if not np.all(np.isfinite(v)) or not np.all(np.diff(v) > 0):
            raise ValueError("code map values must be finite and strictly increasing")
        mid = _midpoints(v)
        thresholds = _above(mid)
        width = 1 << int(np.ceil(np.log2(v.size)))
        search = np.full(width - 1, np.inf, np.float32)
        search[: thresholds.size] = thresholds
        table, table_thresholds, exact = _bucket_tables(mid, thresholds)
        entries = _packed_entries(table, table_thresholds)
        for a in (v, thresholds, search, table, table_thresholds, entries):
            a.setflags(write=False)
        return cls(v, thresholds, search, table, table_thresholds, entries, exact)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The map's values at ``codes`` (float32), before scaling by absmax."""
        return self.values[np.asarray(codes, dtype=np.intp)]


def _bucket_tables(mid: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    top = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    negative = top >= np.uint32(0x80000000)
    # smallest and largest float32 of each bucket (negative buckets run backwards in bits)
    low_bits = np.where(negative, top | np.uint32(0xFFFF), top)
    high_bits = np.where(negative, top, top | np.uint32(0xFFFF))
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        low = low_bits.view(np.float32).astype(np.float64)
        high = high_bits.view(np.float32).astype(np.float64)
    # the ±inf buckets also hold NaN payloads: treat them as their infinity
    low = np.where(np.isnan(low) & ~np.isnan(high), high, low)
    high = np.where(np.isnan(high) & ~np.isnan(low), low, high)
    base = np.searchsorted(mid, low, side="left")
    inside = np.searchsorted(mid, high, side="left") - base
    table = base.astype(np.uint8)
    table_thresholds = np.full(1 << 16, np.nan, np.float32)  # NaN: the compare never passes
    one = inside == 1
    table_thresholds[one] = thresholds[base[one]]
    return table, table_thresholds, bool(np.all(inside <= 1))


def _packed_entries(table: np.ndarray, table_thresholds: np.ndarray) -> np.ndarray:
    bits = table_thresholds.view(np.uint32)
    flip = np.where(bits >> np.uint32(31) == 1, np.uint32(0xFFFF), np.uint32(0))
    limit = np.where(np.isnan(table_thresholds), np.uint32(0x10000), (bits ^ flip) & np.uint32(0xFFFF))
    return ((table.astype(np.uint32) << np.uint32(17)) | limit).astype(np.uint32)


@functools.lru_cache(maxsize=None)
def codebook(name: MapName, signed: bool, bits: int = 8) -> Codebook:
    """The cached `Codebook` of a shipped map: ``"dynamic"`` or ``"linear"``."""
    if name == "dynamic":
        return Codebook.build(dynamic_map(signed, bits))
    if name == "linear":
        return Codebook.build(linear_map(signed, bits))
    raise ValueError(f"unknown code map {name!r} (expected 'dynamic' or 'linear')")


def __getattr__(name: str) -> Any:
    # `encode` is a numba function; importing numba here would slow every node import
    if name == "encode":
        from .jit import encode

        return encode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
