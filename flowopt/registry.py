"""Node kinds: typed ports and config models derived from plain Python functions.

A node kind is a function decorated with `@node`. Its signature is the whole contract:

* arguments annotated with an artifact type (`Dataset`, `Model`, `Loss`, `Metric`, or
  `Optional[...]` of one) are **input ports**;
* an argument named ``ctx`` receives the run `Context` (seed, metric logging, progress);
* every other argument is a ``with:`` field, validated by a pydantic model built from its
  annotation and default (unknown fields are errors);
* outputs come from ``outputs={name: type}`` or, for one output, the return annotation
  (the port is then named after the type: ``dataset``, ``model``...); ``metrics=[...]``
  adds float metric output ports. The first output is the node's default output.

Built-in kinds use exactly this API and are found like plugins, through the
``flowopt.nodes`` entry-point group; pipeline files may also load ``plugins:``.

**Static facts.** ``describe=fn`` lets the compiler check a kind's inputs before anything
runs: ``fn(config, inputs) -> {output port: facts}``, where ``inputs`` maps each bound
input port to the facts its upstream output declared (``{}`` when unknown) and facts are
small JSON dicts (``task``, ``n_features``, ``n_classes``, ``n_inputs``). It raises
`ValueError` to refuse a mismatch (a regression loss on a classifier, a calibration set of
the wrong width); the compiler reports it as a `GraphError` at the node's ``in:`` line.
Unknown facts never refuse anything: a kind without ``describe`` passes nothing on.

**Training.** ``training=Training(...)`` (`flowopt.training`) declares a kind whose node
trains step by step and can pause: its resource field, the ``with:`` fields that may
change mid-run, and how to start a pausable trainer. Tuners read it; nothing else does.

**Owners.** ``NodeKind.owner`` is set on kinds that run a subgraph of the pipeline
themselves (tuners); it is the one hook the compiler and the scheduler call for them
(`flowopt.owners.SubgraphOwner`). `@node` never sets it.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
import threading
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pydantic

from .artifacts import Artifact, Metric
from .entrypoints import ENTRY_POINT_GROUP, load_entry_points  # noqa: F401 - ENTRY_POINT_GROUP re-exported
from .errors import FlowoptError


@dataclass(frozen=True)
class Port:
    name: str
    type: Any  # an Artifact subclass, or typing.Any
    optional: bool = False

    @property
    def type_name(self) -> str:
        return getattr(self.type, "type_name", "any")

    def accepts(self, other: "Port") -> bool:
        """Can an output port `other` feed this input port?"""
        if self.type is Any or other.type is Any:
            return True
        return isinstance(other.type, type) and issubclass(other.type, self.type)


@dataclass(frozen=True)
class NodeKind:
    """A registered kind: the function, its ports and its config model (frozen)."""

    name: str
    version: int
    fn: Callable[..., Any]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    config: type[pydantic.BaseModel]
    metrics: tuple[str, ...]
    deterministic: bool
    wants_context: bool
    doc: str
    describe: Callable[[dict[str, Any], dict[str, dict[str, Any]]], dict[str, Any]] | None = None
    training: Any = None  # flowopt.training.Training of a kind that trains and can pause
    owner: Any = None  # flowopt.owners.SubgraphOwner of a kind that owns a subgraph

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str | None) -> Port | None:
        if name is None:
            return self.outputs[0] if self.outputs else None
        return next((p for p in self.outputs if p.name == name), None)

    def call(self, ctx: Any, inputs: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """Run the function and return its outputs as ``{port: value}``."""
        kwargs = {**config, **inputs}
        if self.wants_context:
            kwargs["ctx"] = ctx
        return self.normalise_outputs(self.fn(**kwargs))

    def normalise_outputs(self, result: Any) -> dict[str, Any]:
        names = [p.name for p in self.outputs]
        if not names:
            return {}
        if isinstance(result, dict) and set(result) == set(names):
            return dict(result)
        if len(names) == 1:
            return {names[0]: result}
        if isinstance(result, tuple) and len(result) == len(names):
            return dict(zip(names, result))
        raise TypeError(f"node kind '{self.name}' must return {names} "
                        f"(a dict with those keys or a tuple in that order), got {type(result).__name__}")


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _is_artifact_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Artifact)


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def kind_from_function(fn: Callable[..., Any], name: str, *, outputs: dict[str, Any] | None,
                       metrics: typing.Sequence[str], version: int,
                       deterministic: bool, describe: Callable[..., Any] | None = None,
                       training: Any = None) -> NodeKind:
    """Derive a `NodeKind` from a function's signature (see the module docstring)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    inputs: list[Port] = []
    fields: dict[str, Any] = {}
    wants_context = False
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"node kind '{name}': *args/**kwargs are not supported")
        if param.name == "ctx":
            wants_context = True
            continue
        annotation = hints.get(param.name, Any)
        inner, optional = _unwrap_optional(annotation)
        if _is_artifact_type(inner):
            inputs.append(Port(param.name, inner, optional or param.default is None))
            continue
        default = ... if param.default is param.empty else param.default
        if inner in (int, float):  # YAML's true/false are not numbers (pydantic says 1/0)
            annotation = typing.Annotated[annotation, pydantic.BeforeValidator(_not_a_bool)]
        fields[param.name] = (annotation, default)
    config = pydantic.create_model(  # type: ignore[call-overload]
        f"{name.replace('.', '_')}_config", __config__=pydantic.ConfigDict(extra="forbid"),
        **fields)
    out_ports = [Port(k, v) for k, v in (outputs or {}).items()]
    if not out_ports:
        returned = hints.get("return", Any)
        if _is_artifact_type(returned):
            out_ports.append(Port(returned.type_name, returned))
        elif not metrics and returned is not type(None):
            out_ports.append(Port("value", Any))
    out_ports += [Port(m, Metric) for m in metrics]
    return NodeKind(name=name, version=version, fn=fn, inputs=tuple(inputs),
                    outputs=tuple(out_ports), config=config, metrics=tuple(metrics),
                    deterministic=deterministic, wants_context=wants_context,
                    doc=inspect.getdoc(fn) or "", describe=describe, training=training)


class Registry:
    """Name → `NodeKind`. Plugins from the entry-point group load on first lookup."""

    def __init__(self) -> None:
        self._kinds: dict[str, NodeKind] = {}
        self._lock = threading.RLock()

    def add(self, kind: NodeKind) -> None:
        with self._lock:
            old = self._kinds.get(kind.name)
            if old is not None and _qualname(old.fn) != _qualname(kind.fn):
                raise FlowoptError(f"node kind '{kind.name}' is registered twice "
                                   f"({_qualname(old.fn)} and {_qualname(kind.fn)})")
            self._kinds[kind.name] = kind

    def get(self, name: str) -> NodeKind:
        self.load_entry_points()
        try:
            return self._kinds[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._kinds, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "run `flowopt kinds` to list them"
            raise KeyError(hint) from None

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._kinds)

    def load_entry_points(self) -> None:
        load_entry_points()


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


REGISTRY = Registry()


def node(name: str, *, outputs: dict[str, Any] | None = None,
         metrics: typing.Sequence[str] = (), version: int = 1, deterministic: bool = False,
         describe: Callable[..., Any] | None = None,
         training: Any = None) -> Callable[[Callable[..., Any]], "NodeFactory"]:
    """Register a function as node kind `name` (see the module docstring).

    `version` is part of every cache key: bump it when the function's results change.
    `deterministic=True` says the result does not depend on the seed, so the seed is left
    out of the cache key and the node is shared between pipelines with different seeds.
    `describe` declares static facts and checks inputs at compile time (module docstring).
    `training` (a `flowopt.training.Training`) declares a node that trains and can pause.
    """

    def decorate(fn: Callable[..., Any]) -> NodeFactory:
        kind = kind_from_function(fn, name, outputs=outputs, metrics=metrics,
                                  version=version, deterministic=deterministic,
                                  describe=describe, training=training)
        if training is not None:
            missing = [f for f in (training.steps, *training.mutable)
                       if f not in kind.config.model_fields]
            if missing:
                raise TypeError(f"node kind '{name}': training declares fields it does not "
                                f"have: {', '.join(missing)}")
        REGISTRY.add(kind)
        return NodeFactory(kind)

    return decorate


#: The Python front end's recorder of factory calls (`flowopt.trace.record_call`), set when
#: `flowopt.trace` is imported: the registry sits below the front end and never imports it.
RECORD_CALL: Callable[..., Any] | None = None


class NodeFactory:
    """What `@node` returns: calling it inside a `Pipeline` context records a node."""

    def __init__(self, kind: NodeKind):
        self.kind = kind
        self.fn = kind.fn
        self.__doc__ = kind.doc
        self.__name__ = kind.fn.__name__
        self.__wrapped__ = kind.fn

    def __call__(self, *args: Any, node_id: str | None = None,
                 resources: dict[str, float] | None = None, **kwargs: Any) -> Any:
        if RECORD_CALL is None:  # flowopt.trace not imported: no pipeline can be active
            raise FlowoptError("node factories and fo.param record a graph: call them inside "
                               "`with fo.Pipeline(\"name\") as p:`")
        return RECORD_CALL(self.kind, args, kwargs, node_id=node_id, resources=resources)

    def __repr__(self) -> str:
        return f"<node kind {self.kind.name}>"


_PLUGIN_SOURCES: dict[str, bytes] = {}


def load_plugin(reference: str, base_dir: Path | None = None) -> None:
    """Import a plugin: a module name, or a ``.py`` path (relative to `base_dir`).

    A ``.py`` file is executed again when its content changed since it was last loaded in
    this process, so its kinds (and their code hash, `flowopt.identity`) are the file's
    current ones."""
    if reference.endswith(".py") or "/" in reference:
        path = Path(reference)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"plugin file not found: {path}")
        module_name = f"flowopt_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
        content = path.read_bytes()
        if module_name in sys.modules and _PLUGIN_SOURCES.get(module_name) == content:
            return
        _PLUGIN_SOURCES[module_name] = content
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(reference)
