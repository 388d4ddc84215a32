"""The ``flowopt`` command: a thin typer shell over plain functions that return data.

Exit codes: 0 success · 1 a node failed · 2 invalid input or usage · 130 interrupted.
Errors print one line (plus a hint) on stderr; ``--debug`` shows the traceback instead.
Nothing heavy is imported at start-up: torch and numba load only when a pipeline runs.
"""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from flowopt.errors import EXIT_INTERRUPTED, EXIT_NODE_FAILED, FlowoptError

from .common import (JsonOption, SetOption, StoreOption, _STATE, _fail, _guarded,  # noqa: F401
                     _print_json, app, runs_app)
from .pbt import pbt_app  # typer only; its commands import the rest lazily

app.add_typer(pbt_app, name="pbt")


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    png = "png"


def _compile(file: Path, overrides: list[str]) -> Any:
    from flowopt.graph import compile_pipeline
    from flowopt.spec import load_spec

    return compile_pipeline(load_spec(file, overrides))


def _warn_budget(graph: Any, file: Path) -> None:
    """Print each tuner-budget warning (`flowopt.tuning.advice`) as one stderr line."""
    from flowopt.tuning.advice import budget_warnings

    for line in budget_warnings(graph):
        typer.echo(f"warning: {file}: {line}", err=True)


def _version(show: bool) -> None:
    if show:
        from flowopt import __version__

        typer.echo(f"flowopt {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _STATE["debug"] = debug


@app.command()
def run(file: Path = typer.Argument(..., help="Pipeline file (YAML)."),
        overrides: List[str] = SetOption, store: Optional[str] = StoreOption,
        no_cache: bool = typer.Option(False, "--no-cache", help="Recompute every node."),
        executor: str = typer.Option("local", "--executor", help="local | ray"),
        address: Optional[str] = typer.Option(
            None, "--address", help="With --executor ray: auto | HOST:PORT of a running "
                                    "cluster [default: start a local one]."),
        workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                              help="Parallel nodes [default: cores]."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        as_json: bool = JsonOption) -> None:
    """Compile, validate, execute and record a pipeline."""
    from flowopt.runner import execute, store_location

    graph = _guarded(lambda: _compile(file, overrides))
    _warn_budget(graph, file)
    listeners = []
    if not as_json:
        from .progress import LiveProgress

        listeners.append(LiveProgress())
    held: dict[str, Any] = {}
    try:
        result = _guarded(lambda: execute(
            graph, store=store, workers=workers, executor=executor, address=address,
            use_cache=not no_cache,
            device=device, listeners=listeners, source=str(file),
            scheduler_hook=lambda s: held.setdefault("scheduler", s)))
    except KeyboardInterrupt:
        run_id = getattr(held.get("scheduler"), "run_id", None)
        typer.echo(f"interrupted: run {run_id} recorded as interrupted; run the same command "
                   "again to resume (finished nodes are reused)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        _print_json(result.to_json())
    else:
        from .render import print_run_summary

        print_run_summary(result, store_location(store))
    if result.status != "succeeded":
        raise typer.Exit(EXIT_NODE_FAILED)


@app.command()
def validate(file: Path = typer.Argument(..., help="Pipeline file (YAML)."),
             overrides: List[str] = SetOption, as_json: bool = JsonOption) -> None:
    """Compile and validate a pipeline without running it."""
    graph = _guarded(lambda: _compile(file, overrides))
    _warn_budget(graph, file)
    if as_json:
        _print_json({"pipeline": graph.name, "valid": True, "nodes": graph.cache_keys()})
    else:
        typer.echo(f"ok: pipeline '{graph.name}' — {len(graph)} nodes, "
                   f"{len(graph.params)} params, valid")


@app.command()
def graph(file: Path = typer.Argument(..., help="Pipeline file (YAML)."),
          overrides: List[str] = SetOption,
          fmt: GraphFormat = typer.Option(GraphFormat.mermaid, "--format"),
          output: Optional[Path] = typer.Option(None, "-o", "--output")) -> None:
    """Draw the pipeline's DAG (mermaid or dot text; png through graphviz's `dot`)."""
    from .drawing import render_graph

    compiled = _guarded(lambda: _compile(file, overrides))
    text = _guarded(lambda: render_graph(compiled, fmt.value, output))
    if text is not None:
        typer.echo(text)


@app.command()
def kinds(name: Optional[str] = typer.Argument(None, help="One kind, e.g. optimizer.lion."),
          as_json: bool = JsonOption) -> None:
    """The registered node kinds: ports, fields with types and defaults (one kind: its docs)."""
    from flowopt.registry import REGISTRY

    from .kinds import describe, print_kind, print_kinds

    def lookup() -> list[Any]:
        if name is None:
            return [REGISTRY.get(n) for n in REGISTRY.names()]
        try:
            return [REGISTRY.get(name)]
        except KeyError as exc:
            raise FlowoptError(f"unknown node kind '{name}'", hint=exc.args[0]) from None

    rows = [describe(kind) for kind in _guarded(lookup)]
    if as_json:
        _print_json(rows[0] if name else rows)
    elif name:
        print_kind(rows[0])
    else:
        print_kinds(rows)


@app.command()
def report(run_id: str = typer.Argument(..., help="Run id or a unique prefix."),
           output: Path = typer.Option(Path("report.html"), "-o", "--output",
                                       help="HTML file to write."),
           store: Optional[str] = StoreOption) -> None:
    """Plots of a run in one HTML page: learning curves, tuner traces, quantization, PBT."""
    from .report import write_report
    from .store_commands import open_store

    path = _guarded(lambda: write_report(open_store(store), run_id, output))
    typer.echo(f"wrote {path}")


@app.command()
def ui(store: Optional[str] = StoreOption,
       host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
       port: int = typer.Option(8321, "--port", min=1, max=65535),
       token: Optional[str] = typer.Option(None, "--token", envvar="FLOWOPT_UI_TOKEN",
                                           help="Required for a non-local --host.")) -> None:
    """Browse the store in a web browser (read-only): runs, compare, tuners, lineage."""
    from flowopt.runner import store_location
    from flowopt.ui.server import serve

    _guarded(lambda: serve(store_location(store), host=host, port=port, token=token,
                           ready=lambda url: typer.echo(f"flowopt ui: open {url}  (Ctrl-C stops)")))


from . import store_commands  # noqa: E402,F401 - registers runs list/show/compare, lineage, store


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
