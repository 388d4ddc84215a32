"""Lion, AdamP, diffGrad, Stable-SPAM and the 8-bit optimizers against step-by-step
references written here from the papers' equations, plus their kinds' validation.

The references use float64 numpy on hand-made tensors; the optimizers run on float64
torch tensors, so they must agree to rounding.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowopt.artifacts import Loss
from flowopt.errors import GraphError
from flowopt.graph import compile_pipeline
from flowopt.nodes import model, optimizer
from flowopt.nodes.blockwise.codebook import codebook
from flowopt.nodes.blockwise.quantize import quantize_blockwise_reference
from flowopt.nodes.optimizer.algorithms.adamp import AdamP
from flowopt.nodes.optimizer.algorithms.diffgrad import DiffGrad
from flowopt.nodes.optimizer.algorithms.eightbit import Adam8bit, Momentum8bit, _Book, cpu_kernels, quantize
from flowopt.nodes.optimizer.algorithms.lion import Lion
from flowopt.nodes.optimizer.algorithms.stable_spam import StableSPAM
from flowopt.nodes.optimizer.training import state_bytes
from flowopt.spec import load_spec

RNG = np.random.default_rng(0)


def run_torch(cls, theta0: np.ndarray, grad_fn, steps: int, **options) -> np.ndarray:
    """Run optimizer `cls` on one float64 parameter; grad_fn(theta, step) gives gradients."""
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = cls([p], **options)
    for t in range(1, steps + 1):
        p.grad = torch.tensor(grad_fn(p.detach().numpy().copy(), t))
        opt.step()
    return p.detach().numpy()


# --- Lion ------------------------------------------------------------------------------------

def lion_reference(theta, grad_fn, steps, lr, beta1, beta2, weight_decay):
    theta, m = theta.copy(), np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta.copy(), t)
        c = beta1 * m + (1 - beta1) * g
        theta = theta - lr * (np.sign(c) + weight_decay * theta)
        m = beta2 * m + (1 - beta2) * g
    return theta


def test_lion_matches_the_papers_update_step_by_step():
    theta0 = RNG.normal(size=(3, 5))
    grads = RNG.normal(size=(6, 3, 5))
    grads[2, 0, 0] = 0.0  # sign(0) = 0 in both
    grad_fn = lambda theta, t: grads[t - 1]  # noqa: E731
    options = {"lr": 0.01, "betas": (0.9, 0.99), "weight_decay": 0.1}
    got = run_torch(Lion, theta0, grad_fn, 6, **options)
    want = lion_reference(theta0, grad_fn, 6, 0.01, 0.9, 0.99, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_lion_with_weight_decay_settles_inside_the_box_of_radius_one_over_lambda():
    """Chen, Liu et al. 2023: Lion with decoupled weight decay λ solves
    min f(θ) subject to ‖θ‖∞ ≤ 1/λ — here f = ½‖θ − θ*‖² with θ* partly outside the box."""
    lam, lr = 0.5, 0.01
    target = np.array([5.0, -7.0, 1.0, -0.5, 3.0, 0.0])
    theta0 = np.array([4.0, 4.0, -4.0, 0.0, -3.0, 3.5])  # some start outside the box too
    theta = run_torch(Lion, theta0, lambda th, t: th - target, 1500, lr=lr, betas=(0.9, 0.99),
                      weight_decay=lam)
    assert np.abs(theta).max() <= 1 / lam + lr
    np.testing.assert_allclose(theta, np.clip(target, -1 / lam, 1 / lam), atol=5 * lr)
    free = run_torch(Lion, theta0, lambda th, t: th - target, 1500, lr=lr, weight_decay=0.0)
    assert np.abs(free).max() > 1 / lam + 1  # without decay nothing holds it in


kernels = cpu_kernels()
needs_kernels = pytest.mark.skipif(kernels is None, reason="flowopt.nodes.optimizer.kernels "
                                                            "(the numba CPU kernels) is not available")


@needs_kernels
@pytest.mark.parametrize("n", [0, 1, 63, 4097])
def test_lion_cpu_kernel_agrees_with_the_torch_path(n):
    generator = torch.Generator().manual_seed(n)
    theta0, grads = torch.randn(n, generator=generator), torch.randn(4, n, generator=generator)
    results = []
    for use_kernel in (True, False):
        p = torch.nn.Parameter(theta0.clone())
        opt = Lion([p], lr=0.01, weight_decay=0.1, use_kernel=use_kernel)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results.append((p.detach().clone(), opt.state[p]["exp_avg"].clone()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-6)


# --- AdamP -----------------------------------------------------------------------------------

def adamp_reference(theta, grad_fn, steps, lr, beta1, beta2, eps, weight_decay, delta, wd_ratio):
    theta, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    projected = []
    for t in range(1, steps + 1):
        g = grad_fn(theta.copy(), t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        d = m / (np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps)
        ratio, done = 1.0, False
        for rows in (theta.reshape(theta.shape[0], -1), theta.reshape(1, -1)):
            gr = g.reshape(rows.shape)
            cos = np.abs((gr * rows).sum(1)) / (np.linalg.norm(gr, axis=1) * np.linalg.norm(rows, axis=1))
            if cos.max() < delta / math.sqrt(rows.shape[1]):
                unit = rows / (np.linalg.norm(rows, axis=1, keepdims=True) + eps)
                dr = d.reshape(rows.shape)
                d = (dr - unit * (unit * dr).sum(1, keepdims=True)).reshape(theta.shape)
                ratio, done = wd_ratio, True
                break
        projected.append(done)
        theta = theta * (1 - lr * weight_decay * ratio) - lr / (1 - beta1 ** t) * d
    return theta, projected


def orthogonal_grad(theta, t):
    """A gradient orthogonal to each row of θ, as a scale-invariant weight would get."""
    r = np.random.default_rng(t).normal(size=theta.shape)
    return r - (r * theta).sum(1, keepdims=True) / (theta * theta).sum(1, keepdims=True) * theta


@pytest.mark.parametrize("grad_fn,expect_projection", [
    (orthogonal_grad, True),
    (lambda theta, t: theta + 0.1 * np.random.default_rng(t).normal(size=theta.shape), False)])
def test_adamp_matches_the_papers_update_step_by_step(grad_fn, expect_projection):
    theta0 = RNG.normal(size=(4, 6))
    options = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, delta=0.1,
                   wd_ratio=0.1)
    got = run_torch(AdamP, theta0, grad_fn, 5, **options)
    want, projected = adamp_reference(theta0, grad_fn, 5, options["lr"], 0.9, 0.999, 1e-8,
                                      0.1, 0.1, 0.1)
    assert all(projected) == expect_projection and any(projected) == expect_projection
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_adamp_keeps_the_norm_of_scale_invariant_weights_where_adam_inflates_it():
    """The paper's point: momentum on scale-invariant weights grows ‖θ‖ (shrinking the
    effective step); removing the radial component keeps it near its start."""
    theta0 = RNG.normal(size=(8, 16))
    norms = {}
    for name, cls in (("adamp", AdamP), ("adam", torch.optim.Adam)):
        theta = run_torch(cls, theta0, orthogonal_grad, 100, lr=0.05)
        norms[name] = np.linalg.norm(theta) / np.linalg.norm(theta0)
    assert norms["adam"] > 1.1
    assert norms["adamp"] - 1 < 0.25 * (norms["adam"] - 1)


# --- diffGrad --------------------------------------------------------------------------------

def diffgrad_reference(theta, grad_fn, steps, lr, beta1, beta2, eps, weight_decay):
    theta, m, v, previous = theta.copy(), np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta.copy(), t) + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        xi = 1 / (1 + np.exp(-np.abs(previous - g)))
        previous = g
        # θ ← θ − lr·ξ·m̂/√v̂ with m̂ = m/bc1, √v̂ = √v/√bc2, ε added to √v (the authors' code)
        step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        theta = theta - step_size * xi * m / (np.sqrt(v) + eps)
    return theta


def test_diffgrad_matches_the_papers_update_step_by_step():
    theta0 = RNG.normal(size=(2, 7))
    grads = RNG.normal(size=(5, 2, 7))
    grads[3] = grads[2]  # an unchanged gradient: friction 0.5 halves the step
    grad_fn = lambda theta, t: grads[t - 1]  # noqa: E731
    got = run_torch(DiffGrad, theta0, grad_fn, 5, lr=0.01, weight_decay=0.01)
    want = diffgrad_reference(theta0, grad_fn, 5, 0.01, 0.9, 0.999, 1e-8, 0.01)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# --- Stable-SPAM -----------------------------------------------------------------------------

def stable_spam_reference(theta, grad_fn, steps, lr, beta1, beta2, eps, weight_decay,
                          gamma1, gamma2, theta_max, reset_every):
    theta = theta.copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    max_ema = norm_ema = norm_sq_ema = 0.0
    k, clipped = 0, 0
    for t in range(1, steps + 1):
        theta = theta * (1 - lr * weight_decay)
        g = grad_fn(theta.copy(), t).copy()
        peak = np.abs(g).max()
        max_ema = theta_max * max_ema + (1 - theta_max) * peak
        limit = max_ema / (1 - theta_max ** t)
        spikes = np.abs(g) > limit
        clipped += int(spikes.sum())
        g[spikes] = g[spikes] / peak * limit
        n = np.linalg.norm(g)
        norm_ema = gamma1 * norm_ema + (1 - gamma1) * n
        norm_sq_ema = gamma2 * norm_sq_ema + (1 - gamma2) * n * n
        scale = (norm_ema / (1 - gamma1 ** t)) / (math.sqrt(norm_sq_ema / (1 - gamma2 ** t)) + eps)
        g = g / n * scale
        if reset_every and t % reset_every == 0:
            m, v, k = np.zeros_like(theta), np.zeros_like(theta), 0
        k += 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta = theta - lr / (1 - beta1 ** k) * m / (np.sqrt(v) / math.sqrt(1 - beta2 ** k) + eps)
    return theta, clipped


def test_stable_spam_matches_the_papers_update_with_a_spike_and_a_reset():
    theta0 = RNG.normal(size=(3, 4))
    grads = RNG.normal(size=(7, 3, 4))
    grads[4, 1, 2] = 500.0  # a gradient spike
    grad_fn = lambda theta, t: grads[t - 1]  # noqa: E731
    options = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, gamma1=0.7,
                   gamma2=0.9, theta=0.999, reset_every=3)
    got = run_torch(StableSPAM, theta0, grad_fn, 7, **options)
    want, clipped = stable_spam_reference(theta0, grad_fn, 7, 0.01, 0.9, 0.999, 1e-8, 0.05,
                                          0.7, 0.9, 0.999, 3)
    assert clipped > 0
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_stable_spam_leaves_the_caller_gradient_untouched():
    p = torch.nn.Parameter(torch.ones(4))
    opt = StableSPAM([p])
    p.grad = torch.tensor([1.0, 1.0, 1.0, 1000.0])
    before = p.grad.clone()
    opt.step()
    opt.step()
    assert torch.equal(p.grad, before)


# --- 8-bit -----------------------------------------------------------------------------------

@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("n,block", [(1, 64), (200, 64), (4096, 2048), (5000, 2048)])
def test_torch_quantizer_codes_are_bit_identical_to_the_reference(signed, n, block):
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    if not signed:
        x = np.abs(x) ** 2
    x[:5] = 0.0
    if n > 200:
        x[block:2 * block] = 0.0  # an all-zero block
    codes, absmax = quantize(torch.from_numpy(x), _Book.get(signed, torch.device("cpu")), block)
    want_codes, want_absmax = quantize_blockwise_reference(x, codebook("dynamic", signed), block)
    np.testing.assert_array_equal(codes.numpy(), want_codes)
    np.testing.assert_array_equal(absmax.numpy(), want_absmax)


def adam_steps(cls, n, steps=30, **options):
    generator = torch.Generator().manual_seed(7)
    theta0 = torch.randn(n, generator=generator)
    target = torch.randn(n, generator=generator)
    p = torch.nn.Parameter(theta0.clone())
    opt = cls([p], **options)
    for _ in range(steps):
        p.grad = (p.detach() - target) + 0.1 * torch.randn(n, generator=generator)
        opt.step()
    return p.detach(), opt


@pytest.mark.parametrize("use_kernel", [False, pytest.param(True, marks=needs_kernels)])
def test_adam8bit_follows_fp32_adam_closely(use_kernel):
    ours, _ = adam_steps(Adam8bit, 5000, lr=0.01, block_size=256, min_8bit_size=0,
                         use_kernel=use_kernel)
    reference, _ = adam_steps(torch.optim.Adam, 5000, lr=0.01)
    start, _ = adam_steps(torch.optim.Adam, 5000, steps=0, lr=0.01)
    moved = (reference - start).norm()
    assert (ours - reference).norm() < 0.05 * moved


def test_adamw8bit_decouples_weight_decay_like_torch_adamw():
    ours, _ = adam_steps(Adam8bit, 3000, lr=0.01, weight_decay=0.5, decoupled=True,
                         block_size=128, min_8bit_size=0, use_kernel=False)
    reference, _ = adam_steps(torch.optim.AdamW, 3000, lr=0.01, weight_decay=0.5)
    coupled, _ = adam_steps(torch.optim.Adam, 3000, lr=0.01, weight_decay=0.5)
    assert (ours - reference).norm() < 0.2 * (coupled - reference).norm()


@pytest.mark.parametrize("use_kernel", [False, pytest.param(True, marks=needs_kernels)])
def test_momentum8bit_follows_torch_sgd_with_momentum(use_kernel):
    ours, _ = adam_steps(Momentum8bit, 5000, lr=0.05, momentum=0.9, block_size=256,
                         min_8bit_size=0, use_kernel=use_kernel)
    reference, _ = adam_steps(torch.optim.SGD, 5000, lr=0.05, momentum=0.9)
    start, _ = adam_steps(torch.optim.SGD, 5000, steps=0, lr=0.05)
    assert (ours - reference).norm() < 0.05 * (reference - start).norm()


@needs_kernels
@pytest.mark.parametrize("cls,options", [(Adam8bit, {"weight_decay": 0.1}),
                                         (Adam8bit, {"weight_decay": 0.1, "decoupled": True}),
                                         (Momentum8bit, {"nesterov": True, "weight_decay": 0.1})])
def test_the_torch_path_and_the_cpu_kernel_store_the_same_codes(cls, options):
    """The CUDA path is the torch code; on the CPU it must agree with the numba kernel."""
    results = []
    for use_kernel in (True, False):
        p, opt = adam_steps(cls, 3001, steps=5, lr=0.01, block_size=128, min_8bit_size=0,
                            use_kernel=use_kernel, **options)
        (state,) = opt.state.values()
        results.append((p, state))
    (p_kernel, s_kernel), (p_torch, s_torch) = results
    torch.testing.assert_close(p_kernel, p_torch, rtol=1e-5, atol=1e-6)
    for key in s_kernel:
        if key.endswith("_codes"):  # float32 rounding may move a value across a midpoint
            assert (s_kernel[key] == s_torch[key]).double().mean() > 0.999
        elif key.endswith("_absmax"):
            torch.testing.assert_close(s_kernel[key], s_torch[key], rtol=1e-5, atol=0)


@pytest.mark.parametrize("block", [256, 2048])
def test_adam8bit_state_is_two_bytes_per_parameter_plus_two_scales_per_block(block):
    n = 10_000
    _, opt = adam_steps(Adam8bit, n, steps=1, block_size=block, min_8bit_size=0)
    blocks = -(-n // block)
    assert state_bytes(opt) == 2 * n + 2 * 4 * blocks
    _, fp32 = adam_steps(torch.optim.Adam, n, steps=1)
    assert state_bytes(opt) / state_bytes(fp32) < 0.26


def test_small_tensors_keep_float32_states_like_bitsandbytes():
    _, opt = adam_steps(Adam8bit, 100, steps=1)  # below min_8bit_size 4096
    (state,) = opt.state.values()
    assert state["m"].dtype == torch.float32 and "m_codes" not in state


def test_adam8bit_state_survives_a_state_dict_round_trip_as_uint8():
    p, opt = adam_steps(Adam8bit, 3000, steps=3, block_size=64, min_8bit_size=0)
    again = Adam8bit([torch.nn.Parameter(p.clone())], block_size=64, min_8bit_size=0)
    again.load_state_dict(opt.state_dict())
    (state,) = again.state.values()
    (original,) = opt.state.values()
    assert state["m_codes"].dtype == torch.uint8 and state["step"] == 3
    assert torch.equal(state["v_codes"], original["v_codes"])


# --- the kinds ---------------------------------------------------------------------------------

XENT = Loss(recipe={"builder": "cross_entropy", "label_smoothing": 0.0, "z_loss": 0.0})
KINDS = {"lion": (optimizer.lion, {"lr": 3e-3}),
         "adamp": (optimizer.adamp, {"lr": 0.01}),
         "diffgrad": (optimizer.diffgrad, {"lr": 0.02}),
         "stable_spam": (optimizer.stable_spam, {"lr": 0.01}),
         "adam8bit": (optimizer.adam8bit, {"lr": 0.01, "block_size": 64, "min_8bit_size": 0}),
         "adamw8bit": (optimizer.adamw8bit, {"lr": 0.01, "block_size": 64, "min_8bit_size": 0}),
         "momentum8bit": (optimizer.momentum8bit, {"lr": 0.05, "block_size": 64,
                                                   "min_8bit_size": 0})}


def full_loss(net, dataset) -> float:
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(net.module.eval()(dataset.x), dataset.y).item()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_new_optimizer_kind_trains_a_small_model(blobs, make_ctx, name):
    factory, options = KINDS[name]
    net = model.mlp.fn(blobs, make_ctx(), hidden=[16])
    trained = factory.fn(net, blobs, XENT, make_ctx(), steps=60, batch_size=32, device="cpu",
                         **options)
    assert full_loss(trained, blobs) < 0.5 * full_loss(net, blobs)
    assert trained.meta["optimizer"] == f"optimizer.{name}"


def test_state_bytes_per_param_is_reported_for_every_optimizer(blobs, make_ctx):
    net = model.mlp.fn(blobs, make_ctx(), hidden=[64])
    n = net.meta["n_params"]
    per_param = {}
    for name in ("adam8bit", "lion"):
        factory, options = KINDS[name]
        ctx = make_ctx()
        trained = factory.fn(net, blobs, XENT, ctx, steps=2, device="cpu", **options)
        per_param[name] = trained.meta["state_bytes_per_param"]
        assert ("state_bytes_per_param", per_param[name], None) in ctx.logged
    blocks = sum(-(-p.numel() // 64) for p in net.module.parameters())
    assert per_param["adam8bit"] == pytest.approx(2 + 8 * blocks / n)
    assert per_param["lion"] == 4


PIPELINE = """pipeline: bad
nodes:
  d: {{kind: data.synthetic}}
  net: {{kind: model.mlp, in: {{data: d}}}}
  xent: {{kind: loss.cross_entropy}}
  train:
    kind: optimizer.{kind}
    in: {{model: net, data: d, loss: xent}}
    with: {{{field}: {value}}}
"""


@pytest.mark.parametrize("kind,field,value,message", [
    ("lion", "lr", "0", "greater than 0"),
    ("adamp", "lr", "-0.1", "greater than 0"),
    ("lion", "betas", "[0.9, 1.0]", "less than 1"),
    ("diffgrad", "betas", "[-0.1, 0.9]", "greater than or equal to 0"),
    ("adam8bit", "block_size", "100", "multiple of 64"),
    ("adamw8bit", "block_size", "0", "greater than or equal to 64"),
    ("stable_spam", "gamma1", "1.5", "less than 1"),
    ("momentum8bit", "momentum", "0", "greater than 0"),
    ("adam8bit", "on_nonfinite", "ignore", "'fail' or 'skip_step'"),
])
def test_bad_values_are_errors_naming_the_line_and_key_before_anything_runs(
        tmp_path, kind, field, value, message):
    path = tmp_path / "bad.yaml"
    path.write_text(PIPELINE.format(kind=kind, field=field, value=value))
    with pytest.raises(GraphError) as info:
        compile_pipeline(load_spec(path))
    text = str(info.value)
    assert f"bad.yaml:9, key 'nodes.train.with.{field}" in text and message in text
    assert info.value.exit_code == 2


NEW_KINDS = ["optimizer.lion", "optimizer.adamp", "optimizer.diffgrad", "optimizer.stable_spam",
             "optimizer.adam8bit", "optimizer.adamw8bit", "optimizer.momentum8bit",
             "loss.spherical_z", "loss.stablemax", "loss.focal", "evaluator.steps_to_target"]


@pytest.mark.parametrize("name", NEW_KINDS)
def test_each_new_kind_documents_its_ports_and_with_fields(name):
    from flowopt.registry import REGISTRY

    kind = REGISTRY.get(name)
    for item in (*kind.config.model_fields, *(p.name for p in (*kind.inputs, *kind.outputs))):
        assert f"``{item}``" in kind.doc, f"{name}: '{item}' undocumented"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [Adam8bit, Momentum8bit, Lion])
def test_the_cuda_path_agrees_with_the_cpu_path(cls):
    generator = torch.Generator().manual_seed(3)
    theta0, grads = torch.randn(5000, generator=generator), torch.randn(4, 5000, generator=generator)
    options = {"lr": 0.01} if cls is Lion else {"lr": 0.01, "block_size": 256, "min_8bit_size": 0}
    results = []
    for device in ("cuda", "cpu"):
        p = torch.nn.Parameter(theta0.clone().to(device))
        opt = cls([p], **options)
        for g in grads:
            p.grad = g.clone().to(device)
            opt.step()
        results.append(p.detach().cpu())
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [AdamP, DiffGrad, Adam8bit, Momentum8bit, Lion, StableSPAM])
def test_every_optimizer_returns_the_closures_loss_and_leaves_gradless_params_alone(cls):
    used, unused = torch.nn.Parameter(torch.ones(8)), torch.nn.Parameter(torch.ones(8))
    opt = cls([used, unused], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (used * torch.arange(8.0)).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(28.0)
    assert torch.equal(unused.detach(), torch.ones(8)) and unused.grad is None
    assert not torch.equal(used.detach()[1:], torch.ones(7))
