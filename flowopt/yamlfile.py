"""Safe, line-aware YAML loading.

`load_yaml` returns plain Python data plus a `LineMap` from key paths to source lines, so
every later error (pydantic validation, graph checks) can name ``file:line`` and the key.
Only PyYAML's safe constructors are used: tags such as ``!!python/object`` are refused,
never executed. Duplicate mapping keys, which PyYAML silently resolves to the last one,
are errors.

Plain data only. ``!!binary``, ``!!set``, ``!!timestamp``, ``!!omap`` and ``!!pairs``
build values no config field or store column takes (bytes, sets, datetimes), so they
are refused where they are written; an unquoted date stays the text it is.

Bounded. Aliases share one node, so ``x: &a [*a]`` is a cycle and nine nested aliases of
nine items are 9⁹ values once expanded ("billion laughs"). Before anything walks the
document, `_check_size` measures it on the node graph (each shared node once): a cycle,
more than `MAX_VALUES` values after expansion, or nesting deeper than `MAX_DEPTH` is an
error within milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import SpecError

Path = tuple  # a key path such as ("nodes", "train", "with", "lr")
MAX_VALUES = 100_000  # values in a document once its aliases are expanded
MAX_DEPTH = 100  # nested mappings and lists
_REFUSED_TAGS = ("binary", "set", "timestamp", "omap", "pairs")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class YamlLimitError(SpecError):
    """A document too large or too deep once expanded, or with a recursive alias."""


@dataclass
class LineMap:
    """Source lines of the keys and values of a loaded document (1-based)."""

    file: str | None = None
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """Line of the longest prefix of `path` that was seen in the document."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: Path, message: str, *, hint: str | None = None,
              cls: type[SpecError] = SpecError) -> SpecError:
        key = ".".join(str(p) for p in path) or None
        return cls(message, file=self.file, line=self.line(path), key=key, hint=hint)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, non-scalar keys and non-plain tags."""


# An unquoted date is text, not a datetime (see the module docstring).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


class _RefusedTag(Exception):
    def __init__(self, tag: str, mark: yaml.Mark):
        self.tag, self.mark = tag, mark


def _refuse_tag(loader: _Loader, node: yaml.Node) -> Any:
    raise _RefusedTag(node.tag, node.start_mark)


for _name in _REFUSED_TAGS:
    _Loader.add_constructor(f"tag:yaml.org,2002:{_name}", _refuse_tag)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark)
        if key in mapping:
            raise _DuplicateKey(key, key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


class _DuplicateKey(Exception):
    def __init__(self, key: Any, mark: yaml.Mark):
        self.key, self.mark = key, mark


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_size(root: yaml.Node, file: str | None) -> None:
    """Refuse cycles, expansions over `MAX_VALUES` and nesting over `MAX_DEPTH`, counting
    each shared (aliased) node once: linear in the document's text, not its expansion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES:
                raise YamlLimitError(f"the document expands to more than {MAX_VALUES:,} values "
                                     "(YAML aliases repeat what they name)", file=file,
                                     line=node.start_mark.line + 1)
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(f"the document nests deeper than {MAX_DEPTH} levels",
                                     file=file, line=node.start_mark.line + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlLimitError("a YAML alias refers to itself (a recursive structure)",
                                 file=file, line=node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YamlLimitError("a YAML alias refers to itself (a recursive structure)",
                                     file=file, line=child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))


def _record_lines(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    # Iterative walk: deep documents must not hit the recursion limit.
    stack = [(node, path)]
    while stack:
        current, where = stack.pop()
        lines.setdefault(where, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    sub = where + (key_node.value,)
                    lines[sub] = key_node.start_mark.line + 1
                    stack.append((value_node, sub))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                stack.append((item, where + (index,)))


def load_yaml(text: str, file: str | None = None) -> tuple[Any, LineMap]:
    """Parse one YAML document safely; return its data and a line map."""
    linemap = LineMap(file=file)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, linemap
        _check_size(root, file)
        _record_lines(root, (), linemap.lines)
        data = loader.construct_document(root)
    except RecursionError:
        raise YamlLimitError(f"the document nests deeper than {MAX_DEPTH} levels",
                             file=file) from None
    except _RefusedTag as refused:
        short = refused.tag.replace("tag:yaml.org,2002:", "!!")
        raise SpecError(f"YAML tag not allowed: {short} (flowopt reads plain data: numbers, "
                        "text, true/false, null, lists and mappings)", file=file,
                        line=refused.mark.line + 1) from None
    except _DuplicateKey as dup:
        raise SpecError(f"duplicate key '{dup.key}' (YAML keeps only the last; remove one)",
                        file=file, line=dup.mark.line + 1, key=str(dup.key)) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        tag_problem = "could not determine a constructor for the tag" in str(exc.problem)
        message = (f"YAML tag not allowed: {exc.problem.split('tag', 1)[-1].strip()} "
                   "(flowopt reads plain YAML only; tags that build Python objects are refused)"
                   if tag_problem else f"invalid YAML: {exc.problem}")
        raise SpecError(message, file=file, line=mark.line + 1 if mark else None) from None
    except yaml.MarkedYAMLError as exc:
        # The context mark (where the unclosed construct began) beats the problem mark,
        # which for an unclosed bracket is only the end of the file.
        mark = exc.context_mark or exc.problem_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise SpecError(f"malformed YAML: {problem}", file=file,
                        line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise SpecError(f"not plain text: character {character!r} at position {exc.position} "
                        "is not allowed in YAML", file=file,
                        hint="save the file as UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"malformed YAML: {' '.join(str(exc).split())}", file=file) from None
    finally:
        loader.dispose()
    return data, linemap


def parse_scalar(text: str) -> Any:
    """Read a command-line value the way YAML would (``0.01`` → float, ``[1, 2]`` → list)."""
    try:
        value, _ = load_yaml(text)
    except YamlLimitError:
        raise
    except SpecError:
        return text
    return text if value is None and text.strip() not in ("null", "~") else value
