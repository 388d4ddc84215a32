"""Terminal output never interprets user or store text as Rich markup (issue 17, item 9),
and --json output is strict JSON (item 12). Both through the CLI, as a user types it."""
from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app

WIDE = {"COLUMNS": "400"}  # no wrapping: the assertions read whole strings
HOSTILE_NAMES = ["p[/x]", "[link=https://example.invalid]click[/link]",
                 "[bold red]FAKE: all tests passed[/]"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def _pipeline(write_pipeline, name: str, message: str = "boom") -> str:
    return str(write_pipeline(
        f"pipeline: {json.dumps(name)}\nplugins: [TOY_PLUGIN]\n"
        "params: {tag: " + json.dumps(name) + "}\n"
        "nodes:\n  a: {kind: toy.number}\n"
        f"  bad: {{kind: toy.fail, in: {{x: a}}, with: {{message: {json.dumps(message)}}}}}\n"))


def test_a_node_error_with_brackets_is_shown_as_written_at_the_end_of_a_run_and_later(
        write_pipeline, store_dir):
    message = "cannot read [/data/train.csv]"
    path = _pipeline(write_pipeline, "plain", message)
    result = cli("run", path, "--store", str(store_dir))
    assert result.exit_code == 1, result.output
    assert "MarkupError" not in result.output and message in result.output
    shown = cli("runs", "show", json.loads(cli("runs", "list", "--store", str(store_dir),
                                                "--json").stdout)[0]["run_id"],
                "--store", str(store_dir))
    assert shown.exit_code == 0, shown.output
    assert message in shown.output


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_pipeline_name_with_markup_is_printed_literally_everywhere(name, write_pipeline,
                                                                     store_dir):
    path = _pipeline(write_pipeline, name)
    ran = cli("run", path, "--store", str(store_dir))
    assert ran.exit_code == 1 and name in ran.output, ran.output
    listed = cli("runs", "list", "--store", str(store_dir))
    assert listed.exit_code == 0, listed.output
    assert name in listed.output  # the whole name, brackets and all: nothing was styled
    run_id = json.loads(cli("runs", "list", "--store", str(store_dir), "--json").stdout)[0]["run_id"]
    for command in (["runs", "show", run_id], ["runs", "compare", run_id, run_id]):
        shown = cli(*command, "--store", str(store_dir))
        assert shown.exit_code == 0 and name in shown.output, (command, shown.output)


def test_kinds_summaries_and_progress_names_are_escaped(write_pipeline, store_dir):
    from flowopt.cli.progress import LiveProgress
    from flowopt.graph import compile_pipeline
    from flowopt.spec import load_spec
    from rich.console import Console

    path = _pipeline(write_pipeline, "[bold]x[/bold]")
    console = Console(record=True, width=200)
    progress = LiveProgress(console)
    progress.run_started(run_id="r" * 32, graph=compile_pipeline(load_spec(path)))
    progress.run_finished(run_id="r" * 32, status="succeeded")
    assert "[bold]x[/bold]" in console.export_text()


# -- --json is strict JSON (item 12) --------------------------------------------------------
def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_has_no_nan_or_infinity_literals(write_pipeline, store_dir):
    path = write_pipeline("pipeline: inf\nplugins: [TOY_PLUGIN]\nparams: {big: .inf}\nnodes:\n"
                          "  x: {kind: toy.number, with: {value: .inf}}\n"
                          "  s: {kind: toy.add, in: {a: x}}\n"
                          "  y: {kind: toy.number, with: {value: -.inf}}\n"
                          "  t: {kind: toy.add, in: {a: y}}\n"
                          "  z: {kind: toy.number, with: {value: .nan}}\n"
                          "  u: {kind: toy.add, in: {a: z}}\n")
    ran = cli("run", str(path), "--store", str(store_dir), "--json")
    assert ran.exit_code == 0, ran.output
    run = _strict(ran.stdout)
    assert run["metrics"]["s.total"] == "Infinity" and run["metrics"]["t.total"] == "-Infinity"
    assert run["metrics"]["u.total"] == "NaN"
    listed = _strict(cli("runs", "list", "--store", str(store_dir), "--json").stdout)
    assert listed[0]["metrics"]["s.total"] == "Infinity"
    assert listed[0]["params"]["big"] == "Infinity"
    for command in (["runs", "show", run["run_id"]],
                    ["runs", "compare", run["run_id"], run["run_id"]]):
        _strict(cli(*command, "--store", str(store_dir), "--json").stdout)
    assert math.isinf(float(run["metrics"]["s.total"]))  # still a number to float()


def test_human_output_shows_non_finite_values_as_such(write_pipeline, store_dir):
    path = write_pipeline("pipeline: inf\nplugins: [TOY_PLUGIN]\nnodes:\n"
                          "  x: {kind: toy.number, with: {value: .nan}}\n"
                          "  s: {kind: toy.add, in: {a: x}}\n")
    assert cli("run", str(path), "--store", str(store_dir)).exit_code == 0
    listed = cli("runs", "list", "--store", str(store_dir))
    assert "s.total=nan" in listed.output
