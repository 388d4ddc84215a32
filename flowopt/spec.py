"""The pipeline specification: what a YAML file (or the Python API) says, validated.

A `PipelineSpec` is plain data — node ids, kinds, input bindings, raw ``with:`` values
with ``${params.X}`` references still in place. `flowopt.graph.compile_pipeline` turns it
into the frozen, typed graph. Both front ends produce a `PipelineSpec`, which is why a
pipeline written in Python and the same one in YAML compile to identical graphs.

File format (DESIGN.md §1)::

    pipeline: NAME          # required
    seed: 0
    params: {NAME: value}
    search: {NAME: {low, high, log, integer} | {choices: [...]}}
    plugins: [module.name, path/to/file.py]
    nodes: {ID: {kind: KIND, in: {PORT: NODE[.PORT]}, with: {FIELD: value}}}
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import SpecError
from .yamlfile import LineMap, load_yaml, parse_scalar

PARAM_REF = re.compile(r"\$\{params\.([A-Za-z_][A-Za-z0-9_]*)\}")
_STRICT = ConfigDict(extra="forbid", populate_by_name=True)


class Domain(BaseModel):
    """A search domain: a numeric range (optionally log-scaled or `integer`) or choices."""

    model_config = _STRICT
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> "Domain":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        return self


class Resources(BaseModel):
    """What one execution of a node needs: ``cpus`` (default 1) and ``gpus`` (default 0;
    fractions share a device, as Ray Tune users do). The Ray executor schedules with them;
    the local executor refuses a node that asks for more than the machine has."""

    model_config = _STRICT
    cpus: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    gpus: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class NodeSpec(BaseModel):
    """One node: ``kind``, input bindings (``in``), configuration (``with``) and, optionally,
    the ``resources`` one execution needs (they are not part of its identity)."""

    model_config = _STRICT
    kind: str
    inputs: dict[str, str] = Field(default_factory=dict, alias="in")
    config: dict[str, Any] = Field(default_factory=dict, alias="with")
    resources: Resources | None = None


class PipelineSpec(BaseModel):
    model_config = _STRICT
    pipeline: str = Field(min_length=1)
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Domain] = Field(default_factory=dict)
    plugins: list[str] = Field(default_factory=list)
    nodes: dict[str, NodeSpec]

    def to_data(self) -> dict[str, Any]:
        """The YAML-shaped dict (``in``/``with`` aliases, empty sections dropped)."""
        data = self.model_dump(by_alias=True, exclude_defaults=False)
        for node in data["nodes"].values():
            for key in ("in", "with", "resources"):
                if not node[key]:
                    del node[key]
        for key in ("params", "search", "plugins"):
            if not data[key]:
                del data[key]
        for domain in data.get("search", {}).values():
            _drop_unset(domain)
        return data


def _drop_unset(domain: dict[str, Any]) -> dict[str, Any]:
    """Remove a domain's unset keys (None, and the False flags) so YAML stays minimal."""
    for key in [k for k, v in domain.items() if v is None or (k in ("log", "integer") and v is False)]:
        del domain[key]
    return domain


class LoadedSpec(BaseModel):
    """A validated spec plus where it came from (for error messages and plugins)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    spec: PipelineSpec
    lines: LineMap
    base_dir: Path | None = None


def _location(loc: Iterable[Any]) -> tuple:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _check_structure(data: Any, lines: LineMap) -> None:
    if not isinstance(data, dict):
        raise lines.error((), "a pipeline file must be a mapping with 'pipeline' and 'nodes'")
    nodes = data.get("nodes")
    if isinstance(nodes, dict):
        if not nodes:
            raise lines.error(("nodes",), "the pipeline is empty: 'nodes' needs at least one node")
        for node_id in nodes:
            if not isinstance(node_id, str) or not node_id.isidentifier():
                raise lines.error(("nodes", node_id),
                                  f"node id '{node_id}' is not an identifier (letters, digits, _; "
                                  "not starting with a digit)")
    params = data.get("params")
    if isinstance(params, dict):
        for name in params:
            if not isinstance(name, str) or not name.isidentifier():
                raise lines.error(("params", name), f"param name '{name}' is not an identifier")


def validate_data(data: Any, lines: LineMap) -> PipelineSpec:
    """Validate raw YAML-shaped data into a `PipelineSpec`; errors carry file:line:key."""
    _check_structure(data, lines)
    try:
        spec = PipelineSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = _location(first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = f"unknown key '{path[-1]}'"
            if len(path) == 1:
                message += " (top-level keys: pipeline, seed, params, search, plugins, nodes)"
            elif len(path) == 3 and path[0] == "nodes":
                message += " (a node has: kind, in, with)"
        elif first["type"] == "missing":
            message = f"missing required key '{path[-1]}'"
        raise lines.error(path, message) from None
    for name in spec.search:
        if name not in spec.params:
            raise lines.error(("search", name),
                              f"search names '{name}', which is not in params",
                              hint="add it under params: with a starting value")
    return spec


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> None:
    """Apply ``-s key=value`` overrides in place (values parsed as YAML scalars).

    Keys are dotted paths into the file: ``params.lr``, ``seed``,
    ``nodes.train.with.steps``, ``nodes.net.in.data``, ``nodes.tune.kind``. A param keeps its type (an int
    param given ``0.5`` is an error); ``with:`` values are typed by the node's config model
    when the graph is compiled.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise SpecError(f"malformed override '{item}': expected KEY=VALUE, "
                            "e.g. -s params.lr=0.01", file="<command line>")
        value = parse_scalar(raw)
        path = key.split(".")
        where = dict(file="<command line>", key=key)
        if path[0] == "params":
            if len(path) != 2 or path[1] not in data.get("params", {}):
                known = ", ".join(data.get("params", {})) or "none"
                raise SpecError(f"unknown param in override (params: {known})", **where)
            data["params"][path[1]] = _coerce_like(data["params"][path[1]], value, where)
        elif path[0] == "nodes" and len(path) == 3 and path[2] == "kind":
            node = data.get("nodes", {}).get(path[1])
            if not isinstance(node, dict) or not isinstance(value, str):
                raise SpecError(f"no node '{path[1]}' in the pipeline" if not isinstance(node, dict)
                                else "a kind is a name, e.g. nodes.tune.kind=tuner.random", **where)
            node["kind"] = value  # e.g. swap one tuner for another
        elif path[0] == "nodes":
            if len(path) != 4 or path[2] not in ("in", "with"):
                raise SpecError("node overrides look like nodes.ID.with.FIELD=VALUE, "
                                "nodes.ID.in.PORT=NODE or nodes.ID.kind=KIND", **where)
            node = data.get("nodes", {}).get(path[1])
            if not isinstance(node, dict):
                raise SpecError(f"no node '{path[1]}' in the pipeline", **where)
            node.setdefault(path[2], {})[path[3]] = value
        elif len(path) == 1 and path[0] in ("seed", "pipeline"):
            data[path[0]] = value
        else:
            raise SpecError("overrides start with params., nodes., seed or pipeline", **where)


def _coerce_like(old: Any, new: Any, where: dict[str, Any]) -> Any:
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) and isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, (int, float)):
        return float(new)
    elif isinstance(old, int) and isinstance(new, int):
        return new
    elif old is None or type(old) is type(new):
        return new
    raise SpecError(f"expected {type(old).__name__} (like the current value {old!r}), "
                    f"got {new!r}", **where)


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> LoadedSpec:
    """Read, parse and validate a pipeline file; apply ``-s`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("pipeline file not found", file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read pipeline file: {exc}", file=str(path)) from None
    data, lines = load_yaml(text, file=str(path))
    _check_structure(data, lines)
    apply_overrides(data, overrides)
    return LoadedSpec(spec=validate_data(data, lines), lines=lines, base_dir=path.parent)


def param_refs(value: Any) -> set[str]:
    """Names of the params that a (nested) config value references."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.update(PARAM_REF.findall(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


def interpolate(value: Any, params: dict[str, Any]) -> Any:
    """Replace ``${params.X}``: a whole-string reference keeps the param's type."""
    if isinstance(value, str):
        whole = PARAM_REF.fullmatch(value)
        if whole:
            return params[whole.group(1)]
        return PARAM_REF.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: interpolate(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, params) for v in value]
    return value
