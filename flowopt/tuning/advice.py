"""Warnings about a tuner's budget that are not errors: the pipeline runs, but not as meant.

A strategy may define ``budget_warnings(config, trials) -> list[str]`` (a classmethod, given
its own validated ``with:`` part and the ``trials`` budget). ``flowopt validate`` and
``flowopt run`` print what it returns before anything runs; e.g. a model-based tuner whose
budget is spent entirely on its initial design. Warnings, not errors: such a run is
valid (it degrades to the initial design's sampler), it only does not do what its kind
promises.
"""
from __future__ import annotations

from typing import Any

from .kinds import owns_training, split_config, strategy_class


def budget_warnings(graph: Any) -> list[str]:
    """One line per problem, ``node 'ID' (KIND): what``, for every tuner of `graph`."""
    lines: list[str] = []
    for nid in graph.tuners:
        node = graph.nodes[nid]
        kind = node.kind.name
        check = getattr(strategy_class(kind), "budget_warnings", None)
        if check is None or owns_training(kind):
            continue
        framework, own = split_config(kind, dict(node.config))
        lines.extend(f"node '{nid}' ({kind}): {message}"
                     for message in check(own, framework.trials))
    return lines
