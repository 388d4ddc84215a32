"""Accuracy against size for a run's quantized models: moved to `flowopt.cli.quantization`
(it draws store data for ``flowopt report``, which must not import the node library);
re-exported here for existing imports."""
from __future__ import annotations

from flowopt.cli.quantization import plot, points, table

__all__ = ["plot", "points", "table"]
