"""Toy kinds for the multi-objective tests: two metrics of one param, torch-free.

``pareto.pair``: ``a = (x - lo)²`` and ``b = (x - hi)²`` (both minimised: the Pareto set
is every x in [lo, hi]); NaN for ``a`` below ``nan_below``. ``CALLS`` counts executions.
"""
from __future__ import annotations

import math
import threading
from typing import Any

from flowopt import Metric, node

CALLS: dict[str, int] = {}
_lock = threading.Lock()


@node("pareto.pair", outputs={"a": Metric, "b": Metric}, metrics=["a", "b"])
def pair(x: float = 0.0, y: float = 0.0, lo: float = 0.0, hi: float = 2.0,
         nan_below: float | None = None) -> dict[str, Any]:
    """``a = (x - lo)² + y²``, ``b = (x - hi)² + y²``; ``a`` NaN for x below ``nan_below``."""
    with _lock:
        CALLS["pair"] = CALLS.get("pair", 0) + 1
    a = (x - lo) ** 2 + y * y
    if nan_below is not None and x < nan_below:
        a = math.nan
    return {"a": a, "b": (x - hi) ** 2 + y * y}
