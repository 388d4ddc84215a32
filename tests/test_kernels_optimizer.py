"""Fused numba optimizer steps against their numpy specifications (and torch where it applies)."""
from __future__ import annotations

import numpy as np
import pytest

from flowopt.nodes.blockwise.codebook import codebook
from flowopt.nodes.blockwise.quantize import dequantize_blockwise
from flowopt.nodes.optimizer import kernels as K

SIZES = [0, 1, 63, 64, 65, 2047, 2048, 2049, 10007]


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    """Bit for bit, NaNs included (assert_array_equal would accept NaN == NaN but not -0 vs 0)."""
    np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def grads(n: int, seed: int, steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        g = (rng.standard_normal(n) * np.exp(rng.uniform(-6, 0, n))).astype(np.float32)
        g[rng.random(n) < 0.05] = 0.0
        if n > 400:
            g[130:400] = 0.0  # a zero block at block size 64: absmax 0 from step 1
        out.append(g)
    return out


def adam_options(**kw):
    return {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
            "decoupled": False} | kw


def run_adam(n, block_size, steps=3, seed=0, **kw):
    """(kernel result, reference result) after `steps` steps from the same start."""
    param = np.random.default_rng(seed + 1).standard_normal(n).astype(np.float32)
    runs = []
    for step_fn in (K.adam8bit_step, K.adam8bit_step_reference):
        p, state = param.copy(), K.adam8bit_state(n, block_size)
        for t, g in enumerate(grads(n, seed, steps), start=1):
            step_fn(p, g, *state, step=t, block_size=block_size, **adam_options(**kw))
        runs.append((p, *state))
    return runs


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block_size", [64, 100, 2048])
@pytest.mark.parametrize(("decoupled", "weight_decay"), [(False, 0.0), (False, 0.1), (True, 0.1)])
def test_adam8bit_codes_absmax_and_params_match_the_reference_bit_for_bit(n, block_size, decoupled, weight_decay):
    got, want = run_adam(n, block_size, decoupled=decoupled, weight_decay=weight_decay)
    for a, b in zip(got, want):
        assert_same(a, b)


def test_adam8bit_with_block_size_one_scales_every_value_by_itself():
    got, want = run_adam(300, 1)
    for a, b in zip(got, want):
        assert_same(a, b)


def test_adam8bit_follows_float32_adam_closely_with_quantized_moments():
    """The paper's premise: 8-bit states change the trajectory only slightly."""
    torch = pytest.importorskip("torch")
    n, steps = 4096, 20
    p0 = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    gs = grads(n, 4, steps)
    p, state = p0.copy(), K.adam8bit_state(n, 256)
    w = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.Adam([w], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for t, g in enumerate(gs, start=1):
        K.adam8bit_step(p, g, *state, step=t, block_size=256, **adam_options(lr=1e-3))
        w.grad = torch.tensor(g)
        opt.step()
    moved = np.abs(w.detach().numpy() - p0)
    assert np.median(np.abs(p - w.detach().numpy()) / np.maximum(moved, 1e-12)) < 0.05


def test_adam8bit_first_step_moves_each_weight_by_about_lr_against_its_gradient_sign():
    """Bias-corrected Adam: step 1 is −lr·g/(|g| + eps), ≈ −lr·sign(g) for |g| ≫ eps."""
    n = 3000
    g = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    p = np.zeros(n, np.float32)
    K.adam8bit_step(p, g, *K.adam8bit_state(n, 2048), step=1, block_size=2048, **adam_options(lr=1e-3))
    np.testing.assert_allclose(p, -1e-3 * g / (np.abs(g.astype(np.float64)) + 1e-8), rtol=1e-5)


def test_adam8bit_stores_the_new_moments_in_8_bits_with_the_papers_maps():
    n, bs = 5000, 512
    g = grads(n, 6, 1)[0]
    m_codes, m_absmax, v_codes, v_absmax = state = K.adam8bit_state(n, bs)
    K.adam8bit_step(np.zeros(n, np.float32), g, *state, step=1, block_size=bs, **adam_options())
    m = dequantize_blockwise(m_codes, m_absmax, codebook("dynamic", True, 8), bs)
    v = dequantize_blockwise(v_codes, v_absmax, codebook("dynamic", False, 8), bs)
    scale_m = np.repeat(m_absmax, bs)[:n]
    assert np.all(np.abs(m - np.float32(0.1) * g) <= scale_m * 0.0071)  # half the widest gap
    assert np.all(v >= 0) and np.all(np.abs(v - np.float32(0.001) * g * g) <= np.repeat(v_absmax, bs)[:n] * 0.0036)
    assert m_codes.nbytes + v_codes.nbytes + m_absmax.nbytes + v_absmax.nbytes == 2 * n + 8 * 10


def test_adamw_shrinks_the_weights_even_when_the_gradient_is_zero():
    n = 100
    p = np.full(n, 2.0, np.float32)
    K.adam8bit_step(p, np.zeros(n, np.float32), *K.adam8bit_state(n, 64), step=1, block_size=64,
                    **adam_options(lr=0.1, weight_decay=0.5, decoupled=True))
    np.testing.assert_array_equal(p, np.float32(2.0) * np.float32(1 - 0.1 * 0.5))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nonfinite_gradient_poisons_its_own_block_only_and_matches_the_reference(bad):
    n, bs = 4096, 1024
    g = grads(n, 7, 2)
    g[0][1500] = bad
    runs = []
    for step_fn in (K.adam8bit_step, K.adam8bit_step_reference):
        p, state = np.ones(n, np.float32), K.adam8bit_state(n, bs)
        for t, gt in enumerate(g, start=1):
            step_fn(p, gt, *state, step=t, block_size=bs, **adam_options())
        runs.append((p, *state))
    for a, b in zip(*runs):
        assert_same(a, b)
    p, _, m_absmax, _, v_absmax = runs[0]
    assert np.isnan(p[1500]) and np.all(np.isfinite(np.delete(p, np.arange(1024, 2048))))
    assert not np.isfinite(v_absmax[1]) and np.all(np.isfinite(np.delete(v_absmax, 1)))


def run_momentum(n, block_size, steps=3, **kw):
    options = {"lr": 1e-2, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0} | kw
    runs = []
    for step_fn in (K.momentum8bit_step, K.momentum8bit_step_reference):
        p, state = np.linspace(-1, 1, n, dtype=np.float32), K.momentum8bit_state(n, block_size)
        for t, g in enumerate(grads(n, 9, steps), start=1):
            step_fn(p, g, *state, step=t, block_size=block_size, **options)
        runs.append((p, *state))
    return runs


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("options", [{}, {"nesterov": True, "weight_decay": 0.01}, {"dampening": 0.5},
                                     {"momentum": 0.0, "weight_decay": 0.1}])
def test_momentum8bit_matches_the_reference_bit_for_bit(n, options):
    got, want = run_momentum(n, 256, **options)
    for a, b in zip(got, want):
        assert_same(a, b)


def test_momentum8bit_first_step_is_plain_sgd_like_torch():
    torch = pytest.importorskip("torch")
    n = 1000
    g = grads(n, 10, 1)[0]
    p = np.linspace(-1, 1, n, dtype=np.float32)
    w = torch.tensor(p.copy(), requires_grad=True)
    K.momentum8bit_step(p, g, *K.momentum8bit_state(n, 128), step=1, block_size=128, lr=0.1,
                        momentum=0.9, dampening=0.3, nesterov=False, weight_decay=0.0)
    w.grad = torch.tensor(g)
    torch.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.3).step()
    np.testing.assert_allclose(p, w.detach().numpy(), rtol=2.5e-7)  # torch may fuse the multiply-add


def run_lion(n, steps=3, grad_fn=None, **kw):
    options = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1} | kw
    runs = []
    for step_fn in (K.lion_step, K.lion_step_reference):
        p, m = np.linspace(-2, 2, n, dtype=np.float32), np.zeros(n, np.float32)
        for g in grads(n, 11, steps):
            step_fn(p, grad_fn(g) if grad_fn else g, m, **options)
        runs.append((p, m))
    return runs


@pytest.mark.parametrize("n", SIZES + [40000])
def test_lion_matches_the_reference_bit_for_bit(n):
    got, want = run_lion(n)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_lion_matches_torch_written_from_the_papers_program():
    torch = pytest.importorskip("torch")
    n, lr, b1, b2, wd = 5000, 1e-3, 0.9, 0.99, 0.1
    p0 = np.linspace(-2, 2, n, dtype=np.float32)
    p, m = p0.copy(), np.zeros(n, np.float32)
    w, mt = torch.tensor(p0), torch.zeros(n)
    for g in grads(n, 12, 4):
        K.lion_step(p, g, m, lr=lr, beta1=b1, beta2=b2, weight_decay=wd)
        gt = torch.tensor(g)
        update = (mt * b1 + gt * (1 - b1)).sign()
        w = w * (1 - lr * wd) - lr * update
        mt = mt * b2 + gt * (1 - b2)
    np.testing.assert_allclose(p, w.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(m, mt.numpy(), rtol=1e-6, atol=1e-9)


def test_lion_leaves_a_weight_alone_where_the_interpolated_momentum_is_zero():
    p, m = np.ones(3, np.float32), np.zeros(3, np.float32)
    K.lion_step(p, np.array([0.0, 1.0, -1.0], np.float32), m, lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.0)
    np.testing.assert_allclose(p, [1.0, 0.9, 1.1])


def test_lion_propagates_a_nan_gradient_into_its_weight_like_torch():
    got, want = run_lion(100, grad_fn=lambda g: np.where(np.arange(g.size) == 7, np.float32(np.nan), g))
    for a, b in zip(got, want):
        assert_same(a, b)
    assert np.isnan(got[0][7]) and np.isfinite(np.delete(got[0], 7)).all()


def test_lion_weights_settle_inside_the_box_of_radius_one_over_weight_decay():
    """Chen, Liu et al. 2023, "Lion Secretly Solves Constrained Optimization": ‖θ‖∞ ≤ 1/λ."""
    n, wd, lr = 2000, 0.5, 0.1
    p = np.random.default_rng(13).uniform(-8, 8, n).astype(np.float32)
    m = np.zeros(n, np.float32)
    rng = np.random.default_rng(14)
    for _ in range(200):
        g = (p - 10.0 + rng.standard_normal(n)).astype(np.float32)  # pulls every weight toward 10
        K.lion_step(p, g, m, lr=lr, beta1=0.9, beta2=0.99, weight_decay=wd)
    assert np.abs(p).max() <= 1 / wd + lr  # within one step of the box
    assert p.min() > 1 / wd - 10 * lr  # and pressed against its face, not somewhere inside


@pytest.mark.parametrize("call", [
    lambda: K.adam8bit_step(np.zeros(10, np.float64), np.zeros(10, np.float32), *K.adam8bit_state(10, 64),
                            step=1, block_size=64, **adam_options()),
    lambda: K.adam8bit_step(np.zeros(10, np.float32), np.zeros(9, np.float32), *K.adam8bit_state(10, 64),
                            step=1, block_size=64, **adam_options()),
    lambda: K.adam8bit_step(np.zeros(10, np.float32), np.zeros(10, np.float32), *K.adam8bit_state(10, 4),
                            step=1, block_size=64, **adam_options()),
    lambda: K.lion_step(np.zeros(10, np.float32), np.zeros(10, np.float32), np.zeros((2, 5), np.float32),
                        lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.0),
], ids=["float64 param", "short grad", "absmax for another block size", "2-d state"])
def test_arrays_of_the_wrong_dtype_shape_or_size_are_refused(call):
    with pytest.raises(ValueError, match="param must be|grad has|m_absmax has|exp_avg must be"):
        call()


@pytest.mark.parametrize(("kw", "message"), [({"step": 0}, "step must be"), ({"block_size": 0}, "block_size must be")])
def test_a_step_count_below_one_or_a_bad_block_size_is_refused(kw, message):
    n = 10
    with pytest.raises(ValueError, match=message):
        K.adam8bit_step(np.zeros(n, np.float32), np.zeros(n, np.float32), *K.adam8bit_state(n, 64),
                        **({"step": 1, "block_size": 64} | kw), **adam_options())


def test_read_only_state_is_refused_before_anything_is_written():
    n = 10
    p = np.ones(n, np.float32)
    m_codes, m_absmax, v_codes, v_absmax = K.adam8bit_state(n, 64)
    v_absmax.setflags(write=False)
    with pytest.raises(ValueError, match="v_absmax must be writeable"):
        K.adam8bit_step(p, np.ones(n, np.float32), m_codes, m_absmax, v_codes, v_absmax, step=1,
                        block_size=64, **adam_options())
    np.testing.assert_array_equal(p, 1.0)


def test_tensors_above_the_serial_threshold_take_the_parallel_path_and_still_match():
    n = K.SERIAL_BELOW + 4099
    for a, b in zip(*run_adam(n, 2048, steps=2, decoupled=True, weight_decay=0.1)):
        assert_same(a, b)
    for a, b in zip(*run_momentum(n, 2048, steps=2, nesterov=True)):
        assert_same(a, b)
    for a, b in zip(*run_lion(n, steps=2)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not K.HAS_AVX512, reason="the 16-lane update needs AVX-512")
@pytest.mark.parametrize(("decoupled", "weight_decay"), [(False, 0.0), (False, 0.1), (True, 0.1)])
def test_the_16_lane_adam_update_equals_the_scalar_loop_bit_for_bit(decoupled, weight_decay):
    rng = np.random.default_rng(3)
    n = 2048 + 13
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m = rng.standard_normal(n, dtype=np.float32) * np.float32(0.01)
    v = np.abs(rng.standard_normal(n, dtype=np.float32)) * np.float32(1e-4)
    v[:5] = 0.0
    g[5] = np.nan
    s = K._adam_scalars(7, 1e-3, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    scalars = (s["b1"], s["c1"], s["b2"], s["c2"], s["step_size"], s["inv_correction2"], s["eps"],
               s["decay"], s["shrink"], s["coupled"], s["decoupled"])
    ours = [a.copy() for a in (p, g, m, v)]
    K._adam_update_avx512(*ours, *scalars)
    K._adam_update_scalar(p, g, m, v, *scalars)
    for a, b in zip(ours, (p, g, m, v)):
        assert_same(a, b)


@pytest.mark.parametrize("block_loop", ["_adam8bit_blocks", "_adam8bit_blocks_pipelined"])
@pytest.mark.parametrize(("n", "block_size"), [(10007, 100), (2049, 2048), (300, 1), (65, 64)])
def test_both_block_loops_match_the_reference_whichever_this_cpu_runs(monkeypatch, block_loop,
                                                                      n, block_size):
    if block_loop.endswith("pipelined") and not K.HAS_VBMI:
        pytest.skip("the pipelined loop needs AVX512-VBMI")
    monkeypatch.setattr(K, "_adam8bit_run", getattr(K, block_loop))  # serial sizes read it per call
    got, want = run_adam(n, block_size, decoupled=True, weight_decay=0.1)
    for a, b in zip(got, want):
        assert_same(a, b)


@pytest.mark.skipif(not K.HAS_VBMI, reason="the fused 64-value step needs AVX512-VBMI")
@pytest.mark.parametrize(("decoupled", "weight_decay"), [(False, 0.0), (False, 0.1), (True, 0.1)])
def test_the_fused_64_value_step_equals_decode_update_and_absmax_bit_for_bit(decoupled, weight_decay):
    from numba import njit

    from flowopt.nodes.blockwise.avx512 import adam64

    @njit
    def fused(k, p, g, mc, vc, mp, vp, am, av, mo, vo, lanes, *scalars):
        for j in range(0, k, 64):
            adam64(p, g, mc, vc, j, mp, vp, am, av, mo, vo, lanes, *scalars)

    rng = np.random.default_rng(11)
    n = 3 * 64
    signed, unsigned = K._books()
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    mc, vc = rng.integers(0, 256, n).astype(np.uint8), rng.integers(0, 256, n).astype(np.uint8)
    mc[:8], vc[:8] = signed.zero_code, unsigned.zero_code
    g[70], g[71], p[130] = np.nan, np.inf, -0.0
    s = K._adam_scalars(5, 1e-3, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    scalars = tuple(s[k] for k in ("b1", "c1", "b2", "c2", "step_size", "inv_correction2", "eps",
                                   "decay", "shrink", "coupled", "decoupled"))
    for am, av in ((np.float32(0.37), np.float32(2.5e-6)), (np.float32(0.0), np.float32(np.inf))):
        for k in (64, n):   # the NaN/inf lanes outside, then inside the range
            want_p = p.copy()
            with np.errstate(invalid="ignore"):
                m = signed.values[mc] * am
                v = unsigned.values[vc] * av
            K._adam_update_scalar(want_p[:k], g[:k], m[:k], v[:k], *scalars)
            got_p = p.copy()
            mo, vo = np.full(n, 7.0, np.float32), np.full(n, 7.0, np.float32)
            lanes = np.zeros(32, np.uint32)
            lanes[3] = 0x3F000000   # a maximum carried in from earlier values: 0.5
            fused(k, got_p, g, mc, vc, K._planes(True), K._planes(False), am, av, mo, vo, lanes,
                  *scalars)
            assert_same(got_p, want_p)
            assert_same(mo[:k], m[:k])
            assert_same(vo[:k], v[:k])
            assert np.all(mo[k:] == 7.0) and np.all(vo[k:] == 7.0)
            for got, new, carried in ((lanes[:16], m[:k], 0x3F000000), (lanes[16:], v[:k], 0)):
                want = max(int((new.view(np.uint32) & np.uint32(0x7FFFFFFF)).max()), carried)
                assert int(got.max()) == want


@pytest.mark.skipif(not K.HAS_AVX512, reason="the 16-lane encoders need AVX-512")
@pytest.mark.parametrize("signed", [True, False])
def test_the_pipelined_encoder_gives_the_nearest_codes_by_reciprocal_and_by_division(signed):
    from flowopt.nodes.blockwise.codebook import nearest_code_reference

    book = codebook("dynamic", signed, 8)
    rng = np.random.default_rng(5)
    mids = ((book.values[:-1].astype(np.float64) + book.values[1:]) / 2).astype(np.float32)
    near = np.concatenate([np.nextafter(mids, np.float32(s * np.inf)) for s in (-1, 1)] + [mids])
    x = np.concatenate([near, rng.uniform(-1 if signed else 0, 1, 4096).astype(np.float32)])
    x = x[: x.size - x.size % 64] * np.float32(0.7071067)
    a = np.float32(0.7071067)
    want = nearest_code_reference(x / a, book.values)
    for how in (1, 2):   # avx512.AMD_ZEN picks one of them for the whole run
        codes = np.zeros(x.size, np.uint8)
        for j in range(0, x.size, 64):
            K._encode64(x, j, a, np.float32(1) / a, how, book.table_entries, book.table,
                        book.table_thresholds, np.uint8(book.zero_code), codes)
        np.testing.assert_array_equal(codes, want, err_msg=f"how={how}")
