"""Acquisition functions of the tutorial (Frazier 2018, §4–5), for maximisation.

* **Expected improvement** ``EI(x) = E[(f(x) - f*)⁺] = σ h((μ - f*)/σ)``, ``h(z) = φ(z) + zΦ(z)``
  (eq. 8), with ``f*`` the best observation. Optimised as ``log EI`` (Ament et al. 2023), which
  keeps its ranking and gradient where EI itself underflows; `log_ei_grad` gives value and
  gradient for local refinement, the numba kernel scores candidates.
* **Noisy expected improvement** (§5, "Noisy evaluations"): the decision-maker may only report
  a point already evaluated, valued at its posterior mean, so the improvement from sampling
  x is ``E_n[max_{i≤n+1} μ_{n+1}(x_i)] - max_{i≤n} μ_n(x_i)``, with ``x_{n+1} = x``. After one
  more observation at x, ``μ_{n+1}(x_i) = μ_n(x_i) + σ̃_n(x_i, x) Z`` with
  ``σ̃_n(x_i, x) = Σ_n(x_i, x) / sqrt(Σ_n(x, x) + σ²_noise)``, so the expectation is that of the
  maximum of affine functions of one normal, computed exactly (`kernels.expected_max_gain`).
* **Knowledge gradient** (§4.2, eq. 10): the same with the maximum over the whole domain
  rather than evaluated points. As in the discrete KG of Frazier, Powell & Dayanik (2009),
  which the tutorial cites for computing KG exactly on a finite set, the domain is
  replaced by a finite set ``A``: the evaluated points, the candidates with the highest
  posterior mean, and x itself.

Both value-of-information acquisitions are scored on candidate sets (no gradient); the
strategy refines them by local search.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from . import kernels
from .gp import GP


def ei(mean: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
    """Closed-form expected improvement over ``best`` (eq. 8)."""
    sd = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (mean - best) / sd
        out = sd * (special.ndtr(z) * z + np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
    return np.where(sd > 0, out, np.maximum(mean - best, 0.0))


def log_h(z: np.ndarray) -> np.ndarray:
    """``log(φ(z) + zΦ(z))`` without underflow (numpy twin of `kernels.log_h`)."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    hi = z > -1.0
    zh = z[hi]
    out[hi] = np.log(np.exp(-0.5 * zh * zh) / math.sqrt(2 * math.pi) + zh * special.ndtr(zh))
    mid = ~hi & (z > kernels._FAR)
    zm = z[mid]
    out[mid] = (-0.5 * zm * zm - kernels.LOG_SQRT_2PI
                + np.log1p(zm * kernels.SQRT_PI_2 * special.erfcx(-zm / kernels.SQRT2)))
    far = ~hi & ~mid
    out[far] = -0.5 * z[far] ** 2 - kernels.LOG_SQRT_2PI - 2.0 * np.log(-z[far])
    return out


def log_ei_grad(gp: GP, Xb: np.ndarray, best: float) -> tuple[np.ndarray, np.ndarray]:
    """log EI and its gradient in x at each row of Xb (vectorised over the rows)."""
    mean, var, dmean, dvar = gp.mean_var_grad(Xb)
    var = np.maximum(var, 1e-30)
    sd = np.sqrt(var)
    z = (mean - best) / sd
    lh = log_h(z)
    ratio = np.exp(special.log_ndtr(z) - lh)                                   # Φ(z)/h(z) = (log h)'
    dsd = dvar / (2.0 * sd[:, None])
    dz = (dmean - z[:, None] * dsd) / sd[:, None]
    return np.log(sd) + lh, dsd / sd[:, None] + ratio[:, None] * dz


def _affine_gain(gp: GP, A: np.ndarray, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (a, b) of ``μ_{n+1}(A ∪ {x}) = a + bZ`` for each candidate x, and μ_n(A)."""
    mean_a, _ = gp.posterior(A)
    mean_c, var_c = gp.posterior(Xc)
    cov = gp.cross(Xc, A)                                                      # (m, |A|)
    denom = np.sqrt(var_c + gp.hyper.noise)[:, None]
    a = np.hstack([np.broadcast_to(mean_a, cov.shape), mean_c[:, None]])
    b = np.hstack([cov, var_c[:, None]]) / denom
    return np.ascontiguousarray(a), np.ascontiguousarray(b), mean_a


def noisy_ei(gp: GP, Xc: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """The tutorial's noisy EI at each row of Xc, ``evaluated`` = points already sampled."""
    a, b, mean_a = _affine_gain(gp, evaluated, Xc)
    gain = kernels.expected_max_gain(a, b)                    # E[max] - max(μ(A), μ(x))
    return gain + np.maximum(a[:, -1] - mean_a.max(), 0.0)   # ... - max over evaluated only


def knowledge_gradient(gp: GP, Xc: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Discrete knowledge gradient at each row of Xc, the maximum taken over ``domain`` ∪ {x}."""
    a, b, _ = _affine_gain(gp, domain, Xc)
    return kernels.expected_max_gain(a, b)
