"""Per-node engine overhead of trivial nodes: flowopt (full SQLite recording) vs its peers.

Every engine runs the same three graph shapes of trivial nodes (``inc(x) = x + 1``, and a
``total(*xs)`` sink for fan-in) at two sizes; the per-node overhead is
``(T(large) - T(small)) / (large - small)``, so fixed start-up cost cancels out, and each
T is the best of at least ``--repeats`` runs (more while 3 s per engine and shape last),
small and large alternating: on a shared 2-core VM single runs vary by 2×.

What is timed, per engine (building the graph is not timed, as it is not for the peers):

* flowopt: ``Scheduler(graph, store, executor, use_cache=True).run()`` on a fresh
  SQLite store (opened, and its migrations run, before the clock starts). Nothing is cached,
  so every node executes and is recorded: run, executions, artifacts, edges.
* Kedro: a ``DataCatalog`` of ``MemoryDataset``s plus ``SequentialRunner().run``, with
  Kedro's INFO logging off (with it on, logging dominates).
* dask: ``dask.get`` (the synchronous scheduler) on a raw task graph, asking for every sink.
* graphlib: ``TopologicalSorter.static_order`` and a loop calling the function, the floor.

Usage (from the repository root, with the ``bench`` extra installed)::

    python benchmarks/scheduler_overhead.py [--repeats 5] [--sizes 100 1000]
    python benchmarks/scheduler_overhead.py --profile chain   # cProfile, 1000-node chain
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import graphlib
import logging
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Any, Callable

import dask

logging.disable(logging.INFO)  # Kedro announces its logging configuration on import
from kedro.io import DataCatalog, MemoryDataset  # noqa: E402
from kedro.pipeline import Pipeline, node as kedro_node  # noqa: E402
from kedro.runner import SequentialRunner  # noqa: E402

logging.disable(logging.NOTSET)

import flowopt  # noqa: E402
from flowopt.executors import SyncExecutor, ThreadExecutor  # noqa: E402
from flowopt.graph import Graph, compile_pipeline  # noqa: E402
from flowopt.registry import REGISTRY  # noqa: E402
from flowopt.scheduler import Scheduler  # noqa: E402
from flowopt.spec import PipelineSpec  # noqa: E402
from flowopt.store import Store  # noqa: E402

# The benchmark needs only its own kinds; skipping the entry points keeps the node library
# (torch, numba: seconds to import) out of the process, and the benchmark working while
# flowopt.nodes is being edited.
REGISTRY._entry_points_loaded = True

logging.getLogger("kedro").setLevel(logging.WARNING)

SHAPES = ("independent", "chain", "fan")
Deps = dict[str, list[str]]  # node id -> the ids it consumes, in argument order


def inc(x: float | None = None) -> float:
    return (x or 0.0) + 1.0


def total(*xs: float) -> float:
    return float(sum(xs))


@flowopt.node("bench.inc")
def bench_inc(x: flowopt.Metric | None = None) -> float:
    """A trivial node: its input plus one."""
    return (x or 0.0) + 1.0


def shape(name: str, n: int) -> tuple[Deps, dict[str, float]]:
    """The dependency map of an `n`-node graph, and the sinks' expected values."""
    ids = [f"n{i:05d}" for i in range(n)]
    if name == "independent":
        return {i: [] for i in ids}, {i: 1.0 for i in ids}
    if name == "chain":
        return {i: ids[k - 1:k] for k, i in enumerate(ids)}, {ids[-1]: float(n)}
    if name == "fan":  # one source -> n-2 middle nodes -> one sink
        deps: Deps = {ids[0]: []}
        deps.update({i: [ids[0]] for i in ids[1:-1]})
        deps[ids[-1]] = ids[1:-1]
        return deps, {ids[-1]: 2.0 * (n - 2)}
    raise ValueError(name)


def is_fan_in(deps: Deps, nid: str) -> bool:
    return len(deps[nid]) > 1


# -- flowopt --------------------------------------------------------------------------

def sum_kind(k: int) -> str:
    """Register (once) a kind with `k` optional Metric inputs ``x0..x{k-1}`` returning their sum.

    Ports are named by the function's signature, so a k-input sink needs a k-argument function.
    """
    name = f"bench.sum{k}"
    try:
        REGISTRY.get(name)
    except KeyError:
        args = ", ".join(f"x{i}: Metric | None = None" for i in range(k))
        names = ", ".join(f"x{i}" for i in range(k))
        namespace: dict[str, Any] = {"Metric": flowopt.Metric}
        exec(f"def bench_sum{k}({args}) -> float:\n    return float(sum(({names},)))", namespace)
        flowopt.node(name)(namespace[f"bench_sum{k}"])
    return name


def flowopt_graph(deps: Deps) -> Graph:
    nodes = {}
    for nid, inputs in deps.items():
        if is_fan_in(deps, nid):
            nodes[nid] = {"kind": sum_kind(len(inputs)),
                          "in": {f"x{i}": src for i, src in enumerate(inputs)}}
        else:
            nodes[nid] = {"kind": "bench.inc", "in": {"x": src for src in inputs}}
    return compile_pipeline(PipelineSpec.model_validate({"pipeline": "bench", "nodes": nodes}))


def flowopt_runner(make_executor: Callable[[], Any]) -> Callable[..., float]:
    def once(deps: Deps, expected: dict[str, float],
             profiler: cProfile.Profile | None = None) -> float:
        graph = flowopt_graph(deps)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(tmp)
            if profiler:
                profiler.enable()
            start = time.perf_counter()
            result = Scheduler(graph, store, make_executor(), use_cache=True).run()
            seconds = time.perf_counter() - start
            if profiler:
                profiler.disable()
            assert result.status == "succeeded", result.error
            assert all(result.value(nid) == v for nid, v in expected.items())
            recorded = store.run(result.run_id).nodes  # every execution is in SQLite
            assert len(recorded) == len(deps) and {r.status for r in recorded} == {"succeeded"}
            store.close()
        return seconds
    return once


# -- peers ----------------------------------------------------------------------------

def kedro_once(deps: Deps, expected: dict[str, float]) -> float:
    pipeline = Pipeline([kedro_node(total if is_fan_in(deps, nid) else inc,
                                    inputs=inputs or None, outputs=nid, name=nid)
                         for nid, inputs in deps.items()])
    start = time.perf_counter()
    catalog = DataCatalog({name: MemoryDataset() for name in pipeline.datasets()})
    outputs = SequentialRunner().run(pipeline, catalog)
    seconds = time.perf_counter() - start
    assert all(outputs[nid].load() == v for nid, v in expected.items())
    return seconds


def dask_once(deps: Deps, expected: dict[str, float]) -> float:
    graph = {nid: (total, *inputs) if is_fan_in(deps, nid) else (inc, *inputs)
             for nid, inputs in deps.items()}
    sinks = list(expected)
    start = time.perf_counter()
    values = dask.get(graph, sinks)
    seconds = time.perf_counter() - start
    assert list(values) == list(expected.values())
    return seconds


def graphlib_once(deps: Deps, expected: dict[str, float]) -> float:
    fns = {nid: total if is_fan_in(deps, nid) else inc for nid in deps}
    start = time.perf_counter()
    values: dict[str, float] = {}
    for nid in graphlib.TopologicalSorter(deps).static_order():
        values[nid] = fns[nid](*[values[d] for d in deps[nid]])
    seconds = time.perf_counter() - start
    assert all(values[nid] == v for nid, v in expected.items())
    return seconds


ENGINES: dict[str, Callable[..., float]] = {
    "flowopt sync": flowopt_runner(SyncExecutor),
    "flowopt 2 threads": flowopt_runner(lambda: ThreadExecutor(2)),
    "Kedro sequential": kedro_once,
    "dask sync": dask_once,
    "graphlib loop": graphlib_once,
}


# -- measuring and reporting ----------------------------------------------------------

def per_node_ms(once: Callable[..., float], shape_name: str, small: int, large: int,
                repeats: int, budget: float = 3.0) -> float:
    """(best T(large) - best T(small)) / (large - small), in ms.

    Small and large runs alternate, so a burst of load from elsewhere on the machine hits
    both; there are at least `repeats` of each, more while `budget` seconds last.
    """
    cases = [shape(shape_name, small), shape(shape_name, large)]
    best = [float("inf"), float("inf")]
    deadline = time.perf_counter() + budget
    runs = 0
    while runs < repeats or (time.perf_counter() < deadline and runs < 200):
        for i, (deps, expected) in enumerate(cases):
            gc.collect()
            best[i] = min(best[i], once(deps, expected))
        runs += 1
    return (best[1] - best[0]) / (large - small) * 1e3


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{p} {version(p)}" for p in
                         ("flowopt", "kedro", "dask", "sqlalchemy", "pydantic", "networkx"))
    return (f"{cores} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {versions}")


def fmt(ms: float) -> str:
    return f"{ms:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs per engine, shape and size at least; the best counts")
    parser.add_argument("--sizes", type=int, nargs=2, default=(100, 1000),
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--profile", choices=SHAPES,
                        help="instead of the table, profile flowopt sync on one LARGE-node shape")
    args = parser.parse_args(argv)
    small, large = args.sizes

    if args.profile:
        # Only `Scheduler.run` is profiled (not compiling, opening the store or the checks).
        deps, expected = shape(args.profile, large)
        ENGINES["flowopt sync"](deps, expected)  # warm up: imports, SQLAlchemy's statement cache
        profiler = cProfile.Profile()
        for _ in range(args.repeats):
            ENGINES["flowopt sync"](deps, expected, profiler)
        print(f"cProfile of {args.repeats} runs of flowopt sync, {args.profile}, {large} nodes")
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        return 0

    for once in ENGINES.values():  # warm up: imports, caches, the kinds' first compile
        once(*shape("fan", 10))
    results = {(engine, s): per_node_ms(once, s, small, large, args.repeats)
               for engine, once in ENGINES.items() for s in SHAPES}

    print(f"Per-node engine overhead, ms/node = (T({large}) - T({small})) / {large - small}; "
          f"each T the best of ≥ {args.repeats} runs (more while 3 s last), "
          "small and large alternating")
    print(f"Machine: {machine()}\n")
    header = ["shape", *ENGINES, "Kedro / flowopt", "flowopt / dask"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for s in SHAPES:
        ours = results[("flowopt sync", s)]
        row = [s, *(fmt(results[(e, s)]) for e in ENGINES),
               f"{results[('Kedro sequential', s)] / ours:.1f}×",
               f"{ours / results[('dask sync', s)]:.1f}×"]
        print("| " + " | ".join(row) + " |")
    worst = max(results[("flowopt sync", s)] for s in SHAPES)
    speedup = min(results[("Kedro sequential", s)] / results[("flowopt sync", s)] for s in SHAPES)
    met = worst <= 0.3 and speedup >= 15
    print(f"\nTarget (flowopt sync ≤ 0.3 ms/node, ≥ 15× faster than Kedro): "
          f"{'met' if met else 'MISSED'} "
          f"(worst {fmt(worst)} ms/node, at least {speedup:.1f}× Kedro)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
