"""`flowopt report`: one self-contained HTML page with the sections a run has."""
from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowopt.graph import compile_pipeline
from flowopt.runner import execute
from flowopt.spec import load_spec

pytest.importorskip("matplotlib")

TUNED = """
pipeline: report-demo
seed: 3
plugins: [{plugin}]
params: {{x: 0.5}}
search: {{x: {{low: -2.0, high: 2.0}}}}
nodes:
  curve: {{kind: toy.curve, with: {{x: "${{params.x}}"}}}}
  tune: {{kind: tuner.random, in: {{objective: curve.value}}, with: {{mode: min, trials: 5}}}}
"""

PLUGIN = Path(__file__).parent / "plugins" / "report_toys.py"


@pytest.fixture()
def tuned_run(tmp_path):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(TUNED.format(plugin=PLUGIN))
    store = str(tmp_path / "store")
    result = execute(compile_pipeline(load_spec(pipeline)), store=store)
    assert result.status == "succeeded", result.error
    return store, result


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', page)]


def test_a_tuned_run_reports_its_summary_and_the_tuner_convergence(tuned_run, tmp_path):
    store, result = tuned_run
    out = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "flowopt", "report", result.run_id[:10],
                           "--store", store, "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<h2>Summary</h2>" in page and result.run_id in page
    assert "<h2>Tuner traces</h2>" in page
    trial_rows = re.findall(r"<tr><td>(\d+)</td><td>succeeded</td>", page)
    assert sorted(map(int, trial_rows)) == [0, 1, 2, 3, 4]  # one table row per trial
    images = _images(page)
    assert images and all(png.startswith(b"\x89PNG") for png in images)
    assert not out.with_name("r.html.partial").exists()


def test_learning_curves_come_from_metric_series(tmp_path):
    from flowopt.cli.report import curves_section, series_of
    from flowopt.store import Store

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"pipeline: c\nplugins: [{PLUGIN}]\nnodes:\n  curve: {{kind: toy.curve}}\n")
    store_dir = str(tmp_path / "store")
    result = execute(compile_pipeline(load_spec(pipeline)), store=store_dir)
    store = Store.open(store_dir)
    curves = series_of(store, store.run(result.run_id))
    assert [step for step, _ in curves["curve"]["loss"]] == [1, 2, 3, 4, 5]
    assert curves["curve"]["loss"][-1][1] == pytest.approx(1.0 + 1.0 / 5)
    title, body = curves_section(curves)
    assert title == "Learning curves" and "data:image/png" in body


def test_an_unknown_run_is_one_line_and_exit_2(tuned_run, tmp_path):
    store, _ = tuned_run
    done = subprocess.run([sys.executable, "-m", "flowopt", "report", "zzzz", "--store", store,
                           "-o", str(tmp_path / "x.html")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert not (tmp_path / "x.html").exists()
