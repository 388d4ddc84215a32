"""End to end: pipelines/quickstart.yaml — the main job — tunes, trains, quantizes, scores
and re-runs from cache."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from flowopt.executors import SyncExecutor, ThreadExecutor
from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec

QUICKSTART = Path(__file__).resolve().parents[1] / "pipelines" / "quickstart.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graph():
    return compile_pipeline(load_spec(QUICKSTART))


@pytest.fixture(scope="module")
def recorder():
    return MemoryRecorder()


@pytest.fixture(scope="module")
def first_run(graph, recorder):
    return Scheduler(graph, recorder, ThreadExecutor(2)).run()


def test_quickstart_has_the_whole_chain_of_the_design(graph):
    assert {n.id: n.kind.name for n in graph} == {
        "digits": "data.digits", "split": "data.split", "net": "model.mlp",
        "xent": "loss.cross_entropy", "train": "optimizer.adam8bit",
        "quant": "quantizer.blockwise", "score": "evaluator.classification",
        "tune": "tuner.bayesopt", "final": "evaluator.classification"}


def test_quickstart_tunes_to_over_97_percent_with_an_8_bit_model(first_run):
    assert first_run.status == "succeeded", first_run.traceback
    assert first_run.metrics["final.accuracy"] >= 0.97
    assert 0 < first_run.metrics["final.ece"] < 0.5
    best = first_run.best
    assert best["objective"] == first_run.metrics["final.accuracy"]  # the exported model is the best
    assert 3e-4 <= best["params"]["lr"] <= 3e-2 and best["params"]["hidden"] in (64, 128, 256)


def test_every_trial_logs_a_falling_training_loss(first_run, recorder):
    series = defaultdict(list)
    for run_id, node, key, value, _ in recorder.metrics:
        if (node, key) == ("train", "loss"):
            series[run_id].append(value)
    assert len(series) == 8  # one child run per trial
    assert all(len(s) == 40 and s[-1] < s[0] / 2 for s in series.values())


def test_running_again_reuses_every_node_and_gives_the_same_metrics(graph, recorder, first_run):
    again = Scheduler(graph, recorder, ThreadExecutor(2)).run()
    assert {n: r.status for n, r in again.nodes.items()} == {n: "cached" for n in again.nodes}
    assert again.metrics == first_run.metrics and again.best == first_run.best


def test_changing_the_training_steps_reruns_only_the_tuned_part(recorder, first_run):
    shorter = compile_pipeline(load_spec(QUICKSTART, ["nodes.train.with.steps=20",
                                                      "nodes.tune.with.trials=2"]))
    result = Scheduler(shorter, recorder, SyncExecutor()).run()
    assert result.status == "succeeded", result.traceback
    assert {n: r.status for n, r in result.nodes.items()} == {
        "digits": "cached", "split": "cached", "xent": "cached",
        "tune": "succeeded", "final": "succeeded"}
    assert result.metrics["final.accuracy"] < first_run.metrics["final.accuracy"]


def test_the_python_front_end_records_the_same_graph(graph):
    import flowopt as fo
    from flowopt.nodes import data, evaluator, loss, model, optimizer, quantizer, tuner

    with fo.Pipeline("quickstart", seed=0) as pipeline:
        lr = fo.param("lr", 0.003, low=3e-4, high=3e-2, log=True)
        hidden = fo.param("hidden", 128, choices=[64, 128, 256])
        train_set, val_set = data.split(data.digits(), val_fraction=0.2)
        net = model.mlp(train_set, hidden=[hidden], node_id="net")
        xent = loss.cross_entropy(label_smoothing=0.1, z_loss=1e-4, node_id="xent")
        trained = optimizer.adam8bit(net, train_set, xent, lr=lr, steps=400, batch_size=64,
                                     node_id="train")
        quant = quantizer.blockwise(trained, bits=8, block_size=256, node_id="quant")
        score = evaluator.classification(quant, val_set, node_id="score")
        tune = tuner.bayesopt(score.accuracy, mode="max", trials=8, parallel=2, node_id="tune")
        evaluator.classification(tune.quant, val_set, node_id="final")
    assert pipeline.graph.cache_keys() == graph.cache_keys()
