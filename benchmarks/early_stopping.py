"""Early stopping: flowopt's pruners vs Optuna's and Ray Tune's on one workload (issue 12).

Workload, the same for every side: an MLP on the bundled digits (80/20 split, the split,
initial weights per width and batch order from the same seeds), AdamW, lr (1e-4..0.1,
log), width (16..256, log, integer) and weight decay (1e-6..1e-2, log) searched,
`--steps` (400) steps per full trial, `--trials` (40) trials, `--workers` (2) at a time,
the objective (validation accuracy) measured every 25 steps where a side can stop.

Sides:

* flowopt, through the pipeline node and a SQLite store (checkpoints included):
  ``random`` with no pruner (the unpruned search), ``random+asha``, ``bayesopt+asha``
  (BOHB-like: the GP learns from each trial's objective where it first stopped),
  ``bayesopt+hyperband``; ASHA/Hyperband with min_steps 25, η = 3 — a paused trial that
  is promoted resumes from its checkpoint.
* Optuna: TPE with ``SuccessiveHalvingPruner`` (min_resource 25, η = 3),
  ``HyperbandPruner`` (25..400, η = 3) and ``MedianPruner`` (Optuna's defaults), threads
  (``n_jobs`` = workers); a pruned trial is killed.
* Ray Tune: random search with ``ASHAScheduler`` (grace period 25 steps, η = 3), a
  function trainable per trial, one CPU each; a stopped trial is killed.

Reported per side: best validation accuracy of the trials trained the full steps, total
training steps consumed, wall-clock (``ray.init`` not counted; the first torch optimizer
import is paid before timing in this process, by Ray's workers inside theirs) and an
anytime table — the best full-trial accuracy once the side had consumed 25/50/100 % of
the unpruned budget (trials × steps). One validation example is 1/360 of accuracy.

    flock /tmp/flowopt-bench.lock python benchmarks/early_stopping.py [--trials 40]
        [--steps 400] [--workers 2] [--seeds 1] [--sides flowopt,optuna,ray]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path

MIN_STEPS, ETA, BATCH = 25, 3, 64
PIPELINE = """pipeline: bench-early-stopping
seed: {seed}
params: {{lr: 0.003, width: 64, weight_decay: 1.0e-4}}
search:
  lr: {{low: 1.0e-4, high: 0.1, log: true}}
  width: {{low: 16, high: 256, log: true, integer: true}}
  weight_decay: {{low: 1.0e-6, high: 1.0e-2, log: true}}
nodes:
  digits: {{kind: data.digits}}
  split:  {{kind: data.split, in: {{dataset: digits}}, with: {{val_fraction: 0.2}}}}
  net:    {{kind: model.mlp, in: {{data: split.train}}, with: {{hidden: ["${{params.width}}"]}}}}
  xent:   {{kind: loss.cross_entropy}}
  train:
    kind: optimizer.adamw
    in: {{model: net, data: split.train, loss: xent}}
    with: {{lr: "${{params.lr}}", weight_decay: "${{params.weight_decay}}", steps: {steps},
           batch_size: {batch}, eval_every: 0}}
  score:  {{kind: evaluator.classification, in: {{model: train, data: split.val}}}}
  tune:
    kind: tuner.{strategy}
    in: {{objective: score.accuracy}}
    with: {{mode: max, trials: {trials}, parallel: {workers}{pruner}}}
"""
FLOWOPT = {"random": ("random", None), "random+asha": ("random", "asha"),
           "bayesopt+asha": ("bayesopt", "asha"), "bayesopt+hyperband": ("bayesopt", "hyperband")}


def anytime(log: list[tuple[int, float | None]], budget: int) -> dict[str, float | None]:
    """Best full-trial accuracy once 25/50/100 % of `budget` steps were consumed; `log` is
    (steps consumed by this event, accuracy of a trial that just finished in full or None),
    in the order things happened."""
    out, used, best = {}, 0, None
    marks = [(f"{p}%", budget * p // 100) for p in (25, 50, 100)]
    for steps, accuracy in log:
        while marks and used + steps > marks[0][1]:
            out[marks.pop(0)[0]] = best
        used += steps
        if accuracy is not None:
            best = accuracy if best is None else max(best, accuracy)
    for name, _ in marks:
        out[name] = best
    return out


# -- flowopt ------------------------------------------------------------------------------------
def flowopt_side(name: str, seed: int, args: argparse.Namespace) -> dict:
    from flowopt.graph import compile_pipeline
    from flowopt.scheduler import Scheduler
    from flowopt.spec import load_spec
    from flowopt.store import Store

    strategy, pruner = FLOWOPT[name]
    extra = (f", pruner: {{name: {pruner}, min_steps: {MIN_STEPS}, reduction_factor: {ETA}}}"
             if pruner else "")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        path.write_text(PIPELINE.format(seed=seed, steps=args.steps, batch=BATCH,
                                        strategy=strategy, trials=args.trials,
                                        workers=args.workers, pruner=extra), encoding="utf-8")
        graph = compile_pipeline(load_spec(path))
        store = Store.open(str(Path(folder) / "store"))
        started = time.perf_counter()
        result = Scheduler(graph, store).run()
        wall = time.perf_counter() - started
        if result.status != "succeeded":
            raise RuntimeError(f"flowopt {name}: {result.error}")
        trials = _trials(store, result.run_id)
        if pruner:
            log, reached = [], {}
            for e in store.pruner_events(result.run_id, "tune"):
                if e["event"] == "report":
                    log.append((e["step"] - reached.get(e["number"], 0),
                                e["value"] if e["step"] == args.steps else None))
                    reached[e["number"]] = e["step"]
        else:
            log = [(args.steps, t.objective) for t in sorted(trials, key=lambda t: t.ended_at)]
        store.close()
    done = [t.objective for t in trials if t.status == "succeeded"]
    return {"side": f"flowopt {name}", "best": max(done), "steps": sum(
        t.steps or args.steps for t in trials), "wall": wall, "full": len(done),
        "anytime": anytime(log, args.trials * args.steps)}


def _trials(store, run_id):
    from sqlalchemy import select

    from flowopt.store.schema import Trial
    from flowopt.store.tuning import _trial_info

    with store.engine.connect() as conn:
        rows = conn.execute(select(Trial.__table__).where(Trial.run_id == run_id)).mappings()
        return [_trial_info(dict(r)) for r in rows]


# -- the same workload for the peers ------------------------------------------------------------
def workload(seed: int, steps: int) -> dict:
    """The split, loss and per-node seeds flowopt's pipeline uses for `seed`."""
    from flowopt.context import Context
    from flowopt.graph import compile_pipeline
    from flowopt.registry import REGISTRY
    from flowopt.spec import PipelineSpec
    from flowopt.yamlfile import load_yaml

    spec = PipelineSpec.model_validate(load_yaml(PIPELINE.format(
        seed=seed, steps=steps, batch=BATCH, strategy="random", trials=2, workers=1,
        pruner=""))[0])
    graph = compile_pipeline(spec)

    def call(nid, inputs):
        node = graph.nodes[nid]
        ctx = Context(run_id="bench", node_id=nid, seed=node.seed, device="cpu",
                      cancel=threading.Event(), emit=lambda *a, **k: None,
                      log_metric=lambda *a: None)
        return REGISTRY.get(node.kind.name).call(ctx, inputs, dict(node.config))

    digits = call("digits", {})["dataset"]
    split = call("split", {"dataset": digits})
    return {"train": split["train"], "val": split["val"], "loss": call("xent", {})["loss"],
            "net_seed": graph.nodes["net"].seed, "train_seed": graph.nodes["train"].seed,
            "steps": steps}


class Training:
    """One trial of the workload, exactly as flowopt's optimizer node trains it."""

    def __init__(self, w: dict, lr: float, width: int, weight_decay: float):
        import torch

        from flowopt.context import Context
        from flowopt.nodes.optimizer.training import Trainer
        from flowopt.registry import REGISTRY

        def ctx(seed):
            return Context(run_id="bench", node_id="x", seed=seed, device="cpu",
                           cancel=threading.Event(), emit=lambda *a, **k: None,
                           log_metric=lambda *a: None, threads=1)

        model = REGISTRY.get("model.mlp").call(ctx(w["net_seed"]), {"data": w["train"]},
                                               {"hidden": [width]})["model"]
        self.trainer = Trainer(model, w["train"], w["loss"], ctx(w["train_seed"]),
                               make_optimizer=lambda p: torch.optim.AdamW(
                                   p, lr=lr, weight_decay=weight_decay),
                               steps=w["steps"], batch_size=BATCH, device="cpu", name="bench")
        self.val, self.evaluator = w["val"], REGISTRY.get("evaluator.classification")

    def advance(self, until: int) -> float:
        self.trainer.run(until=until)
        scores = self.evaluator.call(None, {"model": self.trainer.snapshot(), "data": self.val},
                                     {})
        return float(scores["accuracy"])


class Log:
    """(steps, full-trial accuracy or None) in the order workers consumed them."""

    def __init__(self):
        self.lock, self.entries = threading.Lock(), []

    def add(self, steps: int, accuracy: float | None = None) -> None:
        with self.lock:
            self.entries.append((steps, accuracy))


def optuna_side(name: str, seed: int, args: argparse.Namespace) -> dict:
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    w, log = workload(seed, args.steps), Log()
    pruner = {"tpe+sha": optuna.pruners.SuccessiveHalvingPruner(
                  min_resource=MIN_STEPS, reduction_factor=ETA),
              "tpe+hyperband": optuna.pruners.HyperbandPruner(
                  min_resource=MIN_STEPS, max_resource=args.steps, reduction_factor=ETA),
              "tpe+median": optuna.pruners.MedianPruner()}[name]
    full: list[float] = []

    def objective(trial):
        training = Training(w, trial.suggest_float("lr", 1e-4, 0.1, log=True),
                            trial.suggest_int("width", 16, 256, log=True),
                            trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True))
        for step in range(MIN_STEPS, args.steps + 1, MIN_STEPS):
            accuracy = training.advance(step)
            trial.report(accuracy, step)
            if step == args.steps:
                log.add(MIN_STEPS, accuracy)
                full.append(accuracy)
                return accuracy
            log.add(MIN_STEPS)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=args.trials, n_jobs=args.workers)
    wall = time.perf_counter() - started
    return {"side": f"optuna {name}", "best": max(full), "wall": wall, "full": len(full),
            "steps": sum(s for s, _ in log.entries),
            "anytime": anytime(log.entries, args.trials * args.steps)}


def _ray_trainable(config: dict, w: dict) -> None:
    import torch
    from ray import tune

    torch.set_num_threads(1)
    training = Training(w, config["lr"], config["width"], config["weight_decay"])
    for step in range(MIN_STEPS, w["steps"] + 1, MIN_STEPS):
        tune.report({"acc": training.advance(step), "step": step, "now": time.time()})


def ray_side(name: str, seed: int, args: argparse.Namespace) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    w = workload(seed, args.steps)
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        space = {"lr": tune.loguniform(1e-4, 0.1), "width": tune.lograndint(16, 257),
                 "weight_decay": tune.loguniform(1e-6, 1e-2)}
        scheduler = ASHAScheduler(time_attr="step", max_t=args.steps, grace_period=MIN_STEPS,
                                  reduction_factor=ETA)
        with tempfile.TemporaryDirectory() as folder:
            tuner = tune.Tuner(
                tune.with_resources(tune.with_parameters(_ray_trainable, w=w), {"cpu": 1}),
                param_space=space,
                tune_config=tune.TuneConfig(scheduler=scheduler, metric="acc", mode="max",
                                            num_samples=args.trials,
                                            max_concurrent_trials=args.workers,
                                            search_alg=tune.search.BasicVariantGenerator(
                                                random_state=seed)),
                run_config=tune.RunConfig(storage_path=folder, verbose=0))
            started = time.perf_counter()
            results = tuner.fit()
            wall = time.perf_counter() - started
            points = []
            for result in results:
                if result.error is not None:
                    raise RuntimeError(f"a Ray trial failed: {result.error}")
                frame = result.metrics_dataframe
                for step, acc, now in zip(frame["step"], frame["acc"], frame["now"]):
                    points.append((float(now), int(step), float(acc)))
    finally:
        ray.shutdown()
    points.sort()
    log = [(MIN_STEPS, acc if step == args.steps else None) for _, step, acc in points]
    full = [acc for _, step, acc in points if step == args.steps]
    return {"side": f"ray {name}", "best": max(full), "wall": wall, "full": len(full),
            "steps": sum(s for s, _ in log), "anytime": anytime(log, args.trials * args.steps)}


SIDES = {"flowopt": [(n, flowopt_side) for n in FLOWOPT],
         "optuna": [(n, optuna_side) for n in ("tpe+sha", "tpe+hyperband", "tpe+median")],
         "ray": [("random+asha", ray_side)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--sides", default="flowopt,optuna,ray")
    parser.add_argument("--only", default="", help="comma-separated side names to run")
    args = parser.parse_args()
    import torch._dynamo  # noqa: F401 - once per process: torch.optim imports it (seconds)

    rows: dict[str, list[dict]] = {}
    for side in args.sides.split(","):
        for name, fn in SIDES[side]:
            if args.only and name not in args.only.split(","):
                continue
            for seed in range(args.seeds):
                row = fn(name, seed, args)
                print(json.dumps({**row, "seed": seed}), flush=True)
                rows.setdefault(row["side"], []).append(row)
    budget = args.trials * args.steps
    print(f"\n{args.trials} trials x {args.steps} steps, {args.workers} workers, "
          f"{args.seeds} seed(s); unpruned budget {budget} steps; one val example = 1/360")
    print(f"{'side':<28} {'best acc':>8} {'steps':>7} {'% budget':>8} {'wall s':>7} "
          f"{'@25%':>6} {'@50%':>6} {'@100%':>6} {'full':>5}")
    for side, group in rows.items():
        def mean(key, sub=None):
            values = [(r[key][sub] if sub else r[key]) for r in group]
            values = [v for v in values if v is not None]
            return statistics.fmean(values) if values else math.nan

        print(f"{side:<28} {mean('best'):8.4f} {mean('steps'):7.0f} "
              f"{100 * mean('steps') / budget:7.1f}% {mean('wall'):7.1f} "
              f"{mean('anytime', '25%'):6.3f} {mean('anytime', '50%'):6.3f} "
              f"{mean('anytime', '100%'):6.3f} {mean('full'):5.1f}")


if __name__ == "__main__":
    main()
