"""Claims of Self-Tuning Networks (MacKay et al. 2019) at small scale, on the digits.

Workload: an MLP 64-128-128-10 whose two dropout rates start at 0.05 (the paper's
start), SGD lr 0.01 momentum 0.9 (the reference's weight optimiser), batches of 64,
a stratified 80/20 train/validation split. Each claim is averaged over `SEEDS` (model
initialisation, batch order, masks); the margins are the claims' own, chosen from the
per-seed numbers recorded in docs/stn.md, not tuned to pass.

Claim (c), retraining from scratch along STN's schedule beating its final value held
fixed, is **not reproduced** at this scale (numbers in docs/stn.md and
benchmarks/RESULTS.md): with the paper's set-up (the schedule replayed per weight step
in a fresh run from the same initialisation, batch order and mask seed; the compared
value is the schedule's last; validation loss at the end, over seeds) the schedule
makes no difference at this test's 1,250 steps, and is *worse* at 3,000–6,000 steps,
where it moves enough to matter. The tests assert what holds: the replay is exact, and
at this scale the two retrainings end within 5% of each other on average.

Compute is counted in mini-batch passes (one forward and backward on one batch): a grid
point trains `STEPS`; the STN run makes `STN_STEPS` weight steps plus one hyperparameter
step per `T_TRAIN` weight steps, together no more than one grid point's passes, i.e.
≤ 1/k of a k-point grid. (An STN pass costs about twice a plain one in multiply-adds —
two matrix products per layer — which docs/stn.md states beside the numbers.)
"""
from __future__ import annotations

import statistics

import pbt_support
import pytest
import torch
import torch.nn.functional as F

# The workload is the one benchmarks/stn_schedule.py records (one definition for both).
WORKLOAD = pbt_support.load_benchmark("stn_schedule")
HIDDEN, START = WORKLOAD.HIDDEN, WORKLOAD.START
_base, _plain, _optimizer = WORKLOAD.base, WORKLOAD.plain, WORKLOAD.optimizer
_val_loss = WORKLOAD.val_loss

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
STEPS = 1500  # per grid point
GRID = (0.0, 0.2, 0.4, 0.6)  # fixed dropout rates, both layers
STN_STEPS, WARMUP, T_TRAIN = 1250, 100, 5


@pytest.fixture(scope="module")
def digits():
    import threading

    from flowopt.context import Context
    from flowopt.nodes.data import digits, split

    ctx = Context(run_id="claims", node_id="split", seed=0, device="cpu",
                  cancel=threading.Event(), emit=lambda *_, **__: None,
                  log_metric=lambda *_: None)
    parts = split.fn(digits.fn(), ctx, val_fraction=0.2)
    return parts["train"], parts["val"]


@pytest.fixture(scope="module")
def runs(digits):
    """Per seed: the grid's val losses, the STN run, and the two retrainings."""
    from flowopt.nodes.stn_layers import build_stn, load_general
    from flowopt.nodes.tuner.stn.loop import Settings, StnLoop, retrain

    train, val = digits
    torch.set_num_threads(1)
    out = []
    for seed in SEEDS:
        grid = {rate: _val_loss(retrain(_plain(rate, seed), train, F.cross_entropy, _optimizer,
                                        [], steps=STEPS, batch_size=64, seed=seed), val)
                for rate in GRID}
        hyper = [{"name": f"dropout.{i}", "low": 0.0, "high": 0.9} for i in range(len(HIDDEN))]
        net = build_stn(_base(START), hyper, generator=torch.Generator().manual_seed(seed + 100))
        load_general(net, _plain(START, seed).module)
        stn = StnLoop(net, _base(START), train, val, F.cross_entropy, _optimizer,
                      Settings(steps=STN_STEPS, warmup=WARMUP, train_steps=T_TRAIN,
                               hyper_lr=0.01), seed=seed).run()
        final = [stn.final[f"dropout.{i}"] for i in range(len(HIDDEN))]
        first = [stn.schedule[0][1][f"dropout.{i}"] for i in range(len(HIDDEN))]
        scheduled = retrain(_plain(first, seed), train, F.cross_entropy, _optimizer,
                            stn.schedule, steps=STN_STEPS, batch_size=64, seed=seed)
        fixed = retrain(_plain(final, seed), train, F.cross_entropy, _optimizer, [],
                        steps=STN_STEPS, batch_size=64, seed=seed)
        out.append({"seed": seed, "grid": grid, "stn": _val_loss(stn.plain.module, val),
                    "passes": stn.passes, "final": final,
                    "scheduled": _val_loss(scheduled, val), "fixed": _val_loss(fixed, val)})
    for row in out:  # shown with -s: the numbers docs/stn.md records
        print(row)
    return out


def test_one_stn_run_is_as_good_as_the_best_of_a_grid_at_a_kth_of_its_compute(runs):
    k = len(GRID)
    for row in runs:
        assert row["passes"] <= k * STEPS / k  # one grid point's passes: 1/k of the grid
    best_grid = statistics.mean(min(row["grid"].values()) for row in runs)
    stn = statistics.mean(row["stn"] for row in runs)
    assert stn <= best_grid, (stn, best_grid)


def test_the_tuned_dropout_moves_away_from_its_start(runs):
    # moved by a fifth of its start or more, on average over layers and seeds
    moved = statistics.mean(abs(rate - START) for row in runs for rate in row["final"])
    assert moved >= 0.2 * START, moved


def test_the_replay_is_exact_same_init_same_batches_and_each_value_from_its_step(digits):
    from flowopt.nodes.tuner.stn.loop import retrain

    train, _ = digits
    torch.set_num_threads(1)

    def run(start, schedule, steps):
        return retrain(_plain(start, 7), train, F.cross_entropy, _optimizer, schedule,
                       steps=steps, batch_size=64, seed=7).state_dict()

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    rates = {"dropout.0": 0.1, "dropout.1": 0.2}
    fixed = run([0.1, 0.2], [], 60)
    # the schedule's first point sets the rates from step 1, whatever the model was built with
    assert same(run([0.5, 0.5], [(1, rates)], 60), fixed)
    later = [(1, rates), (41, {"dropout.0": 0.6, "dropout.1": 0.6})]
    assert same(run([0.1, 0.2], later, 40), run([0.1, 0.2], [], 40))  # not before step 41
    assert not same(run([0.1, 0.2], later, 60), fixed)  # and from step 41 on


def test_retraining_along_the_schedule_and_at_its_final_value_end_within_5_percent(runs):
    """What holds of claim (c) at this scale (see the module docstring): neither wins."""
    scheduled = statistics.mean(row["scheduled"] for row in runs)
    fixed = statistics.mean(row["fixed"] for row in runs)
    assert abs(scheduled - fixed) <= 0.05 * fixed, (scheduled, fixed)
