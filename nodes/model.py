"""Model kinds: ``model.mlp`` and ``model.cnn``, and the recipe builders that rebuild them from JSON."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from flowopt.artifacts import Dataset, Model, register_builder
from flowopt.context import Context
from flowopt.registry import node

from . import facts


@register_builder("mlp")
def build_mlp(n_inputs: int, n_outputs: int, hidden: list[int], activation: str = "relu",
              dropout: float = 0.0) -> Any:
    """The `nn.Sequential` for an ``mlp`` recipe (weights from a fixed seed; load a state dict)."""
    from .layers import make_mlp

    return make_mlp(n_inputs, n_outputs, hidden, activation, dropout)


@node("model.mlp", describe=facts.model)
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


@register_builder("cnn")
def build_cnn(n_inputs: int, n_outputs: int, image: list[int], channels: list[int],
              hidden: int) -> Any:
    """The `nn.Sequential` for a ``cnn`` recipe (weights from a fixed seed; load a state dict)."""
    from .layers import make_cnn

    return make_cnn(n_inputs, n_outputs, image, channels, hidden)


@node("model.cnn", describe=facts.model)
def cnn(data: Dataset, ctx: Context,
        channels: list[Annotated[int, Field(gt=0)]] = [16, 32],  # noqa: B006 - pydantic copies it
        hidden: Annotated[int, Field(gt=0)] = 64,
        image: list[Annotated[int, Field(gt=0)]] | None = None) -> Model:
    """A small convolutional classifier for image rows (the 8×8 digits), from the node's seed.

    Inputs: ``data`` (its ``meta``: ``n_features`` pixels per row, ``n_classes``).
    Outputs: ``model`` (untrained). ``with:`` fields (defaults): ``channels`` ([16, 32]:
    one 3×3 convolution, padding 1, + ReLU per entry), ``hidden`` (64: the linear layer
    after a 2×2 max-pool), ``image`` (null: a square single-channel image of
    ``n_features`` pixels; else [channels, height, width]). Weights and biases ~
    U(±1/√fan_in), PyTorch's default bound, drawn from the node's seeded generator.
    Sized for the claims of the quantizer tests: ≈ 38k parameters on the digits.
    """
    import math

    from .layers import make_cnn

    meta = data.meta
    if meta.get("task") != "classification" or "n_features" not in meta:
        raise ValueError("model.cnn needs a classification dataset whose meta has 'n_features'")
    n_inputs = int(meta["n_features"])
    if image is None:
        side = math.isqrt(n_inputs)
        if side * side != n_inputs:
            raise ValueError(f"model.cnn: {n_inputs} features are not a square image; "
                             "give with: {image: [channels, height, width]}")
        image = [1, side, side]
    if len(image) != 3:
        raise ValueError(f"model.cnn: image must be [channels, height, width], got {image}")
    if len(channels) == 0:
        raise ValueError("model.cnn: channels must name at least one convolution")
    recipe = {"builder": "cnn", "n_inputs": n_inputs, "n_outputs": int(meta["n_classes"]),
              "image": list(image), "channels": list(channels), "hidden": hidden}
    module = make_cnn(**{k: v for k, v in recipe.items() if k != "builder"},
                      generator=ctx.torch_generator())
    n_params = sum(p.numel() for p in module.parameters())
    return Model(module=module, recipe=recipe, meta={"task": "classification", "n_params": n_params})
