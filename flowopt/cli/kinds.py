"""``flowopt kinds [KIND]``: what each registered node kind takes and gives.

A kind is described from its `NodeKind` alone (ports, the pydantic config model, the
docstring), so plugins are described exactly like the built-ins. Types are written the
way a pipeline file uses them (``float > 0``, ``fail|skip_step``, ``[float, float]``),
defaults as their JSON values. The listing never truncates a kind's name: names are
what users copy into pipelines; the other cells wrap instead.
"""
from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=",
           "max_length": "length <="}


def _constraints(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for attribute, symbol in _BOUNDS.items():
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        if getattr(item, "path_type", None) == "file":
            parts.append("an existing file")
    return ", ".join(parts)


def type_text(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's type as a pipeline author reads it: ``float > 0``, ``cosine|linear``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0], list(getattr(annotation, "__metadata__", ())))
    if origin is not None and hasattr(annotation, "__metadata__"):  # Annotated, older typing
        return type_text(args[0], list(annotation.__metadata__))
    extra = _constraints(_flatten(metadata or []))
    if origin is typing.Literal:
        text = "|".join(str(a) for a in args)
    elif origin in (typing.Union, types.UnionType):
        names = [type_text(a) for a in args if a is not type(None)]
        text = " | ".join(names) + (" | null" if type(None) in args else "")
    elif origin in (list, tuple, set, frozenset):
        inner = [type_text(a) for a in args if a is not Ellipsis]
        text = f"[{', '.join(inner)}{', ...' if Ellipsis in args or origin is not tuple else ''}]"
    elif origin is dict:
        text = "mapping"
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        text = "|".join(str(m.value) for m in annotation)
    elif isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        text = annotation.__name__.lower()  # a nested model, e.g. a schedule
    elif isinstance(annotation, type):
        text = {"PosixPath": "path", "WindowsPath": "path", "Path": "path",
                "NoneType": "null"}.get(annotation.__name__, annotation.__name__)
    elif annotation is Any:
        text = "any"
    else:
        text = str(annotation).replace("typing.", "")
    return f"{text} ({extra})" if extra else text


def _flatten(metadata: list[Any]) -> list[Any]:
    """Pydantic keeps `Field(gt=0)` inside `Annotated` as a FieldInfo holding the bounds."""
    flat = []
    for item in metadata:
        flat.extend(getattr(item, "metadata", None) or [item])
    return flat


def _default(info: Any) -> Any:
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def describe(kind: Any) -> dict[str, Any]:
    """One kind as data: the ``flowopt kinds --json`` shape (docs/cli.md)."""
    fields = {}
    for name, info in kind.config.model_fields.items():
        fields[name] = {"type": type_text(info.annotation, list(info.metadata)),
                        "required": info.is_required(), "default": _default(info)}
    doc = kind.doc or ""
    return {"kind": kind.name, "version": kind.version,
            "inputs": {p.name: p.type_name + ("?" if p.optional else "") for p in kind.inputs},
            "outputs": {p.name: p.type_name for p in kind.outputs},
            "metrics": list(kind.metrics), "fields": fields,
            "summary": doc.splitlines()[0] if doc else "", "doc": doc}


def field_text(name: str, field: dict[str, Any]) -> str:
    if field["required"]:
        return f"{name}: {field['type']} (required)"
    return f"{name}: {field['type']} = {json.dumps(field['default'])}"


def print_kinds(rows: list[dict[str, Any]]) -> None:
    """All kinds: the name in full, then summary, ports and fields, wrapped to the terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False, show_lines=False)
    table.add_column("kind", no_wrap=True, style="cyan",
                     min_width=max((len(r["kind"]) for r in rows), default=4))
    table.add_column("takes and gives", overflow="fold", ratio=1)
    for row in rows:
        lines = [escape(row["summary"])] if row["summary"] else []
        if row["inputs"]:
            lines.append("in: " + escape(", ".join(f"{k}: {v}" for k, v in row["inputs"].items())))
        lines.append("out: " + escape(", ".join(f"{k}: {v}" for k, v in row["outputs"].items())
                                      or "none"))
        if row["fields"]:
            lines.append("with: " + escape("; ".join(field_text(k, f)
                                                     for k, f in row["fields"].items())))
        table.add_row(escape(row["kind"]), "\n".join(lines) + "\n")
    Console().print(table)
    Console(stderr=True).print("`flowopt kinds KIND` shows one kind with its documentation")


def print_kind(row: dict[str, Any]) -> None:
    """One kind: ports, fields with types and defaults, and its documentation."""
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    console = Console()
    console.print(f"[bold cyan]{escape(row['kind'])}[/] (version {row['version']})",
                  highlight=False)

    def section(title: str, items: list[tuple[str, ...]]) -> None:
        console.print(f"[bold]{title}[/]")
        if not items:
            console.print("  none")
            return
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 2))
        for index in range(len(items[0])):
            table.add_column(no_wrap=index == 0, overflow="fold")
        for item in items:
            table.add_row(*(escape(str(cell)) for cell in item))
        console.print(table)

    section("inputs", [(name, kind.rstrip("?"), "optional" if kind.endswith("?") else "")
                       for name, kind in row["inputs"].items()])
    outputs = list(row["outputs"].items())
    section("outputs", [(name, kind, "default output" if i == 0 else
                         "metric" if name in row["metrics"] else "")
                        for i, (name, kind) in enumerate(outputs)])
    section("with: fields", [(name, f["type"], "required" if f["required"]
                              else "= " + json.dumps(f["default"]))
                             for name, f in row["fields"].items()])
    if row["doc"]:
        console.print("[bold]doc[/]")
        for paragraph in reflow(row["doc"]):
            console.print(Padding(escape(paragraph), (0, 0, 0, 2)), highlight=False)


def reflow(doc: str) -> list[str]:
    """A docstring as paragraphs and list items (one string each), for the terminal to
    wrap at its own width: source line breaks suit the source, not an 80-column screen."""
    items: list[str] = []
    fresh = True
    for line in doc.splitlines():
        text = line.strip()
        if not text:
            if not fresh:
                items.append("")
            fresh = True
            continue
        starts_item = text[:2] in ("* ", "- ", "• ") or text.split(" ", 1)[0].rstrip(".").isdigit()
        if fresh or starts_item or not items:
            items.append(text)
        else:
            items[-1] += " " + text
        fresh = False
    return items[:-1] if items and items[-1] == "" else items
