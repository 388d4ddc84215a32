"""flowopt: declarative, graph-based optimization workflows.

The public Python API. Importing flowopt is light: names load on first use (PEP 562),
so the CLI starts fast and neither torch nor numba loads until a pipeline runs.

    import flowopt as fo
    from flowopt.nodes import data, model, loss, optimizer, evaluator

    with fo.Pipeline("digits", seed=0) as p:
        train, val = data.split(data.digits(), val_fraction=0.2)
        ...
    run = p.run()
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pipeline": "trace", "param": "trace",
    "node": "registry",
    "Context": "context",
    "Dataset": "artifacts", "Loss": "artifacts", "Metric": "artifacts", "Model": "artifacts",
    "Recipe": "artifacts", "register_builder": "artifacts",
    "FlowoptError": "errors", "GraphError": "errors", "NodeFailed": "errors",
    "SpecError": "errors", "StoreError": "errors",
    "Store": "store",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowopt.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
