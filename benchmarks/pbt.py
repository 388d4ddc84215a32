"""PBT on digits: claim (b) vs random search, and flowopt's tuner.pbt vs Ray Tune's PBT.

Issue 6. Workload: an MLP(64) on the bundled digits (80/20 split), lr and weight decay
searched on log domains, `STEPS` steps per member, ready every `INTERVAL` steps.

``--part claim`` — claim (b): PBT's best validation accuracy vs random search's on the
same total training budget, over `--seeds` seeds (5), for several configurations (population,
interval, workers). The comparison is paired: random search's first trials are the
population's initial draws (each trained straight through, with the member's own batch
order), so the difference is what exploit/explore did with them; random search then gets
further draws until it has trained at least as many steps as PBT did (a copy of an older
checkpoint re-trains steps, so PBT uses a little more than population x steps: random
search gets that as one more whole run). Printed per configuration: the means, how many
seeds PBT wins or ties, and the learning-rate schedule the best member discovered.
Members train through the Python API (`Population` over `TrainerTrainable`, Adam, one
worker, checkpoints in memory: the store does not change results).

``--part ray`` — one population (4 members, AdamW, 2 at a time, truncation 0.25,
perturb x0.8/x1.2, resample 0.25) through flowopt's pipeline node (`tuner.pbt` on
`pipelines/tune_pbt.yaml`, events and checkpoints in a SQLite store) and through Ray
Tune's `PopulationBasedTraining` (function trainable, a checkpoint per ready point), on
the same cores. Ray gets exactly flowopt's inputs — the split, the initial weights and
the loss read back from flowopt's store, each member's initial params and batch order,
the optimizer node's options — so the accuracies compare. flowopt is also run with one
worker. Printed: wall-clock, best final accuracy, steps trained, and overhead = 1 −
(time inside training steps, summed over workers) / (workers × wall-clock): the share
of the workers' time not spent training, split into scoring (evaluating the objective at
each ready point, timed the same way on both sides) and the engine's own share (the
rest: checkpoints, copies, scheduling, records). Ray's `ray.init` is reported separately and not
counted in its wall-clock. The first torch optimizer a process builds imports
``torch._dynamo`` (2.5–3.5 s here): the benchmark process does that before timing
flowopt; Ray's worker processes pay it themselves, inside its wall-clock (that is how
Ray runs trials).

    flock /tmp/flowopt-bench.lock /work/benchvenv/bin/python benchmarks/pbt.py [--part claim|ray] [--seeds N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from flowopt.context import Context
from flowopt.nodes import data, loss, model
from flowopt.nodes.tuner.pbt.policy import PbtConfig, initial_params
from flowopt.nodes.tuner.pbt.population import Population
from flowopt.spec import Domain
from pbt_baseline import random_search  # beside this file (python benchmarks/pbt.py)

ROOT = Path(__file__).resolve().parents[1]
STEPS, INTERVAL, BATCH = 400, 50, 64
SPACE = {"lr": Domain(low=1e-4, high=0.1, log=True),
         "weight_decay": Domain(low=1e-6, high=1e-2, log=True)}
WIDE = {"lr": Domain(low=1e-5, high=1.0, log=True),
        "weight_decay": Domain(low=1e-6, high=1e-1, log=True)}
# (space, population, interval, workers); fraction: the paper's 0.2
CLAIM_CONFIGS = [("lr 1e-4..0.1", SPACE, 4, 50, 1), ("lr 1e-4..0.1", SPACE, 8, 50, 1),
                 ("lr 1e-5..1", WIDE, 4, 50, 1), ("lr 1e-4..0.1", SPACE, 4, 50, 2)]


def task(seed: int):
    ctx = Context(run_id="bench", node_id="n", seed=seed, device="cpu", cancel=threading.Event(),
                  emit=lambda *a, **k: None, log_metric=lambda *a: None)
    parts = data.split.fn(data.digits.fn(), ctx, val_fraction=0.2)
    net = model.mlp.fn(parts["train"], ctx, hidden=[64])
    return net, parts["train"], parts["val"], loss.cross_entropy.fn()


def lr_schedule(member) -> str:
    return " -> ".join(f"{p['lr']:.2g}@{step}" for step, p in member.schedule)


# -- claim (b) ------------------------------------------------------------------------------
def paired_claim(trainable, space, population: int, interval: int, seed: int, workers: int = 1,
                 steps: int = STEPS):
    """``(PBT result, paired random search)`` on one seed (`pbt_baseline.random_search`)."""
    config = PbtConfig(population=population, interval=interval)
    result = Population(trainable, space, config, steps=steps, seed=seed, parallel=workers).run()
    return result, random_search(trainable, space, population=population,
                                 budget=result.steps_trained, steps=steps, seed=seed)


def claim(seeds: int) -> None:
    from flowopt.nodes.tuner.pbt.training import TrainerTrainable

    print(f"claim (b): digits MLP(64), Adam, {STEPS} steps/member, fraction 0.2, {seeds} seeds; "
          "random search = the population's initial draws trained straight, then more draws "
          "until it has trained at least PBT's steps")
    print(f"{'space':>12} {'pop':>3} {'every':>5} {'workers':>7} {'PBT best':>8} "
          f"{'random best':>11} {'PBT-random':>10} {'PBT >= random':>13} {'steps PBT':>9} "
          f"{'random runs':>11}")
    for label, space, population, interval, workers in CLAIM_CONFIGS:
        rows = []
        for seed in range(seeds):
            net, train, val, xent = task(seed)
            trainable = TrainerTrainable(net, train, val, xent, steps=STEPS, batch_size=BATCH,
                                         seed=seed)
            result, baseline = paired_claim(trainable, space, population, interval, seed,
                                            workers)
            rows.append((result, baseline.best, len(baseline.trials)))
        pbt = statistics.mean(r.best.score for r, _, _ in rows)
        rnd = statistics.mean(b for _, b, _ in rows)
        wins = sum(r.best.score >= b for r, b, _ in rows)
        print(f"{label:>12} {population:>3} {interval:>5} {workers:>7} {pbt:>8.4f} {rnd:>11.4f} "
              f"{pbt - rnd:>+10.4f} {wins:>9}/{seeds} "
              f"{statistics.mean(r.steps_trained for r, _, _ in rows):>9.0f} "
              f"{statistics.mean(t for _, _, t in rows):>11.1f}")
        for seed, (result, best, _) in enumerate(rows):
            print(f"{'':>16} seed {seed}: {result.best.score:.4f} vs {best:.4f}; best member "
                  f"{result.best.member} (weights of {result.best.origin}), lr "
                  f"{lr_schedule(result.best)}")
        sys.stdout.flush()


# -- flowopt tuner.pbt vs Ray Tune -----------------------------------------------------------
POPULATION, WORKERS, FRACTION = 4, 2, 0.25


def flowopt_node(seed: int, workers: int = WORKERS, executor: str = "local") -> dict:
    """tuner.pbt on the example pipeline; also returns the tuner's inputs for Ray.
    ``executor="ray"``: members on Ray actors (a local Ray of `WORKERS` CPUs, started and
    stopped by the run; the tuner's wall-clock includes starting its actors)."""
    from flowopt.executors import make_executor
    from flowopt.graph import compile_pipeline
    from flowopt.nodes.tuner.pbt.session import build_trainable
    from flowopt.scheduler import Scheduler
    from flowopt.spec import load_spec
    from flowopt.store import Store
    from flowopt.tuning.kinds import split_config

    overrides = [f"seed={seed}", f"nodes.train.with.steps={STEPS}",
                 f"nodes.tune.with.population={POPULATION}", f"nodes.tune.with.interval={INTERVAL}",
                 f"nodes.tune.with.parallel={workers}", f"nodes.tune.with.fraction={FRACTION}"]
    import torch._dynamo  # noqa: F401 - once per process: torch.optim imports it (2.5-3.5 s here)

    graph = compile_pipeline(load_spec(ROOT / "pipelines" / "tune_pbt.yaml", overrides))
    node = graph.nodes["tune"]
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(folder)
        engine = make_executor("ray", WORKERS) if executor == "ray" else None
        result = Scheduler(graph, store, engine).run()
        _, refs = store.node_inputs(result.run_id, "tune")
        values = {port: store.load(ref) for port, ref in refs.items()}
        store.close()
    _, config = split_config(node.kind.name, dict(node.config))
    trainable = build_trainable(graph, graph.tuners["tune"], config, values, seed=node.seed)
    scored = graph.nodes["score"].inputs["data"]  # the evaluator's validation split
    inputs = {"model": trainable.model, "data": trainable.data,
              "val": values[f"{scored.node}.{scored.port}"],
              "loss": trainable.loss, "optimizer": trainable.optimizer, "fixed": trainable.fixed,
              "schedule": trainable.schedule, "batch_size": trainable.batch_size,
              "seed": node.seed, "steps": STEPS,
              "initial": [trainable.as_fields(initial_params(graph.tuners["tune"].space,
                                                             node.seed, k))
                          for k in range(POPULATION)]}
    m = result.metrics
    return {"wall": m["tune.wall_seconds"], "acc": result.best["objective"],
            "train": m["tune.train_seconds"], "eval": m["tune.eval_seconds"],
            "steps": m["tune.steps_trained"], "workers": workers,
            "ready": m.get("tune.actors_ready_seconds", 0.0)}, inputs


def _ray_trainable(config: dict, inputs: dict) -> None:
    from ray import tune

    from flowopt.nodes.tuner.pbt.training import TrainerTrainable, decode, encode

    # the steps come with the inputs: a Ray worker imports this module afresh, so a STEPS
    # the driver changed (ray_executor.py --steps) would not reach it as a global
    steps = inputs["steps"]
    trainable = TrainerTrainable(inputs["model"], inputs["data"], inputs["val"], inputs["loss"],
                                 optimizer=inputs["optimizer"], steps=steps,
                                 batch_size=inputs["batch_size"], seed=inputs["seed"],
                                 fixed=inputs["fixed"], schedule=inputs["schedule"])
    params = {"lr": config["lr"], "weight_decay": config["weight_decay"]}
    scoring, timed = trainable.score, [0.0]

    def score(trainer):  # time the objective's evaluation, as flowopt's eval_seconds does
        started = time.perf_counter()
        try:
            return scoring(trainer)
        finally:
            timed[0] += time.perf_counter() - started

    trainable.score = score
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = decode((Path(folder) / "state.safetensors").read_bytes())
    else:  # the member's own batch order and initial weights, as in flowopt
        state = trainable.start(config["member"], params)
    while state[1]["step"] < steps:
        state, score = trainable.train(state, params, INTERVAL)
        seconds, trainable.train_seconds = trainable.train_seconds, 0.0  # per ready point
        evaluating, timed[0] = timed[0], 0.0
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.safetensors").write_bytes(encode(state))
            tune.report({"acc": score, "step": state[1]["step"], "train_seconds": seconds,
                         "eval_seconds": evaluating},
                        checkpoint=tune.Checkpoint.from_directory(folder))


def ray_tune(inputs: dict) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    started = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    init = time.perf_counter() - started
    from flowopt.spec import load_spec

    search = load_spec(ROOT / "pipelines" / "tune_pbt.yaml").spec.search  # the node's space
    space = {k: tune.loguniform(d.low, d.high) for k, d in search.items()}
    initial = inputs["initial"]
    scheduler = PopulationBasedTraining(
        time_attr="step", perturbation_interval=INTERVAL, hyperparam_mutations=space,
        quantile_fraction=FRACTION, resample_probability=0.25, perturbation_factors=(1.2, 0.8))
    param_space = {"member": tune.grid_search(list(range(POPULATION))),
                   **{k: tune.sample_from(lambda spec, k=k: initial[spec.config.member][k])
                      for k in space}}
    with tempfile.TemporaryDirectory() as folder:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_ray_trainable, inputs=inputs), {"cpu": 1}),
            param_space=param_space,
            tune_config=tune.TuneConfig(scheduler=scheduler, metric="acc", mode="max",
                                        num_samples=1, max_concurrent_trials=WORKERS,
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=folder, verbose=0, stop={"step": STEPS}))
        started = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - started
        train = steps = evaluating = 0.0
        for result in results:
            if result.error is not None:
                raise RuntimeError(f"a Ray trial failed: {result.error}")
            frame = result.metrics_dataframe
            train += float(frame["train_seconds"].sum())
            evaluating += float(frame["eval_seconds"].sum())
            steps += float(len(frame)) * INTERVAL
        best = results.get_best_result(metric="acc", mode="max", scope="last").metrics["acc"]
    ray.shutdown()
    return {"wall": wall, "acc": best, "train": train, "eval": evaluating, "steps": steps,
            "init": init, "workers": WORKERS}


def compare(seeds: int) -> None:
    print(f"tuner.pbt vs Ray Tune PopulationBasedTraining: digits MLP(64), AdamW, population "
          f"{POPULATION}, {STEPS} steps/member, ready every {INTERVAL}, {WORKERS} workers; "
          "Ray trains on flowopt's inputs")
    print(f"{'seed':>4} {'engine':>11} {'wall s':>7} {'best acc':>8} {'steps':>6} "
          f"{'overhead':>8} {'scoring':>7} {'engine':>7} {'ray.init s':>10}")
    rows: dict[str, list[dict]] = {"flowopt": [], "flowopt x1": [], "ray": []}
    for seed in range(seeds):
        one, _ = flowopt_node(seed, workers=1)
        two, inputs = flowopt_node(seed)
        for name, r in (("flowopt x1", one), ("flowopt", two), ("ray", ray_tune(inputs))):
            r["overhead"] = 1 - r["train"] / (r["workers"] * r["wall"])
            r["scoring"] = r["eval"] / (r["workers"] * r["wall"])  # the objective's evaluation
            r["engine"] = r["overhead"] - r["scoring"]  # checkpoints, copies, scheduling
            rows[name].append(r)
            init = f"{r['init']:.1f}" if "init" in r else ""
            print(f"{seed:>4} {name:>11} {r['wall']:>7.2f} {r['acc']:>8.4f} {r['steps']:>6.0f} "
                  f"{r['overhead']:>8.1%} {r['scoring']:>7.1%} {r['engine']:>7.1%} {init:>10}")
            sys.stdout.flush()

    def mean(name, key):
        return statistics.mean(x[key] for x in rows[name])

    for name in rows:
        print(f"mean {name:>11}: wall {mean(name, 'wall'):.2f} s, acc {mean(name, 'acc'):.4f}, "
              f"overhead {mean(name, 'overhead'):.1%} (scoring {mean(name, 'scoring'):.1%}, "
              f"engine {mean(name, 'engine'):.1%}), steps {mean(name, 'steps'):.0f}")
    print(f"ratios flowopt/ray: wall {mean('flowopt', 'wall') / mean('ray', 'wall'):.3f}, "
          f"accuracy {mean('flowopt', 'acc') / mean('ray', 'acc'):.4f}, overhead "
          f"{mean('flowopt', 'overhead') / max(mean('ray', 'overhead'), 1e-9):.3f}")
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("claim", "ray", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import torch

    torch.set_num_threads(1)
    if args.part in ("claim", "all"):
        claim(args.seeds)
    if args.part in ("ray", "all"):
        compare(args.seeds)


if __name__ == "__main__":
    main()
