"""Compiled graphs: frozen, deterministic, content-addressed."""
from __future__ import annotations

import gc
import random

import networkx as nx
import pytest

from flowopt.errors import GraphError
from flowopt.graph import _lexicographic_order, compile_pipeline, derive_seed
from flowopt.spec import PipelineSpec


def spec(**nodes):
    return PipelineSpec.model_validate({"pipeline": "g", "seed": 1, "nodes": nodes})


def test_cache_key_depends_on_config_and_inputs_but_not_on_node_ids():
    one = compile_pipeline(spec(a={"kind": "toy.number", "with": {"value": 1.0}},
                                s={"kind": "toy.add", "in": {"a": "a"}}))
    renamed = compile_pipeline(spec(z={"kind": "toy.number", "with": {"value": 1.0}},
                                    s={"kind": "toy.add", "in": {"a": "z"}}))
    other = compile_pipeline(spec(a={"kind": "toy.number", "with": {"value": 2.0}},
                                  s={"kind": "toy.add", "in": {"a": "a"}}))
    assert one.nodes["a"].cache_key != other.nodes["a"].cache_key
    assert one.nodes["s"].cache_key != other.nodes["s"].cache_key  # inputs propagate
    # toy.add is seeded and its seed derives from its id; toy.number's too. Deterministic
    # kinds (toy.loss) share keys across pipelines with different seeds:
    loss_a = compile_pipeline(PipelineSpec.model_validate(
        {"pipeline": "g", "seed": 1, "nodes": {"l": {"kind": "toy.loss"}}}))
    loss_b = compile_pipeline(PipelineSpec.model_validate(
        {"pipeline": "g", "seed": 2, "nodes": {"l": {"kind": "toy.loss"}}}))
    assert loss_a.nodes["l"].cache_key == loss_b.nodes["l"].cache_key
    assert renamed.nodes["s"].cache_key != ""  # compiles


def test_seeds_are_stable_and_distinct_per_node():
    assert derive_seed(0, "a") == derive_seed(0, "a")
    assert len({derive_seed(0, n) for n in "abcdefgh"}) == 8
    assert derive_seed(0, "a") != derive_seed(1, "a")


def test_the_compiled_graph_is_read_only():
    graph = compile_pipeline(spec(a={"kind": "toy.number"}))
    with pytest.raises(TypeError):
        graph.nodes["b"] = graph.nodes["a"]  # type: ignore[index]
    with pytest.raises(Exception):
        graph.nodes["a"].config["value"] = 3.0  # type: ignore[index]
    with pytest.raises(Exception):
        graph.dag.add_node("x")


def test_order_is_topological_and_deterministic():
    graph = compile_pipeline(spec(c={"kind": "toy.add", "in": {"a": "b.total"}},
                                  b={"kind": "toy.add", "in": {"a": "a"}},
                                  a={"kind": "toy.number"}))
    assert list(graph.nodes) == ["a", "b", "c"]


def test_config_is_validated_and_defaults_filled():
    graph = compile_pipeline(spec(a={"kind": "toy.slow", "in": {"x": "n"}, "with": {"steps": "3"}},
                                  n={"kind": "toy.number"}))
    assert dict(graph.nodes["a"].config) == {"steps": 3, "delay": 0.01}


def test_the_compile_order_is_networkx_lexicographic_topological_order():
    """Random DAGs with string names: the compiler's own order equals networkx's
    `lexicographical_topological_sort`, and a cycle gives None."""
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 40)
        names = [f"n{rng.randint(0, 999)}_{i}" for i in range(n)]
        rng.shuffle(names)
        dag = nx.DiGraph()
        dag.add_nodes_from(names)
        dag.add_edges_from((names[i], names[j]) for i in range(n) for j in range(i + 1, n)
                           if rng.random() < 0.15)
        assert _lexicographic_order(dag) == list(nx.lexicographical_topological_sort(dag))
        dag.add_edge(names[-1], names[0])   # closes a cycle when names[0] reaches names[-1]
        assert (_lexicographic_order(dag) is None) == (not nx.is_directed_acyclic_graph(dag))


@pytest.mark.parametrize("collecting", [True, False])
def test_compiling_leaves_the_garbage_collector_as_it_found_it(collecting):
    """The collector is paused while compiling (graph.compile_pipeline) and given back as
    it was — also when the pipeline is refused."""
    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        compile_pipeline(spec(a={"kind": "toy.number"}))
        assert gc.isenabled() is collecting
        with pytest.raises(GraphError):
            compile_pipeline(spec(a={"kind": "toy.add", "in": {"a": "b.total"}},
                                  b={"kind": "toy.add", "in": {"a": "a.total"}}))
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
