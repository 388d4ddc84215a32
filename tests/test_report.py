"""`flowopt report`: one self-contained HTML page with the sections a run has, drawing the
same figures as `flowopt ui` (checked here through the figure data the page carries)."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowopt.graph import compile_pipeline
from flowopt.runner import execute
from flowopt.spec import load_spec

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


def _figures(page: str) -> dict[str, dict]:
    """The figure descriptions a report page carries (what its plot script draws)."""
    found = re.findall(r'<script type="application/json" class="figure-data">(.*?)</script>', page)
    return {f["id"]: f for f in map(json.loads, found)}


def test_a_tuned_run_reports_its_summary_and_the_tuner_convergence(tuned_run, tmp_path):
    store, result = tuned_run
    out = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "flowopt", "report", result.run_id[:10],
                           "--store", store, "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<h2>Summary</h2>" in page and result.run_id in page
    assert "<h2>Tuner tune</h2>" in page
    trial_rows = re.findall(r"<tr><td>(\d+)</td><td>succeeded</td>", page)
    assert sorted(map(int, trial_rows)) == [0, 1, 2, 3, 4]  # one table row per trial
    figures = _figures(page)
    objective = figures["tuner:objective"]
    trials, best = objective["series"][0], objective["series"][-1]
    assert best["y"] == [min(trials["y"][:i + 1]) for i in range(len(trials["y"]))]  # mode min
    curves = figures["tuner:curves"]  # the trials' learning curves, from their child runs
    assert len(curves["series"]) == 5 and all(s["x"] == [1, 2, 3, 4, 5] for s in curves["series"])
    assert "http" not in page.split("<main>")[0]  # nothing loaded from elsewhere: works offline
    assert not out.with_name("r.html.partial").exists()


@pytest.fixture(scope="module")
def ui_runs(tmp_path_factory):
    spec = importlib.util.spec_from_file_location(
        "ui_store", Path(__file__).parent / "plugins" / "ui_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_store(tmp_path_factory.mktemp("report"))


def _report(ids: dict, role: str) -> str:
    from flowopt.cli.report import build_report
    from flowopt.store import Store

    return build_report(Store.open(ids["store"], create=False), ids[role])


def test_learning_curves_are_lines_and_per_layer_numbers_are_bars(ui_runs):
    figures = _figures(_report(ui_runs, "plain"))
    loss = figures["series:curve.loss"]
    assert loss["type"] == "line" and loss["series"][0]["x"] == list(range(1, 9))
    assert loss["series"][0]["y"][-1] == pytest.approx((0.25 - 1.0) ** 2 + 1.0 / 8)
    bits = figures["series:curve.layer_bits"]
    assert bits["type"] == "bar" and bits["series"][0]["y"] == [8, 4, 4, 8]


def test_a_cached_rerun_reports_the_trials_and_metrics_it_reused(ui_runs):
    page = _report(ui_runs, "cached")
    original = ui_runs["tuned"][:12]
    assert f"trials of run {original}" in page
    figures = _figures(page)
    assert len(figures["tuner:objective"]["series"][0]["x"]) == 6
    assert len(figures["tuner:curves"]["series"]) == 6


def test_markup_in_store_strings_is_escaped(ui_runs):
    page = _report(ui_runs, "hostile")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_several_objectives_draw_the_pareto_front_with_its_hypervolume(ui_runs):
    pareto = _figures(_report(ui_runs, "multi"))["tuner:pareto"]
    assert pareto["hypervolume"] == pytest.approx(0.42)
    assert sorted(pareto["series"][1]["labels"]) == ["trial 0", "trial 1", "trial 3"]


def test_the_front_is_labelled_by_metric_port_and_direction_with_its_progress_and_params(ui_runs):
    page = _report(ui_runs, "multi")
    figures = _figures(page)
    pareto = figures["tuner:pareto"]
    assert pareto["x"]["label"] == "score.accuracy (max)"
    assert pareto["y"]["label"] == "quant.<i>bytes</i> (min)"  # data; escaped in the page
    assert "objective 0" not in page and "<i>bytes</i>" not in page
    assert "quant.&lt;i&gt;bytes&lt;/i&gt; (min)" in page  # the front's table header
    progress = figures["tuner:hypervolume"]
    assert progress["series"][0]["x"] == [0, 1, 2, 3]
    assert progress["series"][0]["y"] == pytest.approx([0.1, 0.3, 0.3, 0.42])
    front = page.split("<h3>Pareto front</h3>")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", front)
    assert [(int(n), float(a), float(b)) for n, a, b, _ in rows] == [(0, 0.9, 3.0), (1, 0.8, 1.0),
                                                                    (3, 0.95, 5.0)]
    assert rows[0][3] == "lr=0.001, opt=lion"


def test_three_objectives_are_drawn_as_parallel_coordinates_with_the_front_marked():
    from types import SimpleNamespace

    from flowopt.ui.figures import tuner_figures

    values = [(1.0, 1.0, 1.0), (0.0, 2.0, 0.0), (0.5, 0.5, 0.5), (2.0, 2.0, 2.0)]
    trials = [SimpleNamespace(number=i, status="succeeded", objective=v[0], objectives=v,
                              params={"x": float(i)}) for i, v in enumerate(values)]
    figures = {f["id"]: f for f in tuner_figures(
        trials, "min", objective_names=["a.x", "b.y", "c.z"], modes=["min", "min", "min"])}
    lines = figures["tuner:objectives"]
    assert [a["name"] for a in lines["axes"]] == ["a.x (min)", "b.y (min)", "c.z (min)"]
    # (0.5, 0.5, 0.5) dominates (1, 1, 1) and (2, 2, 2); (0, 2, 0) is best in two
    assert [line["color"] for line in lines["lines"]] == [0.0, 1.0, 1.0, 0.0]
    assert [line["values"] for line in lines["lines"]] == [list(v) for v in values]


def test_an_unknown_run_is_one_line_and_exit_2(tuned_run, tmp_path):
    store, _ = tuned_run
    done = subprocess.run([sys.executable, "-m", "flowopt", "report", "zzzz", "--store", store,
                           "-o", str(tmp_path / "x.html")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert not (tmp_path / "x.html").exists()


def test_quantized_models_are_drawn_as_accuracy_against_size():
    from flowopt.ui.data import quantization_rows
    from flowopt.ui.figures import quantization_figure

    run = {"metrics": {"q8.size_ratio": 0.26, "q4.size_ratio": 0.14, "s8.accuracy": 0.97,
                       "s4.accuracy": 0.91, "sf.accuracy": 0.98},
           "nodes": [{"id": "train", "kind": "optimizer.adam", "inputs": []},
                     {"id": "q8", "kind": "quantizer.blockwise", "inputs": ["a0"]},
                     {"id": "q4", "kind": "quantizer.blockwise", "inputs": ["a0"]},
                     {"id": "s8", "kind": "evaluator.classification", "inputs": ["a8"]},
                     {"id": "s4", "kind": "evaluator.classification", "inputs": ["a4"]},
                     {"id": "sf", "kind": "evaluator.classification", "inputs": ["a0"]}],
           "artifacts": [{"id": "a0", "node": "train", "port": "model"},
                         {"id": "a8", "node": "q8", "port": "model"},
                         {"id": "a4", "node": "q4", "port": "model"}]}
    figure = quantization_figure(quantization_rows(run))
    points = {s["name"]: (s["x"][0], s["y"][0]) for s in figure["series"]}
    assert points == {"q4": (0.14, 0.91), "q8": (0.26, 0.97), "train": (1.0, 0.98)}
    assert figure["type"] == "scatter"
