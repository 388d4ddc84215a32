"""End to end: pipelines/quantize.yaml runs (well under two minutes), stores real packed
artifacts, and its run yields the accuracy-vs-size comparison, as a table and a plot."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app
from flowopt.nodes.quantizer import report

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "quantize.yaml"
QUANTIZERS = {"uniform8", "blockwise8", "blockwise4", "nupes4", "mixed"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = tmp_path_factory.mktemp("quantize") / "store"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(PIPELINE), "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    shown = runner.invoke(app, ["runs", "show", summary["run_id"], "--store", str(store), "--json"])
    assert shown.exit_code == 0, shown.output
    return summary, json.loads(shown.stdout)


def test_the_example_runs_in_under_two_minutes(run):
    summary, _ = run
    assert summary["status"] == "succeeded" and summary["seconds"] < 120


def test_every_quantized_model_is_stored_as_a_compact_quantized_artifact(run):
    _, detail = run
    stored = {a["node"]: a for a in detail["artifacts"] if a["port"] == "model"}
    assert {stored[q]["type"] for q in QUANTIZERS} == {"quantized_model"}
    float_size = stored["train"]["size"]
    assert all(stored[q]["size"] < 0.35 * float_size for q in QUANTIZERS)
    assert stored["blockwise4"]["size"] < 0.65 * stored["blockwise8"]["size"]


def test_the_comparison_pairs_each_quantizer_with_its_score(run, tmp_path):
    _, detail = run
    rows = report.points(detail)
    assert {r["quantizer"] for r in rows if r["kind"] != "float"} == QUANTIZERS
    reference = next(r for r in rows if r["kind"] == "float")["accuracy"]
    by_name = {r["quantizer"]: r for r in rows}
    for name in ("uniform8", "blockwise8"):
        assert by_name[name]["accuracy"] >= reference - 0.005
    assert all(r["accuracy"] > 0.9 for r in rows)
    assert [r["size_ratio"] for r in rows] == sorted(r["size_ratio"] for r in rows)
    text = report.table(rows)
    assert text.splitlines()[-1].startswith("train") and "mixed" in text
    picture = report.plot(rows, tmp_path / "size.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
