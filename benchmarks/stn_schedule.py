"""Claim (c) of Self-Tuning Networks at small scale, with the paper's set-up, and Delta-STN.

MacKay et al. (2019) retrain from scratch with the hyperparameter *schedule* an STN run
found and compare with training at the schedule's *final* value held fixed. Here, per
seed, on the digits (stratified 80/20 train/validation split, seed 0), an MLP
64-128-128-10 whose two dropout rates start at 0.05, SGD lr 0.01 momentum 0.9, batches
of 64:

1. one STN run of ``--steps`` weight steps (warm-up ``--warmup``, T_train 5, T_valid 1,
   hyper lr ``--hyper-lr``; ``--delta``: Delta-STN), general weights initialised from the
   plain MLP of that seed;
2. ``scheduled``: the plain MLP, same initialisation, same batch order and mask seed,
   trained ``--steps`` steps with its dropout rates replayed from the schedule at every
   step (`loop.retrain`);
3. ``fixed``: the same, with the schedule's final rates held fixed.

Printed per seed (one JSON line): the exported STN's validation loss (claim (a)'s
quantity), the two retrainings' validation losses and ``diff`` = fixed − scheduled
(positive: the schedule wins), the range of each rate along the schedule and its final
value, and the seconds taken. ``--no-retrain`` skips 2 and 3 (for Delta-STN against
STN on claim (a)).

Usage (repository root, venv)::

    python benchmarks/stn_schedule.py --steps 6000 --hyper-lr 0.01 --seeds 0 1 2
    python benchmarks/stn_schedule.py --delta --no-retrain --seeds 0 1 2
    python benchmarks/stn_schedule.py --quick      # timing only: 1 seed, 300 steps
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import torch
import torch.nn.functional as F

from flowopt.artifacts import Model
from flowopt.context import Context
from flowopt.nodes.data import digits, split
from flowopt.nodes.layers import make_mlp
from flowopt.nodes.stn_layers import build_stn, load_general
from flowopt.nodes.tuner.stn.loop import Settings, StnLoop, retrain

HIDDEN = [128, 128]
START = 0.05


def optimizer(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def base(dropout) -> dict:
    return {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": HIDDEN,
            "activation": "relu", "dropout": dropout}


def plain(dropout, seed: int) -> Model:
    return Model(module=make_mlp(64, 10, HIDDEN, dropout=dropout,
                                 generator=torch.Generator().manual_seed(seed)),
                 recipe=base(dropout))


@torch.no_grad()
def val_loss(module, val) -> float:
    return float(F.cross_entropy(module.eval()(val.x), val.y))


def one_seed(seed: int, args: argparse.Namespace, train, val) -> dict:
    started = time.perf_counter()
    hyper = [{"name": f"dropout.{i}", "low": 0.0, "high": 0.9} for i in range(len(HIDDEN))]
    net = build_stn(base(START), hyper, delta=args.delta,
                    generator=torch.Generator().manual_seed(seed + 100))
    load_general(net, plain(START, seed).module)
    stn = StnLoop(net, base(START), train, val, F.cross_entropy, optimizer,
                  Settings(steps=args.steps, warmup=args.warmup, train_steps=5,
                           hyper_lr=args.hyper_lr, delta=args.delta), seed=seed).run()
    names = [f"dropout.{i}" for i in range(len(HIDDEN))]
    row = {"seed": seed, "steps": args.steps, "hyper_lr": args.hyper_lr, "delta": args.delta,
           "stn": round(val_loss(stn.plain.module, val), 4),
           "final": [round(stn.final[n], 3) for n in names]}
    if not args.no_retrain:
        final = [stn.final[n] for n in names]
        first = [stn.schedule[0][1][n] for n in names]
        scheduled = val_loss(retrain(plain(first, seed), train, F.cross_entropy, optimizer,
                                     stn.schedule, steps=args.steps, batch_size=64,
                                     seed=seed), val)
        fixed = val_loss(retrain(plain(final, seed), train, F.cross_entropy, optimizer, [],
                                 steps=args.steps, batch_size=64, seed=seed), val)
        row.update(scheduled=round(scheduled, 4), fixed=round(fixed, 4),
                   diff=round(fixed - scheduled, 4),
                   range={n: [round(min(v[n] for _, v in stn.schedule), 3),
                              round(max(v[n] for _, v in stn.schedule), 3)] for n in names})
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1250)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--hyper-lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--delta", action="store_true")
    parser.add_argument("--no-retrain", action="store_true")
    parser.add_argument("--quick", action="store_true", help="timing only: 1 seed, 300 steps")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.seeds = 300, 50, [0]
    torch.set_num_threads(1)
    ctx = Context(run_id="bench", node_id="split", seed=0, device="cpu",
                  cancel=threading.Event(), emit=lambda *_, **__: None,
                  log_metric=lambda *_: None)
    parts = split.fn(digits.fn(), ctx, val_fraction=0.2)
    for seed in args.seeds:
        print(json.dumps(one_seed(seed, args, parts["train"], parts["val"])), flush=True)


if __name__ == "__main__":
    main()
