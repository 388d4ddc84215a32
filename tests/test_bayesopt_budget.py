"""A Bayesian-optimisation budget that leaves the model no trial is said so, before running.

The initial design scales with ``trials`` (`default_initial_design`), and ``flowopt
validate`` / ``flowopt run`` print one warning line per tuner whose budget is spent on
the initial design alone (tested as a user runs them: the CLI in a subprocess).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowopt.nodes.tuner.bayesopt import BayesOpt, BayesOptConfig
from flowopt.nodes.tuner.bayesopt.strategy import default_initial_design
from flowopt.nodes.tuner.strategy import Observation
from flowopt.spec import Domain

PLUGIN = Path(__file__).parent / "plugins" / "tuning_toys.py"


def pipeline_file(tmp_path: Path, tune_with: str) -> Path:
    path = tmp_path / "bo.yaml"
    path.write_text(f"""\
pipeline: bo-budget
plugins: [{PLUGIN}]
params: {{x: 0.0, y: 0.0}}
search: {{x: {{low: -2.0, high: 3.0}}, y: {{low: -4.0, high: 0.0}}}}
nodes:
  src: {{kind: tunetoy.source, with: {{value: 1.0}}}}
  f: {{kind: tunetoy.quad, in: {{base: src}}, with: {{x: "${{params.x}}", y: "${{params.y}}"}}}}
  tune: {{kind: tuner.bayesopt, in: {{objective: f.value}}, with: {tune_with}}}
""", encoding="utf-8")
    return path


def flowopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowopt", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("trials, initial", [(1, 2), (6, 2), (8, 2), (9, 3), (20, 6),
                                             (30, 10), (100, 10)])
def test_the_initial_design_is_a_third_of_the_budget_between_2_and_10(trials, initial):
    assert default_initial_design(trials) == initial


def test_an_eight_trial_run_uses_the_model_after_two_sobol_points():
    space = {"x": Domain(low=0.0, high=1.0), "y": Domain(low=0.0, high=1.0)}
    tuner = BayesOpt(space, mode="min", seed=0, budget=8, config=BayesOptConfig())
    sobol = [tuner.cube.decode(u) for u in tuner.cube.sobol(8, seed=0)]
    asked = []
    for number in range(8):
        params = tuner.ask([])
        asked.append(params)
        tuner.tell(Observation(number, params, (params["x"] - 0.3) ** 2 + params["y"],
                               "succeeded"))
    assert asked[:2] == sobol[:2]
    assert all(p not in sobol for p in asked[2:])   # the other six are the model's


def test_validate_warns_when_initial_design_takes_the_whole_budget(tmp_path):
    path = pipeline_file(tmp_path, "{mode: min, trials: 8, initial_design: 10}")
    result = flowopt("validate", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "node 'tune' (tuner.bayesopt)" in warnings[0] and str(path) in warnings[0]
    assert "trials: 8 leaves no model-based trial (initial_design: 10)" in warnings[0]


def test_validate_warns_on_a_budget_too_small_for_any_model(tmp_path):
    result = flowopt("validate", str(pipeline_file(tmp_path, "{mode: min, trials: 2}")))
    assert result.returncode == 0
    assert "trials: 2 leaves no model-based trial (a GP needs 2 observations)" in result.stderr


def test_validate_is_quiet_when_the_model_gets_trials(tmp_path):
    for tune_with in ("{mode: min, trials: 8}", "{mode: min, trials: 12, initial_design: 10}"):
        result = flowopt("validate", str(pipeline_file(tmp_path, tune_with)))
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr


def test_run_warns_before_it_starts_and_still_runs(tmp_path):
    path = pipeline_file(tmp_path, "{mode: min, trials: 3, initial_design: 5}")
    result = flowopt("run", str(path), "--store", str(tmp_path / "store"), "--json")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "trials: 3 leaves no model-based trial" in result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
