"""Bad tuner input: one clear line naming file:line and key, exit code 2, nothing run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowopt.errors import SpecError
from flowopt.graph import compile_pipeline
from flowopt.spec import load_spec

PLUGIN = Path(__file__).parent / "plugins" / "tuning_toys.py"

GOOD = """pipeline: bad-tuning
plugins: [PLUGIN]
params: {x: 0.0, y: 0.0}
search:
  x: {low: -2.0, high: 3.0}
nodes:
  src: {kind: tunetoy.source}
  f: {kind: tunetoy.quad, in: {base: src}, with: {x: "${params.x}"}}
  tune: {kind: tuner.random, in: {objective: f.value}, with: {mode: min, trials: 4}}
"""


def compile_text(tmp_path: Path, text: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("PLUGIN", str(PLUGIN)), encoding="utf-8")
    return compile_pipeline(load_spec(path))


def error_of(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        compile_text(tmp_path, text)
    return caught.value


def test_the_good_pipeline_compiles_and_its_tuner_owns_only_f(tmp_path):
    graph = compile_text(tmp_path, GOOD)
    plan = graph.tuners["tune"]
    assert plan.owned == ("f",) and list(plan.space) == ["x"]
    assert dict(plan.frontier) == {"src.metric": graph.nodes["f"].inputs["base"]}


def test_a_search_param_no_node_uses_cannot_matter(tmp_path):
    error = error_of(tmp_path, GOOD.replace("x: {low: -2.0, high: 3.0}",
                                            "x: {low: -2.0, high: 3.0}\n  y: {low: 0, high: 1}"))
    assert error.key == "search.y" and error.line == 6
    assert "cannot matter: no node uses ${params.y}" in str(error)


def test_a_search_param_the_objective_does_not_depend_on_cannot_matter(tmp_path):
    text = GOOD.replace("x: {low: -2.0, high: 3.0}", "x: {low: -2.0, high: 3.0}\n  y: {low: 0, high: 1}")
    text += '  other: {kind: tunetoy.quad, in: {base: src}, with: {y: "${params.y}"}}\n'
    error = error_of(tmp_path, text)
    assert error.key == "search.y"
    assert "no tuner's objective depends on it (it reaches other)" in str(error)


@pytest.mark.parametrize("domain, message", [
    ("{low: 3.0, high: 3.0}", "low (3.0) must be below high (3.0)"),
    ("{low: 5.0, high: 1.0}", "low (5.0) must be below high (1.0)"),
    ("{low: 0.0, high: 1.0, log: true}", "a log-scaled range needs low > 0"),
])
def test_bad_ranges_are_rejected_where_they_are_written(tmp_path, domain, message):
    error = error_of(tmp_path, GOOD.replace("{low: -2.0, high: 3.0}", domain))
    assert error.line == 5 and error.key.startswith("search.x") and message in str(error)


def test_the_objective_must_be_a_metric_port(tmp_path):
    error = error_of(tmp_path, GOOD.replace("objective: f.value", "objective: src"))
    assert error.key == "nodes.tune.in.objective" and error.line == 9
    assert "the objective must be a metric port; 'src.metric' is not one" in str(error)


def test_an_objective_upstream_of_the_searched_params_is_rejected(tmp_path):
    text = GOOD.replace("objective: f.value", "objective: g.value")
    text += "  g: {kind: tunetoy.quad, in: {base: src}}\n"
    error = error_of(tmp_path, text)
    assert error.key == "nodes.tune.in.objective"
    assert "objective 'g.value' depends on no searched param (search: x)" in str(error)


@pytest.mark.parametrize("config, key, message", [
    ("{mode: min, trials: 0}", "nodes.tune.with.trials", "greater than or equal to 1"),
    ("{mode: min, trials: 2, parallel: 3}", "nodes.tune.with.parallel",
     "parallel (3) must not exceed trials (2)"),
    ("{mode: best, trials: 2}", "nodes.tune.with.mode", "'max' or 'min'"),
    ("{trials: 2}", "nodes.tune.with.mode", "missing required field 'mode'"),
    ("{mode: min, trials: 2, grid_points: 3}", "nodes.tune.with.grid_points", "unknown field"),
])
def test_bad_tuner_fields_are_rejected(tmp_path, config, key, message):
    error = error_of(tmp_path, GOOD.replace("{mode: min, trials: 4}", config))
    assert error.key == key and error.line == 9 and message in str(error)


def test_a_node_outside_the_tuner_cannot_consume_a_trials_output_directly(tmp_path):
    error = error_of(tmp_path, GOOD + "  after: {kind: tunetoy.scale, in: {value: f.value}}\n")
    assert error.key == "nodes.after.in.value"
    assert "'after' consumes 'f.value', which tuner 'tune' runs once per trial" in str(error)
    assert error.hint == "bind 'tune.f.value' to use the best trial's output"


def test_only_owned_nodes_are_tuner_outputs(tmp_path):
    error = error_of(tmp_path, GOOD + "  after: {kind: tunetoy.scale, in: {value: tune.src}}\n")
    assert "tuner 'tune' does not run 'src' (it owns: f)" in str(error)
    graph = compile_text(tmp_path, GOOD + "  after: {kind: tunetoy.scale, in: {value: tune.f}}\n")
    assert str(graph.nodes["after"].inputs["value"]) == "tune.f.value"


def test_the_cli_exits_2_with_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("PLUGIN", str(PLUGIN)).replace("trials: 4", "trials: 4, parallel: 9"),
                    encoding="utf-8")
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(path), "--store", str(store)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (f"error: {path}:9, key 'nodes.tune.with.parallel': "
                                           "parallel (9) must not exceed trials (4)")
    assert not store.exists()
