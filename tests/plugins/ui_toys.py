"""Toy nodes for the UI and report tests (`ui_store.build_store` runs them)."""
from __future__ import annotations

import flowopt as fo


@fo.node("uitoy.curve", metrics=["value"])
def curve(ctx: fo.Context, x: float = 0.0) -> float:
    for step in range(1, 9):
        ctx.log_metric("loss", (x - 1.0) ** 2 + 1.0 / step, step)
    for layer, bits in enumerate((8, 4, 4, 8)):
        ctx.log_metric("layer_bits", bits, layer)
    return (x - 1.0) ** 2


@fo.node("uitoy.boom", metrics=["value"])
def boom(ctx: fo.Context, x: float = 0.0) -> float:
    raise ValueError(f"boom at x={x}")
