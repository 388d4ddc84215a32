"""The Python front end records the same graph a YAML file describes."""
from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import flowopt as fo
from flowopt.errors import FlowoptError
from flowopt.graph import compile_pipeline
from flowopt.registry import REGISTRY
from flowopt.spec import load_spec

number = REGISTRY.get("toy.number")
add = REGISTRY.get("toy.add")
split = REGISTRY.get("toy.split")


def factory(kind):
    from flowopt.registry import NodeFactory

    return NodeFactory(kind)


num, plus, halves = factory(number), factory(add), factory(split)


def test_calls_record_nodes_with_default_ids_and_bindings():
    with fo.Pipeline("p", seed=3) as p:
        lr = fo.param("lr", 0.5, low=0.1, high=1.0, log=True)
        a = num(value=lr)
        b = num(value=2.0)
        total = plus(a, b)
    spec = p.spec
    assert list(spec.nodes) == ["number", "number_2", "add"]
    assert spec.nodes["add"].inputs == {"a": "number", "b": "number_2"}
    assert spec.nodes["number"].config == {"value": "${params.lr}"}
    assert spec.search["lr"].log is True
    assert total.total.reference == "add.total"


def test_unpacking_yields_data_ports_in_order():
    with fo.Pipeline("p") as p:
        left, right = halves(num())
        plus(left, right)
    assert p.spec.nodes["add"].inputs == {"a": "split.left", "b": "split.right"}


def test_unknown_port_attribute_is_a_clear_error():
    with fo.Pipeline("p"):
        handle = num()
        with pytest.raises(AttributeError, match="has no output 'nope'"):
            handle.nope


def test_factories_outside_a_pipeline_explain_themselves():
    with pytest.raises(FlowoptError, match="inside `with fo.Pipeline"):
        num()


def test_yaml_and_python_compile_to_identical_graphs(tmp_path, toy_plugin):
    path = tmp_path / "p.yaml"
    path.write_text(f"""
pipeline: same
seed: 7
plugins: [{toy_plugin}]
params: {{x: 2.0}}
search: {{x: {{low: 0.5, high: 4.0}}}}
nodes:
  first: {{kind: toy.number, with: {{value: '${{params.x}}'}}}}
  second: {{kind: toy.number, with: {{value: 5.0}}}}
  total: {{kind: toy.add, in: {{a: first, b: second}}}}
""")
    with fo.Pipeline("same", seed=7, plugins=[toy_plugin]) as p:
        x = fo.param("x", 2.0, low=0.5, high=4.0)
        first = num(value=x, node_id="first")
        plus(first, num(value=5.0, node_id="second"), node_id="total")
    from_yaml = compile_pipeline(load_spec(path))
    assert p.graph.cache_keys() == from_yaml.cache_keys()
    assert {n.id: dict(n.config) for n in p.graph} == {n.id: dict(n.config) for n in from_yaml}
    assert fo.Pipeline.from_yaml(path).spec == p.spec


values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def pipelines(draw):
    """Random DAGs of toy nodes: numbers, sums of earlier outputs, params in configs."""
    p = fo.Pipeline("gen", seed=draw(st.integers(0, 2**31 - 1)))
    with p:
        params = [fo.param(f"p{i}", draw(values)) for i in range(draw(st.integers(0, 3)))]
        outputs = []
        for _ in range(draw(st.integers(1, 12))):
            if outputs and draw(st.booleans()):
                a = draw(st.sampled_from(outputs))
                b = draw(st.sampled_from(outputs)) if draw(st.booleans()) else None
                outputs.append(plus(a, b).total)
            else:
                value = draw(st.sampled_from(params)) if params and draw(st.booleans()) else draw(values)
                outputs.append(num(value=value))
    return p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines())
def test_python_yaml_round_trip_preserves_graph(tmp_path_factory, pipeline):
    path = tmp_path_factory.mktemp("rt") / "p.yaml"
    pipeline.to_yaml(path)
    reloaded = fo.Pipeline.from_yaml(path)
    assert reloaded.spec == pipeline.spec
    assert reloaded.graph.cache_keys() == pipeline.graph.cache_keys()


def test_a_param_change_invalidates_exactly_the_nodes_it_reaches():
    def build(x):
        with fo.Pipeline("p") as p:
            v = fo.param("v", x)
            a = num(value=v)
            b = num(value=1.0)
            plus(a, b, node_id="ab")
            plus(b, node_id="bb")
        return p.graph

    before, after = build(1.0).cache_keys(), build(2.0).cache_keys()
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"number", "ab"}
    assert build(1.0).reached_by("v") == {"number", "ab"}


def test_default_ids_skip_ids_taken_explicitly_and_never_repeat():
    with fo.Pipeline("p") as p:
        num()                        # number
        num(node_id="number_3")      # taken explicitly, ahead of the counter
        num()                        # number_2
        num()                        # number_4: number_3 is skipped
        num(node_id="number_2")      # taken already: gets a suffix of its own
        num()                        # number_5
    assert list(p.spec.nodes) == ["number", "number_3", "number_2", "number_4",
                                  "number_2_2", "number_5"]


def test_ids_stay_unique_and_numbered_in_order_over_a_long_recording():
    with fo.Pipeline("p") as p:
        for _ in range(3000):
            num()
            plus()
    ids = list(p._data["nodes"])
    assert len(set(ids)) == len(ids) == 6000
    assert ids[-2:] == ["number_3000", "add_3000"]


def test_a_pipeline_loaded_from_yaml_numbers_new_nodes_after_its_own(tmp_path, toy_plugin):
    with fo.Pipeline("p", plugins=[str(toy_plugin)]) as p:
        num()
        num()
    path = tmp_path / "p.yaml"
    p.to_yaml(path)
    loaded = fo.Pipeline.from_yaml(path)
    with loaded:
        num()
    assert list(loaded.spec.nodes) == ["number", "number_2", "number_3"]


def test_each_node_records_the_line_of_the_user_code_that_called_the_factory():
    with fo.Pipeline("p") as p:
        num(); line = sys._getframe().f_lineno  # noqa: E702
    assert p._lines.file == __file__
    assert p._lines.lines[("nodes", "number")] == line
