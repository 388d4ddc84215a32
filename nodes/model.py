"""Model kinds: ``model.mlp`` and ``model.cnn``, and the recipe builders that rebuild them from JSON."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from flowopt.artifacts import Dataset, Model, register_builder
from flowopt.context import Context
from flowopt.registry import node

from . import facts


Rate = Annotated[float, Field(ge=0, lt=1)]
Noise = Literal["gaussian", "masking"]


@register_builder("mlp")
def build_mlp(n_inputs: int, n_outputs: int, hidden: list[int], activation: str = "relu",
              dropout: float | list[float] = 0.0, input_noise: float = 0.0,
              noise: str = "gaussian") -> Any:
    """The `nn.Sequential` for an ``mlp`` recipe (weights from a fixed seed; load a state dict)."""
    from .layers import make_mlp

    return make_mlp(n_inputs, n_outputs, hidden, activation, dropout, input_noise=input_noise,
                    noise=noise)


@register_builder("stn")
def build_stn(base: dict[str, Any], hyper: list[dict[str, Any]], delta: bool = False) -> Any:
    """The STN module for an ``stn`` recipe: STN layers over the plain recipe `base`."""
    from .stn_layers import build_stn as build

    return build(base, hyper, delta)


def _regularisers(recipe: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Add the regulariser fields that differ from their defaults (so recipes of models
    without them stay what they were)."""
    defaults = {"dropout": 0.0, "input_noise": 0.0, "noise": "gaussian", "cutout": 0}
    return {**recipe, **{k: v for k, v in fields.items() if v != defaults[k]}}


def _maybe_stn(model: Model, stn: bool, ctx: Context) -> Model:
    """`model` itself, or (``stn: true``) its STN over every hyperparameter it has."""
    if not stn:
        return model
    from .stn_layers import build_stn as build, default_hyper, load_general

    hyper = default_hyper(model.recipe)
    net = build(model.recipe, hyper, generator=ctx.torch_generator(stream=2))
    load_general(net, model.module)
    recipe = {"builder": "stn", "base": model.recipe, "hyper": hyper, "delta": False}
    n_params = sum(p.numel() for p in net.parameters())
    return Model(module=net, recipe=recipe, meta={**model.meta, "n_params": n_params})


@node("model.mlp", describe=facts.model)
def mlp(data: Dataset, ctx: Context,
        hidden: list[Annotated[int, Field(gt=0)]] = [64],  # noqa: B006 - pydantic copies it
        activation: Literal["relu", "gelu", "tanh"] = "relu",
        dropout: Rate | list[Rate] = 0.0, input_noise: Annotated[float, Field(ge=0)] = 0.0,
        noise: Noise = "gaussian", stn: bool = False) -> Model:
    """A multi-layer perceptron sized for `data`, initialised from the node's seed.

    Inputs: ``data`` (only its ``meta`` is read: ``n_features`` inputs; ``n_classes``
    outputs for classification, one for regression). Outputs: ``model`` (untrained).
    ``with:`` fields (defaults): ``hidden`` ([64]: one hidden layer of 64; [] gives a
    linear model), ``activation`` (relu | gelu | tanh), ``dropout`` (0.0, after each
    hidden activation; or a list, one rate per hidden layer), ``input_noise`` (0.0: none)
    and ``noise`` (gaussian: ``input_noise`` is the std of noise added to every input
    while training | masking: the rate at which inputs are zeroed), ``stn`` (false; true: STN
    layers over every hyperparameter above, see `stn_layers` and ``tuner.stn``).
    Weights and biases ~ U(±1/√fan_in), PyTorch's `nn.Linear` default, drawn from the
    node's seeded generator.
    """
    from .layers import make_mlp

    meta = data.meta
    if "n_features" not in meta or meta.get("task") not in ("classification", "regression"):
        raise ValueError("model.mlp needs a dataset whose meta has 'task' and 'n_features'")
    n_outputs = int(meta["n_classes"]) if meta["task"] == "classification" else 1
    recipe = {"builder": "mlp", "n_inputs": int(meta["n_features"]), "n_outputs": n_outputs,
              "hidden": list(hidden), "activation": activation, "dropout": dropout}
    recipe = _regularisers(recipe, input_noise=input_noise, noise=noise)
    module = make_mlp(**{k: v for k, v in recipe.items() if k != "builder"},
                      generator=ctx.torch_generator())
    n_params = sum(p.numel() for p in module.parameters())
    model = Model(module=module, recipe=recipe, meta={"task": meta["task"], "n_params": n_params})
    return _maybe_stn(model, stn, ctx)


@register_builder("cnn")
def build_cnn(n_inputs: int, n_outputs: int, image: list[int], channels: list[int],
              hidden: int, dropout: float | list[float] = 0.0, input_noise: float = 0.0,
              noise: str = "gaussian", cutout: int = 0) -> Any:
    """The `nn.Sequential` for a ``cnn`` recipe (weights from a fixed seed; load a state dict)."""
    from .layers import make_cnn

    return make_cnn(n_inputs, n_outputs, image, channels, hidden, dropout=dropout,
                    input_noise=input_noise, noise=noise, cutout=cutout)


@node("model.cnn", describe=facts.model)
def cnn(data: Dataset, ctx: Context,
        channels: list[Annotated[int, Field(gt=0)]] = [16, 32],  # noqa: B006 - pydantic copies it
        hidden: Annotated[int, Field(gt=0)] = 64,
        image: list[Annotated[int, Field(gt=0)]] | None = None,
        dropout: Rate | list[Rate] = 0.0, input_noise: Annotated[float, Field(ge=0)] = 0.0,
        noise: Noise = "gaussian", cutout: Annotated[int, Field(ge=0)] = 0,
        stn: bool = False) -> Model:
    """A small convolutional classifier for image rows (the 8×8 digits), from the node's seed.

    Inputs: ``data`` (its ``meta``: ``n_features`` pixels per row, ``n_classes``).
    Outputs: ``model`` (untrained). ``with:`` fields (defaults): ``channels`` ([16, 32]:
    one 3×3 convolution, padding 1, + ReLU per entry), ``hidden`` (64: the linear layer
    after a 2×2 max-pool), ``image`` (null: a square single-channel image of
    ``n_features`` pixels; else [channels, height, width]), ``dropout`` (0.0; or one rate
    per convolution plus one for the hidden layer), ``input_noise`` and ``noise`` (as for
    ``model.mlp``), ``cutout`` (0: none; the side of a square zeroed at a random place of
    each training image), ``stn`` (false; true: STN layers, see ``tuner.stn``). Weights and biases ~
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
    recipe = _regularisers(recipe, dropout=dropout, input_noise=input_noise, noise=noise,
                           cutout=cutout)
    module = make_cnn(**{k: v for k, v in recipe.items() if k != "builder"},
                      generator=ctx.torch_generator())
    n_params = sum(p.numel() for p in module.parameters())
    model = Model(module=module, recipe=recipe, meta={"task": "classification", "n_params": n_params})
    return _maybe_stn(model, stn, ctx)
