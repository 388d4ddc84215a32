"""Tune a custom objective from Python: accuracy traded against model size.

The objective is a node of our own, written with ``@fo.node``: it takes the trained
model and the validation split (artifact-typed arguments are input ports) and returns
one metric, ``score`` = accuracy − ``penalty`` · log10(parameter count). A tuner binds it
like any metric port. The searched params are declared with ``fo.param(..., low=,
high=)``; the data, the split and the loss do not depend on them and run once, while
each trial (a child run in the store) builds, trains and scores one network.

    python examples/custom_objective.py            # 8 trials, 2 at a time (--trials, --steps)
    flowopt runs show <run-id>                     # the trials, each with its params

The best trial's trained model is the tuner's output ``tune.train``; the pipeline
scores it again with the built-in evaluator (``final``) to show how to use it.
"""
from __future__ import annotations

import math

import flowopt as fo
from flowopt.nodes import data, evaluator, loss, model, optimizer, tuner


@fo.node("example.compact_accuracy", metrics=["score"], deterministic=True)
def compact_accuracy(model: fo.Model, data: fo.Dataset, penalty: float = 0.02) -> float:
    """Validation accuracy minus `penalty` per decade of parameters (higher is better)."""
    import torch

    with torch.no_grad():
        predicted = model.module.eval()(data.x).argmax(dim=-1)
    accuracy = (predicted == data.y).double().mean().item()
    size = sum(p.numel() for p in model.module.parameters())
    return accuracy - penalty * math.log10(size)


def build(trials: int = 8, parallel: int = 2, steps: int = 200) -> fo.Pipeline:
    with fo.Pipeline("compact-digits", seed=0) as pipeline:
        lr = fo.param("lr", 0.003, low=1e-3, high=3e-2, log=True)
        width = fo.param("width", 32, low=4, high=128, integer=True, log=True)
        train_set, val_set = data.split(data.digits(), val_fraction=0.2)
        net = model.mlp(train_set, hidden=[width])
        trained = optimizer.adam(net, train_set, loss.cross_entropy(), lr=lr, steps=steps,
                                 node_id="train")
        score = compact_accuracy(trained, val_set)
        tune = tuner.random(score.score, mode="max", trials=trials, parallel=parallel,
                            node_id="tune")
        evaluator.classification(tune.train, val_set, node_id="final")
    return pipeline


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(description="Tune the compact-accuracy objective.")
    cli.add_argument("store", nargs="?", help="store directory or URL [default: ./.flowopt]")
    cli.add_argument("--trials", type=int, default=8)
    cli.add_argument("--steps", type=int, default=200, help="training steps per trial")
    args = cli.parse_args()
    run = build(trials=args.trials, steps=args.steps).run(store=args.store)
    print(f"run {run.run_id} {run.status}: best {run.best['params']} "
          f"score {run.best['objective']:.4f}, "
          f"accuracy of the best model {run.metrics['final.accuracy']:.4f}")
