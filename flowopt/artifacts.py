"""Artifact types — what flows along the graph's edges — and their safe on-disk formats.

A port is typed by one of the classes below (or `typing.Any`). Every value that crosses a
port is encoded into bytes by its type's codec before it is stored: safetensors for
tensors (with the JSON description in safetensors' own metadata), JSON for everything
else. Nothing is ever pickled, so a store is safe to read even if it came from elsewhere.

Objects that are code rather than data (a model's architecture, a loss function) are
stored as a *recipe*: the name of a registered builder plus its JSON config; the builder
turns the recipe back into the object (`register_builder`). Torch is imported lazily so
that the CLI and store queries start fast.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_builder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn(**config)` as the builder that turns recipe `name` into an object."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _BUILDERS[name] = fn
        return fn

    return decorate


def build(recipe: dict[str, Any]) -> Any:
    """Rebuild an object from ``{"builder": name, **config}``."""
    config = dict(recipe)
    name = config.pop("builder")
    if name not in _BUILDERS:  # a fresh process (e.g. a store query) may not have loaded plugins
        from .entrypoints import load_entry_points

        load_entry_points()
    if name not in _BUILDERS:
        raise KeyError(f"no builder registered for recipe '{name}' (is its plugin loaded?)")
    return _BUILDERS[name](**config)


class Artifact:
    """Base of the artifact types; `type_name` is what the store records."""

    type_name: ClassVar[str] = "any"


class Metric(Artifact):
    """A scalar score (a float); metric output ports are recorded as run metrics."""

    type_name = "metric"


@dataclass
class Dataset(Artifact):
    """Features `x` and targets `y` as torch tensors, plus a JSON description.

    ``meta`` keys used by the built-in nodes: ``task`` (``classification`` or
    ``regression``), ``n_classes``, ``n_features``, ``source`` (file and content hash).
    """

    type_name = "dataset"
    x: Any
    y: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Model(Artifact):
    """A torch module plus the recipe that rebuilds its architecture."""

    type_name = "model"
    module: Any
    recipe: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], meta: dict | None = None) -> "Model":
        return cls(module=build(recipe), recipe=dict(recipe), meta=dict(meta or {}))


@dataclass
class QuantizedModel(Model):
    """A model whose weights are stored as integer codes plus scales (or codebooks).

    ``packed`` holds the stored tensors (packed codes, scales, zero-points, codebooks) and
    ``layout`` (JSON) says how each parameter decodes; ``recipe`` is the float model's.
    ``module`` is never stored: `assemble` rebuilds it from ``packed`` with the builder
    named by ``layout["decoder"]``, so what runs is exactly what the stored codes mean.
    It is a `Model`, so every port that takes a model takes it.
    """

    type_name = "quantized_model"
    packed: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def assemble(cls, recipe: dict[str, Any], packed: dict[str, Any], layout: dict[str, Any],
                 meta: dict | None = None) -> "QuantizedModel":
        module = build({"builder": layout["decoder"], "recipe": recipe, "layout": layout,
                        "packed": packed})
        return cls(module=module, recipe=dict(recipe), meta=dict(meta or {}),
                   packed=dict(packed), layout=dict(layout))


@dataclass
class Recipe(Artifact):
    """A piece of configuration that is code, e.g. a loss: built on demand, stored as JSON."""

    type_name = "recipe"
    recipe: dict[str, Any]

    def build(self) -> Any:
        return build(self.recipe)


class Loss(Recipe):
    """A loss function recipe; ``build()`` returns ``fn(outputs, targets) -> scalar tensor``."""

    type_name = "loss"


# --- codecs ---------------------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no whitespace); non-finite floats allowed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default,
                      allow_nan=True).encode()


def _tensors_to_bytes(tensors: dict[str, Any], meta: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return save(contiguous, metadata={"flowopt": json.dumps(meta, sort_keys=True)})


def _tensors_from_bytes(payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load

    tensors = load(payload)
    # The safetensors header is an 8-byte length followed by JSON holding our metadata.
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + header_len])
    meta = json.loads(header.get("__metadata__", {}).get("flowopt", "{}"))
    return tensors, meta


def encode(value: Any) -> tuple[str, str, bytes]:
    """Encode a port value as ``(type_name, format, bytes)``."""
    if isinstance(value, Dataset):
        return "dataset", "safetensors", _tensors_to_bytes(
            {"x": value.x, "y": value.y}, {"meta": value.meta})
    if isinstance(value, QuantizedModel):  # before Model: it is one
        return "quantized_model", "safetensors", _tensors_to_bytes(
            value.packed, {"recipe": value.recipe, "meta": value.meta, "layout": value.layout})
    if isinstance(value, Model):
        return "model", "safetensors", _tensors_to_bytes(
            value.module.state_dict(), {"recipe": value.recipe, "meta": value.meta})
    if isinstance(value, Recipe):
        return value.type_name, "json", canonical_json({"recipe": value.recipe})
    if isinstance(value, float) and not isinstance(value, bool):
        return "metric", "json", canonical_json(value)
    return "json", "json", canonical_json(value)


def decode(type_name: str, fmt: str, payload: bytes) -> Any:
    """Inverse of `encode`."""
    if fmt == "json":
        data = json.loads(payload)
        if type_name in ("loss", "recipe"):
            cls = Loss if type_name == "loss" else Recipe
            return cls(recipe=data["recipe"])
        return data
    if fmt == "safetensors":
        tensors, header = _tensors_from_bytes(payload)
        if type_name == "dataset":
            return Dataset(x=tensors["x"], y=tensors["y"], meta=header["meta"])
        if type_name == "quantized_model":
            return QuantizedModel.assemble(header["recipe"], tensors, header["layout"],
                                           header.get("meta"))
        if type_name == "model":
            model = Model.from_recipe(header["recipe"], header.get("meta"))
            model.module.load_state_dict(tensors)
            return model
    raise ValueError(f"cannot decode artifact of type '{type_name}' in format '{fmt}'")


def as_metric(value: Any) -> float:
    """Coerce a metric port value to float (tensors and numpy scalars included)."""
    return float(value.item() if hasattr(value, "item") else value)
