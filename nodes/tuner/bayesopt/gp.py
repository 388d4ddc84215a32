"""Gaussian-process regression with a Matérn-5/2 ARD kernel, fitted by maximum a posteriori.

The model is the tutorial's (Frazier 2018, §3): a GP prior with a constant mean on the
standardised objective, the Matérn-5/2 kernel with one lengthscale per dimension, and
Gaussian observation noise. The constant is fitted by maximum likelihood too, in closed
form for given kernel hyperparameters (generalised least squares, `_constant_mean`), so
it is profiled out of the optimisation below — unless the caller fixes it (``prior_mean``:
`multi` puts each objective's at its worst observation, see there).

Hyperparameters ``θ = (log λ_1..d, log s, log(σ² - σ²_min))`` with ``λ_k = 1/ℓ_k²`` maximise
the log marginal likelihood plus log priors (the tutorial's "MAP" option). The priors and
the noise floor are Optuna's GPSampler defaults (``optuna/_gp/prior.py``, Optuna 4–5),
chosen because they are tested on exactly the benchmarks this tuner is measured on:

* ``λ_k``: ``log p = -(0.1/λ + 0.1 λ)`` — mode at ℓ = 1 on the unit cube, keeps ℓ away from 0 and ∞;
* ``s``: Gamma(2, 1); ``σ²``: Gamma(1.1, 30) — noise small unless the data insist;
* ``σ²_min = 1e-10`` — lower than Optuna's 1e-6: on a deterministic objective that floor
  (σ = 10⁻³ standard deviations of y) blurs the last digits the search should resolve.
  Measured (5 seeds, EI): Branin regret after 50 evaluations 7.2e-4 with 1e-6, 3.9e-6 with
  1e-10; Hartmann-6 median regret after 100, 1.1e-4 vs 3.7e-6. A noisy objective fits its
  noise far above either floor. A known noise can be given instead, and is then fixed.

The optimiser is L-BFGS-B (scipy) with the analytic gradient. With a previous fit it
starts from it alone (hyperparameters move little between consecutive asks; Optuna does
the same), which halves the cost of an ask at 200 observations; without one, from the
prior's mode and two draws from the prior, and the best start wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy.optimize import minimize

from . import kernels

MIN_NOISE = 1e-10
# Which constant mean the GP uses: "gls" (maximum likelihood, `_constant_mean`) or "zero"
# (the standardised data's mean, as Optuna and BoTorch's SingleTaskGP after
# standardisation). A module constant so that benchmarks/bayesopt.py --patch can compare.
CONSTANT_MEAN = "gls"
# Starts of the hyperparameter fit when a previous fit exists: "previous" (Optuna's
# choice: hyperparameters move little between asks) or "previous+prior" (also the prior's
# mode: twice the likelihood evaluations, the largest part of an ask at 200 observations);
# "optuna" also fits the first model from λ = 1 alone, without draws from the prior.
FIT_STARTS = "previous"
# The longest lengthscale the fit may choose, in unit-cube widths (see `fit`).
MAX_LENGTHSCALE = 403.0
# L-BFGS-B's projected-gradient tolerance of the hyperparameter fit (see `fit`).
FIT_GTOL = 1e-5
FUSED_MIN_WORK = 5_000_000   # candidates × observations beyond which the fused kernel is used


@dataclass(frozen=True)
class Hyper:
    """Kernel hyperparameters: inverse squared lengthscales, signal variance, noise variance."""

    inv_ls2: np.ndarray
    scale: float
    noise: float

    def theta(self) -> np.ndarray:
        return np.concatenate([np.log(self.inv_ls2), [np.log(self.scale),
                                                      np.log(max(self.noise - MIN_NOISE, 1e-12))]])

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> "Hyper":
        return cls(np.exp(theta[:-2]), float(np.exp(theta[-2])), float(np.exp(theta[-1]) + MIN_NOISE))


def log_prior(h: Hyper) -> tuple[float, np.ndarray]:
    """Log prior density (up to a constant) and its gradient in θ."""
    lam, s, nz = h.inv_ls2, h.scale, h.noise
    value = -np.sum(0.1 / lam + 0.1 * lam) + (np.log(s) - s) + (0.1 * np.log(nz) - 30.0 * nz)
    grad = np.concatenate([0.1 / lam - 0.1 * lam, [1.0 - s, (0.1 / nz - 30.0) * (nz - MIN_NOISE)]])
    return float(value), grad


class GP:
    """A GP conditioned on (X, y) with fixed hyperparameters."""

    def __init__(self, X: np.ndarray, y: np.ndarray, hyper: Hyper,
                 prior_mean: float | None = None) -> None:
        self.X = np.ascontiguousarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.hyper = hyper
        self.prior_mean = prior_mean          # None: fitted by least squares (`_constant_mean`)
        K = kernels.matern52_symmetric(self.X, hyper.inv_ls2, hyper.scale)
        K[np.diag_indices_from(K)] += hyper.noise
        self.L = _cholesky(K)
        self.mean, self.alpha = _constant_mean(self.L, self.y, prior_mean)

    def posterior(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent (noise-free) variance at the rows of Xc."""
        mean, var, _ = self.log_ei(Xc, np.inf)
        return mean, var

    def log_ei(self, Xc: np.ndarray, best: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior mean, variance and log expected improvement over ``best``.

        Up to FUSED_MIN_WORK candidate × observation pairs: the kernel matrix (numba), one
        LAPACK triangular solve for all candidates, log EI (numba) — with a few hundred
        observations the blocked solve is ≈ 5× the per-candidate forward substitution
        (docs/kernels.md habit 9 found the same). Beyond, the fused kernel avoids the matrix.
        """
        h = self.hyper
        Xc = np.ascontiguousarray(Xc, dtype=float)
        if len(Xc) * len(self.X) >= FUSED_MIN_WORK:
            mean, var, lei = kernels.posterior_log_ei(Xc, self.X, self.L, self.alpha, h.inv_ls2, h.scale,
                                                      float(best) - self.mean)
            return mean + self.mean, var, lei
        Kc = kernels.matern52(Xc, self.X, h.inv_ls2, h.scale)
        V = sla.solve_triangular(self.L, Kc.T, lower=True, check_finite=False)
        mean = self.mean + Kc @ self.alpha
        var = np.maximum(h.scale - np.einsum("ij,ij->j", V, V), 0.0)
        return mean, var, kernels.log_ei(mean, var, float(best))

    def cross(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Posterior covariance matrix of f between the rows of A and of B."""
        h = self.hyper
        KA = kernels.matern52(self.X, np.ascontiguousarray(A, dtype=float), h.inv_ls2, h.scale)
        KB = kernels.matern52(self.X, np.ascontiguousarray(B, dtype=float), h.inv_ls2, h.scale)
        VA = sla.solve_triangular(self.L, KA, lower=True, check_finite=False)
        VB = sla.solve_triangular(self.L, KB, lower=True, check_finite=False)
        return kernels.matern52(np.ascontiguousarray(A, dtype=float), np.ascontiguousarray(B, dtype=float),
                                h.inv_ls2, h.scale) - VA.T @ VB

    def mean_var_grad(self, Xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean, variance and their gradients in x at each row of Xb (for local refinement)."""
        h = self.hyper
        diff = Xb[:, None, :] - self.X[None, :, :]                             # (B, n, d)
        r2 = (diff * diff) @ h.inv_ls2
        s5 = np.sqrt(5.0 * r2)
        e = np.exp(-s5)
        k = h.scale * (1.0 + s5 + 5.0 / 3.0 * r2) * e                          # (B, n)
        dk = (-(5.0 / 3.0) * h.scale * (1.0 + s5) * e)[:, :, None] * diff * h.inv_ls2
        V = sla.solve_triangular(self.L, k.T, lower=True, check_finite=False)   # L⁻¹kᵀ
        W = sla.solve_triangular(self.L, V, lower=True, trans="T", check_finite=False)  # K⁻¹kᵀ
        var = np.maximum(h.scale - (V * V).sum(0), 0.0)
        return (self.mean + k @ self.alpha, var, np.einsum("bnd,n->bd", dk, self.alpha),
                -2.0 * np.einsum("bnd,nb->bd", dk, W))

    def condition(self, Xn: np.ndarray, yn: np.ndarray) -> "GP":
        """The same model with extra (possibly fantasised) observations; hyperparameters
        (and a fixed prior mean) kept."""
        return GP(np.vstack([self.X, Xn]), np.concatenate([self.y, yn]), self.hyper,
                  self.prior_mean)


def _constant_mean(L: np.ndarray, y: np.ndarray,
                   fixed: float | None = None) -> tuple[float, np.ndarray]:
    """The maximum-likelihood constant mean ``(1ᵀK⁻¹y)/(1ᵀK⁻¹1)`` and ``K⁻¹(y - mean)``
    (``fixed``: that constant instead, and ``K⁻¹(y - fixed)``).

    The tutorial's prior mean is a constant fitted with the other hyperparameters (§3).
    Fitted by generalised least squares it weighs clustered observations less than the
    sample mean does, so once the search concentrates on a good region the prior in
    unexplored regions falls back towards the typical value instead of the inflated
    sample mean. (With the sample mean, EI on noisy Hartmann-6 sent most proposals to
    the faces and corners of the cube.)
    """
    ay = sla.cho_solve((L, True), y, check_finite=False)
    if fixed is None and CONSTANT_MEAN == "zero":
        return 0.0, ay
    a1 = sla.cho_solve((L, True), np.ones(len(y)), check_finite=False)
    mean = float(ay.sum() / a1.sum()) if fixed is None else float(fixed)
    return mean, ay - mean * a1


def _cholesky(K: np.ndarray) -> np.ndarray:
    try:
        return sla.cholesky(K, lower=True, check_finite=False)
    except sla.LinAlgError:
        # Near-duplicate inputs with tiny noise: add jitter until it factorises.
        jitter = 1e-8 * float(np.mean(np.diag(K)))
        for _ in range(6):
            try:
                return sla.cholesky(K + jitter * np.eye(len(K)), lower=True, check_finite=False)
            except sla.LinAlgError:
                jitter *= 10.0
        raise


def _inverse(L: np.ndarray) -> np.ndarray:
    """K⁻¹ from K's lower Cholesky factor by LAPACK ``potri`` (⅓ of the flops of
    solving against the identity, which was the largest single cost of a fit)."""
    inv, info = sla.lapack.dpotri(L, lower=1)
    if info != 0:
        return sla.cho_solve((L, True), np.eye(len(L)), check_finite=False)
    lower = np.tril(inv)
    return lower + np.tril(inv, -1).T


def neg_log_posterior(theta: np.ndarray, X: np.ndarray, y: np.ndarray,
                      fixed_noise: float | None = None,
                      prior_mean: float | None = None) -> tuple[float, np.ndarray]:
    """``-(log marginal likelihood + log prior)`` and its gradient in θ (R&W eq. 5.9);
    ``prior_mean`` fixes the constant mean (None: least squares)."""
    h = Hyper.from_theta(theta)
    if fixed_noise is not None:
        h = Hyper(h.inv_ls2, h.scale, fixed_noise)
    K = kernels.matern52_symmetric(X, h.inv_ls2, h.scale)
    K[np.diag_indices_from(K)] += h.noise
    try:
        L = sla.cholesky(K, lower=True, check_finite=False)
    except sla.LinAlgError:
        return 1e25, np.zeros_like(theta)
    mean, alpha = _constant_mean(L, y, prior_mean)   # profiled out or fixed: same gradient
    mll = -0.5 * float((y - mean) @ alpha) - float(np.sum(np.log(np.diag(L))))
    W = np.outer(alpha, alpha) - _inverse(L)
    g = np.empty_like(theta)
    g[:-1] = kernels.mll_grad(X, h.inv_ls2, h.scale, W)
    g[-1] = 0.0 if fixed_noise is not None else 0.5 * float(np.trace(W)) * (h.noise - MIN_NOISE)
    lp, glp = log_prior(h)
    if fixed_noise is not None:
        glp[-1] = 0.0
    return -(mll + lp), -(g + glp)


def fit(X: np.ndarray, y: np.ndarray, *, previous: Hyper | None = None,
        noise: float | None = None, rng: np.random.Generator | None = None,
        prior_draws: int = 2, prior_mean: float | None = None) -> GP:
    """MAP hyperparameters by multi-start L-BFGS-B, returned as a conditioned `GP`.

    ``noise`` fixes the noise variance (standardised units) instead of fitting it;
    ``prior_mean`` fixes the constant mean (standardised units) instead of fitting it.
    """
    X = np.ascontiguousarray(X, dtype=float)
    d = X.shape[1]
    starts = [np.zeros(d + 2)]                # λ = 1, s = 1, σ² ≈ 1: Optuna's default start
    if previous is not None and previous.inv_ls2.shape == (d,):
        # hyperparameters move little between asks
        starts = [previous.theta()] + (starts if FIT_STARTS == "previous+prior" else [])
    elif FIT_STARTS != "optuna":   # "optuna": the first fit from λ = 1 alone, as Optuna
        rng = rng or np.random.default_rng(0)
        for _ in range(prior_draws):          # log-normal scatter around the prior's mode
            starts.append(np.concatenate([rng.normal(0.0, 1.0, d), rng.normal(0.0, 0.5, 1),
                                          [np.log(rng.uniform(1e-4, 0.1))]]))
    bounds = ([(-2.0 * np.log(MAX_LENGTHSCALE), 12.0)] * d
              + [(-6.0, 6.0), (np.log(1e-12), np.log(10.0))])
    best_val, best_theta = np.inf, starts[0]
    for theta0 in starts:
        res = minimize(neg_log_posterior, theta0, args=(X, y, noise, prior_mean), jac=True,
                       method="L-BFGS-B", bounds=bounds, options={"maxiter": 200, "gtol": FIT_GTOL})
        if res.fun < best_val:
            best_val, best_theta = res.fun, res.x
    h = Hyper.from_theta(best_theta)
    if noise is not None:
        h = Hyper(h.inv_ls2, h.scale, noise)
    return GP(X, y, h, prior_mean)
