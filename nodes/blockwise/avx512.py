"""AVX-512 building blocks of the fused 8-bit optimizer steps (numba intrinsics).

Why hand-written: LLVM's loop vectoriser targets 256-bit vectors on every AVX-512 CPU
(the ``prefer-256-bit`` tuning), so the Adam update's square root and division — the two
slowest vector instructions — ran 8 lanes per instruction; it never vectorises a 256-entry
table lookup without gathers (slow on Intel since the gather-data-sampling microcode);
and it cannot know the codebook's structure. Explicit 512-bit IR types are legal in any
function without a ``min-legal-vector-width`` attribute (numba sets none), so an
intrinsic that spells out ``<16 x float>`` gets 16 lanes per instruction.

* ``decode64(codes, start, planes, scale, out)`` — ``out[start:start+64] =
  values[codes[start:start+64]] * scale`` without a gather (AVX512-VBMI): ``planes`` holds
  the 256 float32 code values as four 256-byte planes (byte k of every value), and each
  plane is looked up 64 codes at a time by two ``vpermi2b`` (codes below / above 128),
  then the bytes are interleaved back into floats. Bit-exact: it moves the table's bits.
* ``encode16(x, start, scale, entries, codes)`` — `jit.encode8` on 16 lanes: IEEE
  division by the block's absmax (the quotient is bit-identical to the scalar one), one
  ``vpgatherdd`` of the packed 65,536-entry table, one integer compare.
* ``encode16_reciprocal(x, start, scale, inv_scale, entries, codes)`` — the same codes
  with a multiplication by ``1/scale``; lanes within 2 ulps of a bucket edge or threshold
  send the 16 back through the division (see its docstring for the bound).
* ``adam16(...)`` — 16 lanes of the Adam update, bit-identical to the scalar loop.
* ``value_planes(values)`` — the byte planes ``decode64`` reads.

``HAS_AVX512`` (F, BW) gates ``encode16*`` and ``adam16``; ``HAS_VBMI`` gates ``decode64`` and
``adam64``; ``AMD_ZEN`` makes the fused Adam step encode by division, 8 lanes per gather. Callers keep
a portable path for other CPUs (the tests hold both to the same numpy reference).
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.core.extending import intrinsic


def _host_features(*names: str) -> bool:
    if config.CPU_NAME is not None:  # cross-compiling for a named CPU: stay portable
        return all(f"+{n}" in (config.CPU_FEATURES or "") for n in names)
    features = llvm.get_host_cpu_features()
    return all(bool(features.get(n, False)) for n in names)


HAS_AVX512 = _host_features("avx512f", "avx512bw")
HAS_VBMI = HAS_AVX512 and _host_features("avx512vbmi")


def _amd_zen() -> bool:
    name = config.CPU_NAME if config.CPU_NAME is not None else llvm.get_host_cpu_name()
    return str(name).startswith("znver")


# AMD Zen 4 (LLVM ``znver*``): inside the fused Adam step, encoding by division beats the
# reciprocal's multiply + edge checks (≈ 5% less CPU time per step, paired runs), and
# 8-lane gathers (`jit.encode8`) beat 16-lane ones (≈ 4% more). On the Intel AVX-512 CPUs
# measured, the 16-lane reciprocal encoder was the faster one.
AMD_ZEN = _amd_zen()

_I1, _I8, _I16, _I32, _F32 = (ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32),
                              ir.FloatType())


def _vec(t: ir.Type, n: int) -> ir.VectorType:
    return ir.VectorType(t, n)


def _const(t: ir.Type, values) -> ir.Constant:
    values = list(values)
    return ir.Constant(_vec(t, len(values)), values)


def _splat(builder, value, n: int):
    vt = _vec(value.type, n)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined), _const(_I32, [0] * n))


def _load(builder, data, index, vt):
    return builder.load(builder.bitcast(builder.gep(data, [index]), vt.as_pointer()), align=1)


def _store(builder, value, data, index):
    builder.store(value, builder.bitcast(builder.gep(data, [index]), value.type.as_pointer()),
                  align=1)


def _function(builder, name: str, fnty: ir.FunctionType):
    return cgutils.get_or_insert_function(builder.module, fnty, name)


def value_planes(values: np.ndarray) -> np.ndarray:
    """The 256 float32 ``values`` as 1,024 bytes: plane p (bytes 256p..256p+255) holds
    byte p (little-endian) of every value."""
    v = np.ascontiguousarray(values, np.float32)
    if v.size != 256:
        raise ValueError(f"decode64 needs a 256-entry code map, got {v.size}")
    return np.ascontiguousarray(v.view(np.uint8).reshape(256, 4).T).reshape(-1)


def _decoded64(builder, codes, i, planes, scale):
    """``values[codes[i:i+64]] * scale`` as a ``<64 x float>`` (``planes``: uint8 pointer)."""
    v64b = _vec(_I8, 64)
    idx = _load(builder, codes, i, v64b)
    permute = _function(builder, "llvm.x86.avx512.vpermi2var.qi.512",
                        ir.FunctionType(v64b, [v64b, v64b, v64b]))
    high = builder.icmp_signed("<", idx, ir.Constant(v64b, None))  # codes 128..255
    planes_ = []
    for p in range(4):
        t = [_load(builder, planes, ir.Constant(_I32, 256 * p + 64 * k), v64b) for k in range(4)]
        low_half = builder.call(permute, [t[0], idx, t[1]])   # bit 6 picks t0 / t1
        high_half = builder.call(permute, [t[2], idx, t[3]])
        planes_.append(builder.select(high, high_half, low_half))
    pairs = _const(_I32, [x for k in range(64) for x in (k, 64 + k)])
    low16 = builder.bitcast(builder.shuffle_vector(planes_[0], planes_[1], pairs), _vec(_I16, 64))
    high16 = builder.bitcast(builder.shuffle_vector(planes_[2], planes_[3], pairs), _vec(_I16, 64))
    words = builder.shuffle_vector(low16, high16, pairs)
    return builder.fmul(builder.bitcast(words, _vec(_F32, 64)), _splat(builder, scale, 64))


def _data(context, builder, signature, args, k):
    return context.make_array(signature.args[k])(context, builder, args[k]).data


@intrinsic
def decode64(typingctx, codes, start, planes, scale, out):  # noqa: ARG001
    """``out[start:start+64] = values[codes[start:start+64]] * scale`` (see module doc)."""
    arrays = (codes, types.uint8), (planes, types.uint8), (out, types.float32)
    if not all(isinstance(a, types.Array) and a.dtype == t for a, t in arrays):
        return None

    def codegen(context, builder, signature, args):
        data = [_data(context, builder, signature, args, k) for k in (0, 2, 4)]
        _store(builder, _decoded64(builder, data[0], args[1], data[1], args[3]), data[2], args[1])
        return context.get_dummy_value()

    return types.void(codes, start, planes, scale, out), codegen


def _gather(builder, table, index):
    """``table[index]`` for 16 uint32 lanes: one ``vpgatherdd``."""
    v16i = _vec(_I32, 16)
    gather = _function(builder, "llvm.x86.avx512.mask.gather.dpi.512", ir.FunctionType(
        v16i, [v16i, _I8.as_pointer(), v16i, _vec(_I1, 16), _I32]))
    return builder.call(gather, [ir.Constant(v16i, None), builder.bitcast(table, _I8.as_pointer()),
                                 index, ir.Constant(_vec(_I1, 16), [1] * 16), ir.Constant(_I32, 4)])


@intrinsic
def encode16(typingctx, x, start, scale, entries, codes):  # noqa: ARG001
    """``codes[start:start+16]`` = exact nearest codes of ``x[start:start+16] / scale``.

    `jit.encode8` on 16 lanes (same packed entries, same compare); caller guarantees the
    16 lanes exist.
    """
    arrays = (x, types.float32), (entries, types.uint32), (codes, types.uint8)
    if not all(isinstance(a, types.Array) and a.dtype == t for a, t in arrays):
        return None

    def codegen(context, builder, signature, args):
        xs, i, a, table, out = args
        xa = context.make_array(signature.args[0])(context, builder, xs)
        ta = context.make_array(signature.args[3])(context, builder, table)
        ca = context.make_array(signature.args[4])(context, builder, out)
        v16i, v16f = _vec(_I32, 16), _vec(_F32, 16)
        lanes = (lambda value: ir.Constant(v16i, [value] * 16))
        vx = _load(builder, xa.data, i, v16f)
        bits = builder.bitcast(builder.fdiv(vx, _splat(builder, a, 16)), v16i)
        entry = _gather(builder, ta.data, builder.lshr(bits, lanes(16)))
        key = builder.and_(builder.xor(bits, builder.ashr(bits, lanes(31))), lanes(0xFFFF))
        above = builder.icmp_signed(">=", key, builder.and_(entry, lanes(0x1FFFF)))
        code = builder.add(builder.lshr(entry, lanes(17)), builder.zext(above, v16i))
        _store(builder, builder.trunc(code, _vec(_I8, 16)), ca.data, i)
        return context.get_dummy_value()

    return types.void(x, start, scale, entries, codes), codegen


def _adam_lanes(builder, p, g, m, v, scalars):
    """The Adam update of 16 lanes: (new θ, new m, new v), the scalar loop's operations
    in its order (no FMA contraction: llvmlite emits no fast-math flags)."""
    b1_, c1_, b2_, c2_, ss, r2, eps_, dec, shr, coupled_, decoupled_ = scalars
    splat = (lambda s: _splat(builder, s, 16))
    g = builder.select(coupled_, builder.fadd(g, builder.fmul(splat(dec), p)), g)
    p = builder.select(decoupled_, builder.fmul(p, splat(shr)), p)
    mn = builder.fadd(builder.fmul(splat(b1_), m), builder.fmul(splat(c1_), g))
    vn = builder.fadd(builder.fmul(splat(b2_), v), builder.fmul(splat(c2_), builder.fmul(g, g)))
    v16f = _vec(_F32, 16)
    sqrt = _function(builder, "llvm.sqrt.v16f32", ir.FunctionType(v16f, [v16f]))
    denom = builder.fadd(builder.fmul(builder.call(sqrt, [vn]), splat(r2)), splat(eps_))
    return builder.fsub(p, builder.fmul(splat(ss), builder.fdiv(mn, denom))), mn, vn


@intrinsic
def adam16(typingctx, param, grad, m, v, start, b1, c1, b2, c2, step_size, inv_correction2,  # noqa: ARG001
           eps, decay, shrink, coupled, decoupled):
    """16 lanes of the 8-bit Adam update (`flowopt.nodes.optimizer.kernels`), in place on
    ``param[start:]`` and the dequantized moments ``m``/``v``: the same float32 operations
    in the same order as the scalar loop (no contraction into FMAs), so bit-identical."""
    arrays = (param, grad, m, v)
    if not all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays):
        return None

    def codegen(context, builder, signature, args):
        i = args[4]
        data = [_data(context, builder, signature, args, k) for k in range(4)]
        v16f = _vec(_F32, 16)
        p, mn, vn = _adam_lanes(builder, *(_load(builder, d, i, v16f) for d in data), args[5:])
        for value, d in zip((p, mn, vn), (data[0], data[2], data[3])):
            _store(builder, value, d, i)
        return context.get_dummy_value()

    return types.void(param, grad, m, v, start, b1, c1, b2, c2, step_size, inv_correction2,
                      eps, decay, shrink, coupled, decoupled), codegen


@intrinsic
def adam64(typingctx, param, grad, m_codes, v_codes, start, m_planes, v_planes, m_scale,  # noqa: ARG001
           v_scale, m_out, v_out, absmax_bits, b1, c1, b2, c2, step_size, inv_correction2, eps,
           decay, shrink, coupled, decoupled):
    """64 values of the fused 8-bit Adam step in one pass: `decode64` of both moments (kept
    in registers), four `adam16` updates (θ stored in place), the new moments stored to
    ``m_out``/``v_out[start:start+64]`` for the encoder, and their magnitudes folded into
    the running per-lane maxima ``absmax_bits[0:16]`` (m) and ``[16:32]`` (v): an unsigned
    max of ``bits & 0x7FFFFFFF``, exactly `jit.block_absmax` (NaN above +inf). Bit-identical
    to decode64 + adam16 + block_absmax; the moments never take a trip through memory
    before the update, and the block needs no separate absmax pass."""
    arrays = ((param, types.float32), (grad, types.float32), (m_codes, types.uint8),
              (v_codes, types.uint8), (m_planes, types.uint8), (v_planes, types.uint8),
              (m_out, types.float32), (v_out, types.float32), (absmax_bits, types.uint32))
    if not all(isinstance(a, types.Array) and a.dtype == t for a, t in arrays):
        return None

    def codegen(context, builder, signature, args):
        i = args[4]
        ps, gs, mc, vc = (_data(context, builder, signature, args, k) for k in range(4))
        mp, vp = (_data(context, builder, signature, args, k) for k in (5, 6))
        mo, vo, acc = (_data(context, builder, signature, args, k) for k in (9, 10, 11))
        v16f, v16i = _vec(_F32, 16), _vec(_I32, 16)
        umax = _function(builder, "llvm.umax.v16i32", ir.FunctionType(v16i, [v16i, v16i]))
        magnitude = ir.Constant(v16i, [0x7FFFFFFF] * 16)
        m64 = _decoded64(builder, mc, i, mp, args[7])
        v64 = _decoded64(builder, vc, i, vp, args[8])
        top = [_load(builder, acc, ir.Constant(_I32, 16 * k), v16i) for k in range(2)]
        for q in range(4):
            lanes = _const(_I32, range(16 * q, 16 * q + 16))
            j = builder.add(i, ir.Constant(i.type, 16 * q))
            p, mn, vn = _adam_lanes(
                builder, _load(builder, ps, j, v16f), _load(builder, gs, j, v16f),
                builder.shuffle_vector(m64, ir.Constant(m64.type, ir.Undefined), lanes),
                builder.shuffle_vector(v64, ir.Constant(v64.type, ir.Undefined), lanes), args[12:])
            _store(builder, p, ps, j)
            for k, (value, out) in enumerate(((mn, mo), (vn, vo))):
                _store(builder, value, out, j)
                bits = builder.and_(builder.bitcast(value, v16i), magnitude)
                top[k] = builder.call(umax, [top[k], bits])
        for k in range(2):
            _store(builder, top[k], acc, ir.Constant(_I32, 16 * k))
        return context.get_dummy_value()

    return types.void(param, grad, m_codes, v_codes, start, m_planes, v_planes, m_scale, v_scale,
                      m_out, v_out, absmax_bits, b1, c1, b2, c2, step_size, inv_correction2, eps,
                      decay, shrink, coupled, decoupled), codegen


@intrinsic
def encode16_reciprocal(typingctx, x, start, scale, inv_scale, entries, codes):  # noqa: ARG001
    """`encode16` with a multiplication by ``inv_scale = 1/scale`` instead of a division,
    and the same codes.

    With ``scale`` a normal float32, ``x * fl(1/scale)`` is within 2 ulps of the IEEE
    quotient ``x / scale`` (relative errors 2⁻²⁴ of the reciprocal and 2⁻²⁴ of each
    rounding), so its code can differ only when the quotient lies within 2 ulps of a
    bucket's edge or of the bucket's threshold. Those lanes are detected (integer compares
    on the bits already at hand), and if any of the 16 is one of them, the 16 are encoded
    again with the division — rare: about 5 bit patterns in 65,536 per edge or threshold.
    Caller guarantees ``scale`` is normal and finite, and that the 16 lanes exist.
    """
    arrays = (x, types.float32), (entries, types.uint32), (codes, types.uint8)
    if not all(isinstance(a, types.Array) and a.dtype == t for a, t in arrays):
        return None

    def codegen(context, builder, signature, args):
        xs, i, a, r, table, out = args
        xa = context.make_array(signature.args[0])(context, builder, xs)
        ta = context.make_array(signature.args[4])(context, builder, table)
        ca = context.make_array(signature.args[5])(context, builder, out)
        v16i, v16f = _vec(_I32, 16), _vec(_F32, 16)
        lanes = (lambda value: ir.Constant(v16i, [value] * 16))
        vx = _load(builder, xa.data, i, v16f)

        def codes_of(bits):
            entry = _gather(builder, ta.data, builder.lshr(bits, lanes(16)))
            key = builder.and_(builder.xor(bits, builder.ashr(bits, lanes(31))), lanes(0xFFFF))
            limit = builder.and_(entry, lanes(0x1FFFF))
            above = builder.icmp_signed(">=", key, limit)
            code = builder.add(builder.lshr(entry, lanes(17)), builder.zext(above, v16i))
            return builder.trunc(code, _vec(_I8, 16)), key, limit

        bits = builder.bitcast(builder.fmul(vx, _splat(builder, r, 16)), v16i)
        fast, key, limit = codes_of(bits)
        low = builder.and_(builder.add(builder.and_(bits, lanes(0xFFFF)), lanes(2)), lanes(0xFFFF))
        edge = builder.icmp_unsigned("<", low, lanes(5))            # low 16 bits within ±2 of a bucket edge
        near = builder.icmp_unsigned("<", builder.add(builder.sub(key, limit), lanes(2)), lanes(5))
        risky = builder.bitcast(builder.or_(edge, near), _I16)
        with builder.if_else(builder.icmp_unsigned("!=", risky, ir.Constant(_I16, 0)),
                             likely=False) as (slow_path, fast_path):
            with slow_path:
                exact, _, _ = codes_of(builder.bitcast(builder.fdiv(vx, _splat(builder, a, 16)), v16i))
                _store(builder, exact, ca.data, i)
            with fast_path:
                _store(builder, fast, ca.data, i)
        return context.get_dummy_value()

    return types.void(x, start, scale, inv_scale, entries, codes), codegen
