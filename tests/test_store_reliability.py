"""What unlucky input and unlucky timing cannot do to the store (issue 17, data loss):
non-finite metrics are kept, one bad row never loses the others, error text of any shape
is storable, the metric buffer stays small and bounded."""
from __future__ import annotations

import math
import os
import time
import tracemalloc

import pytest

from flowopt.graph import compile_pipeline
from flowopt.recording import RunInfo
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.store import Store


def _graph(value: float):
    return compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "nonfinite", "nodes": {
            "x": {"kind": "toy.number", "with": {"value": value}},
            "s": {"kind": "toy.add", "in": {"a": "x"}},
            "y": {"kind": "toy.number", "with": {"value": 2.0}},
            "t": {"kind": "toy.add", "in": {"a": "y"}}}}))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_metric_is_stored_as_it_is_and_the_run_keeps_everything(
        store_location, value):
    store = Store.open(store_location)
    result = Scheduler(_graph(value), store).run()
    assert result.status == "succeeded"
    run = store.run(result.run_id)
    assert run.run.status == "succeeded"
    assert [n.status for n in run.nodes] == ["succeeded"] * 4
    assert _same(run.run.metrics["s.total"], value)
    assert run.run.metrics["t.total"] == 2.0  # the good node's rows are all there
    series = [p.value for p in store.metrics(result.run_id, "s.partial")]
    assert len(series) == 3 and all(_same(v, value) for v in series)  # value + step is value
    assert len(run.artifacts) == 4


def test_a_nan_objective_leaves_every_trial_recorded(tmp_path):
    graph = compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "tn", "params": {"v": 1.0}, "search": {"v": {"choices": [1.0, math.nan, 3.0]}},
        "nodes": {"x": {"kind": "toy.number", "with": {"value": "${params.v}"}},
                  "s": {"kind": "toy.add", "in": {"a": "x"}},
                  "tune": {"kind": "tuner.grid", "in": {"objective": "s.total"},
                           "with": {"mode": "max", "parallel": 1, "trials": 3}}}}))
    store = Store.open(tmp_path / "st")
    result = Scheduler(graph, store).run()
    runs = store.runs(trials=True)
    assert len(runs) == 4 and all(r.status == "succeeded" for r in runs)  # tuning run + 3
    trials = store.run(result.run_id).trials
    assert sorted(str(t.objective) for t in trials) == ["1.0", "3.0", "nan"] or \
        sorted(str(t.objective) for t in trials) == ["1.0", "3.0", "None"]
    assert result.best["objective"] == 3.0


def test_one_row_the_database_refuses_does_not_take_the_others_with_it(store_location):
    store = Store.open(store_location)
    run_id = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
    store.log_metric(run_id, "n", "good", 1.0, 0)
    store.log_metric("no-such-run", "n", "orphan", 2.0, 0)  # violates the foreign key
    store.log_metric(run_id, "n", "good", 3.0, 1)
    store.end_run(run_id, "succeeded")
    assert [p.value for p in store.metrics(run_id, "good")] == [1.0, 3.0]
    assert store.run(run_id).run.status == "succeeded"
    assert store.dropped_rows == 1


def test_error_text_with_nul_and_lone_surrogates_is_stored(store_location):
    store = Store.open(store_location)
    run_id = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
    store.end_run(run_id, "failed", error="cannot read \x00 file \udcff [/data/x]")
    error = store.run(run_id).run.error
    assert "cannot read" in error and "[/data/x]" in error and "\x00" not in error


def test_a_fast_logger_is_flushed_by_size_not_only_by_time(tmp_path, monkeypatch):
    import flowopt.store.store as store_module

    monkeypatch.setattr(store_module, "FLUSH_ROWS", 100)
    monkeypatch.setattr(store_module, "BLOCK_ROWS", 400)
    monkeypatch.setattr(store_module, "FLUSH_SECONDS", 3600.0)  # the clock never says "flush"
    import flowopt.store.liveness as liveness

    monkeypatch.setattr(liveness, "FLUSH_SECONDS", 3600.0)
    store = Store.open(tmp_path / "s")
    run_id = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
    store._last_flush = float("inf")
    most = 0
    for step in range(3000):
        store.log_metric(run_id, "n", "loss", float(step), step)
        most = max(most, store._row_count)
    assert most <= 400  # bounded: the flusher was woken, the logger wrote when far ahead
    other = Store.open(tmp_path / "s", create=False)
    written = len(other.metrics(run_id, "loss"))
    assert written >= 3000 - 400  # in the database already, long before any clock tick
    store.end_run(run_id, "succeeded")


def test_a_buffered_metric_point_takes_under_100_bytes(tmp_path, monkeypatch):
    import flowopt.store.store as store_module

    monkeypatch.setattr(store_module, "FLUSH_ROWS", 10 ** 9)
    store = Store.open(tmp_path / "s")
    run_id = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
    store._heartbeat.stop()  # nothing flushes while we measure
    points = 50_000
    values = [float(i) * 0.5 for i in range(points)]  # made before measuring: not buffer cost
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for step, value in enumerate(values):
        store.log_metric(run_id, "train", "loss", value, step)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert (after - before) / points < 100
    store.end_run(run_id, "succeeded")
    assert len(store.metrics(run_id, "loss")) == points


def _cli(*args: str):
    from typer.testing import CliRunner

    from flowopt.cli.app import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("command", [["runs", "list"], ["store", "gc"], ["store", "check"]])
def test_a_zero_byte_database_is_refused_not_recreated(tmp_path, command):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "flowopt.db").write_bytes(b"")
    result = _cli(*command, "--store", str(folder))
    assert result.exit_code == 2, result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error: ") and "is empty (0 bytes)" in first
    assert (folder / "flowopt.db").stat().st_size == 0  # left exactly as it was
    with pytest.raises(Exception, match="0 bytes"):
        Store.open(f"sqlite:///{folder / 'flowopt.db'}")


def test_a_truncated_database_says_it_is_damaged(tmp_path):
    from flowopt.errors import StoreError

    store = Store.open(tmp_path / "store")
    Scheduler(_graph(1.0), store).run()
    store.close()
    database = tmp_path / "store" / "flowopt.db"
    for leftover in ("flowopt.db-wal", "flowopt.db-shm"):
        (tmp_path / "store" / leftover).unlink(missing_ok=True)
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 3])
    with pytest.raises(StoreError) as caught:
        Store.open(tmp_path / "store", create=False).runs()
    assert "malformed" in str(caught.value) or "not a database" in str(caught.value)
    assert "damaged" in caught.value.hint and "backup" in caught.value.hint


# -- gc and live runs (item 3) -------------------------------------------------------------
def _start_run_with_unrecorded_blob(store, start: int = 0):
    """A running run that has written a blob whose artifact row is not in the database yet
    (the row lands with the next flush, up to a second later)."""
    run_id = store.begin_run(RunInfo(pipeline="live", seed=0, params={}, spec={}))
    ref = store.save_outputs("big", {"value": list(range(start, start + 2000))})["value"]
    return run_id, ref


def _finish(store, run_id, ref) -> None:
    from flowopt.recording import ExecutionRecord

    store.record_execution(ExecutionRecord(run_id=run_id, node_id="big", kind="toy.number",
                                           kind_version=1, cache_key="c" * 32,
                                           status="succeeded", config={},
                                           outputs={"value": ref}))
    store.end_run(run_id, "succeeded")


def test_gc_with_min_age_0_keeps_a_blob_a_running_run_has_not_recorded_yet(store_location):
    writer = Store.open(store_location)
    run_id, ref = _start_run_with_unrecorded_blob(writer)
    writer._heartbeat.stop()
    # A long run: it started an hour ago and wrote this blob half an hour ago, so neither
    # --min-age 0 nor "written since gc began" protects it; only its being live does.
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from flowopt.store.schema import Run

    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    writer._write(lambda conn: conn.execute(update(Run).where(Run.id == run_id)
                                            .values(started_at=hour_ago)))
    half_hour_ago = time.time() - 1800
    os.utime(writer.blobs.path(ref.hash), (half_hour_ago, half_hour_ago))
    # another process: it sees a running run and a blob no row references yet
    report = Store.open(store_location, create=False).gc(dry_run=False, min_age=0)
    assert report.blobs == [] and report.kept_live == 1
    assert writer.blobs.exists(ref.hash)
    _finish(writer, run_id, ref)
    assert writer.check().ok and writer.load(ref) == list(range(2000))


def test_writing_content_that_exists_refreshes_it_so_gc_sees_a_live_blob(store_location):
    import os
    import time

    store = Store.open(store_location)
    garbage = store.save_outputs("old", {"value": list(range(2000))})["value"]  # never recorded
    store._pending_artifacts.clear()
    long_ago = time.time() - 7200
    os.utime(store.blobs.path(garbage.hash), (long_ago, long_ago))
    run_id, ref = _start_run_with_unrecorded_blob(store)  # the same content, again
    assert ref.hash == garbage.hash
    assert store.blobs.path(ref.hash).stat().st_mtime > time.time() - 60
    _finish(store, run_id, ref)
    collector = Store.open(store_location, create=False)
    assert collector.gc(dry_run=False).blobs == []  # default --min-age 1h
    assert collector.check().ok


def test_a_blob_touched_while_gc_deletes_it_is_put_back(tmp_path):
    import os
    import time

    from flowopt.store.blobs import BlobStore

    blobs = BlobStore(tmp_path)
    digest = "ab" * 20
    blobs.put(digest, b"payload")
    cutoff = time.time() - 10
    assert blobs.delete_if_older(digest, cutoff) is None  # touched after the cutoff: kept
    assert blobs.get(digest) == b"payload" and not list(tmp_path.glob("*/.gc-*"))
    os.utime(blobs.path(digest), (0, 0))
    assert blobs.delete_if_older(digest, cutoff) == len(b"payload")
    assert not blobs.exists(digest)


def test_a_node_error_with_a_nul_byte_is_stored_with_the_rest_of_the_run(store_location):
    store = Store.open(store_location)
    graph = compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "nul", "nodes": {
            "a": {"kind": "toy.number"},
            "bad": {"kind": "toy.fail", "in": {"x": "a"}, "with": {"message": "bad \x00 byte"}}}}))
    result = Scheduler(graph, store).run()
    assert result.status == "failed"
    detail = store.run(result.run_id)
    assert detail.run.status == "failed"
    nodes = {n.id: n for n in detail.nodes}
    assert nodes["a"].status == "succeeded" and "bad \\x00 byte" in nodes["bad"].error
