"""The GP's numba kernels, likelihood and acquisitions against numpy references,
finite differences and Monte Carlo (nodes/tuner/bayesopt/{kernels,gp,acquisition}.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from flowopt.nodes.tuner.bayesopt import acquisition as acq
from flowopt.nodes.tuner.bayesopt import gp as gpmod
from flowopt.nodes.tuner.bayesopt import kernels


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.random((25, 3))
    y = np.sin(6 * X[:, 0]) + X[:, 1] ** 2 - X[:, 2] + 0.05 * rng.standard_normal(25)
    y = (y - y.mean()) / y.std()
    hyper = gpmod.Hyper(np.array([4.0, 1.5, 0.7]), 1.3, 0.01)
    return X, y, hyper


def fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def test_the_kernel_matrix_matches_numpy_serial_and_parallel(data):
    X, _, h = data
    Z = np.random.default_rng(1).random((40, 3))
    ref = kernels.matern52_reference(Z, X, h.inv_ls2, h.scale)
    assert np.allclose(kernels.matern52(Z, X, h.inv_ls2, h.scale), ref, rtol=1e-12, atol=0)
    assert np.allclose(kernels._matern_parallel(Z, X, h.inv_ls2, h.scale), ref, rtol=1e-12, atol=0)
    assert np.allclose(np.diag(kernels.matern52(X, X, h.inv_ls2, h.scale)), h.scale)


@pytest.mark.parametrize("n", [1, 2, 7, 25, 130])
def test_the_symmetric_kernel_matrix_is_the_full_one_bit_for_bit(n, monkeypatch):
    rng = np.random.default_rng(n)
    X = rng.random((n, 6))
    inv_ls2, scale = rng.uniform(0.1, 20.0, 6), 1.7
    full = kernels.matern52(X, X, inv_ls2, scale)
    assert np.array_equal(kernels.matern52_symmetric(X, inv_ls2, scale), full)
    assert np.allclose(full, kernels.matern52_reference(X, X, inv_ls2, scale), rtol=1e-12, atol=0)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 1)       # the parallel driver too
    assert np.array_equal(kernels.matern52_symmetric(X, inv_ls2, scale), full)


def test_the_likelihood_gradient_kernel_matches_numpy_serial_and_parallel(data):
    X, _, h = data
    W = np.random.default_rng(2).standard_normal((25, 25))
    W = W + W.T                      # symmetric, as ααᵀ - K⁻¹ is: the kernel visits b < a only
    ref = kernels.mll_grad_reference(X, h.inv_ls2, h.scale, W)
    assert np.allclose(kernels.mll_grad(X, h.inv_ls2, h.scale, W), ref, rtol=1e-10)
    assert np.allclose(kernels._grad_parallel(X, h.inv_ls2, h.scale, W), ref, rtol=1e-10)


@pytest.mark.parametrize("fixed_noise, prior_mean", [(None, None), (0.05, None), (None, -1.2)])
def test_the_negative_log_posterior_gradient_matches_finite_differences(data, fixed_noise,
                                                                        prior_mean):
    X, y, h = data
    theta = h.theta()
    _, g = gpmod.neg_log_posterior(theta, X, y, fixed_noise, prior_mean)
    num = fd_grad(lambda t: gpmod.neg_log_posterior(t, X, y, fixed_noise, prior_mean)[0], theta)
    assert np.allclose(g, num, rtol=1e-5, atol=1e-6)


def test_a_fixed_prior_mean_is_the_textbook_posterior_around_that_constant(data):
    """``prior_mean`` replaces the least-squares constant: mean c + k K⁻¹(y - c), the same
    variance, and the constant survives conditioning on fantasised observations."""
    X, y, h = data
    c = float(y.min())
    model = gpmod.GP(X, y, h, prior_mean=c)
    Z = np.random.default_rng(4).random((50, 3))
    K = kernels.matern52_reference(X, X, h.inv_ls2, h.scale) + h.noise * np.eye(len(X))
    Ks = kernels.matern52_reference(Z, X, h.inv_ls2, h.scale)
    mean, var = model.posterior(Z)
    assert model.mean == c
    assert np.allclose(mean, c + Ks @ np.linalg.solve(K, y - c), atol=1e-8)
    assert np.allclose(var, gpmod.GP(X, y, h).posterior(Z)[1], atol=1e-12)
    assert model.condition(Z[:2], np.zeros(2)).mean == c
    far = np.full((1, 3), 40.0)                        # no data near: the prior's constant
    assert model.posterior(far)[0][0] == pytest.approx(c)
    assert gpmod.GP(X, y, h).posterior(far)[0][0] > c + 0.5   # the fitted one is typical
    fitted = gpmod.fit(X, y, prior_mean=c)
    assert fitted.mean == c and fitted.prior_mean == c


def test_the_posterior_matches_the_textbook_algorithm(data):
    X, y, h = data
    model = gpmod.GP(X, y, h)
    Z = np.random.default_rng(3).random((300, 3))
    # Rasmussen & Williams (2006) eq. 2.25-2.26, written with an explicit inverse
    K = kernels.matern52_reference(X, X, h.inv_ls2, h.scale) + h.noise * np.eye(len(X))
    Ks = kernels.matern52_reference(Z, X, h.inv_ls2, h.scale)
    Kinv = np.linalg.inv(K)
    one = np.ones(len(y))
    mu = (one @ Kinv @ y) / (one @ Kinv @ one)           # the constant mean by least squares
    mean_ref = mu + Ks @ Kinv @ (y - mu)
    var_ref = h.scale - np.einsum("ij,jk,ik->i", Ks, Kinv, Ks)
    mean, var = model.posterior(Z)
    assert np.allclose(mean, mean_ref, atol=1e-8)
    assert np.allclose(var, var_ref, atol=1e-8)
    assert model.mean == pytest.approx(mu)
    assert np.allclose(kernels._posterior_parallel(Z, X, model.L, model.alpha, h.inv_ls2, h.scale, 0.0)[:, 0],
                       mean_ref - mu, atol=1e-8)
    fused = gpmod.FUSED_MIN_WORK
    try:                                                 # the fused path gives the same answer
        gpmod.FUSED_MIN_WORK = 1
        assert np.allclose(model.log_ei(Z, 0.3)[0], mean_ref, atol=1e-8)
        fused_lei = model.log_ei(Z, 0.3)[2]
    finally:
        gpmod.FUSED_MIN_WORK = fused
    assert np.allclose(model.log_ei(Z, 0.3)[2], fused_lei, rtol=1e-9)
    cov = model.cross(Z[:5], Z[:5])
    assert np.allclose(np.diag(cov), var_ref[:5], atol=1e-8)


def test_log_ei_is_the_log_of_the_closed_form_and_stays_finite_where_ei_underflows(data):
    X, y, h = data
    model = gpmod.GP(X, y, h)
    Z = np.random.default_rng(4).random((500, 3))
    mean, var, lei = model.log_ei(Z, best=y.max())
    ei = acq.ei(mean, var, y.max())
    ok = ei > 1e-300
    assert np.allclose(lei[ok], np.log(ei[ok]), rtol=1e-9, atol=1e-9)
    # far below the incumbent: log h(z) ≈ log φ(z) - 2 log|z| (Mills ratio asymptotics)
    for z in (-40.0, -1e3, -1e9):
        expected = stats.norm.logpdf(z) - 2 * np.log(-z) + np.log1p(-3 / z**2)
        assert kernels.log_h(z) == pytest.approx(expected, rel=1e-6)
        assert acq.log_h(np.array([z]))[0] == pytest.approx(kernels.log_h(z), rel=1e-12)
    zs = np.linspace(-60, 8, 2000)
    assert np.all(np.diff([kernels.log_h(z) for z in zs]) > 0)  # monotone across the branches


def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(5)
    mean, var, best = np.array([0.3, -1.0, 2.0]), np.array([0.5, 2.0, 0.01]), 0.5
    f = mean[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((3, 400_000))
    mc = np.maximum(f - best, 0).mean(axis=1)
    assert np.allclose(acq.ei(mean, var, best), mc, rtol=0.02, atol=1e-4)


def test_the_log_ei_gradient_matches_finite_differences(data):
    X, y, h = data
    model = gpmod.GP(X, y, h)
    for x in np.random.default_rng(6).random((5, 3)):
        _, g = acq.log_ei_grad(model, x[None, :], y.max())
        num = fd_grad(lambda z: acq.log_ei_grad(model, z[None, :], y.max())[0][0], x)
        assert np.allclose(g[0], num, rtol=1e-4, atol=1e-6)
        _, _, dm, dv = model.mean_var_grad(x[None, :])
        assert np.allclose(dm[0], fd_grad(lambda z: model.mean_var_grad(z[None, :])[0][0], x), rtol=1e-5, atol=1e-7)
        assert np.allclose(dv[0], fd_grad(lambda z: model.mean_var_grad(z[None, :])[1][0], x), rtol=1e-5, atol=1e-7)


def test_the_expected_maximum_of_affine_functions_matches_monte_carlo():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((6, 9))
    B = rng.standard_normal((6, 9))
    B[0, 3] = B[0, 5]                # equal slopes
    B[1] = 0.0                       # no uncertainty: no gain
    A[2, :4] = A[2, 0]               # equal intercepts
    exact = kernels.expected_max_gain(A, B)
    mc = kernels.expected_max_gain_reference(A, B, samples=400_000)
    assert exact[1] == 0.0
    assert np.allclose(exact, mc, atol=6e-3)
    assert np.allclose(kernels._gain_parallel(A, B), exact)


def _mc_value_of_sampling(model, x, domain, evaluated_only, rng, samples=4000):
    """E_n[max μ_{n+1}(D ∪ {x})] - max μ_n(D [∪ {x}]) by simulating the observation at x."""
    mean_x, var_x = model.posterior(x[None, :])
    ys = mean_x[0] + np.sqrt(var_x[0] + model.hyper.noise) * rng.standard_normal(samples)
    points = np.vstack([domain, x])
    # μ_{n+1}(p) = μ_n(p) + Σ_n(p, x) (y - μ_n(x)) / (Σ_n(x, x) + σ²)
    mean_p, _ = model.posterior(points)
    gain = model.cross(points, x[None, :])[:, 0] / (var_x[0] + model.hyper.noise)
    after = mean_p[:, None] + gain[:, None] * (ys - mean_x[0])[None, :]
    now = mean_p[:-1].max() if evaluated_only else mean_p.max()
    return float(np.mean(after.max(axis=0)) - now)


def test_noisy_ei_and_the_knowledge_gradient_match_simulated_observations(data):
    X, y, h = data
    model = gpmod.GP(X, y, gpmod.Hyper(h.inv_ls2, h.scale, 0.2))
    rng = np.random.default_rng(8)
    C = rng.random((4, 3))
    domain = np.vstack([X, rng.random((20, 3))])
    nei = acq.noisy_ei(model, C, X)
    kg = acq.knowledge_gradient(model, C, domain)
    for i, x in enumerate(C):
        assert nei[i] == pytest.approx(_mc_value_of_sampling(model, x, X, True, rng, 200_000), abs=4e-3)
        assert kg[i] == pytest.approx(_mc_value_of_sampling(model, x, domain, False, rng, 200_000), abs=4e-3)
    assert np.all(nei >= 0) and np.all(kg >= 0)


def test_fitting_recovers_the_lengthscale_that_matters(data):
    rng = np.random.default_rng(9)
    X = rng.random((40, 3))
    y = np.sin(8 * X[:, 0])                # depends on x0 only
    model = gpmod.fit(X, (y - y.mean()) / y.std(), rng=rng)
    lengthscales = 1 / np.sqrt(model.hyper.inv_ls2)
    assert lengthscales[0] < 0.5 * min(lengthscales[1], lengthscales[2])
    assert model.hyper.noise < 1e-2        # the data are noise-free
    start = gpmod.neg_log_posterior(np.zeros(5), X, (y - y.mean()) / y.std())[0]
    assert gpmod.neg_log_posterior(model.hyper.theta(), X, (y - y.mean()) / y.std())[0] < start
