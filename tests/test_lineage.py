"""Lineage across runs, down to the source files (with content hashes) nodes read."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import FilePath

import flowopt as fo
from flowopt.errors import StoreError
from flowopt.graph import compile_pipeline
from flowopt.runner import execute
from flowopt.spec import PipelineSpec
from flowopt.store import Store


@fo.node("lineagetest.read", metrics=["size"])
def read(path: FilePath) -> float:
    """A source node: reads a file (its content hash is part of the cache key)."""
    return float(len(Path(path).read_bytes()))


@fo.node("lineagetest.scale")
def scale(x: fo.Metric, factor: float = 1.0) -> float:
    return x * factor


def pipeline(path: Path, factor: float = 2.0, name: str = "lin"):
    return compile_pipeline(PipelineSpec.model_validate({
        "pipeline": name, "seed": 0, "nodes": {
            "src": {"kind": "lineagetest.read", "with": {"path": str(path)}},
            "double": {"kind": "lineagetest.scale", "in": {"x": "src.size"}, "with": {"factor": 2.0}},
            "final": {"kind": "lineagetest.scale", "in": {"x": "double"},
                      "with": {"factor": factor}}}}))


@pytest.fixture
def store(store_location):
    return Store.open(store_location)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("x,y\n1,2\n3,4\n")
    return path


def test_upstream_crosses_runs_and_ends_at_the_source_file_with_its_hash(store, data_file):
    first = execute(pipeline(data_file, 3.0), store=store)
    second = execute(pipeline(data_file, 5.0), store=store)  # src and double come from cache
    final = store.run(second.run_id).nodes[-1].outputs[0]
    lineage = store.lineage(final, "upstream")
    produced_in = {(e.node, e.port): e.run_id for e in lineage.upstream}
    assert produced_in == {("src", "size"): first.run_id, ("double", "value"): first.run_id}
    assert lineage.run_id == second.run_id and lineage.artifact.node == "final"
    [source] = lineage.sources
    expected = hashlib.blake2b(data_file.read_bytes(), digest_size=16).hexdigest()
    assert (source.node, source.field, source.hash) == ("src", "path", expected)
    assert Path(source.path) == data_file.resolve() and source.size == data_file.stat().st_size
    assert lineage.downstream == ()


def test_editing_the_source_file_gives_a_new_ancestry_with_the_new_hash(store, data_file):
    execute(pipeline(data_file), store=store)
    data_file.write_text("x,y\n1,2\n3,4\n5,6\n")
    run = execute(pipeline(data_file), store=store)
    lineage = store.lineage(f"{run.run_id}:final", "upstream")
    assert {e.run_id for e in lineage.upstream} == {run.run_id}  # nothing reused
    assert lineage.sources[0].hash == hashlib.blake2b(data_file.read_bytes(),
                                                      digest_size=16).hexdigest()


def test_downstream_lists_every_consumer_in_every_run(store, data_file):
    first = execute(pipeline(data_file, 3.0), store=store)
    second = execute(pipeline(data_file, 5.0), store=store)
    size = store.resolve_artifact_id(f"{first.run_id[:8]}:src.size")
    down = store.lineage(size, "downstream").downstream
    uses = {(e.node, e.run_id, e.status) for e in down}
    assert ("double", first.run_id, "succeeded") in uses
    assert ("double", second.run_id, "cached") in uses  # re-used in the second run
    assert ("final", first.run_id, "succeeded") in uses and ("final", second.run_id, "succeeded") in uses
    finals = {e.artifact for e in down if e.node == "final"}
    assert len(finals) == 2  # the two runs made two different final artifacts


def test_a_deep_chain_has_its_whole_ancestry_in_order(store):
    nodes = {"n0": {"kind": "toy.number", "with": {"value": 1.0}}}
    for i in range(1, 150):
        nodes[f"n{i}"] = {"kind": "lineagetest.scale", "in": {"x": f"n{i - 1}"}}
    graph = compile_pipeline(PipelineSpec.model_validate({"pipeline": "deep", "nodes": nodes}))
    run = execute(graph, store=store)
    lineage = store.lineage(f"{run.run_id}:n149", "upstream")
    assert [e.node for e in lineage.upstream] == [f"n{i}" for i in range(148, -1, -1)]


def test_artifact_names_resolve_by_prefix_and_run_node_with_clear_errors(store, data_file):
    run = execute(pipeline(data_file), store=store)
    full = store.resolve_artifact_id(f"{run.run_id[:6]}:double")
    assert store.resolve_artifact_id(full[:10]) == full
    assert store.lineage(full[:10]).artifact.id == full
    with pytest.raises(StoreError, match="has no output 'nope'"):
        store.resolve_artifact_id(f"{run.run_id}:nope")
    with pytest.raises(StoreError, match="no artifact with id") as caught:
        store.resolve_artifact_id(full[:6] + "zz")
    assert full[:6] in (caught.value.hint or "")  # a close match is suggested
    with pytest.raises(StoreError, match="unknown lineage direction"):
        store.lineage(full, "sideways")
