"""One store holding every kind of run the UI and report tests look at.

`build_store(folder)` runs real pipelines through the engine (a plain run with a loss
series and per-layer numbers, a tuned run and its cached re-run, a failed run) and adds,
through the store's recorder API, what other strategies record: a run whose pipeline
name is markup, and a multi-objective tuning run whose trials carry ``objectives``,
``steps`` and a ``pruned`` status with per-rung series.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

HOSTILE = "<script>alert(1)</script>"
PLUGIN = Path(__file__).with_name("ui_toys.py")

PLAIN = """
pipeline: ui-plain
seed: 1
plugins: [{plugin}]
params: {{x: 0.25}}
nodes:
  curve: {{kind: uitoy.curve, with: {{x: "${{params.x}}"}}}}
"""

TUNED = """
pipeline: ui-tuned
seed: 3
plugins: [{plugin}]
params: {{x: 0.5}}
search: {{x: {{low: -2.0, high: 2.0}}}}
nodes:
  curve: {{kind: uitoy.curve, with: {{x: "${{params.x}}"}}}}
  tune: {{kind: tuner.random, in: {{objective: curve.value}}, with: {{mode: min, trials: 6}}}}
"""

LINEAGE = """
pipeline: ui-lineage
nodes:
  table: {{kind: data.csv, with: {{path: "{csv}"}}}}
  split: {{kind: data.split, in: {{dataset: table}}, with: {{val_fraction: 0.25}}}}
"""

FAILING = """
pipeline: ui-failing
plugins: [{plugin}]
nodes:
  first: {{kind: uitoy.curve}}
  boom: {{kind: uitoy.boom}}
"""


def _run(folder: Path, text: str, store: str, name: str, csv: str = "",
         **overrides: str) -> object:
    from flowopt.graph import compile_pipeline
    from flowopt.runner import execute
    from flowopt.spec import load_spec

    path = folder / f"{name}.yaml"
    path.write_text(text.format(plugin=PLUGIN, csv=csv))
    return execute(compile_pipeline(load_spec(path, [f"{k}={v}" for k, v in overrides.items()])),
                   store=store)


def build_store(folder: Path, location: str | None = None) -> dict[str, str]:
    """Fill the store at `location` (default: a folder under `folder`); returns the run
    ids by role and ``store``."""
    store_dir = location or str(folder / "store")
    ids = {"store": store_dir}
    ids["plain"] = _run(folder, PLAIN, store_dir, "plain").run_id
    ids["plain2"] = _run(folder, PLAIN, store_dir, "plain2", **{"params.x": "0.75"}).run_id
    ids["tuned"] = _run(folder, TUNED, store_dir, "tuned").run_id
    ids["cached"] = _run(folder, TUNED, store_dir, "tuned").run_id
    ids["failed"] = _run(folder, FAILING, store_dir, "failing").run_id
    table = folder / "points.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    ids["lineage"] = _run(folder, LINEAGE, store_dir, "lineage", csv=str(table)).run_id
    ids["csv"] = str(table)
    from flowopt.recording import RunInfo
    from flowopt.store import Store
    from flowopt.tuning.records import TrialInfo

    store = Store.open(store_dir)
    hostile = store.begin_run(RunInfo(pipeline=HOSTILE, seed=0, params={"note": HOSTILE},
                                      spec={}, source=None))
    store.log_metric(hostile, HOSTILE, "loss", 1.0, 1)
    store.log_metric(hostile, HOSTILE, "loss", 0.5, 2)
    store.end_run(hostile, "succeeded")
    ids["hostile"] = hostile
    # A multi-objective tuning run with early stopping, as such strategies record it.
    # The objectives' names come from the spec (one is markup, to be escaped where shown).
    multi_spec = {"nodes": {"tune": {"kind": "tuner.random", "in": {
        "objective": ["score.accuracy", "quant.<i>bytes</i>"]}}}}
    multi = store.begin_run(RunInfo(pipeline="ui-multi", seed=0, params={}, spec=multi_spec))
    start = datetime.now(timezone.utc)
    front = [(0.9, 3.0), (0.8, 1.0), (0.7, 2.0), (0.95, 5.0)]  # (accuracy max, MB min)
    for number, (accuracy, size) in enumerate(front):
        child = store.begin_run(RunInfo(pipeline="ui-multi", seed=number, params={},
                                        spec={}, parent_run_id=multi))
        pruned = number == 2
        rungs = (10, 30) if not pruned else (10,)
        for rung, steps in enumerate(rungs):
            store.log_metric(child, "score", "accuracy", accuracy - 0.1 / (rung + 1), steps)
        store.end_run(child, "succeeded")
        store.record_trial(TrialInfo(
            run_id=multi, node_id="tune", number=number,
            params={"lr": 0.001 * (number + 1), "opt": "adam" if number % 2 else "lion"},
            status="pruned" if pruned else "succeeded", trial_run_id=child,
            values=(accuracy, size), started_at=start + timedelta(seconds=number),
            ended_at=start + timedelta(seconds=number + 1), seconds=1.0,
            steps=rungs[-1], rung=len(rungs) - 1))
    from flowopt.recording import ExecutionRecord

    store.record_execution(ExecutionRecord(
        run_id=multi, node_id="tune", kind="tuner.random", kind_version=1, cache_key="0" * 32,
        status="succeeded", config={"mode": ["max", "min"], "trials": 4}, seconds=4.0))
    for number, value in enumerate((0.1, 0.3, 0.3, 0.42)):  # after each trial
        store.log_metric(multi, "tune", "hypervolume", value, number)
    store.log_metric(multi, "tune", "hypervolume", 0.42, None)
    store.end_run(multi, "succeeded")
    ids["multi"] = multi
    # A PBT run: two members, member 1 copies member 0 at step 10 and explores its lr.
    from types import SimpleNamespace

    from flowopt.store.population import write_events

    pbt = store.begin_run(RunInfo(pipeline="ui-pbt", seed=0, params={}, spec={}))
    store.record_execution(ExecutionRecord(
        run_id=pbt, node_id="tune", kind="tuner.pbt", kind_version=1, cache_key="1" * 32,
        status="succeeded", config={"mode": "max"}, seconds=2.0))

    def event(member, step, kind, lr, score=None, source=None, source_score=None):
        return SimpleNamespace(member=member, step=step, event=kind, new_params={"lr": lr},
                               old_params=None, from_member=source, score=score,
                               from_score=source_score, checkpoint_id=None)

    write_events(store.engine, pbt, "tune", [
        event(0, 0, "start", 0.01), event(1, 0, "start", 0.1),
        event(0, 10, "keep", 0.01, 0.9), event(1, 10, "exploit", 0.01, 0.5, 0, 0.9),
        event(1, 10, "explore", 0.02, None, 0, 0.9),
        event(0, 20, "finish", 0.01, 0.93), event(1, 20, "finish", 0.02, 0.95)])
    store.end_run(pbt, "succeeded")
    ids["pbt"] = pbt
    store.close()
    return ids
