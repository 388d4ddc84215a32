"""The Ray executor against the local one, on the same pipelines and the same machine.

(a) Per-node overhead on trivial nodes: ``N`` independent ``x + 1`` nodes feeding one sum,
    run with ``--workers 2`` by the local thread executor and by the Ray executor (a local
    Ray of 2 CPUs, started before the clock); overhead per node =
    ``(T(large) - T(small)) / (large - small)``, best of ``--repeats``, so start-up cancels.
    Both record everything in a fresh SQLite store.
(b) ``pipelines/tune_pbt.yaml`` with population 8 on 2 workers (400 steps per member,
    ready every 50): the local executor (members on 2 threads of the driver) vs the Ray
    executor (members on 2 Ray actors that keep their trainers) vs Ray Tune's
    ``PopulationBasedTraining`` (2 concurrent trials, ``reuse_actors``) on exactly
    flowopt's inputs — `benchmarks/pbt.py`'s harness, with its population set to 8.
    Wall-clock = the tuner's own (``tune.wall_seconds``; Ray Tune: ``Tuner.fit``), both
    Ray sides paying their workers' start inside it, neither counting ``ray.init``;
    throughput = training steps actually run / wall-clock; accuracy = the best member's
    validation accuracy. ``--seeds`` seeds.
(c) Random search, 16 trials, 2 at a time (``pipelines/tune_random.yaml``): threads vs Ray.

Usage (repository root, ``pip install -e '.[ray]'``)::

    python benchmarks/ray_executor.py [--part overhead|pbt|random|all] [--repeats 3] [--seeds 1]
                                      [--steps 400]

Timing parts alone: ``--part overhead`` (about a minute), ``--part pbt`` (a few minutes).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray

import flowopt as fo
from flowopt.graph import compile_pipeline
from flowopt.runner import execute
from flowopt.spec import PipelineSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]


@fo.node("bench.inc", metrics=[])
def inc(x: float = 0.0) -> float:
    return x + 1.0


@fo.node("bench.total", metrics=["value"])
def total(a: fo.Metric, b: fo.Metric | None = None) -> float:
    return a + (b or 0.0)


def trivial(n: int):
    nodes = {f"n{i}": {"kind": "bench.inc", "with": {"x": float(i)}} for i in range(n)}
    # a binary tree of sums over the leaves keeps every node's fan-in at two
    level = list(nodes)
    depth = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            name = f"s{depth}_{i}"
            inputs = {"a": level[i]} | ({"b": level[i + 1]} if i + 1 < len(level) else {})
            nodes[name] = {"kind": "bench.total", "in": inputs}
            nxt.append(name)
        level, depth = nxt, depth + 1
    return compile_pipeline(PipelineSpec.model_validate({"pipeline": f"trivial-{n}",
                                                         "nodes": nodes}))


def timed(graph, executor: str) -> float:
    with tempfile.TemporaryDirectory() as store:
        fo_store = __import__("flowopt.store", fromlist=["Store"]).Store.open(store)
        start = time.perf_counter()
        result = execute(graph, store=fo_store, workers=2, executor=executor)
        elapsed = time.perf_counter() - start
        assert result.status == "succeeded", result.error
        return elapsed


def overhead(repeats: int, sizes=(20, 100)) -> None:
    print("\n(a) per-node overhead, trivial nodes, 2 workers, SQLite recording")
    print("| executor | T(%d) s | T(%d) s | per node ms |" % sizes)
    print("|---|---:|---:|---:|")
    graphs = {n: trivial(n) for n in sizes}
    for executor in ("local", "ray"):
        best = {n: min(timed(graphs[n], executor) for _ in range(repeats)) for n in sizes}
        nodes = {n: len(graphs[n]) for n in sizes}
        per = (best[sizes[1]] - best[sizes[0]]) / (nodes[sizes[1]] - nodes[sizes[0]])
        print(f"| {executor} | {best[sizes[0]]:.3f} | {best[sizes[1]]:.3f} | {per * 1e3:.2f} |")


def pipeline(name: str, overrides: list[str], executor: str) -> tuple[float, dict]:
    graph = compile_pipeline(load_spec(ROOT / "pipelines" / name, overrides))
    with tempfile.TemporaryDirectory() as store:
        start = time.perf_counter()
        result = execute(graph, store=store, workers=2, executor=executor)
        elapsed = time.perf_counter() - start
    assert result.status == "succeeded", result.error
    return elapsed, dict(result.best or {})


def compare(title: str, name: str, overrides: list[str], repeats: int) -> None:
    print(f"\n{title}")
    print("| executor | wall-clock s (median) | best objective |")
    print("|---|---:|---:|")
    for executor in ("local", "ray"):
        runs = [pipeline(name, overrides, executor) for _ in range(repeats)]
        print(f"| {executor} | {statistics.median(r[0] for r in runs):.2f} | "
              f"{runs[0][1].get('objective', float('nan')):.4f} |")


def pbt(seeds: int, steps: int | None = None) -> None:
    """Part (b); Ray must not be running in this process (each side starts its own).
    `steps`: steps per member instead of the pipeline's 400 (a longer run amortises the
    workers' start: how the engines compare once started)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pbt as harness  # benchmarks/pbt.py: flowopt's node and Ray Tune on its inputs

    harness.POPULATION = 8
    if steps is not None:
        harness.STEPS = steps
    print(f"\n(b) tune_pbt.yaml, population {harness.POPULATION}, {harness.STEPS} steps/member, "
          f"ready every {harness.INTERVAL}, {harness.WORKERS} workers")
    print("| seed | engine | wall-clock s | steps | steps/s | best accuracy | outside training "
          "per segment, ms |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    rows: dict[str, list[dict]] = {"local threads": [], "Ray actors": [], "Ray Tune": []}
    for seed in range(seeds):
        local, inputs = harness.flowopt_node(seed)
        actors, _ = harness.flowopt_node(seed, executor="ray")
        for name, r in (("local threads", local), ("Ray actors", actors),
                        ("Ray Tune", harness.ray_tune(inputs))):
            r["rate"] = r["steps"] / r["wall"]
            # the workers' time not spent in training steps or scoring, per segment: starting
            # workers, moving states, checkpoints, decisions, records (and, under load, waiting)
            segments = r["steps"] / harness.INTERVAL
            r["outside"] = (r["workers"] * r["wall"] - r["train"] - r["eval"]) / segments * 1e3
            rows[name].append(r)
            print(f"| {seed} | {name} | {r['wall']:.2f} | {r['steps']:.0f} | {r['rate']:.0f} | "
                  f"{r['acc']:.4f} | {r['outside']:.0f} |", flush=True)

    def mean(name: str, key: str) -> float:
        return statistics.mean(r[key] for r in rows[name])

    for name in rows:
        print(f"| mean | {name} | {mean(name, 'wall'):.2f} | {mean(name, 'steps'):.0f} | "
              f"{mean(name, 'rate'):.0f} | {mean(name, 'acc'):.4f} | "
              f"{mean(name, 'outside'):.0f} |")
    actors = mean("Ray actors", "rate")
    print(f"throughput, Ray actors / local threads: {actors / mean('local threads', 'rate'):.2f}x "
          f"(target 1.6x); Ray actors / Ray Tune: {actors / mean('Ray Tune', 'rate'):.2f}x "
          "(target 3x)")
    # how much of the Ray actors' wall-clock was starting them (process, imports, build)
    ready = mean("Ray actors", "ready")
    steady = statistics.mean(r["steps"] / (r["wall"] - r["ready"]) for r in rows["Ray actors"])
    print(f"Ray actors: {ready:.1f} s until every actor answered; after that {steady:.0f} "
          f"steps/s ({steady / mean('local threads', 'rate'):.2f}x the local threads' rate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["overhead", "pbt", "random", "all"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="seeds of part (b)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per member in part (b) (default: the pipeline's 400)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, ray {ray.__version__}, {platform.processor() or platform.machine()}")
    if args.part in ("pbt", "all"):
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray Tune's plain progress output
        pbt(args.seeds, args.steps)
    if args.part == "pbt":
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if args.part in ("overhead", "all"):
            overhead(args.repeats)
        if args.part in ("random", "all"):
            compare("(c) random search, 16 trials, 2 at a time", "tune_random.yaml",
                    ["nodes.tune.with.trials=16", "nodes.tune.with.parallel=2"], 1)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
