"""Toy node kinds for the tuning tests: cheap, torch-free, and instrumented.

Every kind counts its executions in `CALLS` and, when given ``log``, appends a line to
that file (so a test can count executions across processes, e.g. after a kill).
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from flowopt import Metric, node

CALLS: dict[str, int] = {}
SPANS: list[tuple[str, float, float]] = []  # (kind, start, end) of slow executions
_lock = threading.Lock()


def _count(name: str, log: str | None, detail: str = "") -> None:
    with _lock:
        CALLS[name] = CALLS.get(name, 0) + 1
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{name} {detail}\n")


@node("tunetoy.source")
def source(value: float = 1.0, log: str | None = None) -> Metric:
    """The shared upstream node (a tuner's params never reach it)."""
    _count("source", log)
    return value


@node("tunetoy.quad", metrics=["value"])
def quad(base: Metric, x: float = 0.0, y: float = 0.0, choice: str = "a",
         delay: float = 0.0, fail_above: float | None = None, nan_below: float | None = None,
         log: str | None = None, ctx=None) -> float:
    """value = base + (x - 1)^2 + (y + 2)^2 (+ 0.5 unless choice is 'b'); optionally slow,
    failing above a threshold of x, or NaN below one."""
    _count("quad", log, f"{x} {y} {choice}")
    start = time.perf_counter()
    for step in range(10):
        if delay:
            time.sleep(delay / 10)
        ctx.progress(step + 1, 10)
    with _lock:
        SPANS.append(("quad", start, time.perf_counter()))
    if fail_above is not None and x > fail_above:
        raise ValueError(f"x={x} is too large")
    if nan_below is not None and x < nan_below:
        return math.nan
    return base + (x - 1.0) ** 2 + (y + 2.0) ** 2 + (0.0 if choice == "b" else 0.5)


@node("tunetoy.scale", outputs={"scaled": Any})
def scale(value: Metric, factor: float = 2.0) -> Any:
    """Downstream of a tuner: the best trial's value times `factor`."""
    return value * factor
