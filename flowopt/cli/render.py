"""Human-readable output of the CLI (rich tables); the JSON output is the records' own."""
from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

_console = Console()
_STATUS = {"succeeded": "green", "cached": "blue", "failed": "bold red", "skipped": "yellow",
           "running": "cyan", "interrupted": "magenta"}


def _status(text: str) -> str:
    return f"[{_STATUS.get(text, '')}]{text}[/]"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_run_summary(result: Any, store: str) -> None:
    """After `flowopt run`: id, status, metrics, per-node timings, where the store is."""
    table = Table(title=None, box=None, header_style="bold", pad_edge=False)
    for column in ("node", "status", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for node_id, node in result.nodes.items():
        table.add_row(node_id, _status(node.status), f"{node.seconds:.2f}")
    _console.print(table)
    for key, value in result.metrics.items():
        _console.print(f"  {key:<28} {_number(value)}")
    best = getattr(result, "best", None)
    if best and "pareto" in best:
        _print_front(best)
    elif best:
        params = ", ".join(f"{k}={_number(v)}" for k, v in best["params"].items())
        _console.print(f"best of tuner '{best['node']}': objective [bold]{_number(best['objective'])}"
                       f"[/] with {params}", highlight=False)
    reused = sum(1 for n in result.nodes.values() if n.status == "cached")
    _console.print(f"run [cyan]{result.run_id}[/] {_status(result.status)} in "
                   f"{result.seconds:.2f}s · {reused}/{len(result.nodes)} nodes from cache · "
                   f"store {store}")
    if result.status == "failed":
        done = sum(1 for n in result.nodes.values() if n.status in ("succeeded", "cached"))
        _console.print(f"[bold red]error:[/] while executing node '{result.failed_node}': "
                       f"{result.error}", highlight=False)
        _console.print(f"hint: fix it and run the same command again; {done} finished nodes "
                       f"will be reused (`flowopt runs show {result.run_id[:8]}` for details)")


def _print_front(best: dict[str, Any]) -> None:
    """A multi-objective tuner's front: one line per Pareto trial (params escaped)."""
    from rich.markup import escape

    ref = ", ".join(_number(v) for v in best["reference_point"])
    _console.print(f"Pareto front of tuner '{escape(best['node'])}': {len(best['pareto'])} "
                   f"trials, hypervolume [bold]{_number(best['hypervolume'])}[/] "
                   f"(reference point {ref})", highlight=False)
    for entry in best["pareto"]:
        values = ", ".join(_number(v) for v in entry["objectives"])
        params = ", ".join(f"{k}={_number(v)}" for k, v in entry["params"].items())
        _console.print(f"  #{entry['number']:<4} ({values})  {escape(params)}", highlight=False)


def print_kinds(rows: Iterable[dict[str, Any]]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("kind", "inputs", "outputs", "fields", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["kind"], ", ".join(f"{k}:{v}" for k, v in row["inputs"].items()),
                      ", ".join(row["outputs"]), ", ".join(row["fields"]), row["summary"])
    _console.print(table)
