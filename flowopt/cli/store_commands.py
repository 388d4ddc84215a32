"""Store commands: ``runs list/show/compare``, ``lineage``, ``store check/gc``.

Each is a thin shell over a `flowopt.store.Store` method that returns frozen records;
``--json`` prints the records' own ``to_json`` (docs/cli.md). Registered on the app by
`flowopt.cli.app`; nothing here imports more than typer until a command runs.
"""
from __future__ import annotations

from typing import Any, List, Optional

import typer

from flowopt.errors import EXIT_INVALID, EXIT_NODE_FAILED

from .common import JsonOption, StoreOption, _guarded, _print_json, app, runs_app

store_app = typer.Typer(no_args_is_help=True, help="Check and clean the store.")
app.add_typer(store_app, name="store")

# No envvar here: $FLOWOPT_ARTIFACTS applies to URL stores only (`store.location`).
ArtifactsOption = typer.Option(None, "--artifacts",
                               help="Artifact root of a new URL store; an existing store "
                                    "uses the root it recorded [see docs/store.md].")


def open_store(location: str | None, artifacts: str | None = None, *, create: bool = False) -> Any:
    """The store named on the command line (``--store``, ``$FLOWOPT_STORE``, ``./.flowopt``)."""
    from flowopt.runner import store_location
    from flowopt.store import Store

    return Store.open(store_location(location), create=create, artifacts=artifacts)


def _notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        typer.echo(f"note: {note}", err=True)


@runs_app.command("list")
def runs_list(pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Only this pipeline."),
              status: Optional[str] = typer.Option(
                  None, "--status", help="succeeded | failed | interrupted | running | abandoned"),
              since: Optional[str] = typer.Option(
                  None, "--since", help="Started after: an ISO date/time or an age (30m, 2h, 3d)."),
              where: Optional[str] = typer.Option(
                  None, "--where", help="Filter, e.g. \"metrics.accuracy > 0.9 and params.lr < 0.01\"."),
              order_by: Optional[str] = typer.Option(
                  None, "--order-by", help="FIELD [asc|desc], e.g. 'metrics.accuracy desc'."),
              limit: int = typer.Option(20, "--limit", min=1),
              trials: bool = typer.Option(False, "--trials", help="Include tuner trial runs."),
              store: Optional[str] = StoreOption, artifacts: Optional[str] = ArtifactsOption,
              as_json: bool = JsonOption) -> None:
    """Past runs, newest first (or as --order-by says)."""
    records = _guarded(lambda: open_store(store, artifacts).runs(
        where, pipeline=pipeline, status=status, since=since, order_by=order_by, limit=limit,
        trials=trials))
    if as_json:
        _print_json(records.to_json())
    else:
        from .store_render import print_runs

        print_runs(records)
    _notes(records.notes)
    if not records and any(note.startswith("no run has") for note in records.notes):
        raise typer.Exit(EXIT_INVALID)  # the filter names something no run has: likely a typo


@runs_app.command("show")
def runs_show(run_id: str = typer.Argument(..., help="Run id or a unique prefix."),
              store: Optional[str] = StoreOption, artifacts: Optional[str] = ArtifactsOption,
              as_json: bool = JsonOption) -> None:
    """One run: nodes, params, metrics, artifacts, timings, errors, trials."""
    detail = _guarded(lambda: open_store(store, artifacts).run(run_id))
    if as_json:
        _print_json(detail.to_json())
        return
    from .store_render import print_run_detail

    print_run_detail(detail)


@runs_app.command("compare")
def runs_compare(run_ids: List[str] = typer.Argument(..., help="Two or more run ids (prefixes)."),
                 store: Optional[str] = StoreOption, artifacts: Optional[str] = ArtifactsOption,
                 as_json: bool = JsonOption) -> None:
    """Params and final metrics of runs side by side; differences highlighted."""
    comparison = _guarded(lambda: open_store(store, artifacts).compare(run_ids))
    if as_json:
        _print_json(comparison.to_json())
        return
    from .store_render import print_comparison

    print_comparison(comparison)


@app.command()
def lineage(artifact: str = typer.Argument(..., help="Artifact id (or unique prefix), or RUN:NODE[.PORT]."),
            upstream: bool = typer.Option(False, "--upstream", help="Only where it came from."),
            downstream: bool = typer.Option(False, "--downstream", help="Only what used it."),
            store: Optional[str] = StoreOption, artifacts: Optional[str] = ArtifactsOption,
            as_json: bool = JsonOption) -> None:
    """Where an artifact came from (down to source files) and what used it, across runs."""
    direction = ("both" if upstream == downstream else "upstream" if upstream else "downstream")
    result = _guarded(lambda: open_store(store, artifacts).lineage(artifact, direction))
    if as_json:
        _print_json(result.to_json())
        return
    from .store_render import print_lineage

    print_lineage(result, direction)


@store_app.command("check")
def store_check(repair: bool = typer.Option(False, "--repair",
                                            help="Delete corrupt blobs (their nodes run again)."),
                store: Optional[str] = StoreOption, artifacts: Optional[str] = ArtifactsOption,
                as_json: bool = JsonOption) -> None:
    """Verify every artifact's content against its hash. Exit 1 if something is wrong."""
    report = _guarded(lambda: open_store(store, artifacts).check(repair=repair))
    if as_json:
        _print_json(report.to_json())
    else:
        from .store_render import print_check

        print_check(report)
    if not report.ok and not repair:
        raise typer.Exit(EXIT_NODE_FAILED)


@store_app.command("gc")
def store_gc(yes: bool = typer.Option(False, "--yes", help="Really delete (default: dry run)."),
             min_age: str = typer.Option("1h", "--min-age",
                                         help="Keep blobs younger than this (e.g. 0, 10m, 1h)."),
             store: Optional[str] = StoreOption, artifacts: Optional[str] = ArtifactsOption,
             as_json: bool = JsonOption) -> None:
    """Remove artifact blobs that no run references (a dry run unless --yes)."""
    from flowopt.store.filters import parse_age

    seconds = _guarded(lambda: parse_age(min_age))
    report = _guarded(lambda: open_store(store, artifacts).gc(dry_run=not yes, min_age=seconds))
    if as_json:
        _print_json(report.to_json())
        return
    from .store_render import print_gc

    print_gc(report)
