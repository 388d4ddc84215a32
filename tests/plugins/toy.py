"""Toy node kinds for the engine's tests: cheap, torch-free, and instrumented."""
from __future__ import annotations

import threading
import time
from typing import Any

from flowopt import Loss, Metric, node

CALLS: dict[str, int] = {}
_lock = threading.Lock()


def _count(name: str) -> None:
    with _lock:
        CALLS[name] = CALLS.get(name, 0) + 1


@node("toy.number", metrics=[])
def number(value: float = 1.0) -> Any:
    """Outputs `value`."""
    _count("number")
    return value


@node("toy.add", metrics=["total"])
def add(a: Metric, b: Metric | None = None, ctx=None) -> dict:
    """total = a + b; also logs a short series."""
    _count("add")
    for step in range(3):
        ctx.log_metric("partial", a + step, step=step)
    return {"total": a + (b or 0.0)}


@node("toy.noisy", metrics=["value"])
def noisy(x: Metric, ctx=None) -> float:
    """x plus a seeded random number (seed-dependent)."""
    return x + float(ctx.numpy_rng().random())


@node("toy.loss", deterministic=True)
def toy_loss(scale: float = 1.0) -> Loss:
    return Loss(recipe={"builder": "toy", "scale": scale})


@node("toy.needs_loss", metrics=["ok"])
def needs_loss(loss: Loss) -> float:
    return 1.0


@node("toy.fail")
def fail(x: Metric, message: str = "boom") -> Any:
    raise RuntimeError(message)


@node("toy.slow", metrics=["done"])
def slow(x: Metric, steps: int = 50, delay: float = 0.01, ctx=None) -> float:
    for step in range(steps):
        ctx.progress(step + 1, steps)
        time.sleep(delay)
    return x


@node("toy.split", outputs={"left": Any, "right": Any})
def split(x: Metric) -> tuple:
    return x, -x
