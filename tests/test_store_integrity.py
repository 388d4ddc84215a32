"""Integrity: hashes verified on read, `check` (and repair), `gc`, safe blob names."""
from __future__ import annotations

import os
import time

import pytest

from flowopt.errors import StoreError
from flowopt.graph import compile_pipeline
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.store import Store
from flowopt.store.blobs import BlobStore


def graph():
    return compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "big", "seed": 0,
        "nodes": {"a": {"kind": "toy.number", "with": {"value": 1.0}},
                  "big": {"kind": "toy.split", "in": {"x": "a"}}}}))


@pytest.fixture
def store(store_location):
    return Store.open(store_location)


def blob_artifact(store, start=0):
    """An artifact large enough to be a blob (not inline), distinct per `start`."""
    return store.save_outputs("n", {"v": list(range(start, start + 2000))})["v"]


def test_a_corrupt_blob_is_refused_on_read_not_served(store):
    ref = blob_artifact(store)
    store.blobs.path(ref.hash).write_bytes(b"[1, 2, 3]")
    with pytest.raises(StoreError, match="is corrupt"):
        store.load(ref)


def test_check_reports_missing_and_corrupt_blobs_and_repair_removes_the_corrupt(store):
    Scheduler(graph(), store).run()
    good, bad, gone = (blob_artifact(store, i) for i in range(3))
    store.blobs.path(bad.hash).write_bytes(b"garbage")
    store.blobs.path(gone.hash).unlink()
    store.flush()
    # artifacts from save_outputs alone have no row yet: record them as a node would
    from flowopt.recording import ExecutionRecord

    for i, ref in enumerate((good, bad, gone)):
        store.record_execution(ExecutionRecord(run_id=store.runs()[0].run_id, node_id=f"n{i}",
                                               kind="toy.number", kind_version=1,
                                               cache_key=f"key{i}", status="succeeded",
                                               config={}, outputs={"v": ref}))
    report = store.check()
    assert not report.ok
    assert [e["hash"] for e in report.missing] == [gone.hash]
    assert [e["hash"] for e in report.corrupt] == [bad.hash]
    repaired = store.check(repair=True)
    assert repaired.repaired == [f"deleted corrupt blob {bad.hash}"]
    assert not store.blobs.exists(bad.hash) and store.blobs.exists(good.hash)
    assert store.find_cached(["key0", "key1", "key2"]).keys() == {"key0"}  # the others rerun
    assert {e["hash"] for e in store.check().missing} == {gone.hash, bad.hash}


def test_gc_is_a_dry_run_by_default_and_keeps_referenced_and_young_blobs(store):
    Scheduler(graph(), store).run()
    kept = blob_artifact(store)
    from flowopt.recording import ExecutionRecord

    store.record_execution(ExecutionRecord(run_id=store.runs()[0].run_id, node_id="k",
                                           kind="toy.number", kind_version=1, cache_key="k",
                                           status="succeeded", config={}, outputs={"v": kept}))
    orphan = blob_artifact(store, 1)  # a blob whose row was never written (its process died)
    store._pending_artifacts.clear()
    hour_ago = time.time() - 3600 + 5  # gc keeps what was touched since it began: backdate
    os.utime(store.blobs.path(orphan.hash), (hour_ago, hour_ago))
    dry = store.gc(min_age=0)
    assert dry.dry_run and [b["hash"] for b in dry.blobs] == [orphan.hash]
    assert store.blobs.exists(orphan.hash)
    assert store.gc(dry_run=False).blobs == [] and store.gc().kept_young == 1  # too young
    done = store.gc(dry_run=False, min_age=0)
    assert [b["hash"] for b in done.blobs] == [orphan.hash] and done.bytes > 0
    assert not store.blobs.exists(orphan.hash) and store.blobs.exists(kept.hash)
    assert store.load(kept) == list(range(2000))


@pytest.mark.parametrize("name", ["../../etc/passwd", "ab/../../x", "/abs/path" + "0" * 31,
                                  "A" * 40, "0" * 39])
def test_blob_paths_come_from_content_hashes_only(tmp_path, name):
    blobs = BlobStore(tmp_path)
    with pytest.raises(ValueError, match="not a content hash"):
        blobs.path(name)
    assert blobs.path("0f" * 20).is_relative_to(tmp_path)
