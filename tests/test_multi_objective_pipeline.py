"""Several objectives through the engine (issue 13): the front, its hypervolume and
reference point, infeasible trials, resume, the store, the CLI and bad input.

The toy kind (tests/plugins/pareto_toys.py) has metrics ``a = (x - 0)² + y²`` and
``b = (x - 2)² + y²``, both minimised: the Pareto set is y = 0, x in [0, 2].
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.registry import load_plugin
from flowopt.runner import execute
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec
from flowopt.tuning.pareto import hypervolume, infer_reference_point, pareto_mask, to_loss

PLUGIN = Path(__file__).parent / "plugins" / "pareto_toys.py"
load_plugin(str(PLUGIN))
SEARCH = {"x": {"low": -1.0, "high": 3.0}, "y": {"low": -1.0, "high": 1.0}}


def pipeline(tune: dict, *, kind: str = "tuner.random", pair: dict | None = None,
             objective: list | str = ("f.a", "f.b"), extra: dict | None = None):
    nodes = {
        "f": {"kind": "pareto.pair",
              "with": {"x": "${params.x}", "y": "${params.y}", **(pair or {})}},
        "tune": {"kind": kind, "in": {"objective": list(objective)
                                      if not isinstance(objective, str) else objective},
                 "with": {"mode": ["min", "min"], **tune}},
        **(extra or {}),
    }
    return compile_pipeline(PipelineSpec.model_validate(
        {"pipeline": "pareto-toy", "seed": 0, "params": {"x": 0.0, "y": 0.0},
         "search": SEARCH, "nodes": nodes}))


def trials_of(recorder: MemoryRecorder, run_id: str) -> list:
    return sorted((t for t in recorder.trials.values() if t.run_id == run_id),
                  key=lambda t: t.number)


def test_the_front_is_the_non_dominated_trials_with_their_exact_hypervolume():
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"trials": 12}), recorder).run()
    assert result.status == "succeeded"
    trials = trials_of(recorder, result.run_id)
    assert all(t.status == "succeeded" for t in trials)
    for t in trials:  # each trial carries both objectives, as measured
        x, y = t.params["x"], t.params["y"]
        assert t.values == pytest.approx((x * x + y * y, (x - 2) ** 2 + y * y))
    values = np.array([t.values for t in trials])
    front = [t.number for t, on in zip(trials, pareto_mask(values)) if on]
    best = result.best
    assert [p["number"] for p in best["pareto"]] == front
    assert all(set(p) == {"number", "params", "objectives"} for p in best["pareto"])
    ref = infer_reference_point(values)  # none given: inferred from the trials, recorded
    assert best["reference_point"] == pytest.approx(ref.tolist())
    assert best["hypervolume"] == pytest.approx(hypervolume(values, ref))
    assert result.metrics["tune.hypervolume"] == pytest.approx(best["hypervolume"])
    # the progress: the hypervolume of the trials up to each one, at the same point
    progress = [(step, value) for run, node, key, value, step in recorder.metrics
                if run == result.run_id and node == "tune" and key == "hypervolume"
                and step is not None]
    assert [s for s, _ in progress] == [t.number for t in trials]
    assert [v for _, v in progress] == pytest.approx(
        [hypervolume(values[: i + 1], ref) for i in range(len(values))])
    # the single-valued outputs are the front's best trial in the first objective
    first = min((t for t in trials if t.number in front), key=lambda t: t.values[0])
    assert result.metrics["tune.objective"] == pytest.approx(first.values[0])
    assert result.value("tune", "params") == dict(first.params)


def test_a_given_reference_point_is_used_in_objective_units():
    recorder = MemoryRecorder()
    graph = pipeline({"trials": 10, "mode": ["max", "min"], "reference_point": [-5.0, 5.0]})
    result = Scheduler(graph, recorder).run()
    values = np.array([t.values for t in trials_of(recorder, result.run_id)])
    losses = to_loss(values, ["max", "min"])
    assert result.best["reference_point"] == [-5.0, 5.0]
    assert result.best["hypervolume"] == pytest.approx(hypervolume(losses, np.array([5.0, 5.0])))
    # maximising a: the front holds the trial with the largest a
    assert max(p["objectives"][0] for p in result.best["pareto"]) == pytest.approx(values[:, 0].max())


def test_a_nan_metric_makes_the_trial_infeasible_and_the_search_goes_on():
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"trials": 10}, pair={"nan_below": 1.0}), recorder).run()
    assert result.status == "succeeded"
    trials = trials_of(recorder, result.run_id)
    bad = [t for t in trials if t.params["x"] < 1.0]
    assert bad and len(bad) < len(trials)
    for t in bad:
        assert t.status == "failed" and "not finite" in t.error and math.isnan(t.values[0])
    on_front = {p["number"] for p in result.best["pareto"]}
    assert on_front and not on_front & {t.number for t in bad}
    json.dumps(result.to_json(), allow_nan=False)  # strict JSON


@pytest.mark.parametrize("kind,config", [("tuner.nsga2", {"population_size": 4}),
                                         ("tuner.bayesopt", {"initial_design": 4}),
                                         ("tuner.grid", {"grid_points": 3})])
def test_multi_objective_strategies_run_through_the_engine_in_parallel(kind, config):
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"trials": 9, "parallel": 2, **config}, kind=kind), recorder).run()
    assert result.status == "succeeded"
    trials = trials_of(recorder, result.run_id)
    assert len(trials) == 9 and len({json.dumps(t.params, sort_keys=True) for t in trials}) == 9
    assert result.best["hypervolume"] > 0


def test_an_interrupted_multi_objective_run_resumes_with_its_history():
    from flowopt.nodes.tuner.random import RandomSearch
    from flowopt.nodes.tuner.strategy import register_tuner

    told: list[list[tuple]] = []

    class Spy(RandomSearch):
        """Random search that remembers what it was told before each ask."""

        def ask(self, pending):
            told.append([(o.number, o.values) for o in self.observations])
            return super().ask(pending)

    register_tuner("paretotest.spy", Spy)
    recorder = MemoryRecorder()
    graph = pipeline({"trials": 6}, kind="paretotest.spy")

    class CtrlC:
        def __init__(self):
            self.scheduler = None

        def trial_finished(self, *, number, **kwargs):
            if number == 2:
                self.scheduler.cancel.set()

    listener = CtrlC()
    scheduler = Scheduler(graph, recorder, listeners=[listener])
    listener.scheduler = scheduler
    interrupted = scheduler.run()
    assert interrupted.nodes["tune"].error == "interrupted"
    first = {t.number: t for t in trials_of(recorder, interrupted.run_id) if t.status == "succeeded"}
    assert sorted(first) == [0, 1, 2]
    told.clear()
    resumed = Scheduler(graph, recorder).run()
    assert resumed.status == "succeeded"
    # the strategy was told the three finished trials, with both objectives, before asking
    assert told[0] == [(n, first[n].values) for n in (0, 1, 2)]
    second = trials_of(recorder, resumed.run_id)
    assert [t.number for t in second] == list(range(6))
    # the front is over all six trials, resumed ones included
    values = np.array([t.values for t in second])
    assert [p["number"] for p in resumed.best["pareto"]] == \
        [t.number for t, on in zip(second, pareto_mask(values)) if on]


def test_the_store_keeps_every_trials_objectives(store_dir):
    from flowopt.store import Store

    result = execute(pipeline({"trials": 5}), store=str(store_dir), workers=1)
    store = Store.open(str(store_dir))
    detail = store.run(result.run_id)
    rows = [t.to_json() for t in detail.trials]
    assert all("objectives" in r and "objective" not in r for r in rows)
    for r in rows:
        x, y = r["params"]["x"], r["params"]["y"]
        assert r["objectives"] == pytest.approx([x * x + y * y, (x - 2) ** 2 + y * y])
    # each Pareto trial's outputs are reachable as the artifacts of its child run
    for entry in store.load(result.nodes["tune"].outputs["pareto"]):
        child = store.run(entry["trial_run_id"])
        produced = {f"{a.node}.{a.port}": a.id for a in child.artifacts if a.node == "f"}
        assert produced and entry["artifacts"] == produced


def test_python_api_takes_a_list_of_objectives_and_round_trips_to_yaml(tmp_path):
    import flowopt as fo
    from flowopt.nodes import tuner

    pair = sys.modules[next(m for m in sys.modules if m.startswith("flowopt_plugin_pareto_toys"))]
    with fo.Pipeline("pareto-api", seed=0) as p:
        x = fo.param("x", 0.0, low=-1.0, high=3.0)
        f = pair.pair(x=x)
        tuner.random([f.a, f.b], mode=["min", "min"], trials=4)
    path = tmp_path / "p.yaml"
    p.to_yaml(path)
    text = path.read_text()
    assert "objective:" in text and "pair.a" in text and "pair.b" in text
    assert [str(b) for b in p.graph.tuners["random"].objectives] == ["pair.a", "pair.b"]
    again = fo.Pipeline.from_yaml(path)
    assert again.spec.nodes["random"].inputs["objective"] == ["pair.a", "pair.b"]


BAD = """pipeline: bad-pareto
plugins: [PLUGIN]
params: {x: 0.0}
search:
  x: {low: -1.0, high: 3.0}
nodes:
  f: {kind: pareto.pair, with: {x: "${params.x}"}}
  tune: {kind: KIND, in: {objective: OBJECTIVE}, with: WITH}
"""


@pytest.mark.parametrize("kind,objective,config,key,message", [
    ("tuner.random", "[f.a, f.b]", "{mode: [min], trials: 4}", "nodes.tune.with.mode",
     "tuner 'tune': mode has 1 direction but objective has 2 metric ports "
     "(one direction per objective)"),
    ("tuner.random", "[f.a, f.b]", "{mode: [min, max], trials: 4, reference_point: [1.0]}",
     "nodes.tune.with.reference_point",
     "tuner 'tune': reference_point has 1 values; expected 2 (one per objective)"),
    ("tuner.random", "[f.a, f.b]", "{mode: [min, max], trials: 4, reference_point: [1.0, .nan]}",
     "nodes.tune.with.reference_point",
     "tuner 'tune': reference_point values must be finite numbers, got NaN or null"),
    ("tuner.nsga2", "f.a", "{mode: min, trials: 4}", "nodes.tune.in.objective",
     "tuner.nsga2 needs two or more objectives; 'tune' has one"),
    ("tuner.nsga2", "[f.a, f.b]", "{mode: [min, min], trials: 4, population_size: 3}",
     "nodes.tune.with.population_size", "bad value 3: Input should be greater than or equal to 4"),
    ("tuner.random", "[f.a, f.b]", "{mode: [min, min], trials: 4, pruner: {name: median}}",
     "nodes.tune.with.pruner", "tuner 'tune': a pruner needs one objective, got 2"),
])
def test_bad_multi_objective_input_exits_2_with_one_line_and_stores_nothing(
        tmp_path, kind, objective, config, key, message):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace("PLUGIN", str(PLUGIN)).replace("KIND", kind)
                    .replace("OBJECTIVE", objective).replace("WITH", config), encoding="utf-8")
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(path), "--store", str(store)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == f"error: {path}:8, key '{key}': {message}"
    assert not store.exists()
