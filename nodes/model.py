"""Model kinds: ``model.mlp``, and the ``mlp`` recipe builder that rebuilds it from JSON."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from flowopt.artifacts import Dataset, Model, register_builder
from flowopt.context import Context
from flowopt.registry import node


@register_builder("mlp")
def build_mlp(n_inputs: int, n_outputs: int, hidden: list[int], activation: str = "relu",
              dropout: float = 0.0) -> Any:
    """The `nn.Sequential` for an ``mlp`` recipe (weights from a fixed seed; load a state dict)."""
    from .layers import make_mlp

    return make_mlp(n_inputs, n_outputs, hidden, activation, dropout)


@node("model.mlp")
def mlp(data: Dataset, ctx: Context,
        hidden: list[Annotated[int, Field(gt=0)]] = [64],  # noqa: B006 - pydantic copies it
        activation: Literal["relu", "gelu", "tanh"] = "relu",
        dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0) -> Model:
    """A multi-layer perceptron sized for `data`, initialised from the node's seed.

    Inputs: ``data`` (only its ``meta`` is read: ``n_features`` inputs; ``n_classes``
    outputs for classification, one for regression). Outputs: ``model`` (untrained).
    ``with:`` fields (defaults): ``hidden`` ([64]: one hidden layer of 64; [] gives a
    linear model), ``activation`` (relu | gelu | tanh), ``dropout`` (0.0, after each
    hidden activation). Weights and biases ~ U(±1/√fan_in), PyTorch's `nn.Linear`
    default, drawn from the node's seeded generator.
    """
    from .layers import make_mlp

    meta = data.meta
    if "n_features" not in meta or meta.get("task") not in ("classification", "regression"):
        raise ValueError("model.mlp needs a dataset whose meta has 'task' and 'n_features'")
    n_outputs = int(meta["n_classes"]) if meta["task"] == "classification" else 1
    recipe = {"builder": "mlp", "n_inputs": int(meta["n_features"]), "n_outputs": n_outputs,
              "hidden": list(hidden), "activation": activation, "dropout": dropout}
    module = make_mlp(**{k: v for k, v in recipe.items() if k != "builder"},
                      generator=ctx.torch_generator())
    n_params = sum(p.numel() for p in module.parameters())
    return Model(module=module, recipe=recipe, meta={"task": meta["task"], "n_params": n_params})
