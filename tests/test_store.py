"""The SQL store records every run, execution, artifact and lineage edge."""
from __future__ import annotations

import json

import pytest

import flowopt as fo
from flowopt.errors import StoreError
from flowopt.graph import compile_pipeline
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.store import Store


def graph(value=2.0, params=None):
    return compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "st", "seed": 0, "params": params or {"lr": 0.5, "width": 3, "name": "x"},
        "nodes": {"a": {"kind": "toy.number", "with": {"value": value}},
                  "s": {"kind": "toy.add", "in": {"a": "a"}}}}))


@pytest.fixture
def store(store_location):
    """Every test here runs on SQLite and on PostgreSQL."""
    return Store.open(store_location)


def test_runs_are_listed_newest_first_with_typed_params_and_final_metrics(store):
    first = Scheduler(graph(1.0), store).run()
    second = Scheduler(graph(2.0), store).run()
    runs = store.runs()
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    assert runs[0].params == {"lr": 0.5, "width": 3, "name": "x"}
    assert isinstance(runs[0].params["lr"], float) and isinstance(runs[0].params["width"], int)
    assert runs[0].metrics == {"s.total": 2.0, "s.partial": 4.0}
    assert set(runs[0].to_json()) >= {"run_id", "pipeline", "status", "started_at", "ended_at",
                                       "params", "metrics"}


def test_run_detail_has_lineage_between_executions(store):
    result = Scheduler(graph(), store).run()
    detail = store.run(result.run_id[:6])  # a unique prefix is enough
    nodes = {n.id: n for n in detail.nodes}
    assert [n.id for n in detail.nodes] == ["a", "s"]
    assert nodes["s"].inputs == nodes["a"].outputs  # s consumed exactly what a produced
    assert {a.node for a in detail.artifacts} == {"a", "s"}
    shape = detail.to_json()
    assert set(shape) >= {"run_id", "pipeline", "status", "params", "metrics", "nodes",
                          "artifacts", "trials"}
    assert set(shape["nodes"][0]) >= {"id", "kind", "status", "cache_key", "seconds", "inputs",
                                      "outputs", "error"}
    assert set(shape["artifacts"][0]) >= {"id", "node", "port", "type", "size", "hash"}
    json.dumps(shape)


def test_cached_run_reuses_artifacts_of_the_first(store):
    first = Scheduler(graph(), store).run()
    second = Scheduler(graph(), store).run()
    a1 = {n.id: n for n in store.run(first.run_id).nodes}
    a2 = {n.id: n for n in store.run(second.run_id).nodes}
    assert a2["s"].status == "cached" and a2["s"].outputs == a1["s"].outputs
    assert store.run(second.run_id).run.metrics["s.total"] == 2.0


def test_series_are_queryable(store):
    result = Scheduler(graph(1.0), store).run()
    assert store.metric_series(result.run_id, "s.partial") == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_large_artifacts_are_blobs_and_reload_identically(store, tmp_path):
    big = list(range(5000))
    with fo.Pipeline("blob") as p:
        from flowopt.registry import REGISTRY, NodeFactory

        NodeFactory(REGISTRY.get("toy.number"))(value=1.0)
    result = p.run(store=store)
    ref = store.save_outputs("x", {"v": big})["v"]
    assert store.blobs.exists(ref.hash)
    assert store.load(ref) == big
    assert not list(store.blobs.root.rglob(".tmp-*"))
    assert result.status == "succeeded"


def test_failed_run_records_error(store):
    g = compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "f", "nodes": {"a": {"kind": "toy.number"},
                                   "b": {"kind": "toy.fail", "in": {"x": "a"}}}}))
    result = Scheduler(g, store).run()
    detail = store.run(result.run_id)
    assert detail.run.status == "failed"
    assert "RuntimeError: boom" in detail.run.error
    assert {n.id: n.status for n in detail.nodes} == {"a": "succeeded", "b": "failed"}


def test_unknown_and_ambiguous_run_ids_are_clear_errors(store):
    ids = [Scheduler(graph(), store).run().run_id for _ in range(17)]
    with pytest.raises(StoreError, match="no run with id"):
        store.run("zzzz")
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 17 runs, 16 hex digits
    with pytest.raises(StoreError, match="ambiguous"):
        store.run(shared)


def test_opening_a_missing_store_for_queries_does_not_create_it(tmp_path):
    with pytest.raises(StoreError, match="no flowopt store"):
        Store.open(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_a_store_from_a_newer_flowopt_is_refused(store):
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer than this flowopt"):
        Store.open(store.location)
    from flowopt.store.migrate import HEAD

    with store.engine.begin() as conn:  # leave it openable for the fixture's clean-up
        conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": HEAD})
