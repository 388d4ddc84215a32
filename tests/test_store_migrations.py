"""Migrations: a store made by the first schema opens with today's code, data intact; the
models match what the migrations build; a newer store is refused."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from flowopt.errors import StoreError
from flowopt.store import Store
from flowopt.store.location import resolve
from flowopt.store.migrate import HEAD, current_revision, migrate_to
from flowopt.store.schema import Base

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _engine(location: str):
    where = resolve(location)
    if where.folder is not None:
        where.folder.mkdir(parents=True, exist_ok=True)
    return create_engine(where.url)


def _first_schema_store(location: str) -> None:
    """A store exactly as flowopt's first release wrote it: revision 0001 with one run."""
    engine = _engine(location)
    migrate_to(engine, "0001")
    rows = {
        "runs": [{"id": "r" * 32, "pipeline": "old", "status": "succeeded", "seed": 3,
                  "spec": json.dumps({"pipeline": "old"}), "started_at": T0, "ended_at": T0}],
        "params": [{"run_id": "r" * 32, "key": "lr", "value": "0.25", "value_num": 0.25},
                   {"run_id": "r" * 32, "key": "opt", "value": '"adam"', "value_num": None}],
        "executions": [{"id": "e" * 32, "run_id": "r" * 32, "node_id": "score", "position": 0,
                        "kind": "toy.number", "kind_version": 1, "cache_key": "k" * 32,
                        "status": "succeeded", "config": "{}", "seconds": 0.5}],
        "artifacts": [{"id": "a" * 32, "hash": "h" * 40, "type": "metric", "format": "json",
                       "size": 4, "inline": b"0.75", "execution_id": "e" * 32, "port": "value",
                       "created_at": T0}],
        "edges": [{"execution_id": "e" * 32, "role": "output", "port": "value",
                   "artifact_id": "a" * 32}],
        "metrics": [{"run_id": "r" * 32, "node_id": "score", "key": "accuracy", "step": None,
                     "value": 0.75, "logged_at": T0},
                    {"run_id": "r" * 32, "node_id": "score", "key": "loss", "step": 0,
                     "value": 1.5, "logged_at": T0}],
    }
    with engine.begin() as conn:
        for table, values in rows.items():
            for row in values:
                columns = ", ".join(row)
                conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES "
                                  f"({', '.join(':' + c for c in row)})"), row)
    assert current_revision(engine) == "0001"
    engine.dispose()


def test_a_store_from_the_first_schema_is_upgraded_with_its_data_intact(store_location):
    _first_schema_store(store_location)
    store = Store.open(store_location)
    assert current_revision(store.engine) == HEAD
    [run] = store.runs()
    assert (run.run_id, run.pipeline, run.seed, run.status) == ("r" * 32, "old", 3, "succeeded")
    assert run.params == {"lr": 0.25, "opt": "adam"} and run.metrics == {"score.accuracy": 0.75}
    assert run.started_at.replace(tzinfo=timezone.utc) == T0
    assert [r.run_id for r in store.runs("params.lr > 0.2 and metrics.accuracy = 0.75")] == ["r" * 32]
    detail = store.run("rrrr")
    assert [(n.id, n.outputs) for n in detail.nodes] == [("score", ("a" * 32,))]
    assert [(p.step, p.value) for p in store.metrics("r" * 32, "loss")] == [(0, 1.5)]
    assert detail.trials == () and run.parent_run_id is None  # the 0002 columns, empty


def test_the_models_match_the_schema_the_migrations_build(store_location):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = Store.open(store_location)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_store_newer_than_the_code_is_refused_with_a_clear_message(store_location):
    store = Store.open(store_location)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(StoreError, match="revision 0999, newer than this flowopt") as caught:
        Store.open(store_location)
    assert caught.value.hint == "upgrade flowopt"
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": HEAD})
