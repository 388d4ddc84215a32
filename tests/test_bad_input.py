"""Every kind of bad input: exit code 2, one clear line naming file:line and key,
no traceback, and nothing written to the store (README, "Command line")."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app

GOOD_HEAD = "pipeline: t\nplugins: [TOY_PLUGIN]\n"

CASES = {
    "malformed YAML": (GOOD_HEAD + "nodes:\n  a: {kind: toy.number\n", ["malformed YAML"], 4),
    "duplicate key": (GOOD_HEAD + "nodes:\n  a: {kind: toy.number}\n  a: {kind: toy.number}\n",
                      ["duplicate key 'a'"], 5),
    "unknown top-level key": (GOOD_HEAD + "nodez: {}\nnodes:\n  a: {kind: toy.number}\n",
                              ["unknown key 'nodez'"], 3),
    "unknown kind": (GOOD_HEAD + "nodes:\n  a: {kind: toy.numbr}\n",
                     ["unknown node kind 'toy.numbr'", "did you mean 'toy.number'"], 4),
    "missing node in binding": (GOOD_HEAD + "nodes:\n  a: {kind: toy.add, in: {a: nope}}\n",
                                ["no node 'nope'", "nodes.a.in.a"], 4),
    "missing port in binding": (GOOD_HEAD + "nodes:\n  x: {kind: toy.number}\n"
                                "  a: {kind: toy.add, in: {a: x.nope}}\n",
                                ["has no output 'nope'"], 5),
    "unknown input port": (GOOD_HEAD + "nodes:\n  x: {kind: toy.number}\n"
                           "  a: {kind: toy.add, in: {a: x, c: x}}\n",
                           ["has no input 'c'"], 5),
    "unbound input": (GOOD_HEAD + "nodes:\n  a: {kind: toy.add}\n", ["input 'a'", "is not bound"], 4),
    "port type mismatch": (GOOD_HEAD + "nodes:\n  x: {kind: toy.number}\n  s: {kind: toy.add, in: {a: x}}\n"
                           "  n: {kind: toy.needs_loss, in: {loss: s.total}}\n",
                           ["port type mismatch", "takes a loss", "gives a metric"], 6),
    "cycle": (GOOD_HEAD + "nodes:\n  a: {kind: toy.add, in: {a: b.total}}\n"
              "  b: {kind: toy.add, in: {a: a.total}}\n", ["cycle: a → b → a"], 4),
    "unknown with field": (GOOD_HEAD + "nodes:\n  a:\n    kind: toy.number\n    with: {valu: 3}\n",
                           ["unknown field 'valu'", "fields: value", "nodes.a.with.valu"], 6),
    "mistyped with field": (GOOD_HEAD + "nodes:\n  a:\n    kind: toy.number\n    with:\n      value: abc\n",
                            ["bad value 'abc'", "nodes.a.with.value"], 7),
    "undefined param": (GOOD_HEAD + "nodes:\n  a: {kind: toy.number, with: {value: '${params.lr}'}}\n",
                        ["${params.lr} is not defined"], 4),
    "node id not an identifier": (GOOD_HEAD + "nodes:\n  my-node: {kind: toy.number}\n",
                                  ["'my-node' is not an identifier"], 4),
    "empty pipeline": (GOOD_HEAD + "nodes: {}\n", ["the pipeline is empty"], 3),
    "python tag": (GOOD_HEAD + "nodes:\n  a: !!python/object/apply:os.system ['echo pwned']\n",
                   ["YAML tag not allowed", "python/object/apply"], 4),
    "missing plugin file": ("pipeline: t\nplugins: [nowhere.py]\nnodes:\n  a: {kind: toy.number}\n",
                            ["plugin file not found"], 2),
    "not a mapping": ("- just\n- a list\n", ["must be a mapping"], 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_with_location_and_exit_2(case, write_pipeline, store_dir):
    text, fragments, line = CASES[case]
    path = write_pipeline(text)
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(store_dir)])
    message = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == 2, result.output
    first = message.strip().splitlines()[0]
    assert first.startswith(f"error: {path}:{line}"), first
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in result.output
    assert not store_dir.exists(), "bad input must not create or write the store"


def test_python_tag_is_never_executed(write_pipeline, tmp_path, store_dir):
    marker = tmp_path / "pwned"
    path = write_pipeline(GOOD_HEAD + f"nodes:\n  a: !!python/object/apply:os.system ['touch {marker}']\n")
    CliRunner().invoke(app, ["run", str(path), "--store", str(store_dir)])
    assert not marker.exists()


@pytest.mark.parametrize("override,fragment", [
    ("params.lr", "malformed override"),
    ("=3", "malformed override"),
    ("params.nope=1", "unknown param"),
    ("params.lr=abc", "expected float"),
    ("nodes.ghost.with.value=1", "no node 'ghost'"),
    ("nodes.a.with.value=abc", "bad value 'abc'"),
    ("colour=red", "overrides start with"),
])
def test_bad_override_exit_2(override, fragment, write_pipeline, store_dir):
    path = write_pipeline(GOOD_HEAD + "params: {lr: 0.1}\nnodes:\n  a: {kind: toy.number, with: {value: '${params.lr}'}}\n")
    result = CliRunner().invoke(app, ["run", str(path), "-s", override, "--store", str(store_dir)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert not store_dir.exists()


def test_missing_pipeline_file_exit_2(tmp_path, store_dir):
    result = CliRunner().invoke(app, ["run", str(tmp_path / "absent.yaml"), "--store", str(store_dir)])
    assert result.exit_code == 2
    assert "pipeline file not found" in result.output


def test_missing_data_file_exit_2(write_pipeline, store_dir, tmp_path):
    path = write_pipeline("pipeline: t\nnodes:\n  d: {kind: data.csv, with: {path: "
                          f"'{tmp_path / 'absent.csv'}', target: y}}}}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(store_dir)])
    assert result.exit_code == 2, result.output
    assert "nodes.d.with.path" in result.output
    assert not store_dir.exists()
