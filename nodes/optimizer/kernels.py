"""Fused numba optimizer steps for the CPU (8-bit Adam/AdamW, 8-bit momentum SGD, Lion).

Imports numba: import this module lazily (when a step runs), never at node import.

API (the optimizer nodes code against these names; all arrays flat, C-contiguous,
updated in place; ``param``/``grad``/``exp_avg`` float32, codes uint8, absmax float32
with ``ceil(n / block_size)`` entries):

* ``adam8bit_step(param, grad, m_codes, m_absmax, v_codes, v_absmax, *, step, lr, beta1,
  beta2, eps, weight_decay, decoupled, block_size)`` — Adam (Kingma & Ba 2015) with both
  moments stored as in Dettmers et al. 2022, "8-bit Optimizers via Block-wise
  Quantization": m with the signed dynamic map, v with the unsigned one, one absmax per
  block. ``decoupled=True`` is AdamW (Loshchilov & Hutter 2019): θ ← θ·(1 − lr·λ);
  otherwise λθ is added to the gradient. State: 2 bytes per parameter + 8 per block.
* ``momentum8bit_step(param, grad, codes, absmax, *, step, lr, momentum, dampening,
  nesterov, weight_decay, block_size)`` — ``torch.optim.SGD`` semantics with the momentum
  buffer in 8 bits (signed dynamic map); step 1 sets the buffer to the gradient. With
  momentum 0 it is plain SGD and the state is left untouched.
* ``lion_step(param, grad, exp_avg, *, lr, beta1, beta2, weight_decay)`` — Lion (Chen et
  al. 2023, Program 1) in float32: θ ← θ·(1 − lr·λ); θ ← θ − lr·sign(β1·m + (1−β1)·g);
  m ← β2·m + (1−β2)·g. sign(0) = 0; sign(NaN) = NaN.
* ``adam8bit_state(n, block_size)`` / ``momentum8bit_state(n, block_size)``: zero states.
* ``*_reference``: the plain-numpy specification of each step (dequantize, update in
  float32, requantize with `nearest_code_reference`); the kernels match it bit for bit
  (codes, absmax and parameters: same float32 operations in the same order).

The 8-bit update, per element, in float32 (hyper-parameters rounded to float32 once,
bias corrections computed in float64 first)::

    g ← g + λθ                      (Adam, λ ≠ 0)     θ ← θ·(1 − lr·λ)   (AdamW)
    m ← β1·m + (1−β1)·g             v ← β2·v + (1−β2)·(g·g)
    θ ← θ − s·(m / (√v·r2 + ε))     s = lr / (1 − β1^t),  r2 = 1 / √(1 − β2^t)

(torch divides √v by √(1 − β2^t); multiplying by the float32 reciprocal differs by at
most an ulp in the denominator and takes one of the update's two divisions off the
divider, which the requantization also needs)

The parameter update uses the full-precision new moments; only what is stored is
quantized (as bitsandbytes does). Requantization is `quantize_blockwise`'s: new absmax per
block, exact nearest code of m / absmax.

Layout (docs/kernels.md habits 1, 3, 5): one parallel kernel per tensor; each worker owns a run
of whole blocks and two block-sized float32 scratch buffers (allocated once per worker per
call: no per-element or whole-tensor temporaries). Tensors under ``SERIAL_BELOW`` (65,536)
parameters run the same block loop on the calling thread. Per block: (1) dequantize both
states into scratch (`decode_block`: 64 codes per two ``vpermi2b`` per byte plane with
AVX512-VBMI, else scalar table loads); (2) the update, reading/writing θ, g and scratch —
16 lanes per instruction on AVX-512 (`avx512.adam16`), else auto-vectorised; (3) absmax
of the new moments by an integer max over their bit patterns; (4) `encode_block`: on
AVX-512 multiply by the reciprocal of absmax, 16 values per gather, with an exact
fallback near bucket edges and thresholds; 8 values per gather with a division on AVX2
and on AMD Zen (`avx512.AMD_ZEN`, where that is the faster one).
Every path gives the same bits (tests hold each path the CPU has to the reference). Any
positive block size works; the optimizer nodes ask for multiples of 64 so that no two
threads write the same cache line.

On AVX512-VBMI CPUs the block loop is software-pipelined
(`_adam8bit_blocks_pipelined`): steps (1)–(3) are one pass per 64 values
(`avx512.adam64`: the decoded moments stay in registers, the absmax is a running
per-lane maximum), and block b's pass, which streams θ and g, is interleaved with block
b-1's requantisation, which only computes. On AMD Zen 4 (`avx512.AMD_ZEN`) the
requantisation divides instead of multiplying by the reciprocal, 8 values per gather
(same codes, cheaper there).

Measured (``benchmarks/optimizers.py --profile``, one core): ≈ 1.7 ns per parameter
on an Intel Xeon before `adam64` (torch's fused float32 Adam ≈ 1.25 ns) and ≈ 2.1 ns on
an AMD EPYC Zen 4 (torch ≈ 0.63–0.86 ns), where the table gathers of the
requantisation dominate; see benchmarks/RESULTS.md for the tables and what remains.

Non-finite values propagate, as in ``torch.optim``: a NaN or ±inf gradient makes that
element's parameter NaN/inf and its block's new absmax NaN/inf, so the whole block's
state decodes to NaN (or 0/NaN) from then on. Detecting this is the caller's job (the
nodes stop on a non-finite loss); checking every gradient here would cost a pass over it.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from flowopt.nodes.blockwise.avx512 import (AMD_ZEN, HAS_AVX512, HAS_VBMI, adam16, adam64,
                                            encode16, encode16_reciprocal, value_planes)
from flowopt.nodes.blockwise.codebook import Codebook, codebook
from flowopt.nodes.blockwise.jit import (_SMALLEST_NORMAL, block_absmax, decode_block,
                                         bits_float, encode8, encode_block, float_bits)
from flowopt.nodes.blockwise.quantize import block_count, check_block_size, quantize_blocks_reference

__all__ = ["adam8bit_state", "adam8bit_step", "adam8bit_step_reference", "lion_step",
           "lion_step_reference", "momentum8bit_state", "momentum8bit_step",
           "momentum8bit_step_reference"]

_F32 = np.float32
_MAGNITUDE = np.uint32(0x7FFFFFFF)


def _books() -> tuple[Codebook, Codebook]:
    return codebook("dynamic", True, 8), codebook("dynamic", False, 8)


_PLANES: dict[bool, np.ndarray] = {}


def _planes(signed: bool) -> np.ndarray:
    """The byte planes of a dynamic map, as `decode_block` reads them (built once)."""
    planes = _PLANES.get(signed)
    if planes is None:
        planes = _PLANES[signed] = value_planes(codebook("dynamic", signed, 8).values)
    return planes


def _check(name: str, a: np.ndarray, dtype: type, size: int) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1 or not a.flags.c_contiguous:
        got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a 1-d C-contiguous {np.dtype(dtype)} array, got {got}")
    if a.size != size:
        raise ValueError(f"{name} has {a.size} elements, expected {size}")
    if not a.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is updated in place)")


def _check_states(param, grad, block_size, *states) -> int:
    block_size = check_block_size(block_size)
    n = param.size if isinstance(param, np.ndarray) else -1
    _check("param", param, np.float32, n)
    _check("grad", grad, np.float32, n)
    nb = block_count(n, block_size)
    for name, codes, absmax in states:
        _check(f"{name}_codes", codes, np.uint8, n)
        _check(f"{name}_absmax", absmax, np.float32, nb)
    return block_size


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an integer ≥ 1 (the count including this step), got {step!r}")
    return int(step)


# Below this many parameters a step runs on the calling thread: waking numba's workers costs
# tens of microseconds on a quiet machine and milliseconds on a busy one, more than the work.
SERIAL_BELOW = 1 << 16


def _workers(n_blocks: int) -> int:
    # a few chunks per thread so a thread slowed by a neighbour's process is not the tail
    return max(1, min(n_blocks, 4 * numba.get_num_threads()))


def adam8bit_state(n: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Zero moments for ``n`` parameters: (m_codes, m_absmax, v_codes, v_absmax)."""
    signed, unsigned = _books()
    nb = block_count(n, check_block_size(block_size))
    return (np.full(n, signed.zero_code, np.uint8), np.zeros(nb, np.float32),
            np.full(n, unsigned.zero_code, np.uint8), np.zeros(nb, np.float32))


def momentum8bit_state(n: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A zero momentum buffer for ``n`` parameters: (codes, absmax)."""
    m_codes, m_absmax, _, _ = adam8bit_state(n, block_size)
    return m_codes, m_absmax


def _adam_scalars(step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """The float32 hyper-parameters of one Adam step, shared by kernel and reference."""
    return dict(b1=_F32(beta1), c1=_F32(1.0 - beta1), b2=_F32(beta2), c2=_F32(1.0 - beta2),
                step_size=_F32(lr / (1.0 - beta1 ** step)),
                inv_correction2=_F32(1.0 / math.sqrt(1.0 - beta2 ** step)), eps=_F32(eps),
                decay=_F32(weight_decay), shrink=_F32(1.0 - lr * weight_decay),
                coupled=bool(weight_decay != 0 and not decoupled), decoupled=bool(decoupled))


@njit(cache=True, error_model="numpy")
def _encode_at(x, a, codes, entries, table, table_thresholds, zero_code):
    """Codes of the block in scratch ``x`` at absmax ``a`` (a zero block: the zero code)."""
    if a == 0:
        codes[:] = zero_code
    else:
        encode_block(x, a, entries, table, table_thresholds, codes)


@njit(cache=True, error_model="numpy")
def _requantize(x, bits, codes, entries, table, table_thresholds, zero_code):
    """Codes and absmax of the block in scratch ``x`` (``bits``: its uint32 view)."""
    a = block_absmax(bits)
    _encode_at(x, a, codes, entries, table, table_thresholds, zero_code)
    return a


@njit(cache=True, error_model="numpy")
def _adam_update_scalar(pb, gb, bm, bv, b1, c1, b2, c2, step_size, inv_correction2, eps, decay,
                        shrink, coupled, decoupled):
    """The update of one block: θ from the new moments, which replace ``bm``/``bv``."""
    for j in range(pb.size):
        p = pb[j]
        g = gb[j]
        if coupled:
            g = g + decay * p
        if decoupled:
            p = p * shrink
        m = b1 * bm[j] + c1 * g
        v = b2 * bv[j] + c2 * (g * g)
        pb[j] = p - step_size * (m / (np.sqrt(v) * inv_correction2 + eps))
        bm[j] = m
        bv[j] = v


@njit(cache=True, error_model="numpy")
def _adam_update_avx512(pb, gb, bm, bv, b1, c1, b2, c2, step_size, inv_correction2, eps, decay,
                        shrink, coupled, decoupled):
    k = pb.size
    j = 0
    while j + 16 <= k:
        adam16(pb, gb, bm, bv, j, b1, c1, b2, c2, step_size, inv_correction2, eps, decay, shrink,
               coupled, decoupled)
        j += 16
    _adam_update_scalar(pb[j:], gb[j:], bm[j:], bv[j:], b1, c1, b2, c2, step_size,
                        inv_correction2, eps, decay, shrink, coupled, decoupled)


# LLVM vectorises the scalar loop 8 lanes wide even on AVX-512 CPUs; `avx512.adam16`
# spells out 16 (bit-identical: the same float32 operations in the same order).
_adam_update = _adam_update_avx512 if HAS_AVX512 else _adam_update_scalar


@njit(cache=True, error_model="numpy")
def _adam8bit_blocks(lo, hi, param, grad, m_codes, m_absmax, v_codes, v_absmax, block_size,
                     m_values, m_planes, m_entries, m_table, m_thresholds, m_zero, v_values,
                     v_planes, v_entries, v_table, v_thresholds, v_zero, b1, c1, b2, c2,
                     step_size, inv_correction2, eps, decay, shrink, coupled, decoupled):
    """Blocks ``lo`` to ``hi`` of one 8-bit Adam step, with this worker's scratch."""
    n = param.size
    sm = np.empty(block_size, np.float32)
    sv = np.empty(block_size, np.float32)
    smu = sm.view(np.uint32)
    svu = sv.view(np.uint32)
    for b in range(lo, hi):
        s = b * block_size
        e = min(s + block_size, n)
        k = e - s
        pb = param[s:e]
        gb = grad[s:e]
        mcb = m_codes[s:e]
        vcb = v_codes[s:e]
        bm = sm[:k]
        bv = sv[:k]
        decode_block(mcb, m_planes, m_values, m_absmax[b], bm)
        decode_block(vcb, v_planes, v_values, v_absmax[b], bv)
        _adam_update(pb, gb, bm, bv, b1, c1, b2, c2, step_size, inv_correction2, eps, decay,
                     shrink, coupled, decoupled)
        m_absmax[b] = _requantize(bm, smu[:k], mcb, m_entries, m_table, m_thresholds, m_zero)
        v_absmax[b] = _requantize(bv, svu[:k], vcb, v_entries, v_table, v_thresholds, v_zero)


@njit(cache=True, error_model="numpy")
def _encode64(x, j, a, r, how, entries, table, thr, zero, codes):
    """Codes of ``x[j:j+64] / a``; ``how`` from `_encode_mode` (as `jit.encode_block`)."""
    if how == 0:
        for q in range(j, j + 64):
            codes[q] = zero
    elif how == 1:
        encode16_reciprocal(x, j, a, r, entries, codes)
        encode16_reciprocal(x, j + 16, a, r, entries, codes)
        encode16_reciprocal(x, j + 32, a, r, entries, codes)
        encode16_reciprocal(x, j + 48, a, r, entries, codes)
    elif AMD_ZEN:   # 8-lane gathers are the cheaper ones there
        for q in range(j, j + 64, 8):
            encode8(x, q, a, entries, codes)
    else:
        for q in range(j, j + 64, 16):
            encode16(x, q, a, entries, codes)


@njit(cache=True, error_model="numpy")
def _encode_mode(a):
    """0: a zero block (every code is the zero code); 1: ``a`` normal and finite, encode by
    its reciprocal; 2: otherwise, or on AMD Zen (`avx512.AMD_ZEN`), by division. The same
    codes either way."""
    if a == 0:
        return 0
    if not AMD_ZEN and a >= _SMALLEST_NORMAL and a < np.inf:
        return 1
    return 2


@njit(cache=True, error_model="numpy")
def _absmax_of(lanes, tail_bits):
    """The block's absmax from `avx512.adam64`'s per-lane maxima and the bits of the tail
    it did not see (magnitude bit patterns compare like the floats, NaN above +inf)."""
    a = block_absmax(lanes)
    t = block_absmax(tail_bits)
    return a if float_bits(a) >= float_bits(t) else t


@njit(cache=True, error_model="numpy")
def _adam8bit_blocks_pipelined(lo, hi, param, grad, m_codes, m_absmax, v_codes, v_absmax, block_size,
              m_values, m_planes, m_entries, m_table, m_thresholds, m_zero, v_values, v_planes,
              v_entries, v_table, v_thresholds, v_zero, b1, c1, b2, c2, step_size,
              inv_correction2, eps, decay, shrink, coupled, decoupled):
    """`_adam8bit_blocks`, software-pipelined (AVX-512 with VBMI): block b's dequantise +
    update + absmax (`avx512.adam64`) — the only phase that streams θ and g from memory —
    runs 64 values at a time interleaved with the requantisation of block b-1, which only
    computes, so memory and arithmetic overlap instead of taking turns (≈ 10% less CPU
    time per step, measured; the one-pass `adam64` ≈ 8% more). Two scratch pairs, swapped
    per block; the same operations on the same values, so the same bits."""
    n = param.size
    cm = np.empty(block_size, np.float32)   # current block's moments
    cv = np.empty(block_size, np.float32)
    pm = np.empty(block_size, np.float32)   # previous block's, being encoded
    pv = np.empty(block_size, np.float32)
    lanes = np.zeros(32, np.uint32)         # adam64's running |m|, |v| maxima (bits)
    prev_s = 0
    pk = 0
    pam = np.float32(0)
    pav = np.float32(0)
    for b in range(lo, hi + 1):
        s = b * block_size
        k = min(s + block_size, n) - s if b < hi else 0
        hm = _encode_mode(pam)
        hv = _encode_mode(pav)
        rm = np.float32(1.0) / pam if hm == 1 else np.float32(1.0)
        rv = np.float32(1.0) / pav if hv == 1 else np.float32(1.0)
        xm = pm[:pk]
        xv = pv[:pk]
        mcp = m_codes[prev_s:prev_s + pk]
        vcp = v_codes[prev_s:prev_s + pk]
        bm = cm[:k]
        bv = cv[:k]
        pb = param[s:s + k]
        gb = grad[s:s + k]
        mcb = m_codes[s:s + k]
        vcb = v_codes[s:s + k]
        am = m_absmax[b] if k > 0 else np.float32(0)
        av = v_absmax[b] if k > 0 else np.float32(0)
        k64 = k - k % 64
        p64 = pk - pk % 64
        top = max(k64, p64)
        for j in range(0, top, 64):
            if j < k64:
                adam64(pb, gb, mcb, vcb, j, m_planes, v_planes, am, av, bm, bv, lanes, b1, c1,
                       b2, c2, step_size, inv_correction2, eps, decay, shrink, coupled, decoupled)
            if j < p64:
                _encode64(xm, j, pam, rm, hm, m_entries, m_table, m_thresholds, m_zero, mcp)
                _encode64(xv, j, pav, rv, hv, v_entries, v_table, v_thresholds, v_zero, vcp)
        if k64 < k:
            decode_block(mcb[k64:], m_planes, m_values, am, bm[k64:])
            decode_block(vcb[k64:], v_planes, v_values, av, bv[k64:])
            _adam_update_scalar(pb[k64:], gb[k64:], bm[k64:], bv[k64:], b1, c1, b2, c2,
                                step_size, inv_correction2, eps, decay, shrink, coupled, decoupled)
        if p64 < pk:
            if hm == 0:
                mcp[p64:] = m_zero
            else:
                encode_block(xm[p64:], pam, m_entries, m_table, m_thresholds, mcp[p64:])
            if hv == 0:
                vcp[p64:] = v_zero
            else:
                encode_block(xv[p64:], pav, v_entries, v_table, v_thresholds, vcp[p64:])
        if k > 0:
            pam = _absmax_of(lanes[:16], cm[k64:k].view(np.uint32))
            pav = _absmax_of(lanes[16:], cv[k64:k].view(np.uint32))
            lanes[:] = 0
            m_absmax[b] = pam
            v_absmax[b] = pav
        cm, pm = pm, cm
        cv, pv = pv, cv
        prev_s = s
        pk = k


# The block loop both drivers call: pipelined where the CPU has AVX512-VBMI.
_adam8bit_run = _adam8bit_blocks_pipelined if HAS_VBMI else _adam8bit_blocks


@njit(cache=True, parallel=True, error_model="numpy")
def _adam8bit_parallel(workers, param, grad, m_codes, m_absmax, v_codes, v_absmax, block_size,
                       m_values, m_planes, m_entries, m_table, m_thresholds, m_zero, v_values,
                       v_planes, v_entries, v_table, v_thresholds, v_zero, b1, c1, b2, c2,
                       step_size, inv_correction2, eps, decay, shrink, coupled, decoupled):
    nb = m_absmax.size
    for w in prange(workers):
        _adam8bit_run(w * nb // workers, (w + 1) * nb // workers, param, grad, m_codes,
                         m_absmax, v_codes, v_absmax, block_size, m_values, m_planes, m_entries,
                         m_table, m_thresholds, m_zero, v_values, v_planes, v_entries, v_table,
                         v_thresholds, v_zero,
                         b1, c1, b2, c2, step_size, inv_correction2, eps, decay, shrink, coupled,
                         decoupled)


def adam8bit_step(param: np.ndarray, grad: np.ndarray, m_codes: np.ndarray, m_absmax: np.ndarray,
                  v_codes: np.ndarray, v_absmax: np.ndarray, *, step: int, lr: float, beta1: float,
                  beta2: float, eps: float, weight_decay: float, decoupled: bool,
                  block_size: int) -> None:
    """One 8-bit Adam/AdamW step, in place on ``param`` and the four state arrays."""
    block_size = _check_states(param, grad, block_size, ("m", m_codes, m_absmax), ("v", v_codes, v_absmax))
    s = _adam_scalars(_check_step(step), lr, beta1, beta2, eps, weight_decay, decoupled)
    if param.size == 0:
        return
    signed, unsigned = _books()
    args = (param, grad, m_codes, m_absmax, v_codes, v_absmax, block_size, signed.values,
            _planes(True), signed.table_entries, signed.table, signed.table_thresholds, np.uint8(signed.zero_code),
            unsigned.values, _planes(False), unsigned.table_entries, unsigned.table, unsigned.table_thresholds,
            np.uint8(unsigned.zero_code), s["b1"], s["c1"], s["b2"], s["c2"], s["step_size"],
            s["inv_correction2"], s["eps"], s["decay"], s["shrink"], s["coupled"], s["decoupled"])
    if param.size < SERIAL_BELOW:
        _adam8bit_run(0, m_absmax.size, *args)
    else:
        _adam8bit_parallel(_workers(m_absmax.size), *args)


def _dequantize_reference(codes: np.ndarray, absmax: np.ndarray, values: np.ndarray,
                          block_size: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # 0 · inf in a poisoned block
        return values[codes] * np.repeat(absmax, block_size)[: codes.size]


def adam8bit_step_reference(param, grad, m_codes, m_absmax, v_codes, v_absmax, *, step, lr, beta1,
                            beta2, eps, weight_decay, decoupled, block_size) -> None:
    """The numpy specification of `adam8bit_step` (same arguments, same in-place effect)."""
    s = _adam_scalars(step, lr, beta1, beta2, eps, weight_decay, decoupled)
    signed, unsigned = _books()
    m = _dequantize_reference(m_codes, m_absmax, signed.values, block_size)
    v = _dequantize_reference(v_codes, v_absmax, unsigned.values, block_size)
    p, g = param.copy(), grad
    with np.errstate(all="ignore"):
        if s["coupled"]:
            g = g + s["decay"] * p
        if s["decoupled"]:
            p = p * s["shrink"]
        m = s["b1"] * m + s["c1"] * g
        v = s["b2"] * v + s["c2"] * (g * g)
        param[:] = p - s["step_size"] * (m / (np.sqrt(v) * s["inv_correction2"] + s["eps"]))
    m_codes[:], m_absmax[:] = quantize_blocks_reference(m, signed.values, block_size)
    v_codes[:], v_absmax[:] = quantize_blocks_reference(v, unsigned.values, block_size)


@njit(cache=True, error_model="numpy")
def _momentum8bit_blocks(lo, hi, param, grad, codes, absmax, block_size, values, planes, entries, table,
                         thresholds, zero, lr, momentum, damped, decay, first, nesterov):
    """Blocks ``lo`` to ``hi`` of one 8-bit momentum step, with this worker's scratch."""
    n = param.size
    sb = np.empty(block_size, np.float32)
    for b in range(lo, hi):
        s = b * block_size
        e = min(s + block_size, n)
        k = e - s
        pb = param[s:e]
        gb = grad[s:e]
        cb = codes[s:e]
        buf = sb[:k]
        a = absmax[b]
        if not first:
            decode_block(cb, planes, values, a, buf)
        top = np.uint32(0)   # the new absmax, folded into the update (no pass of its own)
        for j in range(k):
            p = pb[j]
            g = gb[j] + decay * p
            m = g if first else momentum * buf[j] + damped * g
            d = g + momentum * m if nesterov else m
            pb[j] = p - lr * d
            buf[j] = m
            u = np.uint32(float_bits(m) & _MAGNITUDE)
            top = u if u > top else top
        absmax[b] = a = bits_float(np.uint32(top))
        _encode_at(buf, a, cb, entries, table, thresholds, zero)


@njit(cache=True, parallel=True, error_model="numpy")
def _momentum8bit_parallel(workers, param, grad, codes, absmax, block_size, values, planes, entries, table,
                           thresholds, zero, lr, momentum, damped, decay, first, nesterov):
    nb = absmax.size
    for w in prange(workers):
        _momentum8bit_blocks(w * nb // workers, (w + 1) * nb // workers, param, grad, codes,
                             absmax, block_size, values, planes, entries, table, thresholds, zero, lr,
                             momentum, damped, decay, first, nesterov)


@njit(cache=True, error_model="numpy")
def _sgd(param, grad, lr, decay):
    for i in range(param.size):
        param[i] = param[i] - lr * (grad[i] + decay * param[i])


def momentum8bit_step(param: np.ndarray, grad: np.ndarray, codes: np.ndarray, absmax: np.ndarray, *,
                      step: int, lr: float, momentum: float, dampening: float, nesterov: bool,
                      weight_decay: float, block_size: int) -> None:
    """One SGD step with an 8-bit momentum buffer, in place on ``param``, ``codes``, ``absmax``."""
    block_size = _check_states(param, grad, block_size, ("m", codes, absmax))
    step = _check_step(step)
    if param.size == 0:
        return
    if momentum == 0:  # plain SGD is bandwidth-bound: one thread saturates it
        _sgd(param, grad, _F32(lr), _F32(weight_decay))
        return
    book = codebook("dynamic", True, 8)
    args = (param, grad, codes, absmax, block_size, book.values, _planes(True), book.table_entries, book.table,
            book.table_thresholds, np.uint8(book.zero_code), _F32(lr), _F32(momentum),
            _F32(1.0 - dampening), _F32(weight_decay), step == 1, bool(nesterov))
    if param.size < SERIAL_BELOW:
        _momentum8bit_blocks(0, absmax.size, *args)
    else:
        _momentum8bit_parallel(_workers(absmax.size), *args)


def momentum8bit_step_reference(param, grad, codes, absmax, *, step, lr, momentum, dampening,
                                nesterov, weight_decay, block_size) -> None:
    """The numpy specification of `momentum8bit_step`."""
    lr, mu, decay = _F32(lr), _F32(momentum), _F32(weight_decay)
    with np.errstate(all="ignore"):
        if momentum == 0:
            param[:] = param - lr * (grad + decay * param)
            return
        values = codebook("dynamic", True, 8).values
        g = grad + decay * param
        if step == 1:
            m = g
        else:
            m = mu * _dequantize_reference(codes, absmax, values, block_size) + _F32(1.0 - dampening) * g
        param[:] = param - lr * (g + mu * m if nesterov else m)
    codes[:], absmax[:] = quantize_blocks_reference(m, values, block_size)


@njit(cache=True, error_model="numpy")
def _lion_range(lo, hi, param, grad, exp_avg, lr, b1, c1, b2, c2, shrink):
    pb = param[lo:hi]
    gb = grad[lo:hi]
    mb = exp_avg[lo:hi]
    for j in range(pb.size):
        g = gb[j]
        m = mb[j]
        c = b1 * m + c1 * g
        sign = np.float32(1.0) if c > 0 else (np.float32(-1.0) if c < 0 else c * np.float32(0.0))
        pb[j] = pb[j] * shrink - lr * sign
        mb[j] = b2 * m + c2 * g


@njit(cache=True, parallel=True, error_model="numpy")
def _lion_parallel(chunk, param, grad, exp_avg, lr, b1, c1, b2, c2, shrink):
    n = param.size
    for w in prange((n + chunk - 1) // chunk):
        _lion_range(w * chunk, min(w * chunk + chunk, n), param, grad, exp_avg, lr, b1, c1, b2,
                    c2, shrink)


def lion_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, *, lr: float, beta1: float,
              beta2: float, weight_decay: float) -> None:
    """One float32 Lion step, in place on ``param`` and ``exp_avg`` (one fused pass)."""
    n = param.size if isinstance(param, np.ndarray) else -1
    for name, a in (("param", param), ("grad", grad), ("exp_avg", exp_avg)):
        _check(name, a, np.float32, n)
    args = (param, grad, exp_avg, _F32(lr), _F32(beta1), _F32(1.0 - beta1), _F32(beta2),
            _F32(1.0 - beta2), _F32(1.0 - lr * weight_decay))
    if n < SERIAL_BELOW:
        _lion_range(0, n, *args)
    else:
        _lion_parallel(16384, *args)


def lion_step_reference(param, grad, exp_avg, *, lr, beta1, beta2, weight_decay) -> None:
    """The numpy specification of `lion_step`: sign(0) = 0, sign(NaN) = NaN."""
    with np.errstate(all="ignore"):
        c = _F32(beta1) * exp_avg + _F32(1.0 - beta1) * grad
        param[:] = param * _F32(1.0 - lr * weight_decay) - _F32(lr) * np.sign(c)
        exp_avg[:] = _F32(beta2) * exp_avg + _F32(1.0 - beta2) * grad
