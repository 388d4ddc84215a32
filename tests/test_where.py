"""The --where filter language: parsing, typed comparisons, errors that point, no injection."""
from __future__ import annotations

import pytest

from flowopt.graph import compile_pipeline
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.store import Store
from flowopt.store.where import And, Compare, Not, Or, WhereError, parse, tokenize


def graph(name="w", value=1.0, params=None, extra_node=False):
    nodes = {"a": {"kind": "toy.number", "with": {"value": value}},
             "s": {"kind": "toy.add", "in": {"a": "a"}}}
    if extra_node:
        nodes["t"] = {"kind": "toy.add", "in": {"a": "a"}}
    return compile_pipeline(PipelineSpec.model_validate(
        {"pipeline": name, "seed": 0, "params": params or {}, "nodes": nodes}))


@pytest.fixture
def store(store_location):
    """Four runs: lr numeric (0.001, 0.01, 0.1), one run with a string lr, various names."""
    store = Store.open(store_location)
    ids = {}
    for label, (name, value, params) in {
        "small": ("digits", 1.0, {"lr": 0.001, "opt": "adam", "width": 3}),
        "mid": ("digits", 2.0, {"lr": 0.01, "opt": "sgd", "width": 4}),
        "big": ("iris", 3.0, {"lr": 0.1, "opt": "adam", "width": 3}),
        "text": ("iris", 4.0, {"lr": "0.5", "opt": "it's", "flag": True}),
    }.items():
        ids[label] = Scheduler(graph(name, value, params), store).run().run_id
    store.ids = ids  # type: ignore[attr-defined]
    return store


def labels(store, where, **kwargs):
    found = [r.run_id for r in store.runs(where, **kwargs)]
    return {label for label, run_id in store.ids.items() if run_id in found}


def test_the_parser_builds_a_tree_with_sql_precedence():
    tree = parse("a = 1 or b = 2 and not c = 3")
    assert isinstance(tree, Or)
    assert isinstance(tree.items[1], And) and isinstance(tree.items[1].items[1], Not)
    grouped = parse("(a = 1 or b = 2) and c in (1, 2, 'x')")
    assert isinstance(grouped, And) and isinstance(grouped.items[0], Or)
    membership = grouped.items[1]
    assert isinstance(membership, Compare) and membership.op == "in"
    assert [v.value for v in membership.values] == [1, 2, "x"]


def test_literals_keep_their_types_and_quotes_unescape():
    values = [t.value for t in tokenize("1 2.5 -3e-2 'it''s' \"a\\\"b\" true")]
    assert values[:6] == [1, 2.5, -0.03, "it's", 'a"b', "true"]
    assert isinstance(values[0], int) and isinstance(values[1], float)


@pytest.mark.parametrize("text, column, message", [
    ("metrics.acc >", 14, "expected a number"),
    ("metrics.acc > 0.9 and", 22, "expected a field"),
    ("params.lr ~ 3", 11, "unexpected character"),
    ("(status = 'x'", 14, "expected ')'"),
    ("status = 'open", 10, "unterminated string"),
    ("status 'x'", 8, "expected a comparison"),
    ("", 1, "empty"),
])
def test_malformed_expressions_point_at_the_offending_column(text, column, message):
    with pytest.raises(WhereError) as caught:
        parse(text)
    assert f"column {column}" in str(caught.value) and message in str(caught.value)
    caret_line = caught.value.hint.splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1  # the hint draws a caret under the column


def test_params_compare_as_numbers_not_strings(store):
    # As strings '0.1' < '0.01' would be false and '0.5' would match: typed params fix both.
    assert labels(store, "params.lr > 0.005") == {"mid", "big"}
    assert labels(store, "params.lr < 0.05") == {"small", "mid"}
    assert labels(store, "params.width = 3.0") == {"small", "big"}


def test_string_params_compare_as_strings_and_only_match_strings(store):
    assert labels(store, "params.lr = '0.5'") == {"text"}
    assert labels(store, "params.opt = 'adam'") == {"small", "big"}
    assert labels(store, "params.opt != 'adam'") == {"mid", "text"}
    assert labels(store, "params.opt like 'ad%'") == {"small", "big"}
    assert labels(store, "params.opt in ('sgd', 'it''s')") == {"mid", "text"}
    assert labels(store, "params.flag = true") == {"text"}


def test_run_columns_boolean_logic_and_parentheses(store):
    assert labels(store, "pipeline = 'iris'") == {"big", "text"}
    assert labels(store, "pipeline = 'digits' or params.opt = 'it''s'") == {"small", "mid", "text"}
    assert labels(store, "not (pipeline = 'digits') and params.lr > 0") == {"big"}
    assert labels(store, "status = 'succeeded' and started_at > '2000-01-01'") == set(store.ids)
    assert labels(store, "started_at < '1d'") == set()  # started less than a day ago: all newer


def test_metrics_by_node_name_and_by_bare_name(store):
    assert labels(store, "metrics.s.total >= 3") == {"big", "text"}
    assert labels(store, "metrics.total >= 3") == {"big", "text"}  # only node s has 'total'
    assert labels(store, "metrics.total = 1 or metrics.total = 4") == {"small", "text"}


def test_a_bare_metric_name_means_each_runs_one_node_and_leaves_out_ambiguous_runs(store):
    both = Scheduler(graph("x", 5.0, extra_node=True), store).run().run_id
    result = store.runs("metrics.total > 0")
    assert both not in [r.run_id for r in result] and len(result) == 4
    assert "metrics.s.total, metrics.t.total" in result.notes[0]
    assert [r.run_id for r in store.runs("metrics.t.total > 0")] == [both]
    ordered = store.runs(order_by="metrics.total desc")
    assert [r.run_id for r in ordered][:4] == [store.ids[k] for k in ("text", "big", "mid", "small")]


def test_a_bare_metric_name_resolves_within_the_runs_being_listed(store):
    Scheduler(graph("x", 5.0, extra_node=True), store).run()
    with pytest.raises(WhereError, match="metrics.s.total, metrics.t.total"):
        store.runs("metrics.total > 0", pipeline="x")  # every run listed has two
    assert labels(store, "metrics.total > 0", pipeline="digits") == {"small", "mid"}
    assert store.runs("metrics.total > 0", pipeline="digits").notes == ()


def test_order_by_errors_name_the_order_by_option(store):
    Scheduler(graph("x", 5.0, extra_node=True), store).run()
    with pytest.raises(WhereError, match="malformed --order-by at column 1"):
        store.runs(order_by="metrics.total desc", pipeline="x")


def test_unknown_params_and_metrics_give_an_empty_result_with_a_note(store):
    result = store.runs("params.nope > 1")
    assert list(result) == [] and result.notes == ("no run has a param named 'nope'",)
    result = store.runs("metrics.accuracy > 0.5")
    assert list(result) == [] and "no run has a metric named 'accuracy'" in result.notes[0]


def test_type_mismatches_are_errors_at_the_literal(store):
    with pytest.raises(WhereError, match="column 17: metrics are numbers"):
        store.runs("metrics.total > 'high'")
    with pytest.raises(WhereError, match="pipeline is text"):
        store.runs("pipeline = 3")
    with pytest.raises(WhereError, match="unknown field 'color'"):
        store.runs("color = 'red'")


@pytest.mark.parametrize("attack", [
    "pipeline = 'x' or 1=1 --'",
    "pipeline = 'x''; DROP TABLE runs; --'",
    "params.`lr'; DROP TABLE params; --` > 0",
    "params.opt = '\" OR \"\"=\"'",
    "status = 'succeeded'' OR ''1''=''1'",
])
def test_injection_strings_are_values_never_sql(store, attack):
    try:
        result = store.runs(attack)
    except WhereError:
        result = []
    assert [r for r in result] == []  # nothing matched: the text was compared, not executed
    assert len(store.runs()) == 4  # and every table is still there
    assert store.run(store.ids["small"]).run.params["lr"] == 0.001


def test_order_by_metric_param_and_limit(store):
    order = [r.run_id for r in store.runs(order_by="metrics.total desc")]
    assert order == [store.ids[k] for k in ("text", "big", "mid", "small")]
    ascending = [r.run_id for r in store.runs(order_by="params.lr", limit=2)]
    assert ascending == [store.ids["small"], store.ids["mid"]]
    by_name = [r.run_id for r in store.runs("pipeline = 'iris'", order_by="-metrics.s.total")]
    assert by_name == [store.ids["text"], store.ids["big"]]
