"""Self-Tuning Networks against BO, PBT and random search on one digits workload.

Workload (every side): the digits split 60/20/20 into train / validation / test
(stratified, seed 0), an MLP 64-128-128-10, SGD lr 0.01 momentum 0.9 (the reference's
weight optimiser), batches of 64, 1,500 steps per training run. The budget is
``TRIALS`` × 1,500 training steps:

* ``tuner.random`` and ``tuner.bayesopt``: ``TRIALS`` trials over the dropout rate (one
  for both layers, [0, 0.9]) and Gaussian input noise ([0, 1]), each trained 1,500 steps;
* ``tuner.pbt``: ``TRIALS`` members × 1,500 steps — PBT can only change what training can
  change mid-run, so it tunes SGD's lr (log [1e-3, 0.1]) and weight decay (log [1e-6,
  1e-2]) instead, with dropout fixed at 0.05 and no input noise;
* ``tuner.stn``: one run of 1,500 weight steps (dropout per layer and input noise, both
  starting at 0.05; 1/``TRIALS`` of the budget), the same with Delta-STN
  (``delta_stn: true``: two updates per weight step, so about twice the passes), and
  one run using the whole budget (``TRIALS`` × 1,500 mini-batch passes: weight and
  hyperparameter steps together).

Reported per side: the tuner's objective (validation loss of its best / final model),
that model's loss and accuracy on the *test* split (which no tuner sees — STN fits its
hyperparameters, and through them its hyper-gates, on validation batches, so the
validation loss alone would flatter it), the training steps (mini-batch passes)
consumed and the wall-clock of the tuner node. Each side runs in its own ``flowopt run``
process with caching off, one after another.

Usage (from the repository root, in the venv)::

    python benchmarks/stn.py              # TRIALS = 8, seed 0
    python benchmarks/stn.py --trials 4 --seed 1
    python benchmarks/stn.py --only "stn (1 run)" delta-stn   # quick: the two one-run sides
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

COMMON = """
pipeline: bench-stn
seed: {seed}
params: {params}
search: {search}
nodes:
  digits: {{kind: data.digits}}
  outer:  {{kind: data.split, in: {{dataset: digits}}, with: {{val_fraction: 0.2}}}}
  split:  {{kind: data.split, in: {{dataset: outer.train}}, with: {{val_fraction: 0.25}}}}
  net:
    kind: model.mlp
    in: {{data: split.train}}
    with: {net}
  xent:   {{kind: loss.cross_entropy}}
  train:
    kind: optimizer.sgd
    in: {{model: net, data: split.train, loss: xent}}
    with: {train}
  score:  {{kind: evaluator.classification, in: {{model: train, data: split.val}}}}
  tune:
    kind: {tuner}
    in: {{objective: score.loss}}
    with: {tune}
  test:   {{kind: evaluator.classification, in: {{model: tune.train, data: outer.val}}}}
"""

STEPS = 1500
REGULARISERS = {"params": {"dropout": 0.05, "noise": 0.05},
                "search": {"dropout": {"low": 0.0, "high": 0.9},
                           "noise": {"low": 0.0, "high": 1.0}},
                "net": {"hidden": [128, 128], "dropout": "${params.dropout}",
                        "input_noise": "${params.noise}"},
                "train": {"lr": 0.01, "momentum": 0.9, "steps": STEPS, "batch_size": 64}}


def sides(trials: int) -> dict[str, dict]:
    stn_full = trials * STEPS * 5 // 6  # weight steps: with one hyper step per 5, the budget
    return {
        "random": {**REGULARISERS, "tuner": "tuner.random",
                   "tune": {"mode": "min", "trials": trials}},
        "bayesopt": {**REGULARISERS, "tuner": "tuner.bayesopt",
                     "tune": {"mode": "min", "trials": trials}},
        "pbt": {"params": {"lr": 0.01, "weight_decay": 1e-5},
                "search": {"lr": {"low": 1e-3, "high": 0.1, "log": True},
                           "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True}},
                "net": {"hidden": [128, 128], "dropout": 0.05},
                "train": {"lr": "${params.lr}", "momentum": 0.9,
                          "weight_decay": "${params.weight_decay}", "steps": STEPS,
                          "batch_size": 64},
                "tuner": "tuner.pbt",
                "tune": {"mode": "min", "population": trials, "interval": 150,
                         "fraction": 0.25}},
        "stn (1 run)": {**REGULARISERS, "tuner": "tuner.stn",
                        "tune": {"mode": "min", "warmup": 100, "hyper_lr": 0.01}},
        "delta-stn (1 run)": {**REGULARISERS, "tuner": "tuner.stn",
                              "tune": {"mode": "min", "warmup": 100, "hyper_lr": 0.01,
                                       "delta_stn": True}},
        "stn (budget)": {**REGULARISERS, "tuner": "tuner.stn",
                         "tune": {"mode": "min", "warmup": 100, "hyper_lr": 0.01,
                                  "steps": stn_full}},
    }


def pipeline(side: dict, seed: int) -> str:
    dump = lambda value: json.dumps(value)  # noqa: E731 - JSON is YAML flow syntax
    return COMMON.format(seed=seed, params=dump(side["params"]), search=dump(side["search"]),
                         net=dump(side["net"]), train=dump(side["train"]),
                         tuner=side["tuner"], tune=dump(side["tune"]))


def run(name: str, side: dict, seed: int, folder: Path) -> dict:
    path = folder / f"{name.split()[0]}-{len(list(folder.iterdir()))}.yaml"
    text = pipeline(side, seed)
    yaml.safe_load(text)  # fail here, not in the subprocess, on a formatting slip
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(path), "--json",
                           "--no-cache", "--store", str(folder / "store")],
                          capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    metrics = report["metrics"]
    tuner_seconds = report["nodes"]["tune"]["seconds"]
    if side["tuner"] == "tuner.stn":
        passes = metrics["tune.passes"]
    elif side["tuner"] == "tuner.pbt":
        passes = metrics.get("tune.steps_trained", side["tune"]["population"] * STEPS)
    else:
        passes = side["tune"]["trials"] * STEPS
    return {"side": name, "val_loss": report["best"]["objective"],
            "test_loss": metrics["test.loss"], "test_accuracy": metrics["test.accuracy"],
            "passes": int(passes), "tuner_seconds": tuner_seconds, "process_seconds": wall,
            "params": report["best"]["params"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only these sides")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, side in sides(args.trials).items():
            if args.only and name.split()[0] not in args.only and name not in args.only:
                continue
            rows.append(run(name, side, args.seed, folder))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\ntrials/members {args.trials}, {STEPS} steps each, seed {args.seed} · "
          f"Python {platform.python_version()} · {platform.machine()}\n")
    print("| tuner | val loss (objective) | test loss | test accuracy | passes | "
          "tuner wall s | final params |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        params = json.dumps({k: (v if isinstance(v, (int, str)) else
                                 [round(x, 3) for x in v] if isinstance(v, list) else
                                 float(f"{v:.3g}")) for k, v in r["params"].items()})
        print(f"| {r['side']} | {r['val_loss']:.4f} | {r['test_loss']:.4f} | "
              f"{r['test_accuracy']:.4f} | {r['passes']} | {r['tuner_seconds']:.1f} | "
              f"`{params}` |")


if __name__ == "__main__":
    main()
