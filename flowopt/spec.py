"""The pipeline specification: what a YAML file (or the Python API) says, validated.

A `PipelineSpec` is plain data — node ids, kinds, input bindings, raw ``with:`` values
with ``${params.X}`` references still in place. `flowopt.graph.compile_pipeline` turns it
into the frozen, typed graph. Both front ends produce a `PipelineSpec`, which is why a
pipeline written in Python and the same one in YAML compile to identical graphs.

File format (README, "Pipeline files")::

    pipeline: NAME          # required
    seed: 0
    params: {NAME: value}
    search: {NAME: {low, high, log, integer} | {choices: [...]}}
    plugins: [module.name, path/to/file.py]
    nodes: {ID: {kind: KIND, in: {PORT: NODE[.PORT]}, with: {FIELD: value}}}
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import SpecError
from .yamlfile import LineMap, load_yaml, parse_scalar

NAME_LIMIT = 200  # node ids, param names, the pipeline name: the store's name columns hold 200
SEED_RANGE = (-2 ** 31, 2 ** 31 - 1)  # the store's seed column (INTEGER on PostgreSQL)
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

    @pydantic.field_validator("low", "high", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a bound is a number, not true/false")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"a bound must be a finite number, not {value}")
        return value

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
    inputs: dict[str, str | list[str]] = Field(default_factory=dict, alias="in")  # a list: several objectives
    config: dict[str, Any] = Field(default_factory=dict, alias="with")
    resources: Resources | None = None


class PipelineSpec(BaseModel):
    model_config = _STRICT
    pipeline: str = Field(min_length=1, max_length=NAME_LIMIT)
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Domain] = Field(default_factory=dict)
    plugins: list[str] = Field(default_factory=list)
    nodes: dict[str, NodeSpec]

    @pydantic.field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("the seed is a whole number")
        if not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
            raise ValueError(f"the seed must be from {SEED_RANGE[0]} to {SEED_RANGE[1]}")
        return value

    @pydantic.field_validator("nodes", "params")
    @classmethod
    def _name_lengths(cls, names: dict[str, Any]) -> dict[str, Any]:
        # the file front end says which line (`_check_structure`); this holds for any front end
        for name in names:
            if len(name) > NAME_LIMIT:
                raise ValueError(f"name '{name[:40]}…' is {len(name)} characters long "
                                 f"(at most {NAME_LIMIT})")
        return names

    @pydantic.field_validator("plugins")
    @classmethod
    def _plugins(cls, plugins: list[str]) -> list[str]:
        for reference in plugins:
            if reference.endswith(".py") and Path(reference).stem:
                continue
            if all(part.isidentifier() for part in reference.split(".")):
                continue
            raise ValueError(f"plugin {reference!r} is neither a Python file (path/to/file.py) "
                             "nor a module name (package.module)")
        return plugins

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
            _check_length(lines, ("nodes", node_id), "node id", node_id)
    params = data.get("params")
    if isinstance(params, dict):
        for name in params:
            if not isinstance(name, str) or not name.isidentifier():
                raise lines.error(("params", name), f"param name '{name}' is not an identifier")
            _check_length(lines, ("params", name), "param name", name)


def _check_length(lines: LineMap, path: tuple, what: str, name: str) -> None:
    if len(name) > NAME_LIMIT:
        raise lines.error(path[:-1], f"{what} '{name[:40]}…' is {len(name)} characters long "
                                     f"(at most {NAME_LIMIT})")


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
        elif first["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        raise lines.error(path, message) from None
    for name, domain in spec.search.items():
        if name not in spec.params:
            raise lines.error(("search", name),
                              f"search names '{name}', which is not in params",
                              hint="add it under params: with a starting value")
        _check_domain_type(name, domain, spec.params[name], lines)
    return spec


def _check_domain_type(name: str, domain: Domain, start: Any, lines: LineMap) -> None:
    """A search domain gives values of its param's type (a param's type is its value's)."""
    if domain.choices is None:
        if isinstance(start, bool) or not isinstance(start, (int, float)) and start is not None:
            raise lines.error(("search", name), f"a low/high range needs a numeric param, but "
                                                f"params.{name} is {start!r}",
                              hint="give choices instead")
        return
    for index, choice in enumerate(domain.choices):
        if choice is None:
            continue
        try:
            _coerce_like(start, choice, {})
        except SpecError:
            raise lines.error(("search", name, "choices", index),
                              f"choice {choice!r} does not match the type of params.{name} "
                              f"({type(start).__name__}, {start!r})") from None


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
        path = key.split(".")
        where = dict(file="<command line>", key=key)
        try:
            value = parse_scalar(raw)
        except SpecError as exc:
            raise SpecError(exc.detail, **where) from None
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
    text = _read_text(path)
    data, lines = load_yaml(text, file=str(path))
    _check_structure(data, lines)
    apply_overrides(data, overrides)
    return LoadedSpec(spec=validate_data(data, lines), lines=lines, base_dir=path.parent)


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, or one line saying why it is not."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read pipeline file: {exc.strerror or exc}", file=str(path)) from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (raw[:1] == b"\x00" or raw[1:2] == b"\x00"):
        raise SpecError("the pipeline file is UTF-16 text; flowopt reads UTF-8",
                        file=str(path), hint="save it as UTF-8") from None
    if b"\x00" in raw:
        line = raw[:raw.index(b"\x00")].count(b"\n") + 1
        raise SpecError("the pipeline file contains a NUL byte: it is not a text file",
                        file=str(path), line=line) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SpecError(f"the pipeline file is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                        file=str(path), line=line, hint="save it as UTF-8") from None


def stored_spec(data: Any, *, source_hash: str | None = None, pipeline: str | Path | None = None,
                plugins: Iterable[str] | None = None) -> LoadedSpec:
    """A spec read back from a store, ready to compile without running code the store names.

    A store may come from someone else, and its spec's ``plugins`` are code. They are
    imported only when the user says where they come from: `pipeline`, the file the run
    was started from (its content must hash to the run's recorded `source_hash`; its
    relative plugin paths resolve beside it), or `plugins`, references the user typed
    (resolved as typed, against the current directory). A stored relative path is never
    resolved against the current directory on its own.
    """
    lines = LineMap(file="<stored spec>")
    spec = validate_data(data, lines)
    if plugins is not None:
        spec = spec.model_copy(update={"plugins": list(plugins)})
        return LoadedSpec(spec=spec, lines=lines, base_dir=Path.cwd())
    if pipeline is not None:
        path = Path(pipeline)
        from flowopt.recording import content_hash

        if not path.is_file():
            raise SpecError("pipeline file not found", file=str(path))
        if source_hash is None:
            raise SpecError("the run recorded no hash of its pipeline file, so this file cannot "
                            "be checked against it", file=str(path),
                            hint="name the plugins to load instead: --plugins REF")
        if content_hash(path.read_bytes()) != source_hash:
            raise SpecError("this is not the file the run was started from (its content "
                            "differs)", file=str(path),
                            hint="pass the run's own pipeline file, or --plugins REF")
        return LoadedSpec(spec=spec, lines=lines, base_dir=path.parent)
    if spec.plugins:
        raise SpecError("the stored pipeline loads plugins (" + ", ".join(spec.plugins) + "); "
                        "reading a store never imports code the store names",
                        hint="pass the pipeline file the run was started from (--pipeline FILE) "
                             "or the plugins to load (--plugins REF)")
    return LoadedSpec(spec=spec, lines=lines, base_dir=None)


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
