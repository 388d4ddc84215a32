"""The papers' claims at small scale, on the bundled digits with fixed seeds, and the
AlgoPerf-style comparison pipeline end to end.

* 8-bit Adam (Dettmers et al. 2022): same validation accuracy as fp32 Adam within 1 point
  and a final training loss within 5%, with every state tensor quantized.
* Lion (Chen et al. 2023): reaches Adam's validation accuracy (within 1 point) with a
  3× smaller learning rate and, as the paper prescribes, a weight decay 3× larger so
  that lr·λ is unchanged.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from flowopt.artifacts import Loss
from flowopt.executors import ThreadExecutor
from flowopt.graph import compile_pipeline
from flowopt.nodes import data, evaluator, model, optimizer
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec

pytestmark = pytest.mark.slow
PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "compare_optimizers.yaml"
XENT = Loss(recipe={"builder": "cross_entropy", "label_smoothing": 0.1, "z_loss": 0.0})


@pytest.fixture(scope="module")
def digits(request):
    from flowopt.context import Context
    import threading

    def ctx(seed):
        return Context(run_id="t", node_id="n", seed=seed, device="cpu", cancel=threading.Event(),
                       emit=lambda *a, **k: None, log_metric=lambda *a: None)

    parts = data.split.fn(data.digits.fn(), ctx(1), val_fraction=0.2)
    net = model.mlp.fn(parts["train"], ctx(2), hidden=[128])
    return parts["train"], parts["val"], net, ctx


def outcome(trained, train, val):
    with torch.no_grad():
        accuracy = (trained.module(val.x).argmax(-1) == val.y).double().mean().item()
        loss = XENT.build()(trained.module(train.x), train.y).item()
    return accuracy, loss


SEEDS = (3, 4, 5)


def mean(xs):
    return sum(xs) / len(xs)


def test_adam8bit_matches_fp32_adam_in_accuracy_and_final_training_loss(digits):
    # Averaged over three training seeds: one seed's accuracy moves by single validation
    # examples from one CPU to another, the claim's margins do not.
    train, val, net, ctx = digits
    run = dict(lr=3e-3, steps=300, batch_size=64, device="cpu")
    fp32 = [outcome(optimizer.adam.fn(net, train, XENT, ctx(s), **run), train, val)
            for s in SEEDS]
    low = [outcome(optimizer.adam8bit.fn(net, train, XENT, ctx(s), min_8bit_size=0, **run),
                   train, val) for s in SEEDS]
    accuracy = mean([a for a, _ in fp32]), mean([a for a, _ in low])
    loss = mean([l for _, l in fp32]), mean([l for _, l in low])
    assert accuracy[0] > 0.95
    assert abs(accuracy[1] - accuracy[0]) <= 0.01, accuracy
    assert abs(loss[1] - loss[0]) <= 0.05 * loss[0], loss


def test_lion_reaches_adamw_accuracy_with_a_three_times_smaller_learning_rate(digits):
    train, val, net, ctx = digits
    run = dict(steps=600, batch_size=64, device="cpu")
    adamw = mean([outcome(optimizer.adamw.fn(net, train, XENT, ctx(s), lr=3e-3, weight_decay=0.1,
                                             **run), train, val)[0] for s in SEEDS])
    lion = mean([outcome(optimizer.lion.fn(net, train, XENT, ctx(s), lr=1e-3, weight_decay=0.3,
                                           **run), train, val)[0] for s in SEEDS])
    assert adamw > 0.96
    assert lion >= adamw - 0.01, (lion, adamw)


def test_steps_to_target_reads_the_first_step_at_or_above_the_target():
    from flowopt.artifacts import Model

    trained = Model(module=None, recipe={}, meta={"val_curve": [[20, 0.8], [40, 0.96], [60, 0.95]]})
    assert evaluator.steps_to_target.fn(trained, target=0.95) == {"steps": 40.0, "reached": 1.0}
    assert evaluator.steps_to_target.fn(trained, target=0.99) == {"steps": math.inf,
                                                                  "reached": 0.0}
    with pytest.raises(ValueError, match="'val' input"):
        evaluator.steps_to_target.fn(Model(module=None, recipe={}, meta={}))


def test_the_comparison_pipeline_runs_and_reports_steps_to_target_for_each_optimizer():
    graph = compile_pipeline(load_spec(PIPELINE))
    result = Scheduler(graph, MemoryRecorder(), ThreadExecutor(2)).run()
    assert result.status == "succeeded", result.traceback
    times = {k.split("_time.")[0]: v for k, v in result.metrics.items() if k.endswith("_time.steps")}
    assert set(times) == {"adam", "adam8bit", "lion", "adamp", "diffgrad", "stable_spam",
                          "adamw_cosine"}
    assert all(result.metrics[f"{name}_time.reached"] == 1.0 for name in ("adam", "adam8bit"))
    # 8-bit Adam needs about as many steps as Adam (within two evaluation windows).
    assert abs(times["adam8bit"] - times["adam"]) <= 40
