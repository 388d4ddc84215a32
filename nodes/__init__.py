"""The built-in node library; importing it registers every built-in kind.

This is what the ``flowopt.nodes`` entry point loads. The kinds are defined with
``@flowopt.registry.node`` exactly like a plugin's. Torch is imported inside the node
functions, so importing the kinds to validate a pipeline stays light.
"""
if __name__ != "flowopt.nodes":  # `import nodes` from the repo root would register twice
    raise ImportError("import this package as flowopt.nodes")

from . import data, evaluator, loss, model, optimizer, quantizer, tuner  # noqa: E402 - after guard

__all__ = ["data", "evaluator", "loss", "model", "optimizer", "quantizer", "tuner"]
