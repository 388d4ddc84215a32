"""Store locations: directories, URLs, the artifact root, and passwords that never print."""
from __future__ import annotations

from pathlib import Path

import pytest

from flowopt.errors import StoreError
from flowopt.store import Store
from flowopt.store.location import resolve, safe_url


def test_a_directory_holds_the_database_and_the_artifacts(tmp_path):
    where = resolve(tmp_path / "s")
    assert where.url == f"sqlite:///{tmp_path / 's' / 'flowopt.db'}"
    assert where.artifact_root == tmp_path / "s" / "artifacts"


def test_a_url_takes_its_artifact_root_from_the_query_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWOPT_ARTIFACTS", raising=False)
    monkeypatch.delenv("FLOWOPT_ARTIFACT_ROOT", raising=False)
    url = "postgresql+psycopg://u:pw@db.example:5433/flow?artifacts=/srv/flowopt-blobs&sslmode=require"
    where = resolve(url)
    assert where.artifact_root == Path("/srv/flowopt-blobs")
    assert "artifacts" not in where.url and "sslmode=require" in where.url  # for the driver
    assert where.display == "postgresql+psycopg://u:***@db.example:5433/flow?sslmode=require"
    monkeypatch.setenv("FLOWOPT_ARTIFACTS", str(tmp_path / "env"))
    assert resolve("postgresql+psycopg://u@h/db").artifact_root == tmp_path / "env"
    assert resolve(url).artifact_root == Path("/srv/flowopt-blobs")  # the URL wins
    assert resolve("postgresql+psycopg://u@h/db", artifacts=tmp_path / "flag").artifact_root \
        == tmp_path / "flag"
    monkeypatch.delenv("FLOWOPT_ARTIFACTS")
    assert resolve(f"sqlite:///{tmp_path}/x.db").artifact_root == tmp_path / "artifacts"


def test_blobs_of_a_url_store_land_under_the_chosen_root(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/db/x.db?artifacts={tmp_path}/blobs")
    ref = store.save_outputs("n", {"v": list(range(3000))})["v"]
    assert (tmp_path / "blobs" / ref.hash[:2] / ref.hash[2:]).is_file()
    assert "artifacts" not in store.url


def test_passwords_are_masked_even_in_malformed_urls():
    assert "hunter2" not in safe_url("postgresql://me:hunter2@host/db")
    assert "hunter2" not in safe_url("weird://me:hunter2@@host:port:x/db")
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://me:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
