"""The torch optimizer an optimizer node's config describes, for STN's weight steps.

An optimizer node trains through the shared loop (`optimizer.training`); STN runs its
own loop, so it builds the same torch optimizer itself: the kind's class with the
node's own ``with:`` fields, less the fields every kind shares (steps, batch size,
schedule, ...), which the loop applies itself. The table names every optimizer kind of
the library; `make` imports the class only when a run starts (never a name a file or
store row gives: only the modules listed here).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

SHARED = ("steps", "batch_size", "schedule", "on_nonfinite", "eval_every", "device")

# kind -> (module, class, options the kind fixes)
KINDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "optimizer.sgd": ("torch.optim", "SGD", {}),
    "optimizer.adam": ("torch.optim", "Adam", {}),
    "optimizer.adamw": ("torch.optim", "AdamW", {}),
    "optimizer.lion": ("flowopt.nodes.optimizer.algorithms.lion", "Lion", {}),
    "optimizer.adamp": ("flowopt.nodes.optimizer.algorithms.adamp", "AdamP", {}),
    "optimizer.diffgrad": ("flowopt.nodes.optimizer.algorithms.diffgrad", "DiffGrad", {}),
    "optimizer.stable_spam": ("flowopt.nodes.optimizer.algorithms.stable_spam", "StableSPAM", {}),
    "optimizer.adam8bit": ("flowopt.nodes.optimizer.algorithms.eightbit", "Adam8bit",
                           {"decoupled": False}),
    "optimizer.adamw8bit": ("flowopt.nodes.optimizer.algorithms.eightbit", "Adam8bit",
                            {"decoupled": True}),
    "optimizer.momentum8bit": ("flowopt.nodes.optimizer.algorithms.eightbit", "Momentum8bit", {}),
}


def options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The algorithm's own fields of a validated optimizer config (betas as a tuple)."""
    return {k: (tuple(v) if k == "betas" else v) for k, v in config.items() if k not in SHARED}


def make(kind: str, config: Mapping[str, Any]) -> Callable[[Any], Any]:
    """``make(params)`` → the torch optimizer node kind `kind` would train with."""
    module, name, fixed = KINDS[kind]
    cls = getattr(importlib.import_module(module), name)
    own = {**options(config), **fixed}
    return lambda params: cls(params, **own)
