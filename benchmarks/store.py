"""flowopt's store vs MLflow's SQLAlchemy tracking store, both on SQLite, in one run.

Measured (issue 3, item 7), each in a fresh store in a temporary directory:

a. metric logging: `N` single points one call at a time, and the same in batches of
   1,000 (flowopt ``Store.log_metrics`` + a flush per batch; MLflow ``log_batch``). For
   flowopt the single-point time is the calls *plus* the flush that makes them durable,
   divided by the points (the call alone is printed too). MLflow commits every call, so
   it gets fewer calls (``--mlflow-points``); the table is per point.
b. creating `R` runs, each with 3 params and 3 final metrics, started and finished
   (flowopt ``begin_run`` / ``log_metrics`` / ``end_run``; MLflow ``create_run`` /
   ``log_batch`` / ``update_run_info``).
c. listing those `R` runs with params and metrics (flowopt ``Store.runs()``, MLflow
   ``search_runs``), and with a selective filter (``metrics.acc > 0.99``: about 1 %).
d. upstream lineage of the final artifact of a `--nodes`-node chain (MLflow has no
   lineage, so this row has no peer).

Timings are wall-clock, best of ``--repeats`` for (c) and (d). Run from the repository
root with the bench venv: ``python benchmarks/store.py`` (about 2 minutes, mostly MLflow).
"""
from __future__ import annotations

import argparse
import logging
import platform
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

logging.disable(logging.WARNING)  # MLflow logs every migration step on a new database

import flowopt  # noqa: E402
from flowopt.graph import compile_pipeline  # noqa: E402
from flowopt.recording import RunInfo  # noqa: E402
from flowopt.registry import REGISTRY  # noqa: E402
from flowopt.scheduler import Scheduler  # noqa: E402
from flowopt.spec import PipelineSpec  # noqa: E402
from flowopt.store import Store  # noqa: E402

REGISTRY._entry_points_loaded = True  # only the benchmark's own kind: no torch, no numba

TARGETS = {"single": 0.1e-3, "batch": 20e-6, "list": 50e-3, "filtered": 10e-3, "lineage": 50e-3}


@flowopt.node("storebench.inc")
def inc(x: flowopt.Metric | None = None) -> float:
    """A trivial node: its input plus one."""
    return (x or 0.0) + 1.0


def best(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def run_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"lr": 10 ** rng.uniform(-4, -1), "opt": rng.choice(["adam", "sgd", "lion"]),
             "width": rng.choice([32, 64, 128]), "acc": rng.random(), "loss": rng.random(),
             "ece": rng.random()} for _ in range(count)]


# -- flowopt ---------------------------------------------------------------------------------
def flowopt_logging(folder: Path, points: int) -> dict[str, float]:
    store = Store(folder / "single")
    run_id = store.begin_run(RunInfo(pipeline="bench", seed=0, params={}, spec={}))
    start = time.perf_counter()
    for step in range(points):
        store.log_metric(run_id, "train", "loss", 1.0 / (step + 1), step)
    called = time.perf_counter() - start
    store.flush()
    single = time.perf_counter() - start
    store.end_run(run_id, "succeeded")
    batched_store = Store(folder / "batched")
    run_id = batched_store.begin_run(RunInfo(pipeline="bench", seed=0, params={}, spec={}))
    start = time.perf_counter()
    for first in range(0, points, 1000):
        batched_store.log_metrics(run_id, "train", [("loss", 1.0 / (s + 1), s)
                                                    for s in range(first, first + 1000)])
        batched_store.flush()
    batched = time.perf_counter() - start
    batched_store.end_run(run_id, "succeeded")
    return {"single": single / points, "single_call": called / points, "batch": batched / points}


def flowopt_runs(folder: Path, rows: list[dict], repeats: int) -> dict[str, float]:
    store = Store(folder / "runs")
    start = time.perf_counter()
    for row in rows:
        run_id = store.begin_run(RunInfo(pipeline="bench", seed=0, spec={}, params={
            "lr": row["lr"], "opt": row["opt"], "width": row["width"]}))
        store.log_metrics(run_id, "score", [("acc", row["acc"], None), ("loss", row["loss"], None),
                                            ("ece", row["ece"], None)])
        store.end_run(run_id, "succeeded")
    create = (time.perf_counter() - start) / len(rows)
    listed = store.runs()
    assert len(listed) == len(rows) and len(listed[0].params) == 3 and len(listed[0].metrics) == 3
    expected = sum(r["acc"] > 0.99 for r in rows)
    assert len(store.runs("metrics.acc > 0.99")) == expected
    return {"create": create, "list": best(lambda: store.runs(), repeats),
            "filtered": best(lambda: store.runs("metrics.acc > 0.99"), repeats),
            "typed": best(lambda: store.runs("params.lr > 0.05 and params.opt = 'adam'"), repeats),
            "matches": expected}


def flowopt_lineage(folder: Path, nodes: int, repeats: int) -> float:
    ids = [f"n{i:05d}" for i in range(nodes)]
    spec = {"pipeline": "chain", "nodes": {ids[0]: {"kind": "storebench.inc"}}}
    for previous, nid in zip(ids, ids[1:]):
        spec["nodes"][nid] = {"kind": "storebench.inc", "in": {"x": previous}}
    store = Store(folder / "lineage")
    result = Scheduler(compile_pipeline(PipelineSpec.model_validate(spec)), store).run()
    final = result.nodes[ids[-1]].outputs["value"].id
    assert len(store.lineage(final, "upstream").upstream) == nodes - 1
    return best(lambda: store.lineage(final, "upstream"), repeats)


# -- MLflow ----------------------------------------------------------------------------------
def mlflow_store(path: Path):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "mlartifacts"))
    return store, store.create_experiment("bench")


def mlflow_logging(folder: Path, points: int) -> dict[str, float]:
    from mlflow.entities import Metric

    store, experiment = mlflow_store(folder / "ml-log.db")
    run = store.create_run(experiment, "bench", int(time.time() * 1000), [], "single")
    now = int(time.time() * 1000)
    start = time.perf_counter()
    for step in range(points):
        store.log_metric(run.info.run_id, Metric("loss", 1.0 / (step + 1), now, step))
    single = (time.perf_counter() - start) / points
    run = store.create_run(experiment, "bench", now, [], "batched")
    start = time.perf_counter()
    for first in range(0, 10 * 1000, 1000):
        store.log_batch(run.info.run_id, [Metric("loss", 1.0 / (s + 1), now, s)
                                          for s in range(first, first + 1000)], [], [])
    batched = (time.perf_counter() - start) / 10_000
    return {"single": single, "batch": batched}


def mlflow_runs(folder: Path, rows: list[dict], repeats: int) -> dict[str, float]:
    from mlflow.entities import Metric, Param, RunStatus, ViewType

    store, experiment = mlflow_store(folder / "ml-runs.db")
    start = time.perf_counter()
    for index, row in enumerate(rows):
        now = int(time.time() * 1000)
        run = store.create_run(experiment, "bench", now, [], f"run-{index}")
        store.log_batch(run.info.run_id,
                        [Metric(k, row[k], now, 0) for k in ("acc", "loss", "ece")],
                        [Param(k, str(row[k])) for k in ("lr", "opt", "width")], [])
        store.update_run_info(run.info.run_id, RunStatus.FINISHED, now, None)
    create = (time.perf_counter() - start) / len(rows)

    def search(text: str):
        return store.search_runs([experiment], text, ViewType.ACTIVE_ONLY, max_results=len(rows))

    assert len(search("")) == len(rows)
    assert len(search("metrics.acc > 0.99")) == sum(r["acc"] > 0.99 for r in rows)
    return {"create": create, "list": best(lambda: search(""), repeats),
            "filtered": best(lambda: search("metrics.acc > 0.99"), repeats)}


# -- report ----------------------------------------------------------------------------------
def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e3:.3g} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--mlflow-points", type=int, default=500,
                        help="single log_metric calls for MLflow (each one commits)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import mlflow

    rows = run_rows(args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours = {**flowopt_logging(folder, args.points),
                **flowopt_runs(folder, rows, args.repeats),
                "lineage": flowopt_lineage(folder, args.nodes, args.repeats)}
        theirs = {**mlflow_logging(folder, args.mlflow_points),
                  **mlflow_runs(folder, rows, args.repeats)}
    lines = [
        ("a. log one metric point per call", "single", f"≤ {fmt(TARGETS['single'])}"),
        ("a. log metric points in batches of 1,000 (per point)", "batch", f"≤ {fmt(TARGETS['batch'])}"),
        (f"b. create a run with 3 params + 3 metrics (per run, {args.runs} runs)", "create", "–"),
        (f"c. list {args.runs} runs with params and metrics", "list", f"≤ {fmt(TARGETS['list'])}"),
        (f"c. list with `metrics.acc > 0.99` ({ours['matches']} match)", "filtered",
         f"≤ {fmt(TARGETS['filtered'])}"),
        (f"d. upstream lineage, final artifact of a {args.nodes}-node chain", "lineage",
         f"≤ {fmt(TARGETS['lineage'])}"),
    ]
    print(f"flowopt {flowopt.__version__} vs MLflow {mlflow.__version__} · Python "
          f"{platform.python_version()} · SQLite {sqlite3.sqlite_version} · {platform.machine()}")
    print()
    print("| measurement | flowopt | MLflow | MLflow / flowopt | target | met |")
    print("|---|---:|---:|---:|---|---|")
    for label, key, target in lines:
        mine, peer = ours[key], theirs.get(key)
        ratio = f"{peer / mine:.0f}×" if peer else "–"
        met = "yes" if key not in TARGETS or mine <= TARGETS[key] else "**no**"
        print(f"| {label} | {fmt(mine)} | {fmt(peer)} | {ratio} | {target} | "
              f"{met if key in TARGETS else '–'} |")
    print()
    print(f"flowopt single-point call alone (buffered, before the flush): {fmt(ours['single_call'])}; "
          f"typed-param filter `params.lr > 0.05 and params.opt = 'adam'`: {fmt(ours['typed'])} "
          "(MLflow compares params as strings).")
    print(f"MLflow single-point calls: {args.mlflow_points}; flowopt: {args.points}.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
