"""The artifact root belongs to the store (issue 17, item 4): recorded when the store is
created and used from then on, whatever the current directory; a location that names
another root is refused; gc says which root it scans and never touches another's blobs."""
from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from flowopt.cli.app import app
from flowopt.errors import StoreError
from flowopt.graph import compile_pipeline
from flowopt.recording import ExecutionRecord, RunInfo
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.store import Store
from flowopt.store.migrate import HEAD, current_revision, migrate_to


def _graph(value: float = 3.0):
    return compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "root", "nodes": {"x": {"kind": "toy.number", "with": {"value": value}}}}))


def _run_with_blob(store) -> tuple[str, object]:
    """A finished run whose one execution produced a blob (an artifact over 4 KiB)."""
    run_id = store.begin_run(RunInfo(pipeline="root", seed=0, params={}, spec={}))
    refs = store.save_outputs("big", {"value": list(range(2000))})
    store.record_execution(ExecutionRecord(run_id=run_id, node_id="big", kind="toy.number",
                                           kind_version=1, cache_key="k" * 32,
                                           status="succeeded", config={}, outputs=refs))
    store.end_run(run_id, "succeeded")
    return run_id, refs["value"]


@pytest.fixture(params=["sqlite", "postgres"])
def url_and_root(request, tmp_path, monkeypatch):
    """A URL store created with a named root, then the naming taken away."""
    root = tmp_path / "blobs"
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        base = f"sqlite:///{tmp_path}/db/x.db"
    else:
        base = request.getfixturevalue("postgres_url")
    monkeypatch.delenv("FLOWOPT_ARTIFACTS", raising=False)
    return base, root


def _with_root(url: str, root) -> str:
    return f"{url}{'&' if '?' in url else '?'}artifacts={root}"


def test_a_url_store_uses_the_root_it_recorded_from_any_directory(url_and_root, tmp_path,
                                                                  monkeypatch):
    url, root = url_and_root
    store = Store.open(_with_root(url, root))
    _, ref = _run_with_blob(store)
    assert list(store.blobs.digests()) == [ref.hash] and store.artifact_root == root
    store.close()

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".flowopt" / "artifacts" / "ab").mkdir(parents=True)
    stranger = elsewhere / ".flowopt" / "artifacts" / "ab" / ("c" * 38)
    stranger.write_bytes(b"another store's blob")
    os.utime(stranger, (0, 0))
    monkeypatch.chdir(elsewhere)
    again = Store.open(url)  # no root named: the recorded one, not ./.flowopt/artifacts
    assert os.path.realpath(again.artifact_root) == os.path.realpath(root)
    assert again.find_cached(["k" * 32])["k" * 32]["value"] == ref  # a cache hit, not a miss
    assert again.load(ref) == list(range(2000))
    report = again.gc(dry_run=False, min_age=0)
    assert report.root == str(again.artifact_root) and not report.blobs
    assert stranger.exists()
    assert again.check().ok


def test_a_location_naming_another_root_is_refused(url_and_root, tmp_path, monkeypatch):
    url, root = url_and_root
    Store.open(_with_root(url, root)).close()
    with pytest.raises(StoreError, match="keeps its artifacts in") as caught:
        Store.open(_with_root(url, tmp_path / "other"))
    assert str(root) in str(caught.value)
    monkeypatch.setenv("FLOWOPT_ARTIFACTS", str(tmp_path / "other"))
    with pytest.raises(StoreError, match=r"\$FLOWOPT_ARTIFACTS names"):
        Store.open(url)
    Store.open(_with_root(url, root)).close()  # naming the same root is fine


def test_gc_prints_the_root_it_scans(tmp_path):
    store = tmp_path / "store"
    Store.open(store).close()
    result = CliRunner().invoke(app, ["store", "gc", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert f"artifact root {store / 'artifacts'}" in result.output
    result = CliRunner().invoke(app, ["store", "gc", "--store", str(store), "--json"])
    assert json.loads(result.output)["root"] == str(store / "artifacts")


def test_a_store_directory_can_be_moved_with_its_artifacts(tmp_path):
    store = Store.open(tmp_path / "before")
    _, ref = _run_with_blob(store)
    store.close()
    (tmp_path / "before").rename(tmp_path / "after")
    moved = Store.open(tmp_path / "after", create=False)
    assert moved.artifact_root == tmp_path / "after" / "artifacts"
    assert moved.check().ok and moved.load(ref) == list(range(2000))


def test_a_store_at_revision_0003_is_upgraded_and_records_its_root(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    engine = create_engine(f"sqlite:///{folder / 'flowopt.db'}")
    migrate_to(engine, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (id, pipeline, status, seed, spec, started_at) "
                          "VALUES (:id, 'old', 'succeeded', 0, '{}', '2026-01-01 00:00:00')"),
                     {"id": "r" * 32})
        conn.execute(text("INSERT INTO metrics (run_id, node_id, key, step, value, logged_at) "
                          "VALUES (:id, 'n', 'acc', NULL, 0.5, '2026-01-01 00:00:00')"),
                     {"id": "r" * 32})
    assert current_revision(engine) == "0003"
    store = Store.open(folder, create=False)
    assert current_revision(store.engine) == HEAD
    assert store.artifact_root == folder / "artifacts"
    assert store.runs()[0].metrics == {"n.acc": 0.5}
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM store_info WHERE key = 'artifact_root'")
                            ).scalar() == "artifacts"
    run_id = store.runs()[0].run_id
    store.log_metric(run_id, "n", "nan", float("nan"), None)  # the new column allows it
    store.flush()
    assert str(store.runs()[0].metrics["n.nan"]) == "nan"
