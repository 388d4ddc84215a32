"""Multi-objective tuning: flowopt's strategies vs Optuna 5's samplers, by hypervolume.

Every tuner runs in one process through its ask/tell interface on the same functions,
seeds and budgets, all objectives minimised:

* BraninCurrin (2 params on [0, 1]², 2 objectives; reference point [18, 6], the largest
  hypervolume 59.36 — BoTorch's test problem);
* ZDT1 with 6 params (2 objectives; reference [11, 11]; the front's hypervolume ≈ 120.67);
* DTLZ2 with 6 params and 3 objectives (reference [1.1, 1.1, 1.1]; ≈ 0.8074).

Tuners: flowopt ``tuner.bayesopt`` with several objectives (NEHVI; ``-ref``: given the
problem's reference point as ``reference_point``, otherwise inferred from the
observations), ``tuner.nsga2`` and ``tuner.random``; Optuna's default ``TPESampler``, ``NSGAIISampler``, ``GPSampler`` (log
EHVI for several objectives) and ``RandomSampler``. The **hypervolume** of the first 25 /
50 / 100 evaluations is exact (`flowopt.tuning.pareto.hypervolume`, checked against
brute force in tests/test_hypervolume.py), reported as the mean over seeds. **Overhead
per trial** is the tuner's own time (ask + the params' suggestion + tell) averaged over
the ten trials that end at 100 observations, as CPU time of the process
(`time.process_time`, every thread counted) — on a shared machine wall-clock time
measures the neighbours — and as wall-clock time beside it. Run with one BLAS/OpenMP
thread (``OMP_NUM_THREADS=1``) so that both tuners compute on one core.

**The showcase** (``--showcase``): pipelines/pareto_quantize.yaml run through the engine
with ``tuner.bayesopt``, ``tuner.nsga2`` (population 8) and ``tuner.random``, 60 trials,
2 at a time, seeds 0..n-1 (``-s seed=``), hypervolume of accuracy (max) against bytes (min)
at the pipeline's reference point after 20 / 40 / 60 trials, and the run's CPU time.
Optuna is not run on it: its trials would have to re-implement the engine's caching.

Usage (from the repository root, in the venv with the ``bench`` extra)::

    python benchmarks/multi_objective.py                      # 5 seeds, 100 evaluations
    python benchmarks/multi_objective.py --seeds 2 --evals 50 --tuners flowopt-bayesopt optuna-gp
    python benchmarks/multi_objective.py --json out.json      # the raw numbers too
    python benchmarks/multi_objective.py --showcase --seeds 5 --problems   # the showcase only
    python benchmarks/multi_objective.py --quick      # timing only: overhead at 100 observations
    python benchmarks/multi_objective.py --seeds 5 --tuners optuna-gp --log optuna.jsonl
    python benchmarks/multi_objective.py --tables-from benchmarks/logs/*.jsonl   # tables again
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

from flowopt.spec import Domain
from flowopt.tuning.pareto import hypervolume

BUDGETS = (25, 50, 100)


# -- problems (minimised) ------------------------------------------------------------------
def branin_currin(x: np.ndarray) -> tuple[float, ...]:
    u, v = 15 * x[0] - 5, 15 * x[1]
    b = (v - 5.1 / (4 * math.pi ** 2) * u ** 2 + 5 / math.pi * u - 6) ** 2 \
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(u) + 10
    x0, x1 = x[0], x[1]
    c = (1 - math.exp(-1 / (2 * x1))) if x1 > 0 else 1.0
    c *= (2300 * x0 ** 3 + 1900 * x0 ** 2 + 2092 * x0 + 60) / (100 * x0 ** 3 + 500 * x0 ** 2 + 4 * x0 + 20)
    return float(b), float(c)


def zdt1(x: np.ndarray) -> tuple[float, ...]:
    g = 1 + 9 * float(np.mean(x[1:]))
    return float(x[0]), float(g * (1 - math.sqrt(x[0] / g)))


def dtlz2(x: np.ndarray) -> tuple[float, ...]:
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return ((1 + g) * math.cos(a) * math.cos(b), (1 + g) * math.cos(a) * math.sin(b),
            (1 + g) * math.sin(a))


PROBLEMS: dict[str, tuple[int, Callable[[np.ndarray], tuple[float, ...]], list[float]]] = {
    "branin_currin": (2, branin_currin, [18.0, 6.0]),
    "zdt1": (6, zdt1, [11.0, 11.0]),
    "dtlz2": (6, dtlz2, [1.1, 1.1, 1.1]),
}


# -- tuners --------------------------------------------------------------------------------
class _Clock:
    """CPU and wall seconds of the tuner's own work (the function's evaluation excluded)."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self.resume()

    def resume(self) -> None:
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def pause(self) -> None:
        self.cpu += time.process_time() - self._cpu
        self.wall += time.perf_counter() - self._wall

    def stop(self) -> tuple[float, float]:
        self.pause()
        return self.cpu, self.wall


def run_flowopt(kind: str, dims: int, fn: Callable, n_obj: int, evals: int, seed: int,
                ref: list[float]) -> tuple[list[tuple[float, ...]], list[float]]:
    from flowopt.nodes.tuner.bayesopt import BayesOpt
    from flowopt.nodes.tuner.nsga2 import NSGA2
    from flowopt.nodes.tuner.random import RandomSearch
    from flowopt.nodes.tuner.strategy import Observation

    given = kind.endswith("+ref")
    cls = {"bayesopt": BayesOpt, "nsga2": NSGA2, "random": RandomSearch}[kind.split("+")[0]]
    space = {f"x{i}": Domain(low=0.0, high=1.0) for i in range(dims)}
    strat = cls(space, mode=("min",) * n_obj, seed=seed, budget=evals, config=cls.Config())
    if given:  # the tuner's reference_point: the problem's own (Optuna has no such option)
        strat.reference_point = ref
    values, seconds = [], []
    for number in range(evals):
        clock = _Clock()
        params = strat.ask([])
        clock.pause()
        y = fn(np.array([params[f"x{i}"] for i in range(dims)]))
        clock.resume()
        strat.tell(Observation(number=number, params=params, values=y, status="succeeded"))
        seconds.append(clock.stop())
        values.append(y)
    return values, seconds


def run_optuna(kind: str, dims: int, fn: Callable, n_obj: int, evals: int, seed: int,
               ref: list[float]) -> tuple[list[tuple[float, ...]], list[float]]:
    import optuna

    sampler = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
               "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
               "gp": lambda: optuna.samplers.GPSampler(seed=seed),
               "random": lambda: optuna.samplers.RandomSampler(seed=seed)}[kind]()
    study = optuna.create_study(directions=["minimize"] * n_obj, sampler=sampler)
    values, seconds = [], []
    for _ in range(evals):
        clock = _Clock()
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dims)])
        clock.pause()
        y = fn(x)
        clock.resume()
        study.tell(trial, list(y))
        seconds.append(clock.stop())
        values.append(y)
    return values, seconds


TUNERS = {
    "flowopt-bayesopt": lambda *a: run_flowopt("bayesopt", *a),
    "flowopt-bayesopt-ref": lambda *a: run_flowopt("bayesopt+ref", *a),
    "flowopt-nsga2": lambda *a: run_flowopt("nsga2", *a),
    "flowopt-random": lambda *a: run_flowopt("random", *a),
    "optuna-tpe": lambda *a: run_optuna("tpe", *a),
    "optuna-nsga2": lambda *a: run_optuna("nsga2", *a),
    "optuna-gp": lambda *a: run_optuna("gp", *a),
    "optuna-random": lambda *a: run_optuna("random", *a),
}


SHOWCASE_BUDGETS = (20, 40, 60)
SHOWCASE_TUNERS = {"bayesopt": [], "nsga2": ["-s", "nodes.tune.with.population_size=8"],
                   "random": []}


def showcase_reference(pipeline: str) -> list[float]:
    """The reference point the showcase pipeline gives its tuner."""
    from flowopt.spec import load_spec

    return [float(v) for v in load_spec(pipeline).spec.nodes["tune"].config["reference_point"]]


def run_showcase(seeds: list[int], raw: dict[str, Any], tuners: list[str],
                 log: str | None) -> None:
    """The showcase pipeline through the CLI, one fresh store per run (no shared cache)."""
    import subprocess
    import tempfile

    pipeline = os.path.join(os.path.dirname(__file__), "..", "pipelines", "pareto_quantize.yaml")
    ref = showcase_reference(pipeline)
    print(f"\n## showcase: pipelines/pareto_quantize.yaml (reference {ref})\n")
    print("| tuner | " + " | ".join(f"HV@{b}" for b in SHOWCASE_BUDGETS) + " | CPU s per run | wall s |")
    print("|---|" + "---|" * len(SHOWCASE_BUDGETS) + "---|---|", flush=True)
    for name in tuners:
        extra = SHOWCASE_TUNERS[name]
        hvs: dict[int, list[float]] = {b: [] for b in SHOWCASE_BUDGETS}
        cpu, wall = [], []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as store:
                before = os.times()
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "flowopt", "run", pipeline, "--json", "--store", store,
                     "-s", f"seed={seed}", "-s", f"nodes.tune.kind=tuner.{name}", *extra],
                    capture_output=True, text=True, check=True)
                wall.append(time.perf_counter() - start)
                after = os.times()
                cpu.append((after.children_user - before.children_user)
                           + (after.children_system - before.children_system))
                run_id = json.loads(done.stdout)["run_id"]
                shown = subprocess.run([sys.executable, "-m", "flowopt", "runs", "show", run_id,
                                        "--json", "--store", store],
                                       capture_output=True, text=True, check=True)
            trials = sorted(json.loads(shown.stdout)["trials"], key=lambda t: t["number"])
            values = [t["objectives"] if t["status"] == "succeeded" else [math.nan, math.nan]
                      for t in trials]
            if log:
                with open(log, "a") as fh:
                    fh.write(json.dumps({"problem": "showcase", "tuner": f"tuner.{name}",
                                         "seed": seed, "values": values, "reference": ref,
                                         "cpu": cpu[-1], "wall": wall[-1]}) + "\n")
            for b in SHOWCASE_BUDGETS:
                hvs[b].append(showcase_hypervolume(values[:b], ref))
        raw.setdefault("showcase", {})[name] = {"hv": hvs, "cpu": cpu, "wall": wall}
        cells = " | ".join(f"{statistics.mean(hvs[b]):.4g} ± {statistics.pstdev(hvs[b]):.2g}"
                           for b in SHOWCASE_BUDGETS)
        print(f"| tuner.{name} | {cells} | {statistics.mean(cpu):.1f} | "
              f"{statistics.mean(wall):.1f} |", flush=True)


def showcase_hypervolume(values: list, ref: list[float]) -> float:
    """Hypervolume of (accuracy max, bytes min) rows at `ref` (objective units)."""
    from flowopt.tuning.pareto import to_loss

    return hypervolume(to_loss(values, ["max", "min"]), to_loss([ref], ["max", "min"])[0])


def tables_from_logs(paths: list[str]) -> int:
    """Print the tables from the JSON lines that ``--log`` wrote (the last line per key wins)."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    rows[row["problem"], row["tuner"], row["seed"]] = row
    shown = [r for (p, _, _), r in sorted(rows.items()) if p == "showcase"]
    if shown:
        print(f"\n## showcase: pipelines/pareto_quantize.yaml (reference {shown[0]['reference']})\n")
        print("| tuner | seeds | " + " | ".join(f"HV@{b}" for b in SHOWCASE_BUDGETS)
              + " | CPU s per run | wall s |")
        print("|---|---:|" + "---|" * len(SHOWCASE_BUDGETS) + "---:|---:|")
        for tuner in sorted({r["tuner"] for r in shown}):
            runs = [r for r in shown if r["tuner"] == tuner]
            cells = []
            for b in SHOWCASE_BUDGETS:
                hv = [showcase_hypervolume(r["values"][:b], r["reference"]) for r in runs]
                cells.append(f"{statistics.mean(hv):.4g} ± {statistics.pstdev(hv):.2g}")
            print(f"| {tuner} | {len(runs)} (seeds {', '.join(str(r['seed']) for r in runs)}) | "
                  + " | ".join(cells) + f" | {statistics.mean(r['cpu'] for r in runs):.1f} | "
                  f"{statistics.mean(r['wall'] for r in runs):.0f} |")
    for problem, (_, _, ref) in PROBLEMS.items():
        tuners = sorted({t for p, t, _ in rows if p == problem})
        if not tuners:
            continue
        print(f"\n## {problem} (reference {ref})\n")
        print("| tuner | seeds | " + " | ".join(f"HV@{b}" for b in BUDGETS)
              + " | overhead per trial at 100: CPU ms | wall ms |")
        print("|---|---:|" + "---|" * len(BUDGETS) + "---:|---:|")
        for tuner in tuners:
            runs = [r for (p, t, _), r in sorted(rows.items()) if p == problem and t == tuner]
            cells = []
            for b in BUDGETS:  # a run shorter than the budget (a variant's 50) has no cell
                hv = [hypervolume(np.array(r["values"][:b]), np.array(ref)) for r in runs
                      if len(r["values"]) >= b]
                cells.append(f"{statistics.mean(hv):.4g} ± {statistics.pstdev(hv):.2g}"
                             if len(hv) == len(runs) else "—")
            seeds = ", ".join(str(r["seed"]) for r in runs)
            timed = [r["seconds"][90:100] for r in runs]
            if all(len(t) == 10 for t in timed):
                cpu = 1000 * statistics.mean(statistics.mean(s[0] for s in t) for t in timed)
                wall = 1000 * statistics.mean(statistics.mean(s[1] for s in t) for t in timed)
                times = f" | {cpu:.0f} | {wall:.0f} |"
            else:
                times = " | — | — |"
            print(f"| {tuner} | {len(runs)} ({seeds}) | " + " | ".join(cells) + times)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--tuners", nargs="+", default=list(TUNERS), choices=list(TUNERS))
    parser.add_argument("--showcase", action="store_true",
                        help="also run the showcase pipeline (minutes per seed)")
    parser.add_argument("--showcase-tuners", nargs="+", default=list(SHOWCASE_TUNERS),
                        choices=list(SHOWCASE_TUNERS))
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--seed-list", type=int, nargs="+",
                        help="run these seeds instead of 0..seeds-1 (to split a run across jobs)")
    parser.add_argument("--log", help="append one JSON line per (problem, tuner, seed) to this "
                                      "file: its objective values and per-trial seconds")
    parser.add_argument("--tables-from", nargs="+", metavar="LOG",
                        help="rebuild the tables from --log files instead of running anything")
    parser.add_argument("--quick", action="store_true",
                        help="the timing part only: overhead per trial at 100 observations of "
                             "flowopt-bayesopt and optuna-gp, one seed, BraninCurrin and DTLZ2")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.evals, args.showcase = 1, 100, False
        args.problems = ["branin_currin", "dtlz2"]
        args.tuners = ["flowopt-bayesopt", "optuna-gp"]
    if args.tables_from:
        return tables_from_logs(args.tables_from)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        logging.getLogger("optuna").setLevel(logging.ERROR)
        optuna_version = optuna.__version__
    except ImportError:
        optuna_version = "not installed"
        args.tuners = [t for t in args.tuners if not t.startswith("optuna")]
    budgets = [b for b in BUDGETS if b <= args.evals] or [args.evals]
    print(f"# multi-objective benchmark: {args.seeds} seeds, {args.evals} evaluations; "
          f"optuna {optuna_version}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus", flush=True)
    raw: dict[str, Any] = {}
    for problem in args.problems:
        dims, fn, ref = PROBLEMS[problem]
        n_obj = len(ref)
        print(f"\n## {problem} (reference {ref})\n", flush=True)
        header = " | ".join(f"HV@{b}" for b in budgets)
        print(f"| tuner | {header} | overhead per trial at {args.evals}: CPU ms | wall ms |")
        print("|---|" + "---|" * len(budgets) + "---|---|", flush=True)
        for tuner in args.tuners:
            hvs: dict[int, list[float]] = {b: [] for b in budgets}
            overhead, wall = [], []
            for seed in args.seed_list or range(args.seeds):
                values, seconds = TUNERS[tuner](dims, fn, n_obj, args.evals, seed, ref)
                if args.log:
                    with open(args.log, "a") as fh:
                        fh.write(json.dumps({"problem": problem, "tuner": tuner, "seed": seed,
                                             "values": values, "seconds": seconds}) + "\n")
                arr = np.array(values)
                for b in budgets:
                    hvs[b].append(hypervolume(arr[:b], np.array(ref)))
                overhead.append(statistics.mean(c for c, _ in seconds[-10:]))
                wall.append(statistics.mean(w for _, w in seconds[-10:]))
            raw.setdefault(problem, {})[tuner] = {"hv": hvs, "overhead_cpu": overhead,
                                                  "overhead_wall": wall}
            cells = " | ".join(f"{statistics.mean(hvs[b]):.4g} ± {statistics.pstdev(hvs[b]):.2g}"
                               for b in budgets)
            print(f"| {tuner} | {cells} | {1000 * statistics.mean(overhead):.1f} | "
                  f"{1000 * statistics.mean(wall):.1f} |", flush=True)
    if args.showcase:
        run_showcase(args.seed_list or list(range(args.seeds)), raw, args.showcase_tuners,
                     args.log)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
