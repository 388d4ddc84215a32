"""The tuning examples run: pipelines/tune_*.yaml and examples/custom_objective.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.registry import REGISTRY, load_plugin
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["-s", "nodes.train.with.steps=40", "-s", "nodes.tune.with.trials=4"]


def run_file(name: str, *overrides: str):
    recorder = MemoryRecorder()
    graph = compile_pipeline(load_spec(ROOT / "pipelines" / name, overrides))
    return graph, recorder, Scheduler(graph, recorder).run()


def test_tune_random_tunes_the_digits_mlp_running_the_data_once():
    graph, recorder, result = run_file("tune_random.yaml", *QUICK[1::2])
    assert result.status == "succeeded"
    assert graph.tuners["tune"].owned == ("net", "train", "score")
    assert [r.node_id for r in recorder.executions if r.status == "succeeded"].count("digits") == 1
    trials = list(recorder.trials.values())
    assert len(trials) == 4 and all(t.status == "succeeded" for t in trials)
    assert result.best["objective"] == max(t.objective for t in trials) > 0.5


def test_tune_bayesopt_exports_the_best_trials_trained_model():
    overrides = [*QUICK[1::2], "nodes.tune.with.trials=2", "nodes.tune.with.parallel=1"]
    if "tuner.bayesopt" not in REGISTRY.names():
        overrides.append("nodes.tune.kind=tuner.random")
    graph, _, result = run_file("tune_bayesopt.yaml", *overrides)
    assert result.status == "succeeded", result.error
    assert set(graph.tuners["tune"].space) == {"lr", "width", "weight_decay"}
    # `final` re-scores the model the tuner exported: it is the best trial's model.
    assert result.metrics["final.accuracy"] == result.best["objective"]


@pytest.mark.skipif("tuner.bayesopt" not in REGISTRY.names(),
                    reason="tuner.bayesopt is not registered yet (nodes/tuner/bayesopt)")
def test_tune_bayesopt_compiles_as_shipped():
    graph = compile_pipeline(load_spec(ROOT / "pipelines" / "tune_bayesopt.yaml"))
    assert graph.nodes["tune"].kind.name == "tuner.bayesopt"


def test_the_python_example_tunes_a_custom_objective_node(tmp_path):
    load_plugin(str(ROOT / "examples" / "custom_objective.py"))
    example = next(m for name, m in sys.modules.items()
                   if name.startswith("flowopt_plugin_custom_objective_"))
    pipeline = example.build(trials=3, parallel=1, steps=30)
    recorder = MemoryRecorder()
    result = pipeline.run(store=recorder)
    assert result.status == "succeeded"
    trials = list(recorder.trials.values())
    assert result.best["objective"] == max(t.objective for t in trials)
    assert all(isinstance(t.params["width"], int) and 4 <= t.params["width"] <= 128 for t in trials)
    # Python and YAML are two front ends of one graph, tuner included.
    pipeline.to_yaml(tmp_path / "example.yaml")
    again = compile_pipeline(load_spec(tmp_path / "example.yaml"))
    assert again.cache_keys() == pipeline.graph.cache_keys()
