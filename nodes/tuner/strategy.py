"""The strategy contract, re-exported from the engine (`flowopt.tuning`).

Kept so that ``from flowopt.nodes.tuner.strategy import Strategy, register_tuner`` in
existing plugins goes on working; new code imports `flowopt.tuning`.
"""
from __future__ import annotations

from flowopt.tuning import Mode, NoConfig, Observation, Strategy, register_tuner, tuner

__all__ = ["Mode", "NoConfig", "Observation", "Strategy", "register_tuner", "tuner"]
