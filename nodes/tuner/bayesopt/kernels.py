"""numba kernels for the GP's hot loops, each beside the plain numpy reference it is tested against.

* `matern52` — the Matérn-5/2 ARD kernel matrix ``s (1 + √5 r + 5r²/3) exp(-√5 r)`` with
  ``r² = Σ_k λ_k (x_k - x'_k)²`` (``λ_k = 1/ℓ_k²``). docs/kernels.md habit 9: ≈ 5× numpy at 2000
  points, because numpy materialises the n×n×d difference tensor.
* `mll_grad` — the kernel part of the marginal-likelihood gradient,
  ``½ Σ_ab W_ab ∂K_ab/∂θ`` for ``θ = (log λ_1..d, log s)`` with ``W = ααᵀ - K⁻¹``, in one pass
  over the pairs instead of d+1 n×n derivative matrices.
* `posterior_log_ei` — posterior mean, variance and log expected improvement over many
  candidates in one parallel pass (kernel row, forward substitution with the Cholesky
  factor, EI), so nothing of size candidates × observations is allocated.
* `expected_max_gain` — ``E[max_i a_i + b_i Z] - max_i a_i`` for rows of affine functions of
  one standard normal Z (Frazier, Powell & Dayanik 2009, Algorithm 1: sort by slope,
  keep the upper envelope, sum closed-form pieces); the core of noisy EI and the
  knowledge gradient.

Cholesky factorisations and triangular solves of matrices stay in LAPACK (scipy).
Log EI follows Ament et al. 2023 ("Unexpected improvements to expected improvement"):
``log h(z)`` with ``h(z) = φ(z) + zΦ(z)`` evaluated without underflow, through the scaled
complementary error function, so candidates far from the incumbent still rank correctly.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

SQRT2 = math.sqrt(2.0)
SQRT5 = math.sqrt(5.0)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
SQRT_PI_2 = math.sqrt(math.pi / 2.0)
_FAR = -1.0 / math.sqrt(np.finfo(float).eps)  # below this, log h(z) ≈ log φ(z) - 2 log|z|


# -- scalar helpers ---------------------------------------------------------------------------
@njit(cache=True)
def erfcx(x):
    """``exp(x²) erfc(x)`` for x ≥ 0, without overflow (asymptotic series beyond 25)."""
    if x < 25.0:
        return math.exp(x * x) * math.erfc(x)
    x2 = 1.0 / (x * x)
    return (1.0 - x2 * (0.5 - x2 * (0.75 - x2 * (1.875 - x2 * 6.5625)))) / (x * math.sqrt(math.pi))


@njit(cache=True)
def log_h(z):
    """``log(φ(z) + zΦ(z))``, accurate from z = +40 down to z = -1e300."""
    if z > -1.0:
        return math.log(math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
                        + z * 0.5 * math.erfc(-z / SQRT2))
    if z > _FAR:
        return -0.5 * z * z - LOG_SQRT_2PI + math.log1p(z * SQRT_PI_2 * erfcx(-z / SQRT2))
    return -0.5 * z * z - LOG_SQRT_2PI - 2.0 * math.log(-z)


@njit(cache=True)
def _h(z):
    return math.exp(log_h(z))


# -- kernel matrix and likelihood gradient ---------------------------------------------------
# Each hot loop is a row function plus two drivers: serial, and `prange` over rows. On this
# shared 2-core machine a parallel region costs milliseconds whenever the other core is
# busy (a 100×100 kernel matrix: 0.2 ms on one thread, 13 ms on two under load), so the
# parallel driver is used only above PARALLEL_MIN_WORK pairs of points.
PARALLEL_MIN_WORK = 1_000_000


@njit(cache=True)
def _matern_row(xi, X2, inv_ls2, scale, out):
    d = xi.shape[0]
    for j in range(X2.shape[0]):
        xj = X2[j]
        r2 = 0.0
        for k in range(d):
            diff = xi[k] - xj[k]
            r2 += diff * diff * inv_ls2[k]
        s5 = math.sqrt(5.0 * r2)
        out[j] = scale * (1.0 + s5 + (5.0 / 3.0) * r2) * math.exp(-s5)


@njit(cache=True)
def _matern_serial(X1, X2, inv_ls2, scale):
    K = np.empty((X1.shape[0], X2.shape[0]))
    for i in range(X1.shape[0]):
        _matern_row(X1[i], X2, inv_ls2, scale, K[i])
    return K


@njit(cache=True, parallel=True)
def _matern_parallel(X1, X2, inv_ls2, scale):
    K = np.empty((X1.shape[0], X2.shape[0]))
    for i in prange(X1.shape[0]):
        _matern_row(X1[i], X2, inv_ls2, scale, K[i])
    return K


def matern52(X1, X2, inv_ls2, scale):
    """Matérn-5/2 ARD kernel matrix between the rows of X1 and X2."""
    big = X1.shape[0] * X2.shape[0] >= PARALLEL_MIN_WORK
    return (_matern_parallel if big else _matern_serial)(X1, X2, inv_ls2, float(scale))


@njit(cache=True)
def _matern_symmetric_serial(X, inv_ls2, scale):
    n = X.shape[0]
    K = np.empty((n, n))
    for i in range(n):
        _matern_row(X[i], X[: i + 1], inv_ls2, scale, K[i, : i + 1])
        for j in range(i):
            K[j, i] = K[i, j]
    return K


def matern52_symmetric(X, inv_ls2, scale):
    """``matern52(X, X, ...)`` bit for bit, computing each pair once (the square of a
    difference does not depend on its sign): half the work of every likelihood evaluation's
    kernel matrix."""
    if X.shape[0] * X.shape[0] >= PARALLEL_MIN_WORK:
        return _matern_parallel(X, X, inv_ls2, float(scale))
    return _matern_symmetric_serial(X, inv_ls2, float(scale))


def matern52_reference(X1, X2, inv_ls2, scale):
    r2 = (((X1[:, None, :] - X2[None, :, :]) ** 2) * inv_ls2).sum(-1)
    s5 = np.sqrt(5.0 * r2)
    return scale * (1.0 + s5 + 5.0 / 3.0 * r2) * np.exp(-s5)


@njit(cache=True)
def _grad_row(xa, X, a, inv_ls2, scale, Wa, acc):
    """Pairs (a, b < a), counted twice (K and W are symmetric), plus the diagonal (a, a)."""
    d = xa.shape[0]
    for b in range(a):
        xb = X[b]
        r2 = 0.0
        for k in range(d):
            diff = xa[k] - xb[k]
            r2 += diff * diff * inv_ls2[k]
        s5 = math.sqrt(5.0 * r2)
        e = math.exp(-s5)
        w = 2.0 * Wa[b]
        # ∂K/∂r² = -(5/6) s (1 + √5 r) e^{-√5 r};  ∂r²/∂log λ_k = λ_k Δ_k²
        dk = -(5.0 / 6.0) * scale * (1.0 + s5) * e * w
        for k in range(d):
            diff = xa[k] - xb[k]
            acc[k] += dk * diff * diff * inv_ls2[k]
        acc[d] += w * scale * (1.0 + s5 + (5.0 / 3.0) * r2) * e
    acc[d] += Wa[a] * scale


@njit(cache=True)
def _grad_serial(X, inv_ls2, scale, W):
    rows = np.zeros((X.shape[0], X.shape[1] + 1))
    for a in range(X.shape[0]):
        _grad_row(X[a], X, a, inv_ls2, scale, W[a], rows[a])
    return 0.5 * rows.sum(axis=0)


@njit(cache=True, parallel=True)
def _grad_parallel(X, inv_ls2, scale, W):
    rows = np.zeros((X.shape[0], X.shape[1] + 1))
    for a in prange(X.shape[0]):
        _grad_row(X[a], X, a, inv_ls2, scale, W[a], rows[a])
    return 0.5 * rows.sum(axis=0)


def mll_grad(X, inv_ls2, scale, W):
    """``½ Σ_ab W_ab ∂K_ab/∂θ`` for θ = (log λ_1..d, log s) and a symmetric W; d+1 values."""
    big = X.shape[0] ** 2 >= 2 * PARALLEL_MIN_WORK
    return (_grad_parallel if big else _grad_serial)(X, inv_ls2, float(scale), W)


def mll_grad_reference(X, inv_ls2, scale, W):
    diff2 = (X[:, None, :] - X[None, :, :]) ** 2
    r2 = (diff2 * inv_ls2).sum(-1)
    s5 = np.sqrt(5.0 * r2)
    e = np.exp(-s5)
    dk_dr2 = -(5.0 / 6.0) * scale * (1.0 + s5) * e
    g = [0.5 * np.sum(W * dk_dr2 * diff2[:, :, k] * inv_ls2[k]) for k in range(X.shape[1])]
    g.append(0.5 * np.sum(W * scale * (1.0 + s5 + 5.0 / 3.0 * r2) * e))
    return np.array(g)


# -- posterior and acquisition over candidates -----------------------------------------------
@njit(cache=True)
def _posterior_row(xc, X, L, alpha, inv_ls2, scale, best, v, out):
    n, d = X.shape
    mu = 0.0
    for i in range(n):
        xi = X[i]
        r2 = 0.0
        for k in range(d):
            diff = xc[k] - xi[k]
            r2 += diff * diff * inv_ls2[k]
        s5 = math.sqrt(5.0 * r2)
        ki = scale * (1.0 + s5 + (5.0 / 3.0) * r2) * math.exp(-s5)
        mu += ki * alpha[i]
        Li = L[i]
        acc = ki
        for j in range(i):          # forward substitution: v = L⁻¹ k
            acc -= Li[j] * v[j]
        v[i] = acc / Li[i]
    vv = 0.0
    for i in range(n):
        vv += v[i] * v[i]
    s2 = scale - vv
    if s2 < 0.0:
        s2 = 0.0
    sd = math.sqrt(s2)
    out[0] = mu
    out[1] = s2
    if sd > 1e-12 * math.sqrt(scale):
        out[2] = math.log(sd) + log_h((mu - best) / sd)
    elif mu > best:
        out[2] = math.log(mu - best)
    else:
        out[2] = -np.inf


@njit(cache=True)
def _posterior_serial(Xc, X, L, alpha, inv_ls2, scale, best):
    out = np.empty((Xc.shape[0], 3))
    v = np.empty(X.shape[0])
    for c in range(Xc.shape[0]):
        _posterior_row(Xc[c], X, L, alpha, inv_ls2, scale, best, v, out[c])
    return out


@njit(cache=True, parallel=True)
def _posterior_parallel(Xc, X, L, alpha, inv_ls2, scale, best):
    out = np.empty((Xc.shape[0], 3))
    for c in prange(Xc.shape[0]):
        v = np.empty(X.shape[0])
        _posterior_row(Xc[c], X, L, alpha, inv_ls2, scale, best, v, out[c])
    return out


def posterior_log_ei(Xc, X, L, alpha, inv_ls2, scale, best):
    """Posterior mean, latent variance and log EI over ``best`` at each row of Xc.

    L is the lower Cholesky factor of K(X, X) + noise·I and ``alpha = (LLᵀ)⁻¹ y``. A
    candidate with zero variance gets log EI = log(max(mean - best, 0)).
    """
    big = Xc.shape[0] * X.shape[0] * X.shape[0] >= 50 * PARALLEL_MIN_WORK
    out = (_posterior_parallel if big else _posterior_serial)(
        Xc, X, L, alpha, inv_ls2, float(scale), float(best))
    return out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy()


@njit(cache=True)
def log_ei(mean, var, best):
    """Elementwise log EI over ``best`` from posterior means and latent variances."""
    out = np.empty(mean.shape[0])
    for c in range(mean.shape[0]):
        sd = math.sqrt(var[c]) if var[c] > 0.0 else 0.0
        if sd > 1e-150:
            out[c] = math.log(sd) + log_h((mean[c] - best) / sd)
        elif mean[c] > best:
            out[c] = math.log(mean[c] - best)
        else:
            out[c] = -np.inf
    return out


def posterior_reference(Xc, X, L, alpha, inv_ls2, scale):
    """Textbook posterior (Rasmussen & Williams, Algorithm 2.1) with numpy only."""
    Kc = matern52_reference(Xc, X, inv_ls2, scale)
    v = np.linalg.solve(L, Kc.T)
    return Kc @ alpha, np.maximum(scale - (v * v).sum(0), 0.0)


# -- expected maximum of affine functions of one normal ---------------------------------------
@njit(cache=True)
def _gain_row(a, b):
    p = a.shape[0]
    order = np.argsort(b)
    ea = np.empty(p)
    eb = np.empty(p)
    ec = np.empty(p)
    k = 0
    for t in range(p):
        i = order[t]
        ai = a[i]
        bi = b[i]
        if k > 0 and bi == eb[k - 1]:
            if ai <= ea[k - 1]:
                continue
            k -= 1
        c = -np.inf
        while k > 0:
            c = (ea[k - 1] - ai) / (bi - eb[k - 1])
            if k > 1 and c <= ec[k - 1]:
                k -= 1
                c = -np.inf
            else:
                break
        ea[k] = ai
        eb[k] = bi
        ec[k] = c
        k += 1
    gain = 0.0
    for j in range(1, k):
        gain += (eb[j] - eb[j - 1]) * _h(-abs(ec[j]))
    return gain


@njit(cache=True)
def _gain_serial(A, B):
    out = np.empty(A.shape[0])
    for r in range(A.shape[0]):
        out[r] = _gain_row(A[r], B[r])
    return out


@njit(cache=True, parallel=True)
def _gain_parallel(A, B):
    out = np.empty(A.shape[0])
    for r in prange(A.shape[0]):
        out[r] = _gain_row(A[r], B[r])
    return out


def expected_max_gain(A, B):
    """Row-wise ``E[max_i A_ri + B_ri Z] - max_i A_ri`` for Z ~ N(0, 1)."""
    big = A.size >= PARALLEL_MIN_WORK
    return (_gain_parallel if big else _gain_serial)(A, B)


def expected_max_gain_reference(A, B, samples=200_000, seed=0):
    """Monte Carlo estimate of the same quantity (for tests)."""
    z = np.random.default_rng(seed).standard_normal(samples)
    return np.array([np.mean(np.max(a[:, None] + b[:, None] * z, axis=0)) - a.max()
                     for a, b in zip(A, B)])
