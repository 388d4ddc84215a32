"""Block-wise quantization: code maps, the exact nearest-code lookup, numba kernels vs numpy."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flowopt.nodes.blockwise.codebook import Codebook, codebook, dynamic_map, linear_map, nearest_code_reference
from flowopt.nodes.blockwise.quantize import (
    dequantize_blockwise,
    dequantize_blockwise_reference,
    encode_normalized,
    pack_nibbles,
    quantize_blockwise,
    quantize_blockwise_reference,
    unpack_nibbles,
)

MAPS = [(name, signed, bits) for name in ("dynamic", "linear") for signed in (True, False) for bits in (4, 8)]
BENCHVENV_PYTHON = Path("/work/benchvenv/bin/python")

# sha256 of the float32 bytes of bitsandbytes 0.50's create_dynamic_map(signed, bits - 1, bits),
# padding zeros dropped (signed 4-bit equals its default max_exponent_bits=7 as well)
BITSANDBYTES_SHA256 = {
    (True, 8): "e732639a65f497b4ad684bb166a4467708255edd5207757de8b8f0c7e1fda89c",
    (False, 8): "305f002cc11278fb769d13b25b9fd0c7c83c8402c40a878fe086f4039fde6398",
    (True, 4): "721d11e3711326d4ab3439ccf09b717be5c5fac8a780691f145d2fb797c16400",
    (False, 4): "3ba95dde3870dc0ed65eb1e5e2c55c35463a83dc938b243f91f66af06fa7dac2",
}


def bits_of(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize(("signed", "bits"), sorted(BITSANDBYTES_SHA256))
def test_dynamic_map_is_bit_identical_to_bitsandbytes(signed, bits):
    digest = hashlib.sha256(dynamic_map(signed, bits).tobytes()).hexdigest()
    assert digest == BITSANDBYTES_SHA256[(signed, bits)]


@pytest.mark.skipif(not BENCHVENV_PYTHON.exists(), reason="bitsandbytes lives in /work/benchvenv, absent here")
def test_dynamic_map_matches_a_live_bitsandbytes():
    code = ("import bitsandbytes.functional as F, numpy as np, sys;"
            "[sys.stdout.write(np.unique(F.create_dynamic_map(s).numpy()).astype(np.float32).tobytes().hex()+'\\n')"
            " for s in (True, False)]")
    out = subprocess.run([str(BENCHVENV_PYTHON), "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.skip(f"bitsandbytes did not import: {out.stderr.strip().splitlines()[-1:]}")
    signed_hex, unsigned_hex = out.stdout.split()
    assert dynamic_map(True).tobytes().hex() == signed_hex
    assert dynamic_map(False).tobytes().hex() == unsigned_hex


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_dynamic_map_has_2_to_the_bits_sorted_values_from_the_range_including_0_and_1(signed, bits):
    v = dynamic_map(signed, bits)
    assert v.dtype == np.float32 and v.size == 2 ** bits
    assert np.all(np.diff(v) > 0)
    assert v[-1] == 1.0 and 0.0 in v
    assert v[0] >= (-1.0 if signed else 0.0)


def test_dynamic_map_spans_bits_minus_one_decades():
    positive = dynamic_map(True, 8)[dynamic_map(True, 8) > 0]
    assert positive.min() == pytest.approx(0.55e-6, rel=1e-6)  # mean of the first 0.1..1 bin, times 1e-6


def test_linear_map_is_torch_linspace_bit_for_bit():
    torch = pytest.importorskip("torch")
    for signed in (True, False):
        for bits in (1, 4, 8):
            expected = torch.linspace(-1.0 if signed else 0.0, 1.0, 2 ** bits, dtype=torch.float32).numpy()
            np.testing.assert_array_equal(bits_of(linear_map(signed, bits)), bits_of(expected))


@pytest.mark.parametrize("bad", [0, 9, 2.0, True])
def test_maps_refuse_unsupported_widths(bad):
    with pytest.raises(ValueError, match="bits"):
        dynamic_map(True, bad)


def test_nearest_code_reference_is_the_argmin_of_the_distance_with_ties_going_low():
    values = dynamic_map(True, 8)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1.1, 1.1, 20000), rng.standard_normal(2000) * 1e-4]).astype(np.float32)
    distance = np.abs(x.astype(np.float64)[:, None] - values.astype(np.float64)[None, :])
    np.testing.assert_array_equal(nearest_code_reference(x, values), np.argmin(distance, axis=1))
    # exactly on a midpoint (representable for these two): the lower code
    tie = np.float32((np.float64(values[200]) + values[201]) / 2)
    assert (np.float64(values[200]) + values[201]) / 2 == tie
    assert nearest_code_reference(np.array([tie]), values)[0] == 200


def bit_pattern_sweep(book: Codebook) -> np.ndarray:
    """Every 16-bit bucket at several low-bit offsets, plus ±3 ulps around every threshold."""
    top = (np.arange(1 << 16, dtype=np.uint32) << np.uint32(16))[:, None]
    low = np.array([0, 1, 2, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF, 0x1234, 0xABCD], np.uint32)[None, :]
    patterns = (top | low).reshape(-1).view(np.float32)
    around = np.concatenate([book.thresholds, book.values]).view(np.uint32).astype(np.int64)
    near = (around[:, None] + np.arange(-3, 4)[None, :]).reshape(-1).astype(np.uint32).view(np.float32)
    x = np.concatenate([patterns, near, np.float32([0.0, -0.0, np.inf, -np.inf, np.nan])])
    # sNaNs with a 16-bit payload share the ±inf buckets (documented); arithmetic never makes them
    signalling = np.isnan(x) & ((x.view(np.uint32) & np.uint32(0x7FFF0000)) == np.uint32(0x7F800000))
    return np.ascontiguousarray(x[~signalling])


@pytest.mark.parametrize(("name", "signed", "bits"), MAPS)
@pytest.mark.parametrize("vector", [True, False], ids=["8 lanes where AVX2", "scalar"])
def test_the_lookup_table_is_exact_over_a_sweep_of_float32_bit_patterns(name, signed, bits, vector):
    book = codebook(name, signed, bits)
    assert book.table_exact
    x = bit_pattern_sweep(book)
    np.testing.assert_array_equal(encode_normalized(x, book, vector=vector), nearest_code_reference(x, book.values))


@pytest.mark.parametrize(("name", "signed", "bits"), [("dynamic", True, 8), ("linear", False, 4)])
def test_the_binary_search_fallback_is_exact_over_the_same_sweep(name, signed, bits):
    book = dataclasses.replace(codebook(name, signed, bits), table_exact=False)
    x = bit_pattern_sweep(book)
    np.testing.assert_array_equal(encode_normalized(x, book), nearest_code_reference(x, book.values))


def test_a_map_with_two_midpoints_in_one_bucket_is_flagged_and_still_quantized_exactly():
    values = np.concatenate([np.float32([-1.0]), np.linspace(0.5, 0.5 + 2 ** -12, 30, dtype=np.float32), [1.0]])
    book = Codebook.build(values)
    assert not book.table_exact
    x = np.random.default_rng(1).uniform(0.4, 0.51, 5000).astype(np.float32)
    x[0] = 1.0
    for got, want in zip(quantize_blockwise(x, book, 100), quantize_blockwise_reference(x, book, 100)):
        np.testing.assert_array_equal(bits_of(got) if got.dtype == np.float32 else got,
                                      bits_of(want) if want.dtype == np.float32 else want)


def test_codebook_build_refuses_unsorted_or_nonfinite_maps():
    with pytest.raises(ValueError, match="strictly increasing"):
        Codebook.build([0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        Codebook.build([0.0, np.nan])
    with pytest.raises(ValueError, match="2..256"):
        Codebook.build(np.arange(300, dtype=np.float32))


def test_codebooks_are_cached_per_map_and_read_only():
    book = codebook("dynamic", True, 8)
    assert codebook("dynamic", True, 8) is book
    with pytest.raises(ValueError):
        book.values[0] = 0.0


def awkward(n: int, seed: int, signed: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-8, 2, n))).astype(np.float32)
    x[rng.random(n) < 0.05] = 0.0
    if n > 300:
        x[100:300] = 0.0  # whole zero blocks at block sizes ≤ 100
        x[-1] = -0.0
    return x if signed else np.abs(x)


@pytest.mark.parametrize(("name", "signed", "bits"), MAPS)
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 2047, 2048, 2049, 10007])
def test_quantize_and_dequantize_match_the_numpy_reference_bit_for_bit(name, signed, bits, n):
    book = codebook(name, signed, bits)
    x = awkward(n, n, signed)
    for block_size in (1, 64, 100, 2048):
        codes, absmax = quantize_blockwise(x, book, block_size)
        want_codes, want_absmax = quantize_blockwise_reference(x, book, block_size)
        np.testing.assert_array_equal(codes, want_codes)
        np.testing.assert_array_equal(bits_of(absmax), bits_of(want_absmax))
        assert absmax.size == -(-n // block_size)
        out = dequantize_blockwise(codes, absmax, book, block_size)
        np.testing.assert_array_equal(bits_of(out), bits_of(dequantize_blockwise_reference(codes, absmax, book, block_size)))


def test_an_all_zero_block_gets_absmax_zero_and_the_code_of_zero():
    book = codebook("dynamic", True, 8)
    x = np.zeros(300, np.float32)
    x[256:] = 1.0
    codes, absmax = quantize_blockwise(x, book, 128)
    np.testing.assert_array_equal(absmax, [0.0, 0.0, 1.0])
    assert np.all(codes[:256] == book.zero_code) and book.values[book.zero_code] == 0.0
    np.testing.assert_array_equal(dequantize_blockwise(codes, absmax, book, 128)[:256], 0.0)


def test_values_of_the_map_times_absmax_round_trip_exactly():
    book = codebook("dynamic", False, 8)
    x = np.ascontiguousarray(book.values * np.float32(4.0))
    codes, absmax = quantize_blockwise(x, book, x.size)
    np.testing.assert_array_equal(codes, np.arange(256))
    np.testing.assert_array_equal(dequantize_blockwise(codes, absmax, book, x.size), x)


def test_the_round_trip_error_is_at_most_half_the_largest_code_gap_times_absmax():
    book = codebook("dynamic", True, 8)
    x = awkward(50000, 3, True)
    codes, absmax = quantize_blockwise(x, book, 256)
    err = np.abs(dequantize_blockwise(codes, absmax, book, 256) - x)
    # -1 sits half a gap below the lowest code; 2**-20 covers float32 rounding of the product
    bound = np.repeat(absmax, 256)[: x.size] * (np.diff(book.values).max() / 2 + 2.0 ** -20)
    assert np.all(err <= bound)


def test_block_wise_scales_isolate_outliers_as_the_paper_claims():
    """Dettmers et al. 2022, section 2.2: an outlier only degrades its own block."""
    rng = np.random.default_rng(7)
    clean = (rng.standard_normal(1 << 16) * 1e-2).astype(np.float32)
    x = clean.copy()
    x[[5, 40000]] = 50.0  # in blocks 0 and 19 of 2048
    book = codebook("dynamic", True, 8)
    untouched = np.ones(x.size, bool)
    untouched[:2048] = untouched[19 * 2048:20 * 2048] = False

    def error(values, block_size):
        c, a = quantize_blockwise(values, book, block_size)
        return np.abs(dequantize_blockwise(c, a, book, block_size) - values)[untouched].mean()

    assert error(x, 2048) == error(clean, 2048)  # the other blocks do not notice
    assert error(x, x.size) > 5 * error(x, 2048)  # one tensor-wide scale does


def test_the_dynamic_map_keeps_small_magnitudes_that_the_linear_map_erases():
    """Dettmers et al. 2022, section 2.1: dynamic quantization has small relative error
    for both small and large magnitudes (Adam's second moment spans many decades)."""
    rng = np.random.default_rng(11)
    v = np.exp(rng.uniform(np.log(1e-6), 0.0, 20000)).astype(np.float32)  # unsigned, 6 decades

    def median_relative_error(name):
        book = codebook(name, False, 8)
        c, a = quantize_blockwise(v, book, 2048)
        return float(np.median(np.abs(dequantize_blockwise(c, a, book, 2048) - v) / v))

    assert median_relative_error("dynamic") < 0.05 < median_relative_error("linear")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_is_refused_naming_its_index(value):
    x = np.ones(5000, np.float32)
    x[4321] = value
    for quantize in (quantize_blockwise, quantize_blockwise_reference):
        with pytest.raises(ValueError, match=r"x\[4321\] is"):
            quantize(x, codebook("dynamic", True, 8), 2048)


@pytest.mark.parametrize("block_size", [0, -64, 64.0, True, None])
def test_a_block_size_that_is_not_a_positive_integer_is_refused(block_size):
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        quantize_blockwise(np.ones(10, np.float32), codebook("dynamic", True, 8), block_size)


@pytest.mark.parametrize("x", [np.ones(10), np.ones((2, 5), np.float32), np.ones(20, np.float32)[::2], [1.0]])
def test_input_that_is_not_flat_contiguous_float32_is_refused(x):
    with pytest.raises(ValueError, match="1-d C-contiguous float32"):
        quantize_blockwise(x, codebook("dynamic", True, 8), 64)


def test_caller_buffers_are_filled_in_place_and_checked():
    book = codebook("linear", True, 8)
    x = awkward(1000, 5, True)
    codes, absmax = np.empty(1000, np.uint8), np.empty(8, np.float32)
    got = quantize_blockwise(x, book, 128, out_codes=codes, out_absmax=absmax)
    assert got[0] is codes and got[1] is absmax
    out = np.empty(1000, np.float32)
    assert dequantize_blockwise(codes, absmax, book, 128, out=out) is out
    with pytest.raises(ValueError, match="out_absmax must have 8 elements"):
        quantize_blockwise(x, book, 128, out_absmax=np.empty(7, np.float32))


def test_codes_past_a_short_map_decode_to_zero_instead_of_reading_outside_it():
    book = codebook("dynamic", True, 4)
    out = dequantize_blockwise(np.array([3, 16, 255], np.uint8), np.ones(1, np.float32), book, 64)
    np.testing.assert_array_equal(out, [book.values[3], 0.0, 0.0])


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
def test_nibble_packing_round_trips_and_halves_the_bytes(n):
    codes = np.random.default_rng(n).integers(0, 16, n).astype(np.uint8)
    packed = pack_nibbles(codes)
    assert packed.size == (n + 1) // 2
    np.testing.assert_array_equal(unpack_nibbles(packed, n), codes)
    if n >= 2:
        assert packed[0] == codes[0] | (codes[1] << 4)


def test_nibble_packing_refuses_8_bit_codes():
    with pytest.raises(ValueError, match="codes < 16"):
        pack_nibbles(np.array([3, 200], np.uint8))
    with pytest.raises(ValueError, match="cannot unpack 5 codes from 2 bytes"):
        unpack_nibbles(np.zeros(2, np.uint8), 5)


def test_importing_the_maps_and_the_wrappers_does_not_import_numba():
    code = ("import sys, flowopt.nodes.blockwise.codebook as c, flowopt.nodes.blockwise.quantize;"
            "c.codebook('dynamic', True, 8); assert 'numba' not in sys.modules, 'numba imported';"
            "c.encode; assert 'numba' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- the per-CPU building blocks of the fused optimizer steps (nodes/blockwise/avx512.py) --

def _encoders():
    from flowopt.nodes.blockwise import jit

    found = [("scalar", jit._encode_block_scalar)]
    if jit.HAS_AVX2:
        found.append(("8 lanes (AVX2)", jit._encode_block_avx2))
    if jit.HAS_AVX512:
        found.append(("16 lanes (AVX-512)", jit._encode_block_avx512))
    return found


def _decoders():
    from flowopt.nodes.blockwise import jit

    found = [("scalar", jit._decode_block_scalar)]
    if jit.HAS_VBMI:
        found.append(("64 codes (AVX512-VBMI)", jit._decode_block_vbmi))
    return found


@pytest.mark.parametrize(("label", "encode_block"), _encoders(), ids=[e[0] for e in _encoders()])
@pytest.mark.parametrize("scale", [1.0, 3.0, 0.7071067])
def test_every_block_encoder_this_cpu_has_gives_the_nearest_code_of_the_ieee_quotient(
        label, encode_block, scale):
    book = codebook("dynamic", True, 8)
    x = bit_pattern_sweep(book)
    x = x[np.isfinite(x) & (np.abs(x) <= 1)] * np.float32(scale)   # values of a block
    a = np.float32(scale)
    expected = nearest_code_reference(x / a, book.values)
    for n in (x.size, 1, 7, 15, 17, 63, 65, 1000):   # every lane-count tail
        codes = np.empty(n, np.uint8)
        encode_block(x[:n], a, book.table_entries, book.table, book.table_thresholds, codes)
        np.testing.assert_array_equal(codes, expected[:n], err_msg=f"{label}, n={n}")


@pytest.mark.parametrize(("label", "decode_block"), _decoders(), ids=[d[0] for d in _decoders()])
@pytest.mark.parametrize(("signed", "scale"), [(True, 0.37), (False, 3.5e-7), (True, np.inf),
                                               (False, np.nan), (True, 0.0)])
def test_every_block_decoder_this_cpu_has_is_the_table_times_absmax_bit_for_bit(
        label, decode_block, signed, scale):
    from flowopt.nodes.blockwise.avx512 import value_planes

    book = codebook("dynamic", signed, 8)
    codes = np.random.default_rng(7).integers(0, 256, 10007).astype(np.uint8)
    codes[:256] = np.arange(256)
    a = np.float32(scale)
    with np.errstate(invalid="ignore"):
        expected = book.values[codes] * a
    planes = value_planes(book.values)
    for n in (codes.size, 1, 63, 64, 65, 127, 128, 129, 2048):
        out = np.full(n, 7.0, np.float32)
        decode_block(codes[:n], planes, book.values, a, out)
        np.testing.assert_array_equal(out.view(np.uint32), expected[:n].view(np.uint32),
                                      err_msg=f"{label}, n={n}")


@pytest.mark.parametrize(("cpu", "features", "want"), [
    ("x86-64", "+sse2", ("_encode_block_scalar", "_adam8bit_blocks", "_decode_block_scalar")),
    ("znver3", "+avx2,+fma", ("_encode_block_avx2", "_adam8bit_blocks", "_decode_block_scalar")),
    ("skylake-avx512", "+avx2,+fma,+avx512f,+avx512bw,+avx512vl",
     ("_encode_block_avx512", "_adam8bit_blocks", "_decode_block_scalar")),
    ("icelake-server", "+avx2,+fma,+avx512f,+avx512bw,+avx512vl,+avx512vbmi",
     ("_encode_block_avx512", "_adam8bit_blocks_pipelined", "_decode_block_vbmi")),
    ("znver4", "+avx2,+fma,+avx512f,+avx512bw,+avx512vl,+avx512vbmi",
     ("_encode_block_avx2", "_adam8bit_blocks_pipelined", "_decode_block_vbmi")),
])
def test_each_cpu_gets_paths_its_instruction_set_has(cpu, features, want):
    """The per-CPU dispatch, for CPUs this machine may not be (numba's cross-compile
    settings stand in for the host): AVX-512 code only with AVX-512, VBMI only with VBMI."""
    code = ("from flowopt.nodes.blockwise import jit; from flowopt.nodes.optimizer import kernels as K;"
            "print(jit.encode_block.py_func.__name__, K._adam8bit_run.py_func.__name__,"
            " jit.decode_block.py_func.__name__)")
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    assert tuple(out.stdout.split()) == want
