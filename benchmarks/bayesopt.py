"""Bayesian optimisation: flowopt's ``BayesOpt`` vs Optuna's GPSampler, TPESampler, RandomSampler.

All tuners run in one process through their ask/tell interfaces on the same functions, seeds
and budgets:

* Branin (2-d, on [-5, 10] × [0, 15], minimum 0.397887);
* Hartmann-6 (on [0, 1]^6, minimum -3.32237);
* noisy Hartmann-6: each evaluation adds Gaussian noise with σ = 0.1 (seeded per run);
* Hartmann-3, Levy-4, Ackley-5, Rosenbrock-4 on their usual domains, and noisy variants of
  Hartmann-3 (σ 0.1), Levy-4 (σ 0.5) and Rosenbrock-4 (σ 5).

**Simple regret** after n evaluations is ``f(x_rec) - f*`` on the *noiseless* function, where
x_rec is the tuner's recommendation: for Optuna, ``study.best_trial`` (the best observed
value; it has no other); for flowopt, ``BayesOpt.recommend()`` — the evaluated point with the
highest posterior mean, the tutorial's recommendation under noise (without noise it is the
best observation). For the noisy function the table also lists flowopt's best observed point,
so the two recommendation rules can be compared on the same runs.

**Overhead per trial** is the tuner's own time, ``ask`` + ``tell``, averaged over the ten
trials that end at 100 (from the regret runs on Hartmann-6) and at 200 observations (from
separate 200-trial runs on Hartmann-6, ``--overhead-seeds`` of them).

Usage (from the repository root, in the venv with the ``bench`` extra)::

    python benchmarks/bayesopt.py                 # 10 seeds, budgets 25/50/100, every function, overhead at 100 and 200
    python benchmarks/bayesopt.py --quick         # 2 seeds, budgets 25/50, overhead at 100 only
    python benchmarks/bayesopt.py --seeds 3 --functions branin hartmann6
    python benchmarks/bayesopt.py --seed-list 5 6 --budgets 25 50 --methods flowopt optuna-gp --no-overhead
    python benchmarks/bayesopt.py --functions hartmann6 --methods flowopt --overhead-only
    python benchmarks/bayesopt.py --overhead-replay 100 200     # the quick timing part (paired)
    python benchmarks/bayesopt.py --report benchmarks/logs/*.jsonl --seeds 10   # tables from logs
    python benchmarks/bayesopt.py --design-basins 400           # Sobol vs uniform design, no tuner runs

Subsets (functions, seeds, budgets, methods) are for a shared machine: a full run is
≈ 10 seeds × 10 functions × 2 GP tuners × 100 asks of 0.1–0.4 s each.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from typing import Callable

import numpy as np

import optuna

from flowopt.nodes.tuner.bayesopt import BayesOpt, BayesOptConfig
from flowopt.nodes.tuner.strategy import Observation
from flowopt.spec import Domain

optuna.logging.set_verbosity(optuna.logging.ERROR)
logging.getLogger("optuna").setLevel(logging.ERROR)

HARTMANN_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                       [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                              [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    return ((x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def hartmann6(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(HARTMANN_ALPHA * np.exp(-np.sum(HARTMANN_A * (x - HARTMANN_P) ** 2, axis=1))))


HARTMANN3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
HARTMANN3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547],
                               [381, 5743, 8828]])


def hartmann3(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(3)])
    return float(-np.sum(HARTMANN_ALPHA * np.exp(-np.sum(HARTMANN3_A * (x - HARTMANN3_P) ** 2, axis=1))))


def rosenbrock4(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(4)])
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


def levy4(p: dict) -> float:
    w = 1.0 + (np.array([p[f"x{i}"] for i in range(4)]) - 1.0) / 4.0
    middle = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
    return float(np.sin(np.pi * w[0]) ** 2 + middle
                 + (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2))


def ackley5(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(5)])
    return float(-20.0 * np.exp(-0.2 * np.sqrt(np.mean(x * x)))
                 - np.exp(np.mean(np.cos(2 * np.pi * x))) + 20.0 + math.e)


def _cube(d: int, lo: float, hi: float) -> dict:
    return {f"x{i}": (lo, hi) for i in range(d)}


FUNCTIONS = {
    # name: (noiseless f, space, minimum, noise σ). The last five are BoTorch's test-function
    # suite's standard domains: Hartmann-3 (4 local minima), Levy (a multimodal ripple over a
    # bowl), Ackley (a needle in many small basins), Rosenbrock (a curved flat valley).
    "branin": (branin, {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}, 0.397887, 0.0),
    "hartmann6": (hartmann6, _cube(6, 0.0, 1.0), -3.32237, 0.0),
    "hartmann6-noisy": (hartmann6, _cube(6, 0.0, 1.0), -3.32237, 0.1),
    "hartmann3": (hartmann3, _cube(3, 0.0, 1.0), -3.86278, 0.0),
    "hartmann3-noisy": (hartmann3, _cube(3, 0.0, 1.0), -3.86278, 0.1),
    "levy4": (levy4, _cube(4, -10.0, 10.0), 0.0, 0.0),
    "levy4-noisy": (levy4, _cube(4, -10.0, 10.0), 0.0, 0.5),
    "ackley5": (ackley5, _cube(5, -32.768, 32.768), 0.0, 0.0),
    "rosenbrock4": (rosenbrock4, _cube(4, -5.0, 10.0), 0.0, 0.0),
    "rosenbrock4-noisy": (rosenbrock4, _cube(4, -5.0, 10.0), 0.0, 5.0),
}


# Regret above which a run is counted as stuck in a local minimum at the last budget: the
# smallest local minimum of Hartmann-6 lies 0.119 above the global one, Hartmann-3's 0.77.
STUCK = {"hartmann6": 0.1, "hartmann3": 0.1}   # noiseless only: under noise a good run can exceed it


class Run:
    """One tuner on one function and seed: ask/tell loop, timings and regrets at checkpoints."""

    def __init__(self, method: str, fn: str, seed: int, n: int, checkpoints: list[int],
                 settings: dict | None = None) -> None:
        self.f, space, self.fmin, self.sigma = FUNCTIONS[fn]
        self.bounds = np.array(list(space.values()), dtype=float)
        self.unit: list[np.ndarray] = []    # proposals in unit-cube coordinates
        self.values: list[float] = []       # their observed values
        self.method, self.seed, self.n, self.checkpoints = method, seed, n, checkpoints
        self.noise = np.random.default_rng(1000 + seed)
        self.overhead: list[float] = []
        self.regret: dict[int, float] = {}
        self.regret_best_observed: dict[int, float] = {}
        if method == "flowopt":
            domains = {k: Domain(low=lo, high=hi) for k, (lo, hi) in space.items()}
            self.tuner = BayesOpt(domains, mode="min", seed=seed, budget=n,
                                  config=BayesOptConfig(**(settings or {})))
        else:
            sampler = {"optuna-gp": lambda: optuna.samplers.GPSampler(seed=seed),
                       "optuna-tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                       "optuna-random": lambda: optuna.samplers.RandomSampler(seed=seed)}[method]()
            self.study = optuna.create_study(direction="minimize", sampler=sampler)
            self.dists = {k: optuna.distributions.FloatDistribution(lo, hi) for k, (lo, hi) in space.items()}

    def measure(self, params: dict) -> float:
        value = self.f(params)
        return value + self.sigma * float(self.noise.standard_normal()) if self.sigma else value

    def go(self) -> "Run":
        best_obs: tuple[float, dict] | None = None
        for i in range(self.n):
            if self.method == "flowopt":
                t0 = time.perf_counter()
                params = self.tuner.ask([])
                t1 = time.perf_counter()
                y = self.measure(params)
                t2 = time.perf_counter()
                self.tuner.tell(Observation(i, params, y, "succeeded"))
                t3 = time.perf_counter()
            else:
                t0 = time.perf_counter()
                trial = self.study.ask(self.dists)
                params = dict(trial.params)
                t1 = time.perf_counter()
                y = self.measure(params)
                t2 = time.perf_counter()
                self.study.tell(trial, y)
                t3 = time.perf_counter()
            self.overhead.append((t1 - t0) + (t3 - t2))
            lo, hi = self.bounds[:, 0], self.bounds[:, 1]
            self.unit.append((np.array(list(params.values()), dtype=float) - lo) / (hi - lo))
            self.values.append(y)
            if best_obs is None or y < best_obs[0]:
                best_obs = (y, params)
            if i + 1 in self.checkpoints:
                rec = self.tuner.recommend() if self.method == "flowopt" else self.study.best_trial.params
                self.regret[i + 1] = self.f(rec) - self.fmin
                self.regret_best_observed[i + 1] = self.f(best_obs[1]) - self.fmin
        return self


def exploration(unit: list[np.ndarray], values: list[float], start: int = 10) -> dict[str, int]:
    """Where the proposals after the first ``start`` went, relative to the incumbent then
    (the best observation so far), in unit-cube L∞ distance: ``near`` (< 0.1), ``far``
    (> 0.3), and ``edge`` (some coordinate within 0.02 of a face). A search stuck on its
    incumbent's basin has many near and few far proposals."""
    X, y = np.array(unit), np.array(values)
    dist = [float(np.max(np.abs(X[i] - X[int(np.argmin(y[:i]))]))) for i in range(start, len(y))]
    edge = [bool(np.any((X[i] < 0.02) | (X[i] > 0.98))) for i in range(start, len(y))]
    return {"near": sum(d < 0.1 for d in dist), "far": sum(d > 0.3 for d in dist),
            "edge": sum(edge), "of": len(dist)}


def fmt(x: float) -> str:
    return f"{x:.2g}" if x < 0.01 else f"{x:.3f}"


def record(run: "Run", fn: str, label: str) -> dict:
    """One finished run as a JSON-able record (what --log writes and --report reads)."""
    return {"function": fn, "tuner": label, "seed": run.seed, "n": run.n,
            "regret": {str(k): v for k, v in run.regret.items()},
            "regret_best_observed": {str(k): v for k, v in run.regret_best_observed.items()},
            "overhead_ms": [1e3 * t for t in run.overhead],
            "exploration": exploration(run.unit, run.values)}


def regret_table(records: list[dict], checkpoints: list[int]) -> None:
    functions = list(dict.fromkeys(r["function"] for r in records if r["regret"]))
    tuners = list(dict.fromkeys(r["tuner"] for r in records if r["regret"]))
    seeds = sorted({r["seed"] for r in records if r["regret"]})
    print(f"\nSimple regret (noiseless f at the recommended point), seeds {seeds}: mean / median "
          "(n = runs)\n")
    head = " | ".join(f"after {c}" for c in checkpoints)
    print(f"| function | tuner | n | {head} | mean vs Optuna GP | median vs Optuna GP | stuck |")
    print("|---|---|---:|" + "---:|" * len(checkpoints) + "---|---|---:|")
    for fn in functions:
        ref = [r for r in records if r["function"] == fn and r["tuner"] == "optuna-gp"
               and r["regret"]]
        rows = [(t, "regret") for t in tuners]
        if FUNCTIONS[fn][3]:
            rows += [(t, "regret_best_observed") for t in tuners if t.startswith("flowopt")]
        for tuner, attr in rows:
            rs = [r for r in records if r["function"] == fn and r["tuner"] == tuner and r["regret"]]
            if not rs:
                continue
            cells, means, medians = [], [], []
            for c in checkpoints:
                vals = [r[attr][str(c)] for r in rs if str(c) in r[attr]]
                if not vals:
                    cells.append("–")
                    continue
                cells.append(f"{fmt(statistics.mean(vals))} / {fmt(statistics.median(vals))}")
                base = [r["regret"][str(c)] for r in ref if str(c) in r["regret"]]
                if base:
                    mb, db = statistics.mean(base), statistics.median(base)
                    means.append(f"{statistics.mean(vals) / mb:.2f}×" if mb > 0 else "-")
                    medians.append(f"{statistics.median(vals) / db:.2f}×" if db > 0 else "-")
            name = tuner + (" (best observed)" if attr != "regret" else "")
            last = str(checkpoints[-1])
            stuck = (f"{sum(r[attr][last] > STUCK[fn] for r in rs if last in r[attr])}"
                     if fn in STUCK else "–")
            print(f"| {fn} | {name} | {len(rs)} | " + " | ".join(cells)
                  + f" | {' / '.join(means)} | {' / '.join(medians)} | {stuck} |")


def exploration_table(records: list[dict]) -> None:
    """Mean `exploration` counts per function and tuner (runs logged with them only)."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r["regret"] and "exploration" in r:
            rows.setdefault((r["function"], r["tuner"]), []).append(r["exploration"])
    if not rows:
        return
    print("\nProposals after the initial design, relative to the incumbent (mean per run)\n")
    print("| function | tuner | runs | proposals | near (< 0.1) | far (> 0.3) | at a face |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (fn, tuner), ex in rows.items():
        cells = " | ".join(f"{statistics.mean(e[k] for e in ex):.1f}" for k in ("of", "near", "far", "edge"))
        print(f"| {fn} | {tuner} | {len(ex)} | {cells} |")


def overhead_table(records: list[dict]) -> None:
    over: dict[str, dict[int, list[float]]] = {}
    for r in records:
        if r["function"] != "hartmann6":
            continue
        for k in (100, 200):
            if r["n"] >= k and (k == 200 or r["regret"]):
                over.setdefault(r["tuner"], {}).setdefault(k, []).extend(r["overhead_ms"][k - 10:k])
    sizes = sorted({k for d in over.values() for k in d})
    if not sizes:
        return
    print("\nTuner overhead per trial (ask + tell), ms, Hartmann-6\n")
    print("| tuner | " + " | ".join(f"at {k} obs" for k in sizes) + " | vs Optuna GP |")
    print("|---|" + "---:|" * len(sizes) + "---|")
    ref = over.get("optuna-gp", {})
    for tuner, d in over.items():
        cells = [f"{statistics.mean(d[k]):.1f}" if k in d else "–" for k in sizes]
        ratio = " / ".join(f"{statistics.mean(d[k]) / statistics.mean(ref[k]):.2f}×"
                           for k in sizes if k in d and k in ref)
        print(f"| {tuner} | " + " | ".join(cells) + f" | {ratio} |")


def overhead_replay(sizes: list[int], settings: dict, asks: int = 6) -> None:
    """Overhead at n observations on a *shared* history, the two GP tuners alternating.

    Both tuners are told the same n - 3 random Hartmann-6 points, then both ask and are
    told their own proposal ``asks + 3`` times, alternating; the first three asks warm
    each up (compilation, Optuna's first fit) and are not counted. On a busy machine the
    alternation exposes both to the same load, which separate runs do not.
    """
    f, space, _, _ = FUNCTIONS["hartmann6"]
    print("\nTuner overhead per ask + tell on a shared history (Hartmann-6), ms, alternating\n")
    print("| observations | flowopt | optuna-gp | flowopt / optuna-gp |\n|---:|---:|---:|---:|")
    for n in sizes:
        rng = np.random.default_rng(n)
        history = [{k: float(rng.uniform(lo, hi)) for k, (lo, hi) in space.items()}
                   for _ in range(n - 3)]
        ours, theirs = Run("flowopt", "hartmann6", 0, n, [], settings), Run("optuna-gp", "hartmann6", 0, n, [])
        for i, params in enumerate(history):
            ours.tuner.tell(Observation(i, params, f(params), "succeeded"))
            theirs.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=theirs.dists, value=f(params)))
        times: dict[str, list[float]] = {"flowopt": [], "optuna-gp": []}
        for k in range(asks + 3):
            t0 = time.perf_counter()
            params = ours.tuner.ask([])
            ours.tuner.tell(Observation(n - 3 + k, params, f(params), "succeeded"))
            t1 = time.perf_counter()
            trial = theirs.study.ask(theirs.dists)
            theirs.study.tell(trial, f(dict(trial.params)))
            t2 = time.perf_counter()
            if k >= 3:
                times["flowopt"].append(t1 - t0)
                times["optuna-gp"].append(t2 - t1)
        a, b = (1e3 * statistics.median(times[m]) for m in ("flowopt", "optuna-gp"))
        print(f"| {n} | {a:.1f} | {b:.1f} | {a / b:.2f}× |", flush=True)


def design_basins(designs: int, size: int = 10) -> None:
    """Which Hartmann-6 basin holds the best point of an initial design of ``size`` points,
    over ``designs`` seeds, for flowopt's scrambled Sobol design and for uniform draws
    (Optuna's startup trials): the basin is the term of the sum that dominates there."""
    from flowopt.nodes.tuner.space import SearchSpace

    f, space, _, _ = FUNCTIONS["hartmann6"]
    cube = SearchSpace({k: Domain(low=lo, high=hi) for k, (lo, hi) in space.items()})
    print(f"\nBasin of the best of {size} design points, Hartmann-6, {designs} seeds "
          "(term 3 holds the global minimum, term 4 the local one 0.119 above it)\n")
    print("| design | term 1 | term 2 | term 3 | term 4 | mean best f |\n|---|---:|---:|---:|---:|---:|")
    for name in ("sobol", "uniform"):
        counts, bests = np.zeros(4), []
        for seed in range(designs):
            U = (cube.sobol(16, seed=seed)[:size] if name == "sobol"
                 else np.random.default_rng(seed).random((size, len(space))))
            values = [f(dict(zip(space, u))) for u in U]
            x = U[int(np.argmin(values))]
            terms = HARTMANN_ALPHA * np.exp(-np.sum(HARTMANN_A * (x - HARTMANN_P) ** 2, axis=1))
            counts[int(np.argmax(terms))] += 1
            bests.append(min(values))
        print(f"| {name} | " + " | ".join(f"{c / designs:.2f}" for c in counts)
              + f" | {statistics.mean(bests):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, budgets 25/50, overhead at 100 only")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--seed-list", type=int, nargs="+", default=None, help="exactly these seeds")
    ap.add_argument("--budgets", type=int, nargs="+", default=None, help="checkpoints (25 50 100)")
    ap.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    ap.add_argument("--methods", nargs="+", default=["flowopt", "optuna-gp", "optuna-tpe", "optuna-random"])
    ap.add_argument("--overhead-seeds", type=int, default=1)
    ap.add_argument("--no-overhead", action="store_true", help="skip the 200-trial overhead runs")
    ap.add_argument("--overhead-only", action="store_true", help="only the 200-trial overhead runs")
    ap.add_argument("--set", dest="settings", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="BayesOptConfig fields for flowopt (a variant, labelled flowopt[...])")
    ap.add_argument("--patch", nargs="+", default=[], metavar="MODULE.NAME=VALUE",
                    help="set a module constant of flowopt.nodes.tuner.bayesopt (gp.CONSTANT_MEAN, "
                         "gp.MIN_NOISE, gp.FIT_STARTS, gp.FIT_GTOL, gp.MAX_LENGTHSCALE, "
                         "strategy.START_SELECTION, strategy.INITIAL_DESIGN, "
                         "strategy.LOCAL_CANDIDATES, strategy.REFINE) for a variant")
    ap.add_argument("--overhead-replay", type=int, nargs="+", metavar="N",
                    help="only the overhead of flowopt vs Optuna GP at N observations of a "
                         "shared history, alternating (fair on a busy machine)")
    ap.add_argument("--design-basins", type=int, metavar="SEEDS",
                    help="only: which Hartmann-6 basin the best initial-design point is in, "
                         "Sobol vs uniform, over SEEDS seeds (no tuner runs)")
    ap.add_argument("--log", help="append one JSON line per finished run to this file")
    ap.add_argument("--report", nargs="+", metavar="LOG",
                    help="no runs: print the tables from --log files of earlier (partial) runs, of "
                         "the seeds --seeds / --seed-list name if given")
    args = ap.parse_args()
    seeds = args.seed_list or list(range(args.seeds or (2 if args.quick else 10)))
    checkpoints = args.budgets or ([25, 50] if args.quick else [25, 50, 100])
    # before the overhead replay too, so that a lever's cost can be timed
    for item in args.patch:
        name, value = item.split("=", 1)
        module, attr = name.rsplit(".", 1)
        target = importlib.import_module(f"flowopt.nodes.tuner.bayesopt.{module}")
        if not hasattr(target, attr):
            ap.error(f"--patch: {module} has no constant {attr}")
        setattr(target, attr, json.loads(value) if value[:1] in "0123456789-[{" else value)
    if args.overhead_replay:
        overhead_replay(args.overhead_replay,
                        {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.settings)})
        return
    if args.design_basins:
        design_basins(args.design_basins)
        return
    if args.report:
        records, seen = [], set()
        for line in (line for path in args.report for line in open(path) if line.strip()):
            r = json.loads(line)
            key = (r["function"], r["tuner"], r["seed"], r["n"])
            if args.seed_list or args.seeds:
                if r["seed"] not in seeds:
                    continue
            if key not in seen:     # a seed run twice (split runs that overlapped) counts once
                seen.add(key)
                records.append(r)
        regret_table(records, checkpoints)
        exploration_table(records)
        overhead_table(records)
        return
    horizon = 100 if args.quick or ("hartmann6" in args.functions and not args.budgets) else max(checkpoints)
    if args.overhead_only:
        args.functions, seeds = [], []
    settings = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.settings)}
    tags = args.settings + args.patch
    label = "flowopt" + (f"[{','.join(tags)}]" if tags else "")

    print(f"# flowopt BayesOpt vs Optuna {version('optuna')}  ({platform.node()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {version('scipy')}, torch {version('torch')})", flush=True)
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}", flush=True)
    records: list[dict] = []
    t_start = time.time()

    def finish(run: "Run", fn: str, method: str) -> None:
        rec = record(run, fn, label if method == "flowopt" else method)
        records.append(rec)
        if args.log:
            with open(args.log, "a") as handle:
                handle.write(json.dumps(rec) + "\n")

    for fn in args.functions:
        n = max(horizon if fn == "hartmann6" else 0, max(checkpoints))
        for method in args.methods:
            for seed in seeds:
                finish(Run(method, fn, seed, n, checkpoints, settings).go(), fn, method)
            print(f"#   {fn:16s} {method:14s} done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)
    if not args.quick and not args.no_overhead:
        for m in args.methods:
            for s in range(args.overhead_seeds):
                finish(Run(m, "hartmann6", 100 + s, 200, [], settings).go(), "hartmann6", m)
            print(f"#   overhead at 200: {m} done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)
    regret_table(records, checkpoints)
    exploration_table(records)
    overhead_table(records)
    print(f"\n# total {time.time() - t_start:.0f} s, load at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
