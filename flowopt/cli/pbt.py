"""``flowopt pbt``: a PBT run's population — events, schedules, plots, replay.

``flowopt pbt show RUN`` lists each member's schedule (``--json``: the event records);
``flowopt pbt plot RUN -o FILE`` draws every member's hyperparameters and score over
steps and the copy tree (PNG, or HTML holding the PNG and the event table);
``flowopt pbt replay RUN`` retrains the best member from scratch along its schedule.
Importing this module costs only typer: matplotlib, the store and the node library
load inside the commands, so ``flowopt --help`` stays light.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

pbt_app = typer.Typer(no_args_is_help=True,
                      help="Population Based Training runs: schedules, plots, replay.")

_StoreOption = typer.Option(None, "--store", envvar="FLOWOPT_STORE",
                            help="Store directory or SQLAlchemy URL [default: ./.flowopt].")
_NodeOption = typer.Option(None, "--node", help="The tuner.pbt node [default: the only one].")


def population_events(store: Any, run_id: str, node_id: str | None = None) -> tuple[str, str, list]:
    """``(run id, node id, events)`` of one PBT node of a run (ids may be prefixes)."""
    from flowopt.errors import StoreError
    from flowopt.store.population import read_events, tuner_nodes

    run_id = store.resolve_run_id(run_id)
    nodes = tuner_nodes(store.engine, run_id)
    if not nodes:
        raise StoreError(f"run {run_id} has no population events (is it a tuner.pbt run?)")
    if node_id is None:
        if len(nodes) > 1:
            raise StoreError(f"run {run_id} has several PBT nodes: {', '.join(nodes)}",
                             hint="pick one with --node")
        node_id = nodes[0]
    elif node_id not in nodes:
        raise StoreError(f"node '{node_id}' of run {run_id} has no population events "
                         f"(PBT nodes: {', '.join(nodes)})")
    return run_id, node_id, read_events(store.engine, run_id, node_id)


def _members(events: Sequence[Any]) -> list[int]:
    return sorted({e.member for e in events})


def _param_names(events: Sequence[Any]) -> list[str]:
    names: dict[str, None] = {}
    for e in events:
        for key, value in (e.new_params or {}).items():
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                names.setdefault(key, None)
    return list(names)


def draw(events: Sequence[Any], title: str) -> bytes:
    """PNG bytes: one panel per hyperparameter, one for the score, one for the copy tree.

    A member's line is drawn in steps (a value holds until the next event); an exploit
    jumps to the copied weights' step. In the tree, an arrow goes from the source member
    at the copied step to the member that took it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from flowopt.store.population import schedule_rows

    names = _param_names(events)
    members = _members(events)
    fig, axes = plt.subplots(len(names) + 2, 1, figsize=(9, 2.4 * (len(names) + 2)),
                             sharex=True, squeeze=False)
    colours = plt.get_cmap("tab10" if len(members) <= 10 else "tab20")
    for index, member in enumerate(members):
        colour = colours(index % colours.N)
        rows = schedule_rows(events, member)
        steps = [r.step for r in rows]
        for axis, name in zip(axes[:, 0], names):
            values = [r.params.get(name) for r in rows]
            axis.step(steps, values, where="post", color=colour, label=f"member {member}")
        scored = [(r.step, r.score) for r in rows
                  if r.score is not None and math.isfinite(r.score) and r.event != "explore"]
        if scored:
            axes[len(names), 0].plot(*zip(*scored), marker=".", color=colour)
        axes[-1, 0].scatter(steps, [member] * len(steps), s=6, color=colour)
    last_step: dict[int, int] = {}
    for e in events:
        if e.event == "explore" and e.from_member is not None:
            axes[-1, 0].annotate("", xy=(e.step, e.member), xytext=(e.step, e.from_member),
                                 arrowprops={"arrowstyle": "->", "alpha": 0.5})
        last_step[e.member] = e.step
    for axis, name in zip(axes[:, 0], names):
        axis.set_ylabel(name)
        values = [e.new_params.get(name) for e in events if e.new_params]
        if values and all(isinstance(v, (int, float)) and v > 0 for v in values) and \
                max(values) / min(values) > 20:
            axis.set_yscale("log")
    axes[len(names), 0].set_ylabel("score")
    axes[-1, 0].set_ylabel("member (copies)")
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].set_yticks(members)
    if len(members) <= 10 and names:
        axes[0, 0].legend(fontsize="small", ncol=min(len(members), 5))
    axes[0, 0].set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def write_report(events: Sequence[Any], output: Path, title: str) -> Path:
    """Write the plot to `output`: ``.png`` as is, ``.html`` with the event table below it."""
    suffix = output.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        from flowopt.errors import FlowoptError

        raise FlowoptError(f"cannot write '{output}': the report is .png or .html")
    image = draw(events, title)
    if suffix == ".png":
        output.write_bytes(image)
        return output
    cells = ("member", "step", "event", "from_member", "score", "from_score", "new_params")
    rows = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(getattr(e, c)))}</td>" for c in cells)
                     + "</tr>" for e in events)
    head = "".join(f"<th>{c}</th>" for c in cells)
    output.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif} td,th{padding:2px 8px;text-align:left}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        f"<img alt='population' src='data:image/png;base64,{base64.b64encode(image).decode()}'>"
        f"<table><tr>{head}</tr>\n{rows}</table></body></html>", encoding="utf-8")
    return output


def _open(store: str | None) -> Any:
    from flowopt.runner import store_location
    from flowopt.store import Store

    return Store.open(store_location(store), create=False)


@pbt_app.command("show")
def show(run_id: str = typer.Argument(..., help="Run id or a unique prefix."),
         node: Optional[str] = _NodeOption, store: Optional[str] = _StoreOption,
         as_json: bool = typer.Option(False, "--json", help="Print the events as JSON.")) -> None:
    """Each member's hyperparameter schedule: params from each step on, scores, copies."""
    from .common import _guarded, _print_json

    run, node_id, events = _guarded(lambda: population_events(_open(store), run_id, node))
    if as_json:
        _print_json({"run_id": run, "node": node_id, "events": [e.to_json() for e in events]})
        return
    from flowopt.store.population import schedule_rows
    from rich.console import Console
    from rich.table import Table

    from .render import text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("member", "step", "event", "from", "score", "params"):
        table.add_column(column)
    for member in _members(events):
        for r in schedule_rows(events, member):
            score = "" if r.score is None else f"{r.score:.4g}"
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in r.params.items())
            table.add_row(text(member), text(r.step), text(r.event),
                          "" if r.from_member is None else text(r.from_member), score,
                          text(params))
    console = Console()
    console.print(table)
    console.print(f"run [cyan]{text(run)}[/] node {text(node_id)}: {len(_members(events))} "
                  f"members, {sum(e.event == 'exploit' for e in events)} exploits", highlight=False)


@pbt_app.command("plot")
def plot(run_id: str = typer.Argument(..., help="Run id or a unique prefix."),
         output: Path = typer.Option(Path("pbt.png"), "-o", "--output",
                                     help="Where to write: .png or .html."),
         node: Optional[str] = _NodeOption, store: Optional[str] = _StoreOption) -> None:
    """Draw each member's hyperparameter schedule and score over steps, and the copy tree."""
    from .common import _guarded

    def work() -> Path:
        run, node_id, events = population_events(_open(store), run_id, node)
        return write_report(events, output, f"PBT run {run[:12]} · node {node_id}")

    written = _guarded(work)
    typer.echo(f"wrote {written}")


@pbt_app.command("replay")
def replay(run_id: str = typer.Argument(..., help="Run id or a unique prefix."),
           node: Optional[str] = _NodeOption, store: Optional[str] = _StoreOption,
           pipeline: Optional[Path] = typer.Option(
               None, "--pipeline", help="The pipeline file the run was started from: its "
                                        "plugins are loaded (the file's hash is checked)."),
           plugins: Optional[List[str]] = typer.Option(
               None, "--plugins", help="A plugin to load instead of the stored ones "
                                       "(module or .py path; repeat for several)."),
           as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Retrain the best member from scratch along its schedule, on the run's own inputs.

    Reading a store never imports code it names: when the run's pipeline loads plugins,
    pass its file (--pipeline) or the plugins to load (--plugins).
    Exit code 1 when the replayed score differs from the recorded one.
    """
    from .common import _guarded, _print_json

    def work() -> dict:
        from flowopt.registry import REGISTRY
        from flowopt.tuning.kinds import strategy_class

        opened = _open(store)
        REGISTRY.get("tuner.pbt")  # loads the node library, which registers the strategy
        return strategy_class("tuner.pbt").replay(opened, opened.resolve_run_id(run_id), node,
                                                  pipeline=pipeline, plugins=plugins)

    result = _guarded(work)
    if as_json:
        _print_json(result)
    else:
        typer.echo(f"run {result['run_id'][:12]} node {result['node']}: member {result['member']} "
                   f"(initial weights of member {result['origin']}), "
                   f"{len(result['schedule'])} schedule segments")
        typer.echo(f"recorded {result['recorded']:.6g}  replayed {result['replayed']:.6g}  "
                   f"{'same' if result['same'] else 'DIFFERENT'}")
    if not result["same"]:
        raise typer.Exit(1)
