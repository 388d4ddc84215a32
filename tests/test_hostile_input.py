"""Hostile and unlucky pipeline files and command lines (issue 17): each is refused at
`validate` time with exit code 2 and one clear line, quickly, and nothing is stored."""
from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app

HEAD = "pipeline: t\nplugins: [TOY_PLUGIN]\n"


def _refused(args: list[str], *fragments: str, store=None) -> str:
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    lines = output.split("\nhint:")[0].strip().splitlines()  # a hint may show the input
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in output, output
    if store is not None:
        assert not store.exists(), "refused input must not create the store"
    return output


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_node_id_longer_than_the_store_holds_is_refused_before_anything_runs(
        command, write_pipeline, store_dir):
    long_id = "n" * 201
    path = write_pipeline(HEAD + f"nodes:\n  {long_id}: {{kind: toy.number}}\n")
    args = [command, str(path)] + (["--store", str(store_dir)] if command == "run" else [])
    _refused(args, "201 characters long", "at most 200", store=store_dir)


def test_a_param_name_or_pipeline_name_longer_than_200_is_refused(write_pipeline):
    path = write_pipeline(HEAD + f"params: {{{'p' * 230}: 1}}\nnodes:\n  a: {{kind: toy.number}}\n")
    _refused(["validate", str(path)], "param name", "at most 200")
    path = write_pipeline(f"pipeline: {'q' * 201}\nplugins: [TOY_PLUGIN]\n"
                          "nodes:\n  a: {kind: toy.number}\n")
    _refused(["validate", str(path)], "pipeline", "200")


def test_a_metric_key_longer_than_200_fails_the_node_not_the_run(tmp_path):
    from flowopt.recording import RunInfo
    from flowopt.store import Store

    store = Store.open(tmp_path / "s")
    run_id = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
    with pytest.raises(ValueError, match="at most 200"):
        store.log_metric(run_id, "n", "k" * 201, 1.0, 0)
    store.log_metric(run_id, "n", "fine", 1.0, 0)
    store.end_run(run_id, "succeeded")
    assert [p.value for p in store.metrics(run_id, "fine")] == [1.0]


# -- YAML that would expand without bound, or is not plain text (items 6, 10, 11) -----------
def _billion_laughs(levels: int = 9) -> str:
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for previous, name in zip("abcdefghijklmnop", "bcdefghijklmnopq"[:levels - 1]):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text,fragment", [
    ("x: &a [*a]\n", "refers to itself"),
    ("x: &a {k: *a}\n", "refers to itself"),
    (_billion_laughs(), "more than 100,000 values"),
])
def test_documents_that_expand_without_bound_are_refused_with_little_memory(
        text, fragment, tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    tracemalloc.start()
    _refused(["validate", str(path)], fragment)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2 ** 20  # measured on the node graph, never expanded


@pytest.mark.parametrize("text", [
    "pipeline: t\nnodes: " + "[" * 950 + "]" * 950 + "\n",  # past Python's recursion limit
    "pipeline: t\nnodes: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
])
def test_nesting_deeper_than_100_levels_is_one_line(text, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    _refused(["validate", str(path)], "deeper than 100")


def test_an_alias_bomb_on_the_command_line_is_refused(write_pipeline):
    path = write_pipeline(HEAD + "params: {lr: 0.1, name: x}\n"
                                 "nodes:\n  a: {kind: toy.number, with: {value: '${params.lr}'}}\n")
    _refused(["validate", str(path), "-s", "params.lr=&a [*a]"], "params.lr", "refers to itself")
    _refused(["validate", str(path), "-s", "params.name=" + _billion_laughs().replace("\n", ", ")
              .join("{}")], "params.name")


def test_aliases_of_a_reasonable_size_still_work(write_pipeline):
    path = write_pipeline(HEAD + "params: {lr: &lr 0.1, other: *lr}\n"
                                 "nodes:\n  a: {kind: toy.number, with: {value: '${params.other}'}}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value,tag", [("!!binary aGVsbG8=", "!!binary"), ("!!set {a, b}", "!!set"),
                                       ("!!timestamp 2026-01-01", "!!timestamp"),
                                       ("!!omap [a: 1]", "!!omap")])
def test_tags_that_build_non_plain_values_are_refused_at_validate(value, tag, write_pipeline,
                                                                  store_dir):
    path = write_pipeline(HEAD + f"params: {{p: {value}}}\n"
                                 "nodes:\n  a: {kind: toy.number}\n")
    for command in (["validate", str(path)], ["run", str(path), "--store", str(store_dir)]):
        _refused(command, f"{path}:3", f"YAML tag not allowed: {tag}", store=store_dir)


def test_an_unquoted_date_is_text(write_pipeline, store_dir):
    path = write_pipeline(HEAD + "params: {when: 2026-01-01}\nnodes:\n  a: {kind: toy.number}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(store_dir), "--json"])
    assert result.exit_code == 0, result.output
    from flowopt.store import Store

    assert Store.open(store_dir, create=False).runs()[0].params == {"when": "2026-01-01"}


@pytest.mark.parametrize("encode,fragment", [
    (lambda t: t.encode("utf-16"), "UTF-16"),
    (lambda t: t.encode("utf-16-le"), "UTF-16"),
    (lambda t: t.replace("toy.number", "toy.\x00number").encode(), "NUL byte"),
    (lambda t: t.encode("latin-1").replace(b"t\n", b"\xe9\n", 1), "not UTF-8"),
])
def test_a_file_that_is_not_utf8_text_is_one_line(encode, fragment, tmp_path, toy_plugin):
    path = tmp_path / "p.yaml"
    path.write_bytes(encode(f"pipeline: t\nplugins: [{toy_plugin}]\n"
                            "nodes:\n  a: {kind: toy.number}\n"))
    _refused(["validate", str(path)], fragment)


# -- validation gaps (item 10): refused at validate, nothing stored ---------------------------
@pytest.mark.parametrize("body,fragments", [
    ("seed: 99999999999999999999999\n", ["key 'seed'", "the seed must be from"]),
    ("seed: true\n", ["key 'seed'", "whole number"]),
    ("params: {lr: 0.1}\nsearch: {lr: {low: 0.0, high: .inf}}\n",
     ["search.lr.high", "finite number"]),
    ("params: {lr: 0.1}\nsearch: {lr: {low: -.inf, high: 1.0}}\n", ["search.lr.low", "finite"]),
    ("params: {lr: 0.1}\nsearch: {lr: {low: .nan, high: 1.0}}\n", ["search.lr.low", "finite"]),
    ("params: {lr: 0.1}\nsearch: {lr: {low: false, high: 1.0}}\n", ["search.lr.low", "not true"]),
    ("params: {opt: adam}\nsearch: {opt: {choices: [1, 2]}}\n",
     ["search.opt.choices.0", "does not match the type of params.opt"]),
    ("params: {width: 3}\nsearch: {width: {choices: [3, 2.5]}}\n", ["search.width.choices.1"]),
    ("params: {opt: adam}\nsearch: {opt: {low: 1, high: 2}}\n", ["search.opt", "numeric param"]),
])
def test_validation_gaps_are_exit_2_with_the_key(body, fragments, write_pipeline, store_dir):
    path = write_pipeline(HEAD + body + "nodes:\n  a: {kind: toy.number}\n")
    for command in (["validate", str(path)], ["run", str(path), "--store", str(store_dir)]):
        _refused(command, *fragments, store=store_dir)


def test_a_boolean_is_not_a_number_in_a_node_field(write_pipeline, store_dir):
    path = write_pipeline(HEAD + "nodes:\n  b: {kind: toy.number}\n"
                                 "  a: {kind: toy.slow, in: {x: b}, with: {steps: true}}\n")
    _refused(["run", str(path), "--store", str(store_dir)], "nodes.a.with.steps", "not true/false",
             store=store_dir)
    ok = write_pipeline(HEAD + "params: {flag: true}\nsearch: {flag: {choices: [true, false]}}\n"
                               "nodes:\n  b: {kind: toy.number, with: {value: 2}}\n", "ok.yaml")
    assert CliRunner().invoke(app, ["validate", str(ok)]).exit_code == 0


@pytest.mark.parametrize("plugin", ["/etc/passwd", ".", "..foo", "''", "a..b", "my-nodes"])
def test_a_plugin_that_is_neither_a_python_file_nor_a_module_is_one_line(plugin, write_pipeline):
    path = write_pipeline(f"pipeline: t\nplugins: [{plugin}]\nnodes:\n  a: {{kind: toy.number}}\n")
    _refused(["validate", str(path)], "key 'plugins'", "neither a Python file")


# -- raw exceptions in store queries (item 11) -------------------------------------------------
@pytest.fixture
def one_run_store(tmp_path):
    from flowopt.graph import compile_pipeline
    from flowopt.scheduler import Scheduler
    from flowopt.spec import PipelineSpec
    from flowopt.store import Store

    store = Store.open(tmp_path / "s")
    Scheduler(compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "one", "params": {"lr": 0.5, "opt": "adam"},
        "nodes": {"a": {"kind": "toy.number"}, "s": {"kind": "toy.add", "in": {"a": "a"}}}})),
        store).run()
    return store, str(tmp_path / "s")


@pytest.mark.parametrize("where,fragment", [
    ("(" * 2000 + "params.lr > 0" + ")" * 2000, "nested parentheses"),
    ("not " * 2000 + "params.lr > 0", "nested parentheses or 'not'"),
    (" and ".join(["params.lr > 0"] * 300), "more than 200 comparisons"),
    (" or ".join(["metrics.s.total > 1"] * 5000), "longer than 10,000"),
    ("params.lr > 99999999999999999999999", "beyond 64 bits"),
    ("params.lr in (" + ", ".join(["1"] * 1500) + ")", "more than 1000 values"),
])
def test_where_expressions_past_the_parsers_limits_are_one_line(where, fragment, one_run_store):
    _, location = one_run_store
    output = _refused(["runs", "list", "--store", location, "--where", where], fragment)
    assert "RecursionError" not in output and "too large" not in output


def test_where_within_the_limits_still_works(one_run_store):
    _, location = one_run_store
    where = " and ".join(["params.lr > 0"] * 150) + " and " + "(" * 20 + "params.lr < 1" + ")" * 20
    result = CliRunner().invoke(app, ["runs", "list", "--store", location, "--where", where,
                                      "--json"])
    assert result.exit_code == 0, result.output
    import json

    assert len(json.loads(result.stdout)) == 1


@pytest.mark.parametrize("since", ["99999999999d", "99999999999999w"])
def test_since_an_age_beyond_the_calendar_is_one_line(since, one_run_store):
    _, location = one_run_store
    _refused(["runs", "list", "--store", location, "--since", since], "cannot read time")


def test_one_param_row_with_invalid_json_is_shown_as_unreadable(one_run_store):
    import json

    from sqlalchemy import text

    store, location = one_run_store
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE params SET value = '{not json' WHERE key = 'opt'"))
        conn.execute(text("UPDATE params SET value = 'nan?', value_num = 1.0 WHERE key = 'lr'"))
    for command in (["runs", "list"], ["runs", "show", store.runs()[0].run_id]):
        result = CliRunner().invoke(app, [*command, "--store", location, "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        run = data[0] if isinstance(data, list) else data
        assert run["params"] == {"lr": "<unreadable>", "opt": "<unreadable>"}
        assert run["metrics"]["s.total"] == 1.0  # the rest of the run reads as before
        shown = CliRunner().invoke(app, [*command, "--store", location], env={"COLUMNS": "300"})
        assert shown.exit_code == 0 and "<unreadable>" in shown.output


def test_names_over_200_characters_are_refused_by_any_front_end():
    import pydantic

    from flowopt.spec import PipelineSpec

    for data in ({"pipeline": "p", "nodes": {"n" * 201: {"kind": "toy.number"}}},
                 {"pipeline": "p", "params": {"p" * 201: 1}, "nodes": {"a": {"kind": "toy.number"}}}):
        with pytest.raises(pydantic.ValidationError, match="at most 200"):
            PipelineSpec.model_validate(data)
