"""The Python front end: calls inside a `Pipeline` context record a graph (Trace-style).

Node factories (functions decorated with `@fo.node`) called inside ``with
fo.Pipeline(...)`` do not run: they record a node and return a symbolic `NodeHandle`.
Passing a handle to another factory binds an input; ``handle.port`` names another output
port; unpacking (``train, val = data.split(...)``) yields the data output ports in order.
`fo.param` declares a named parameter (with an optional search domain); passing it as a
config value records ``${params.NAME}``, exactly what a YAML file would say.

The recorded pipeline is a `PipelineSpec`, the same type the YAML loader produces, and
node ids default to the kind's short name (``digits``, ``split``, then ``split_2``...),
so `Pipeline.to_yaml` and `Pipeline.from_yaml` round-trip to the same graph.
"""
from __future__ import annotations

import contextvars
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from .artifacts import Metric
from .errors import FlowoptError, SpecError
from .graph import Graph, compile_pipeline
from . import registry
from .registry import NodeKind
from .spec import LoadedSpec, PipelineSpec, _drop_unset, load_spec, validate_data
from .yamlfile import LineMap

_ACTIVE: contextvars.ContextVar["Pipeline | None"] = contextvars.ContextVar(
    "flowopt_pipeline", default=None)


class Param:
    """A named pipeline parameter; use it as a config value of any node."""

    def __init__(self, name: str, default: Any):
        self.name, self.default = name, default

    @property
    def reference(self) -> str:
        return f"${{params.{self.name}}}"

    def __repr__(self) -> str:
        return f"Param({self.name!r}, default={self.default!r})"


class Output:
    """A symbolic output: node `node_id`, port `port` (None: the default output)."""

    def __init__(self, node_id: str, port: str | None = None):
        self.node_id, self.port = node_id, port

    @property
    def reference(self) -> str:
        return self.node_id if self.port is None else f"{self.node_id}.{self.port}"

    def __repr__(self) -> str:
        return f"<output {self.reference}>"


class NodeHandle(Output):
    """What a factory returns: its default output, with the other ports as attributes."""

    def __init__(self, node_id: str, kind: NodeKind):
        super().__init__(node_id)
        self.kind = kind

    def __getattr__(self, name: str) -> Output:
        if not name.startswith("_") and self.kind.output(name) is None \
                and self.kind.owner is not None:  # an owner's copy of an owned node's output
            return _BestOutput(self.node_id, name)  # checked when the graph is compiled
        if name.startswith("_") or self.kind.output(name) is None:
            ports = ", ".join(p.name for p in self.kind.outputs)
            raise AttributeError(f"node '{self.node_id}' ({self.kind.name}) has no output "
                                 f"'{name}' (outputs: {ports})")
        return Output(self.node_id, name)

    def __iter__(self) -> Iterator[Output]:
        return iter([Output(self.node_id, p.name) for p in self.kind.outputs
                     if p.type is not Metric])


class _BestOutput(Output):
    """``tune.train`` / ``tune.train.model``: the best trial's output of an owned node."""

    def __getattr__(self, name: str) -> Output:
        if name.startswith("_") or "." in str(self.port):
            raise AttributeError(name)
        return Output(self.node_id, f"{self.port}.{name}")


def _active() -> "Pipeline":
    pipeline = _ACTIVE.get()
    if pipeline is None:
        raise FlowoptError("node factories and fo.param record a graph: call them inside "
                           "`with fo.Pipeline(\"name\") as p:`")
    return pipeline


def _as_config(value: Any, where: str) -> Any:
    if isinstance(value, Param):
        return value.reference
    if isinstance(value, Output):
        raise FlowoptError(f"{where}: {value!r} is a node output, not a config value; "
                           "pass it as an input port")
    if isinstance(value, (list, tuple)):
        return [_as_config(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _as_config(v, where) for k, v in value.items()}
    return value


_HERE = Path(__file__).resolve().parent
_IN_ENGINE: dict[str, bool] = {}  # code file name -> whether it is one of the engine's files


def _in_engine(filename: str) -> bool:
    # Resolving a path is a few system calls; a recording loop asks about the same few
    # files for every node, so the answer is kept per file name.
    inside = _IN_ENGINE.get(filename)
    if inside is None:
        inside = _IN_ENGINE[filename] = Path(filename).resolve().parent == _HERE
    return inside


def _caller() -> tuple[str, int]:
    """The file and line of the user's code that recorded the node (the first frame
    outside the engine's own files)."""
    frame = sys._getframe(1)
    while frame is not None and _in_engine(frame.f_code.co_filename):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame else ("<python>", 0)


def record_call(kind: NodeKind, args: tuple, kwargs: dict[str, Any],
                node_id: str | None = None,
                resources: Mapping[str, float] | None = None) -> NodeHandle:
    """Record one node in the active pipeline (called by `NodeFactory`)."""
    pipeline = _active()
    if len(args) > len(kind.inputs):
        raise FlowoptError(f"{kind.name}() takes {len(kind.inputs)} positional input(s) "
                           f"({', '.join(p.name for p in kind.inputs)}); pass config by keyword")
    bound = dict(zip((p.name for p in kind.inputs), args))
    config: dict[str, Any] = {}
    for name, value in kwargs.items():
        if kind.input(name) is not None:
            bound[name] = value
        else:
            config[name] = _as_config(value, f"{kind.name}({name}=...)")
    inputs = {}
    for name, value in bound.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and name == "objective" \
                and value and all(isinstance(v, Output) for v in value):
            inputs[name] = [v.reference for v in value]  # several objectives
            continue
        if not isinstance(value, Output):
            raise FlowoptError(f"{kind.name}(): input '{name}' must be another node's output, "
                               f"got {type(value).__name__}")
        inputs[name] = value.reference
    node_id = pipeline._new_id(node_id or kind.name.rsplit(".", 1)[-1])
    pipeline._data["nodes"][node_id] = {"kind": kind.name, "in": inputs, "with": config,
                                        **({"resources": dict(resources)} if resources else {})}
    file, line = _caller()
    pipeline._lines.file = pipeline._lines.file or file
    pipeline._lines.lines[("nodes", node_id)] = line
    return NodeHandle(node_id, kind)


def param(name: str, default: Any, *, low: float | None = None, high: float | None = None,
          log: bool = False, integer: bool = False, choices: Iterable[Any] | None = None) -> Param:
    """Declare a pipeline param; with `low`/`high` or `choices` it is also searchable."""
    pipeline = _active()
    if name in pipeline._data["params"]:
        raise FlowoptError(f"param '{name}' is declared twice")
    pipeline._data["params"][name] = default
    if choices is not None or low is not None or high is not None:
        domain: dict[str, Any] = {"choices": list(choices)} if choices is not None else \
            {"low": low, "high": high}
        if log:
            domain["log"] = True
        if integer:
            domain["integer"] = True
        pipeline._data["search"][name] = domain
    return Param(name, default)


class Pipeline:
    """A pipeline under construction (``with``) and its compiled graph and runs."""

    def __init__(self, name: str, seed: int = 0, *, plugins: Iterable[str] = ()):
        self._data: dict[str, Any] = {"pipeline": name, "seed": seed, "params": {},
                                      "search": {}, "plugins": list(plugins), "nodes": {}}
        self._lines = LineMap()
        self._base_dir: Path | None = None
        self._token: contextvars.Token | None = None
        # wanted id -> the next number to try for it: each default id is found in amortised
        # constant time instead of probing every earlier ``wanted_2``, ``wanted_3``...
        self._next_number: dict[str, int] = {}

    def __enter__(self) -> "Pipeline":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    def _new_id(self, wanted: str) -> str:
        if not wanted.isidentifier():
            raise FlowoptError(f"node id '{wanted}' is not an identifier")
        nodes = self._data["nodes"]
        if wanted not in nodes:
            return wanted
        # Numbers only grow: an id taken explicitly (``node_id="split_3"``) or by a loaded
        # file is skipped by the probe, and every number is probed once per wanted id.
        number = self._next_number.get(wanted, 2)
        while f"{wanted}_{number}" in nodes:
            number += 1
        self._next_number[wanted] = number + 1
        return f"{wanted}_{number}"

    @property
    def name(self) -> str:
        return self._data["pipeline"]

    @property
    def spec(self) -> PipelineSpec:
        return validate_data(self._data, self._lines)

    @property
    def graph(self) -> Graph:
        return compile_pipeline(LoadedSpec(spec=self.spec, lines=self._lines,
                                           base_dir=self._base_dir))

    def run(self, store: Any = None, *, workers: int | None = None, use_cache: bool = True,
            device: str = "auto", listeners: Iterable[Any] = (), executor: str = "local",
            address: str | None = None) -> Any:
        """Compile and execute; records into `store` (a directory, URL or Store).

        ``executor="ray"`` runs the nodes on Ray: a local one started with `workers` CPUs,
        or the cluster at `address` (see `flowopt.ray_executor`)."""
        from .runner import execute

        return execute(self.graph, store=store, workers=workers, use_cache=use_cache,
                       device=device, listeners=list(listeners), executor=executor,
                       address=address)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The pipeline as a YAML file's text (written to `path` if given)."""
        text = yaml.safe_dump(self.spec.to_data(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = ()) -> "Pipeline":
        loaded = load_spec(path, overrides)
        pipeline = cls(loaded.spec.pipeline, loaded.spec.seed)
        data = loaded.spec.model_dump(by_alias=True)
        data["search"] = {k: _drop_unset(d) for k, d in data["search"].items()}
        pipeline._data, pipeline._lines, pipeline._base_dir = data, loaded.lines, loaded.base_dir
        return pipeline

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {len(self._data['nodes'])} nodes>"


__all__ = ["Output", "NodeHandle", "Param", "Pipeline", "SpecError", "param", "record_call"]


registry.RECORD_CALL = record_call  # factories record into the active pipeline (registry.py)
