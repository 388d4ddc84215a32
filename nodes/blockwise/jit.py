"""numba kernels of block-wise quantization; imported only when a kernel first runs.

Everything here is ``@njit(cache=True, error_model="numpy")``: a later process loads the
machine code from numba's on-disk cache instead of compiling (docs/kernels.md habit 6), and float
division by zero follows IEEE like numpy — numba's default Python error model adds a
ZeroDivisionError branch to every division, which alone kept LLVM from vectorising the
Adam update loop. The plain-numpy specifications are in `quantize` and `codebook`; tests
hold these kernels to them bit for bit. Helpers are ordinary njit functions, not ``inline="always"``: LLVM inlines them
anyway, and numba-level inlining made the fused Adam kernel compile ≈ 1.6× longer.

Building blocks other kernels use (the fused optimizer steps do):

* ``encode(x, table, table_thresholds) -> uint8`` — exact nearest code of one float32
  (already divided by its block's absmax) through the 65,536-entry table of a
  table-exact `Codebook`; ``encode_search(x, search)`` is the branch-free binary-search
  fallback; ``encode_any`` picks one by a loop-invariant flag (LLVM unswitches it).
* ``encode_block(x, a, book tables…, codes)`` — codes of ``x / a`` for a whole block.
  On CPUs with AVX2 it handles 8 values at a time in one hand-written LLVM sequence
  (``encode8``: vector division, one ``vpgatherdd`` of the packed ``table_entries``,
  integer compare): LLVM never vectorises the table lookup itself (it thinks gathers
  slow on AMD Zen), and the scalar loop costs ≈ 7 instructions per value. Elsewhere, and
  for the last ``len % 8`` values, the scalar `encode`.
* ``decode_block(codes, planes, values, a, out)`` — ``out = values[codes] * a``; 64 codes
  per step without a gather where the CPU has AVX512-VBMI (`avx512.decode64`), else a
  scalar loop. On AVX-512 CPUs ``encode_block`` takes 16 values per step and multiplies by the
  reciprocal of absmax, with an exact fallback (`avx512.encode16_reciprocal`) — except on
  AMD Zen 4 (`avx512.AMD_ZEN`), where the 8-lane division (``encode8``) is faster
  (0.45 against 0.71 ns per value, measured on the requantisation of a gradient).
* ``block_absmax(bits)`` — absmax of a block from its float32 bit patterns: an unsigned
  integer max of ``bits & 0x7FFFFFFF``. It vectorises (a float max does not without
  fast-math, habit 2), orders magnitudes exactly like floats, and returns NaN (a pattern
  above +inf) if the block holds one — the same as ``np.max(np.abs(block))``.
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import config, njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .avx512 import AMD_ZEN, HAS_AVX512, HAS_VBMI, decode64, encode16, encode16_reciprocal

_SIGN_OFF = np.uint32(0x7FFFFFFF)


def _host_has_avx2() -> bool:
    if config.CPU_NAME is not None:  # cross-compiling for a named CPU: stay portable
        return "+avx2" in (config.CPU_FEATURES or "")
    return bool(llvm.get_host_cpu_features().get("avx2", False))


HAS_AVX2 = _host_has_avx2()


@intrinsic
def float_bits(typingctx, x):  # noqa: ARG001 - numba's intrinsic signature
    """The IEEE bit pattern of a float32 as uint32 (a register bitcast)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def bits_float(typingctx, u):  # noqa: ARG001
    """The float32 whose bit pattern is the uint32 ``u``."""
    if u != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


_I8, _I32 = ir.IntType(8), ir.IntType(32)
_V8I, _V8F, _V8B = ir.VectorType(_I32, 8), ir.VectorType(ir.FloatType(), 8), ir.VectorType(_I8, 8)


def _lanes(value: int) -> ir.Constant:
    return ir.Constant(_V8I, [value] * 8)


@intrinsic
def encode8(typingctx, x, start, scale, entries, codes):  # noqa: ARG001
    """``codes[start:start+8]`` = exact nearest codes of ``x[start:start+8] / scale`` (AVX2).

    Same result as 8 scalar `encode` calls on the IEEE quotients (see
    `Codebook.table_entries` for the packed entry). Caller guarantees the 8 lanes exist.
    """
    arrays = (x, types.float32), (entries, types.uint32), (codes, types.uint8)
    if not all(isinstance(a, types.Array) and a.dtype == dtype for a, dtype in arrays):
        return None

    def codegen(context, builder, signature, args):
        xs, i, a, table, out = args
        xa = context.make_array(signature.args[0])(context, builder, xs)
        ca = context.make_array(signature.args[4])(context, builder, out)
        ta = context.make_array(signature.args[3])(context, builder, table)
        vx = builder.load(builder.bitcast(builder.gep(xa.data, [i]), _V8F.as_pointer()), align=4)
        splat = builder.insert_element(ir.Constant(_V8F, ir.Undefined), a, ir.Constant(_I32, 0))
        splat = builder.shuffle_vector(splat, ir.Constant(_V8F, ir.Undefined), _lanes(0))
        bits = builder.bitcast(builder.fdiv(vx, splat), _V8I)
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V8I, [_V8I, _I8.as_pointer(), _V8I, _V8I, _I8]),
            "llvm.x86.avx2.gather.d.d.256")
        entry = builder.call(gather, [_lanes(0), builder.bitcast(ta.data, _I8.as_pointer()),
                                      builder.lshr(bits, _lanes(16)), _lanes(-1), ir.Constant(_I8, 4)])
        key = builder.and_(builder.xor(bits, builder.ashr(bits, _lanes(31))), _lanes(0xFFFF))
        above = builder.icmp_signed(">=", key, builder.and_(entry, _lanes(0x1FFFF)))
        code = builder.add(builder.lshr(entry, _lanes(17)), builder.zext(above, _V8I))
        target = builder.bitcast(builder.gep(ca.data, [i]), _V8B.as_pointer())
        builder.store(builder.trunc(code, _V8B), target, align=1)
        return context.get_dummy_value()

    return types.void(x, start, scale, entries, codes), codegen


@njit(cache=True, error_model="numpy")
def encode(x, table, table_thresholds):
    """Exact nearest code of float32 ``x``: bucket by the top 16 bits, one compare."""
    u = float_bits(x) >> np.uint32(16)
    c = table[u]
    if x >= table_thresholds[u]:  # NaN threshold (no midpoint in the bucket): never
        c += np.uint8(1)
    return c


@njit(cache=True, error_model="numpy")
def encode_search(x, search):
    """Exact nearest code by a branch-free binary search over ``Codebook.search``."""
    c = 0
    step = (search.size + 1) >> 1
    while step > 0:
        if not x < search[c + step - 1]:  # NaN counts as above every threshold
            c += step
        step >>= 1
    n = search.size  # search holds 2**k - 1 entries; pads are +inf
    return np.uint8(c if c < n else n)


@njit(cache=True, error_model="numpy")
def encode_any(x, exact, table, table_thresholds, search, top):
    if exact:
        return encode(x, table, table_thresholds)
    c = encode_search(x, search)
    return c if c < top else top


@njit(cache=True, error_model="numpy")
def _encode_block_scalar(x, a, entries, table, table_thresholds, codes):
    for j in range(x.size):
        codes[j] = encode(x[j] / a, table, table_thresholds)


@njit(cache=True, error_model="numpy")
def _encode_block_avx2(x, a, entries, table, table_thresholds, codes):
    n = x.size
    i = 0
    while i + 8 <= n:
        encode8(x, i, a, entries, codes)
        i += 8
    for j in range(i, n):
        codes[j] = encode(x[j] / a, table, table_thresholds)


_SMALLEST_NORMAL = np.float32(1.1754944e-38)


@njit(cache=True, error_model="numpy")
def _encode_block_avx512(x, a, entries, table, table_thresholds, codes):
    n = x.size
    i = 0
    if a >= _SMALLEST_NORMAL and a < np.inf:   # 1/a is finite and within 2⁻²⁴ of exact
        r = np.float32(1.0) / a
        while i + 16 <= n:
            encode16_reciprocal(x, i, a, r, entries, codes)
            i += 16
    else:
        while i + 16 <= n:
            encode16(x, i, a, entries, codes)
            i += 16
    for j in range(i, n):
        codes[j] = encode(x[j] / a, table, table_thresholds)


# On AMD Zen 4 (`avx512.AMD_ZEN`) 8 lanes per gather with a division beat the 16-lane
# reciprocal encoder (measured inside the fused Adam step); elsewhere the widest wins.
encode_block = (_encode_block_avx2 if HAS_AVX2 and AMD_ZEN else
                _encode_block_avx512 if HAS_AVX512 else
                _encode_block_avx2 if HAS_AVX2 else _encode_block_scalar)


@njit(cache=True, error_model="numpy")
def _decode_block_scalar(codes, planes, values, a, out):
    for j in range(codes.size):
        out[j] = values[codes[j]] * a


@njit(cache=True, error_model="numpy")
def _decode_block_vbmi(codes, planes, values, a, out):
    n = codes.size
    i = 0
    while i + 64 <= n:
        decode64(codes, i, planes, a, out)
        i += 64
    for j in range(i, n):
        out[j] = values[codes[j]] * a


# ``decode_block(codes, planes, values, a, out)``: out = values[codes] * a, bit-exact either
# way; ``planes`` is `avx512.value_planes(values)` (unused without AVX512-VBMI).
decode_block = _decode_block_vbmi if HAS_VBMI else _decode_block_scalar


@njit(cache=True, error_model="numpy")
def block_absmax(bits):
    """absmax of a block given as its uint32 bit patterns (NaN if it holds a NaN)."""
    m = np.uint32(0)
    for j in range(bits.size):
        a = np.uint32(bits[j] & _SIGN_OFF)
        m = a if a > m else m
    return bits_float(np.uint32(m))


@njit(cache=True, parallel=True, error_model="numpy")
def quantize_kernel(x, bits, block_size, table, table_thresholds, table_entries, search, exact,
                    top, zero_code, codes, absmax):
    """Codes and per-block absmax of flat float32 ``x`` (``bits`` is x viewed as uint32)."""
    n = x.size
    for b in prange(absmax.size):
        s = b * block_size
        e = min(s + block_size, n)
        xb = x[s:e]
        cb = codes[s:e]
        a = block_absmax(bits[s:e])
        absmax[b] = a
        if a == 0:
            cb[:] = zero_code
        elif exact:
            encode_block(xb, a, table_entries, table, table_thresholds, cb)
        else:
            for j in range(xb.size):
                cb[j] = encode_any(xb[j] / a, exact, table, table_thresholds, search, top)


@njit(cache=True, parallel=True, error_model="numpy")
def dequantize_kernel(codes, absmax, block_size, values, out):
    """``out[i] = values[codes[i]] * absmax[i // block_size]``."""
    n = codes.size
    for b in prange(absmax.size):
        s = b * block_size
        e = min(s + block_size, n)
        a = absmax[b]
        cb = codes[s:e]
        ob = out[s:e]
        for j in range(cb.size):
            ob[j] = values[cb[j]] * a


@njit(cache=True, parallel=True, error_model="numpy")
def encode_kernel(x, table, table_thresholds, table_entries, search, exact, top, vector, codes):
    """Nearest code of every (already normalized) value of ``x``, in chunks of 4096.

    ``vector`` picks `encode_block` (x / 1 is x, so the AVX2 path is exercised) over the
    scalar `encode_any`; the tests sweep both.
    """
    n = x.size
    for c in prange((n + 4095) // 4096):
        s = c * 4096
        e = min(s + 4096, n)
        xc = x[s:e]
        cc = codes[s:e]
        if vector and exact:
            encode_block(xc, np.float32(1.0), table_entries, table, table_thresholds, cc)
        else:
            for j in range(xc.size):
                cc[j] = encode_any(xc[j], exact, table, table_thresholds, search, top)
