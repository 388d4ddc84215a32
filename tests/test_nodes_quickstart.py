"""End to end: pipelines/quickstart.yaml compiles, trains to ≥ 0.95 and re-runs from cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from flowopt.artifacts import Model
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


def test_quickstart_has_the_documented_nodes(graph):
    assert {n.id: n.kind.name for n in graph} == {
        "digits": "data.digits", "split": "data.split", "net": "model.mlp",
        "xent": "loss.cross_entropy", "train": "optimizer.adam",
        "score": "evaluator.classification"}


def test_quickstart_reaches_95_percent_validation_accuracy(first_run):
    assert first_run.status == "succeeded", first_run.traceback
    assert all(r.status == "succeeded" for r in first_run.nodes.values())
    assert first_run.metrics["score.accuracy"] >= 0.95
    assert 0 < first_run.metrics["score.ece"] < 0.5
    assert isinstance(first_run.value("train"), Model)


def test_quickstart_logs_a_falling_training_loss(first_run, recorder):
    series = [value for run_id, node, key, value, _ in recorder.metrics
              if run_id == first_run.run_id and (node, key) == ("train", "loss")]
    assert len(series) == 60 and series[-1] < series[0] / 2


def test_running_again_reuses_every_node_and_gives_the_same_metrics(graph, recorder, first_run):
    again = Scheduler(graph, recorder, ThreadExecutor(2)).run()
    assert {n: r.status for n, r in again.nodes.items()} == {n.id: "cached" for n in graph}
    scored = {k: v for k, v in first_run.metrics.items() if k.startswith("score.")}
    assert {k: again.metrics[k] for k in scored} == scored


def test_threaded_and_sequential_runs_agree(graph, first_run):
    sequential = Scheduler(graph, MemoryRecorder(), SyncExecutor()).run()
    # Same seeds, same batches; only float rounding may differ, because the training loop
    # uses as many torch threads as the executor leaves it (Context.threads).
    assert sequential.metrics == pytest.approx(first_run.metrics, rel=1e-5)


def test_changing_the_training_steps_reruns_only_training_and_scoring(recorder, first_run):
    shorter = compile_pipeline(load_spec(QUICKSTART, ["nodes.train.with.steps=20"]))
    result = Scheduler(shorter, recorder, SyncExecutor()).run()
    assert result.status == "succeeded", result.traceback
    assert {n: r.status for n, r in result.nodes.items()} == {
        "digits": "cached", "split": "cached", "net": "cached", "xent": "cached",
        "train": "succeeded", "score": "succeeded"}  # the cached net was rebuilt from its recipe
    assert result.metrics["score.accuracy"] < first_run.metrics["score.accuracy"]


def test_the_python_front_end_records_the_same_graph(graph):
    import flowopt as fo
    from flowopt.nodes import data, evaluator, loss, model, optimizer

    with fo.Pipeline("quickstart", seed=0) as pipeline:
        lr, hidden = fo.param("lr", 0.003), fo.param("hidden", 256)
        train_set, val_set = data.split(data.digits(), val_fraction=0.2)
        net = model.mlp(train_set, hidden=[hidden], node_id="net")
        xent = loss.cross_entropy(label_smoothing=0.1, node_id="xent")
        trained = optimizer.adam(net, train_set, xent, lr=lr, steps=600, batch_size=64,
                                 node_id="train")
        evaluator.classification(trained, val_set, node_id="score")
    assert pipeline.graph.cache_keys() == graph.cache_keys()
