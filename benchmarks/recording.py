"""Recording a pipeline from Python: µs per recorded node, and record + compile time.

A chain of ``n`` trivial nodes (``bench.inc``, each consuming the previous one's output)
is recorded with the Python API inside ``with flowopt.Pipeline(...)``; every node takes
its default id, so the 10,000th ``inc`` is ``inc_10000`` and id allocation is on the
timed path. Recording must cost the same per node at 100 nodes as at 100,000 (linear
time); compiling (``Pipeline.graph``: the spec's validation and the graph's checks) is
timed separately.

Usage (from the repository root)::

    python benchmarks/recording.py [--sizes 100 1000 10000 100000] [--repeats 3]
    python benchmarks/recording.py --profile 10000   # cProfile of record + compile
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import platform
import pstats
import sys
import time

import flowopt
from flowopt.registry import REGISTRY

# Only the benchmark's own kind is needed; skipping the entry points keeps the node
# library (torch, numba) out of the process.
REGISTRY._entry_points_loaded = True


@flowopt.node("bench.inc")
def inc(x: flowopt.Metric | None = None) -> float:
    """A trivial node: its input plus one."""
    return (x or 0.0) + 1.0


def record(n: int) -> tuple[flowopt.Pipeline, float]:
    """Record an `n`-node chain; returns the pipeline and the seconds it took."""
    gc.collect()
    start = time.perf_counter()
    with flowopt.Pipeline("chain") as pipeline:
        out = inc()
        for _ in range(n - 1):
            out = inc(out)
    return pipeline, time.perf_counter() - start


def compile_seconds(pipeline: flowopt.Pipeline) -> float:
    gc.collect()
    start = time.perf_counter()
    graph = pipeline.graph
    seconds = time.perf_counter() - start
    assert len(graph.nodes) == len(pipeline._data["nodes"])
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="instead of the table, cProfile recording and compiling N nodes")
    args = parser.parse_args(argv)

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        pipeline, _ = record(args.profile)
        compile_seconds(pipeline)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0

    record(100)  # warm up: imports, the kind's first use
    print(f"Python {platform.python_version()}, {platform.machine()}; best of {args.repeats}")
    print("\n| nodes | record s | µs/node recorded | compile s | µs/node compiled "
          "| record + compile s |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for n in args.sizes:
        rec = comp = float("inf")
        for _ in range(args.repeats):
            pipeline, seconds = record(n)
            rec = min(rec, seconds)
            comp = min(comp, compile_seconds(pipeline))
            del pipeline
        rows[n] = (rec, comp)
        print(f"| {n:,} | {rec:.4f} | {rec / n * 1e6:.2f} | {comp:.4f} | {comp / n * 1e6:.2f} "
              f"| {rec + comp:.3f} |")
    worst = max(rec / n * 1e6 for n, (rec, _) in rows.items())
    flat = max(r / n for n, (r, _) in rows.items()) / min(r / n for n, (r, _) in rows.items())
    print(f"\nTarget ≤ 10 µs per recorded node at every size: "
          f"{'met' if worst <= 10 else 'MISSED'} (worst {worst:.2f} µs; "
          f"largest / smallest per-node time {flat:.2f}×)")
    if 10000 in rows:
        total = sum(rows[10000])
        print(f"Target 10,000 nodes recorded and compiled < 0.5 s: "
              f"{'met' if total < 0.5 else 'MISSED'} ({total:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
