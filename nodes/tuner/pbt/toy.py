"""The toy problem of the PBT paper (Jaderberg et al. 2017, §4 / Figure 2) as a `Trainable`.

Maximise Q(θ) = 1.2 − (θ₀² + θ₁²), but train θ by gradient ascent on the surrogate
Q̂(θ|h) = 1.2 − (h₀θ₀² + h₁θ₁²): a member with h = [1, 0] only ever shrinks θ₀, one with
[0, 1] only θ₁, so neither alone gets past Q = 1.2 − 0.81. PBT's exploit lets one member
take the other's θ and its explore changes h, so the population reaches Q near 1.2.
The paper starts from θ = [0.9, 0.9] with the two h above; the step size 0.01 and
score Q(θ) (the true objective, not the surrogate) are as in its Figure 2. Pure numpy,
deterministic: a state is a fresh array per step, never mutated.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

THETA0 = (0.9, 0.9)
PAPER_H = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})


def q(theta: np.ndarray) -> float:
    """The true objective Q(θ) = 1.2 − (θ₀² + θ₁²)."""
    return float(1.2 - np.sum(theta ** 2))


class ToyTrainable:
    """Gradient ascent on Q̂(θ|h) with step size `lr`; the score is Q(θ)."""

    def __init__(self, lr: float = 0.01, theta0: tuple[float, float] = THETA0) -> None:
        self.lr, self.theta0 = lr, theta0

    def start(self, member: int, params: Mapping[str, Any]) -> np.ndarray:
        return np.array(self.theta0, dtype=np.float64)

    def train(self, state: np.ndarray, params: Mapping[str, Any],
              steps: int) -> tuple[np.ndarray, float]:
        h = np.array([params["h0"], params["h1"]], dtype=np.float64)
        theta = state.copy()
        for _ in range(steps):
            theta = theta + self.lr * (-2.0 * h * theta)  # ∇Q̂(θ|h) = −2 h ⊙ θ
        return theta, q(theta)
