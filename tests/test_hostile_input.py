"""Hostile and unlucky pipeline files and command lines (issue 17): each is refused at
`validate` time with exit code 2 and one clear line, quickly, and nothing is stored."""
from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app

HEAD = "pipeline: t\nplugins: [TOY_PLUGIN]\n"


def _refused(args: list[str], *fragments: str, store=None) -> str:
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.strip().splitlines() if not line.startswith("hint:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in output, output
    if store is not None:
        assert not store.exists(), "refused input must not create the store"
    return output


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_node_id_longer_than_the_store_holds_is_refused_before_anything_runs(
        command, write_pipeline, store_dir):
    long_id = "n" * 201
    path = write_pipeline(HEAD + f"nodes:\n  {long_id}: {{kind: toy.number}}\n")
    args = [command, str(path)] + (["--store", str(store_dir)] if command == "run" else [])
    _refused(args, "201 characters long", "at most 200", store=store_dir)


def test_a_param_name_or_pipeline_name_longer_than_200_is_refused(write_pipeline):
    path = write_pipeline(HEAD + f"params: {{{'p' * 230}: 1}}\nnodes:\n  a: {{kind: toy.number}}\n")
    _refused(["validate", str(path)], "param name", "at most 200")
    path = write_pipeline(f"pipeline: {'q' * 201}\nplugins: [TOY_PLUGIN]\n"
                          "nodes:\n  a: {kind: toy.number}\n")
    _refused(["validate", str(path)], "pipeline", "200")


def test_a_metric_key_longer_than_200_fails_the_node_not_the_run(tmp_path):
    from flowopt.recording import RunInfo
    from flowopt.store import Store

    store = Store.open(tmp_path / "s")
    run_id = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
    with pytest.raises(ValueError, match="at most 200"):
        store.log_metric(run_id, "n", "k" * 201, 1.0, 0)
    store.log_metric(run_id, "n", "fine", 1.0, 0)
    store.end_run(run_id, "succeeded")
    assert [p.value for p in store.metrics(run_id, "fine")] == [1.0]
