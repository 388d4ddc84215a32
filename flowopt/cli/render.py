"""Human-readable output of the CLI (rich tables); the JSON output is the records' own.

Rich reads ``[...]`` in a string as markup, so every string that comes from a user (a
pipeline or node name, a param, an error message) goes through `text` first: a node
error such as ``cannot read [/data/x]`` is shown as written, never interpreted (a crash,
a live link, fake styling)."""
from __future__ import annotations

import math
from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_console = Console()
_STATUS = {"succeeded": "green", "cached": "blue", "failed": "bold red", "skipped": "yellow",
           "running": "cyan", "interrupted": "magenta"}


def text(value: Any) -> str:
    """`value` as text that Rich shows literally (markup escaped)."""
    return escape(str(value))


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float as the string ``"NaN"``, ``"Infinity"`` or
    ``"-Infinity"``: ``--json`` output is strict JSON (RFC 8259 has no such numbers, and
    strict parsers refuse Python's bare ``NaN``/``Infinity``), and ``float()`` of each
    string gives the value back."""
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _status(status: str) -> str:
    return f"[{_STATUS.get(status, '')}]{text(status)}[/]"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else text(value)


def print_run_summary(result: Any, store: str) -> None:
    """After `flowopt run`: id, status, metrics, per-node timings, where the store is."""
    table = Table(title=None, box=None, header_style="bold", pad_edge=False)
    for column in ("node", "status", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for node_id, node in result.nodes.items():
        table.add_row(text(node_id), _status(node.status), f"{node.seconds:.2f}")
    _console.print(table)
    for key, value in result.metrics.items():
        _console.print(f"  {text(key):<28} {_number(value)}", highlight=False)
    best = getattr(result, "best", None)
    if best and "pareto" in best:
        _print_front(best)
    elif best:
        params = ", ".join(f"{text(k)}={_number(v)}" for k, v in best["params"].items())
        _console.print(f"best of tuner '{text(best['node'])}': objective "
                       f"[bold]{_number(best['objective'])}[/] with {params}", highlight=False)
    reused = sum(1 for n in result.nodes.values() if n.status == "cached")
    _console.print(f"run [cyan]{result.run_id}[/] {_status(result.status)} in "
                   f"{result.seconds:.2f}s · {reused}/{len(result.nodes)} nodes from cache · "
                   f"store {text(store)}", highlight=False)
    if result.status == "failed":
        done = sum(1 for n in result.nodes.values() if n.status in ("succeeded", "cached"))
        _console.print(f"[bold red]error:[/] while executing node '{text(result.failed_node)}': "
                       f"{text(result.error)}", highlight=False)
        _console.print(f"hint: fix it and run the same command again; {done} finished nodes "
                       f"will be reused (`flowopt runs show {result.run_id[:8]}` for details)")


def _print_front(best: dict[str, Any]) -> None:
    """A multi-objective tuner's front: one line per Pareto trial (names and values escaped)."""
    ref = ", ".join(_number(v) for v in best["reference_point"])
    _console.print(f"Pareto front of tuner '{text(best['node'])}': {len(best['pareto'])} "
                   f"trials, hypervolume [bold]{_number(best['hypervolume'])}[/] "
                   f"(reference point {ref})", highlight=False)
    for entry in best["pareto"]:
        values = ", ".join(_number(v) for v in entry["objectives"])
        params = ", ".join(f"{text(k)}={text(_number(v))}" for k, v in entry["params"].items())
        _console.print(f"  #{entry['number']:<4} ({values})  {params}", highlight=False)
