"""Human-readable output of the store commands (rich); ``--json`` uses the records.

Width. Tables fit the terminal without cutting values into ellipses: names and ids never
wrap (they are what users copy), long cells (params, metrics, outputs) wrap onto more
lines, and below `WIDE` columns listings drop the date, seconds and half the cache key.

Everything read from a store — pipeline names, node ids, params, errors, paths — may
hold ``[...]``, which Rich would read as markup: it goes through `text` (escaped) first,
so a store from elsewhere can neither crash a listing nor print links or fake styling.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .render import text

_console = Console()
_STATUS = {"succeeded": "green", "cached": "blue", "failed": "bold red", "skipped": "yellow",
           "running": "cyan", "interrupted": "magenta", "abandoned": "bold magenta",
           "pruned": "yellow"}


def _status(status: str) -> str:
    return f"[{_STATUS.get(status, '')}]{text(status)}[/]"


def _value(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else text(str(value))


WIDE = 120  # below this many columns, listings use short times and cache keys
SHOWN = 4  # params and metrics per run in `runs list`; the rest are counted


def _table(*columns: str, wrap: tuple[str, ...] = ()) -> Table:
    """A borderless table; columns in `wrap` fold long values, the others never wrap."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        if column in wrap:
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, no_wrap=True)
    return table


def _pairs(values: dict[str, Any], shown: int | None = None) -> str:
    """``k=v, ...``; a run's own params before its tuners' (``TUNER.NAME``)."""
    items = sorted(values.items(), key=lambda item: "." in item[0])
    pairs = ", ".join(f"{text(k)}={_value(v)}" for k, v in items[:shown])
    if shown is not None and len(items) > shown:
        pairs += f" (+{len(items) - shown} more)"
    return pairs


def _ids(ids: Any, shown: int = 3) -> str:
    ids = list(ids)
    more = f" (+{len(ids) - shown} more)" if len(ids) > shown else ""
    return ", ".join(i[:8] for i in ids[:shown]) + more


def print_runs(records: Any) -> None:
    if not records:
        _console.print("no runs")
        return
    wide = _console.width >= WIDE
    columns = ["run", "pipeline", "status", "started (UTC)", "seconds"] if wide else \
              ["run", "pipeline", "status", "started"]
    table = _table(*columns, "params / metrics", wrap=("pipeline", "params / metrics"))
    for record in records:
        values = _pairs(record.params, SHOWN)
        metrics = _pairs(record.metrics, SHOWN)
        cells = [record.run_id[:12], text(record.pipeline),
                 _status(record.status),
                 record.started_at.strftime("%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M")]
        if wide:
            cells.append(f"{record.seconds:.1f}" if record.seconds is not None else "-")
        table.add_row(*cells, "\n".join(t for t in (values, metrics) if t) or "–")
    _console.print(table)


def print_run_detail(detail: Any) -> None:
    run = detail.run
    parent = f" · trial of {text(run.parent_run_id[:12])}" if run.parent_run_id else ""
    _console.print(f"run [cyan]{text(run.run_id)}[/] · pipeline [bold]{text(run.pipeline)}[/] · "
                   f"{_status(run.status)} · seed {text(run.seed)}{parent}", highlight=False)
    if run.error:
        _console.print(f"[bold red]error:[/] {text(run.error)}", highlight=False)
    for title, values in (("params", run.params), ("metrics", run.metrics)):
        if values:
            _console.print(f"[bold]{title}[/]")
            for key, value in values.items():
                _console.print(f"  {text(key):<28} {_value(value)}", highlight=False)
    wide = _console.width >= WIDE
    table = _table("node", "kind", "status", "seconds", "cache key", "outputs", wrap=("outputs",))
    for node in detail.nodes:
        table.add_row(text(node.id), text(node.kind), _status(node.status),
                      f"{node.seconds:.2f}", node.cache_key[:12 if wide else 8],
                      _ids(node.outputs))
    _console.print(table)
    for node in detail.nodes:
        if node.error:
            _console.print(f"[red]{text(node.id)}:[/] {text(node.error)}", highlight=False)
    if detail.trials:
        _console.print("[bold]trials[/]")
        trials = _table("node", "#", "status", "objective", "params", "run", wrap=("params",))
        for trial in detail.trials:
            trials.add_row(text(trial.node), str(trial.number), _status(trial.status),
                           _value(trial.objective), _pairs(dict(trial.params)),
                           (trial.trial_run_id or "")[:12])
        _console.print(trials)
        for trial in detail.trials:  # each failed trial's own error, under the table
            if trial.status == "failed" and trial.error:
                _console.print(f"[red]{text(trial.node)} trial {trial.number}:[/] "
                               f"{text(trial.error)}", highlight=False)


def print_comparison(comparison: Any) -> None:
    """Rows: params then metrics; columns: runs. Rows whose values differ are highlighted."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("", overflow="fold", ratio=1)  # keys wrap; values never get cut
    for run in comparison.runs:
        table.add_column(f"{run.run_id[:8]}\n{text(run.pipeline)}\n{run.status}",
                         justify="right", no_wrap=True)
    for title, values in (("params", comparison.params), ("metrics", comparison.metrics)):
        if not values:
            continue
        table.add_row(f"[bold]{title}[/]", *[""] * len(comparison.runs))
        for key, row in values.items():
            differs = comparison.differs(row)
            style = "bold yellow" if differs else "dim"
            cells = [_value(v) for v in row]
            if title == "metrics" and differs:
                numbers = [v for v in row if isinstance(v, (int, float))]
                best = max(numbers) if numbers else None
                cells = [f"[green]{c}[/]" if v == best else c for c, v in zip(cells, row)]
            table.add_row(f"[{style}]{text(key)}[/]", *cells)
    _console.print(table)
    different = sum(comparison.differs(v) for v in [*comparison.params.values(),
                                                    *comparison.metrics.values()])
    _console.print(f"{different} of {len(comparison.params) + len(comparison.metrics)} values "
                   "differ (highlighted)")


def print_lineage(lineage: Any, direction: str) -> None:
    art = lineage.artifact
    _console.print(f"artifact [cyan]{text(art.id)}[/] · {text(art.type)} · "
                   f"{text(art.node)}.{text(art.port)} · run {text((lineage.run_id or '?')[:12])} "
                   f"· hash {text(art.hash[:16])}", highlight=False)
    if direction in ("upstream", "both"):
        _console.print(f"[bold]upstream[/] ({len(lineage.upstream)} artifacts)")
        table = _table("artifact", "node", "kind", "port", "type", "run", "hash")
        for e in lineage.upstream:
            table.add_row(*(text(v) for v in (e.artifact[:12], e.node, e.kind, e.port or "",
                                               e.type or "", e.run_id[:12], (e.hash or "")[:12])))
        _console.print(table)
        if lineage.sources:
            _console.print("[bold]source files[/]")
            for source in lineage.sources:
                _console.print(f"  {text(source.path)}  hash {text(source.hash or 'missing')}  "
                               f"({text(source.node)}.{text(source.field)}, "
                               f"{_value(source.size)} bytes)", highlight=False)
    if direction in ("downstream", "both"):
        _console.print(f"[bold]downstream[/] ({len(lineage.downstream)} uses)")
        table = _table("artifact", "node", "kind", "status", "run", "consumed")
        for e in lineage.downstream:
            table.add_row(text((e.artifact or "–")[:12]), text(e.node), text(e.kind),
                          _status(e.status), text(e.run_id[:12]), text((e.via or "")[:12]))
        _console.print(table)


def print_check(report: Any) -> None:
    _console.print(f"checked {report.artifacts} artifacts ({report.blobs} blobs)")
    for entry in report.missing:
        _console.print(f"[red]missing[/] blob {_entry(entry)}", highlight=False)
    for entry in report.corrupt:
        _console.print(f"[bold red]corrupt[/] {text(entry['where'])} {_entry(entry)}",
                       highlight=False)
    for leftover in report.leftovers:
        _console.print(f"[yellow]unfinished write[/] {text(leftover)}", highlight=False)
    for action in report.repaired:
        _console.print(f"repaired: {text(action)}", highlight=False)
    if report.ok:
        _console.print("[green]ok[/]")
    elif not report.repaired:
        _console.print("hint: `flowopt store check --repair` deletes corrupt blobs; the nodes "
                       "that made them run again when next needed")


def _entry(entry: dict[str, Any]) -> str:
    return text(f"{entry['hash'][:16]} of artifact {entry['artifact'][:12]} ({entry['node']} in "
                f"run {(entry['run_id'] or '?')[:12]})")


def print_gc(report: Any) -> None:
    verb = "would remove" if report.dry_run else "removed"
    _console.print(f"artifact root {text(report.root)}", highlight=False, soft_wrap=True)
    _console.print(f"{verb} {len(report.blobs)} unreferenced blobs ({report.bytes} bytes)"
                   + (f"; kept {report.kept_young} younger than --min-age" if report.kept_young else "")
                   + (f"; kept {report.kept_live} a running run may use" if report.kept_live else ""))
    if report.dry_run and report.blobs:
        _console.print("dry run: pass --yes to delete them")
