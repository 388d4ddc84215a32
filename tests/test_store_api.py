"""The Python query API: fo.Store(url).runs/run/metrics/compare, frozen records, DataFrames."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, update

import flowopt as fo
from flowopt.errors import StoreError
from flowopt.graph import compile_pipeline
from flowopt.recording import RunInfo, utcnow
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.store.schema import Run, Trial


def graph(name="api", value=1.0, params=None):
    return compile_pipeline(PipelineSpec.model_validate({
        "pipeline": name, "seed": 0, "params": params or {"lr": 0.1, "opt": "adam"},
        "nodes": {"a": {"kind": "toy.number", "with": {"value": value}},
                  "s": {"kind": "toy.add", "in": {"a": "a"}}}}))


@pytest.fixture
def store(store_location):
    return fo.Store(store_location)  # the public constructor opens (and creates) a store


def test_records_are_frozen_values_not_rows(store):
    run_id = Scheduler(graph(), store).run().run_id
    record = store.runs()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "failed"  # type: ignore[misc]
    assert record.run_id == run_id and record.params == {"lr": 0.1, "opt": "adam"}
    assert store.run(run_id).run == record


def test_filters_by_pipeline_status_since_and_limit(store):
    a = Scheduler(graph("one"), store).run().run_id
    b = Scheduler(graph("two"), store).run().run_id
    c = Scheduler(graph("two", 2.0), store).run().run_id
    assert [r.run_id for r in store.runs(pipeline="two")] == [c, b]
    assert [r.run_id for r in store.runs(limit=1)] == [c]
    assert len(store.runs(status="succeeded")) == 3 and store.runs(status="failed") == []
    assert len(store.runs(since="1h")) == 3
    assert store.runs(since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []
    with store.engine.begin() as conn:  # move one run a week back
        conn.execute(update(Run).where(Run.id == a).values(
            started_at=utcnow() - timedelta(days=7)))
    assert {r.run_id for r in store.runs(since="3d")} == {b, c}
    assert {r.run_id for r in store.runs(since="2000-01-01")} == {a, b, c}
    with pytest.raises(StoreError, match="cannot read time"):
        store.runs(since="yesterday")


def test_metrics_returns_the_series_or_the_final_value(store):
    run_id = Scheduler(graph(value=1.0), store).run().run_id
    points = store.metrics(run_id, "s.partial")
    assert [(p.step, p.value) for p in points] == [(0, 1.0), (1, 2.0), (2, 3.0)]
    for point in points:  # each point keeps the UTC time it was logged
        logged = point.logged_at.replace(tzinfo=point.logged_at.tzinfo or timezone.utc)
        assert abs(datetime.now(timezone.utc) - logged) < timedelta(minutes=5)
    assert [(p.step, p.value) for p in store.metrics(run_id[:5], "total")] == [(None, 1.0)]
    with pytest.raises(StoreError, match="has no metric 'totl'") as caught:
        store.metrics(run_id, "totl")
    assert "total" in (caught.value.hint or "")


def test_compare_puts_params_and_metrics_side_by_side(store):
    a = Scheduler(graph(value=1.0, params={"lr": 0.1, "opt": "adam"}), store).run().run_id
    b = Scheduler(graph(value=2.0, params={"lr": 0.1, "opt": "sgd"}), store).run().run_id
    comparison = store.compare([a[:8], b[:8]])
    assert comparison.params == {"lr": (0.1, 0.1), "opt": ("adam", "sgd")}
    assert comparison.metrics["s.total"] == (1.0, 2.0)
    shape = comparison.to_json()
    assert shape["different"] == {"params": ["opt"], "metrics": ["s.total", "s.partial"]}
    assert shape["params"]["opt"]["values"] == {a: "adam", b: "sgd"}
    with pytest.raises(StoreError, match="at least two"):
        store.compare([a])


def test_unknown_ids_suggest_close_matches_and_ambiguous_prefixes_list_candidates(store):
    run_id = Scheduler(graph(), store).run().run_id
    typo = run_id[:7] + ("0" if run_id[7] != "0" else "1")
    with pytest.raises(StoreError, match=f"no run with id '{typo}'") as caught:
        store.run(typo)
    assert run_id[:7] in caught.value.hint and "did you mean" in caught.value.hint
    ids = [run_id] + [Scheduler(graph(), store).run().run_id for _ in range(16)]
    first = [i[0] for i in ids]
    shared = next(c for c in first if first.count(c) > 1)
    with pytest.raises(StoreError, match="ambiguous") as caught:
        store.run(shared)
    candidates = [i for i in ids if i.startswith(shared)]
    assert all(c[:12] in str(caught.value) for c in candidates)


def test_trial_runs_are_hidden_by_default_and_trials_show_in_the_tuning_run(store):
    parent = Scheduler(graph("tuned"), store).run().run_id
    child = store.begin_run(RunInfo(pipeline="tuned", seed=0, params={"lr": 0.5}, spec={}))
    store.end_run(child, "succeeded")
    with store.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == child).values(parent_run_id=parent))
        conn.execute(insert(Trial), [{"run_id": parent, "node_id": "tune", "number": 0,
                                      "trial_run_id": child, "params": {"lr": 0.5},
                                      "objective": 0.75, "status": "succeeded", "seconds": 1.5}])
    assert [r.run_id for r in store.runs()] == [parent]
    assert {r.run_id for r in store.runs(trials=True)} == {parent, child}
    [trial] = store.run(parent).to_json()["trials"]
    assert trial == {**trial, "number": 0, "params": {"lr": 0.5}, "objective": 0.75,
                     "status": "succeeded", "trial_run_id": child}
    assert store.run(child).run.parent_run_id == parent


def test_to_pandas_gives_one_flat_row_per_run(store):
    pytest.importorskip("pandas")
    Scheduler(graph(value=1.0), store).run()
    Scheduler(graph(value=3.0, params={"lr": 0.01, "opt": "sgd"}), store).run()
    frame = store.runs(order_by="metrics.total").to_pandas()
    assert list(frame["metrics.s.total"]) == [1.0, 3.0]
    assert list(frame["params.opt"]) == ["adam", "sgd"]
    assert frame["params.lr"].dtype.kind == "f"


def test_a_long_filtered_ordered_listing_pairs_every_run_with_its_own_values(store):
    for i in range(80):
        run_id = store.begin_run(RunInfo(pipeline="long", seed=i, spec={},
                                         params={"i": i, "parity": "odd" if i % 2 else "even"}))
        store.log_metrics(run_id, "score", [("acc", i / 100, None)])
        store.end_run(run_id, "succeeded")
    runs = store.runs("params.parity = 'odd'", order_by="metrics.acc desc", limit=60)
    assert [r.params["i"] for r in runs] == list(range(79, 0, -2))
    assert all(r.metrics == {"score.acc": r.params["i"] / 100} for r in runs)
    top = store.runs(order_by="params.i", limit=55)
    assert [r.params["i"] for r in top] == list(range(55))
