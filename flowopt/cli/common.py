"""What every command module of the CLI shares: the typer apps, options, error handling.

Its own module so that the command modules (`app`, `store_commands`, `pbt`) import it
and not each other: `app` imports the others to register their commands, never the
reverse, so the CLI's imports form no cycle.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import typer

from flowopt.errors import EXIT_INVALID, FlowoptError

app = typer.Typer(name="flowopt", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Declarative, graph-based optimization workflows.")
runs_app = typer.Typer(no_args_is_help=True, help="Query past runs in the store.")
app.add_typer(runs_app, name="runs")

_STATE = {"debug": False}
StoreOption = typer.Option(None, "--store", envvar="FLOWOPT_STORE",
                           help="Store directory or SQLAlchemy URL [default: ./.flowopt].")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
SetOption = typer.Option([], "-s", "--set", metavar="KEY=VALUE",
                         help="Override a value, e.g. -s params.lr=0.01 -s nodes.train.with.steps=50.")


def _fail(message: str, hint: str | None, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(code)


def _guarded(work: Callable[[], Any]) -> Any:
    """Run a command body; turn flowopt errors into one line and an exit code."""
    try:
        return work()
    except FlowoptError as exc:
        if _STATE["debug"]:
            raise
        _fail(str(exc), exc.hint, exc.exit_code)
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem
        if _STATE["debug"]:
            raise
        _fail(f"{type(exc).__name__}: {exc}", "re-run with --debug for the traceback", EXIT_INVALID)


def _print_json(data: Any) -> None:
    """Strict JSON: non-finite numbers become strings (`render.json_safe`)."""
    from .render import json_safe

    typer.echo(json.dumps(json_safe(data), indent=2, default=str, allow_nan=False))
