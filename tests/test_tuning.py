"""The tuning framework: trials as child runs through the scheduler (issue 5).

Toy kinds (tests/plugins/tuning_toys.py) keep every test torch-free and fast; the
objective is value = 1 + (x - 1)^2 + (y + 2)^2 + 0.5·[choice != 'b'].
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest

from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.registry import load_plugin
from flowopt.runner import execute
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec

PLUGIN = Path(__file__).parent / "plugins" / "tuning_toys.py"
load_plugin(str(PLUGIN))
TOYS = sys.modules[f"flowopt_plugin_{PLUGIN.stem}_{abs(hash(str(PLUGIN.resolve())))}"]


def pipeline(tune: dict, quad: dict | None = None, *, search: dict | None = None,
             extra: dict | None = None, kind: str = "tuner.random", seed: int = 0):
    """Compile the toy tuning pipeline: src -> f(x, y, choice) -> tune."""
    search = search if search is not None else {"x": {"low": -2.0, "high": 3.0},
                                                "y": {"low": -4.0, "high": 0.0}}
    nodes = {
        "src": {"kind": "tunetoy.source", "with": {"value": 1.0}},
        "f": {"kind": "tunetoy.quad", "in": {"base": "src"},
              "with": {"x": "${params.x}", "y": "${params.y}", **(quad or {})}},
        "tune": {"kind": kind, "in": {"objective": "f.value"}, "with": tune},
        **(extra or {}),
    }
    return compile_pipeline(PipelineSpec.model_validate(
        {"pipeline": "toy-tuning", "seed": seed, "params": {"x": 0.0, "y": 0.0},
         "search": search, "nodes": nodes}))


def objective(x: float, y: float) -> float:
    return 1.0 + (x - 1.0) ** 2 + (y + 2.0) ** 2 + 0.5


@pytest.fixture(autouse=True)
def fresh_counts():
    TOYS.CALLS.clear()
    TOYS.SPANS.clear()


def test_best_trial_becomes_the_tuners_output_and_feeds_downstream_nodes():
    recorder = MemoryRecorder()
    graph = pipeline({"mode": "min", "trials": 6},
                     extra={"after": {"kind": "tunetoy.scale", "in": {"value": "tune.f.value"},
                                      "with": {"factor": 10.0}}})
    result = Scheduler(graph, recorder).run()
    assert result.status == "succeeded"
    trials = sorted(recorder.trials.values(), key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.status == "succeeded" for t in trials)
    for trial in trials:
        assert trial.objective == pytest.approx(objective(trial.params["x"], trial.params["y"]))
    best = min(trials, key=lambda t: t.objective)
    assert result.best == {"node": "tune", "params": dict(best.params), "objective": best.objective}
    assert result.metrics["tune.objective"] == best.objective
    assert result.value("after", "scaled") == pytest.approx(10.0 * best.objective)
    assert result.to_json()["best"]["params"] == dict(best.params)


def test_mode_max_picks_the_largest_objective():
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"mode": "max", "trials": 5}), recorder).run()
    assert result.best["objective"] == max(t.objective for t in recorder.trials.values())


def test_nodes_the_params_do_not_reach_run_exactly_once_across_all_trials(store_dir):
    graph = pipeline({"mode": "min", "trials": 6, "parallel": 2})
    result = execute(graph, store=str(store_dir), workers=2)
    assert result.status == "succeeded"
    assert TOYS.CALLS == {"source": 1, "quad": 6}
    from flowopt.store import Store

    store = Store.open(str(store_dir))
    trials = store.run(result.run_id).trials
    for trial in trials:  # each child run reused the tuning run's `src` instead of running it
        statuses = {n.id: n.status for n in store.run(trial.trial_run_id).nodes}
        assert statuses == {"src": "cached", "f": "succeeded"}


def test_parallel_trials_really_run_concurrently():
    graph = pipeline({"mode": "min", "trials": 4, "parallel": 2}, {"delay": 0.25})
    start = time.perf_counter()
    result = Scheduler(graph, MemoryRecorder()).run()
    wall = time.perf_counter() - start
    assert result.status == "succeeded"
    spans = sorted(TOYS.SPANS)
    overlapping = sum(1 for (_, s1, e1), (_, s2, _) in zip(spans, spans[1:]) if s2 < e1)
    assert overlapping >= 2  # trials 0|1 and 2|3 ran side by side
    assert wall < 4 * 0.25 * 0.8  # well under the sequential 1 s


def test_one_trial_at_a_time_without_parallel():
    Scheduler(pipeline({"mode": "min", "trials": 3}, {"delay": 0.05}), MemoryRecorder()).run()
    spans = sorted(TOYS.SPANS)
    assert all(s2 >= e1 for (_, _, e1), (_, s2, _) in zip(spans, spans[1:]))


def test_a_failing_trial_is_recorded_as_failed_and_the_search_goes_on():
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"mode": "min", "trials": 8}, {"fail_above": 1.0}), recorder).run()
    assert result.status == "succeeded"
    trials = sorted(recorder.trials.values(), key=lambda t: t.number)
    assert len(trials) == 8
    failed = [t for t in trials if t.status == "failed"]
    assert failed and len(failed) < 8
    for trial in failed:
        assert trial.params["x"] > 1.0 and trial.objective is None
        assert "too large" in trial.error and "node 'f'" in trial.error
        assert recorder.runs[trial.trial_run_id]["status"] == "failed"
    assert result.best["params"]["x"] <= 1.0


def test_a_non_finite_objective_is_a_failed_trial():
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"mode": "max", "trials": 8}, {"nan_below": 0.5}), recorder).run()
    failed = [t for t in recorder.trials.values() if t.status == "failed"]
    assert failed and all(t.params["x"] < 0.5 and "not finite" in t.error for t in failed)
    assert not math.isnan(result.best["objective"])


def test_the_failure_limit_stops_the_search_and_fails_the_tuner():
    recorder = MemoryRecorder()
    result = Scheduler(pipeline({"mode": "min", "trials": 10, "max_failures": 2},
                                {"fail_above": -10.0}), recorder).run()
    assert result.status == "failed" and result.failed_node == "tune"
    assert "3 trials failed (max_failures 2)" in result.error
    assert len(recorder.trials) == 3  # stopped after the third failure, not after ten
    assert result.to_json()["best"] is None


def test_a_search_where_every_trial_fails_fails_the_tuner():
    result = Scheduler(pipeline({"mode": "min", "trials": 3}, {"fail_above": -10.0}),
                       MemoryRecorder()).run()
    assert result.status == "failed" and "no trial succeeded" in result.error


def test_each_trial_is_a_child_run_with_its_own_executions_and_artifacts(store_dir):
    from flowopt.store import Store

    result = execute(pipeline({"mode": "min", "trials": 3}), store=str(store_dir), workers=1)
    store = Store.open(str(store_dir))
    detail = store.run(result.run_id)
    assert [t.number for t in detail.trials] == [0, 1, 2]
    assert [n.id for n in detail.nodes] == ["src", "tune"]  # owned nodes ran in the trials
    children = {t.trial_run_id: t for t in detail.trials}
    for run_id, trial in children.items():
        child = store.run(run_id)
        assert child.run.parent_run_id == result.run_id
        assert child.run.params["x"] == trial.params["x"]
        assert child.run.metrics["f.value"] == pytest.approx(trial.objective)
        assert {a.node for a in child.artifacts} == {"src", "f"}
    listed = {r.run_id for r in store.runs()}
    assert result.run_id in listed and not listed & set(children)


def test_the_tuners_outputs_are_the_best_trials_own_artifacts(store_dir):
    from flowopt.store import Store

    result = execute(pipeline({"mode": "min", "trials": 4}), store=str(store_dir), workers=1)
    store = Store.open(str(store_dir))
    detail = store.run(result.run_id)
    best = min(detail.trials, key=lambda t: t.objective)
    best_value = next(a.id for a in store.run(best.trial_run_id).artifacts if a.node == "f")
    tune = next(n for n in detail.nodes if n.id == "tune")
    assert best_value in tune.outputs  # the same artifact: lineage leads to the best trial


def test_a_second_run_reuses_the_tuner_from_the_cache(store_dir):
    graph = pipeline({"mode": "min", "trials": 3})
    first = execute(graph, store=str(store_dir), workers=1)
    second = execute(graph, store=str(store_dir), workers=1)
    assert second.nodes["tune"].status == "cached"
    assert second.best == first.best
    assert TOYS.CALLS["quad"] == 3


def test_an_interrupted_tuning_run_resumes_without_rerunning_finished_trials():
    recorder = MemoryRecorder()
    graph = pipeline({"mode": "min", "trials": 6})
    stop_after = 3

    class CtrlC:
        """Presses Ctrl-C (sets the run's cancel flag) once `stop_after` trials finished."""

        def __init__(self):
            self.scheduler = None

        def trial_finished(self, *, number, **kwargs):
            if number == stop_after - 1:
                self.scheduler.cancel.set()

    listener = CtrlC()
    scheduler = Scheduler(graph, recorder, listeners=[listener])
    listener.scheduler = scheduler
    interrupted = scheduler.run()
    assert interrupted.nodes["tune"].status == "interrupted"
    assert interrupted.nodes["tune"].error == "interrupted"
    first = {t.number: t for t in recorder.trials.values() if t.run_id == interrupted.run_id}
    assert sorted(n for n, t in first.items() if t.status == "succeeded") == [0, 1, 2]
    calls = TOYS.CALLS["quad"]

    resumed = Scheduler(graph, recorder).run()
    assert resumed.status == "succeeded"
    assert TOYS.CALLS["quad"] - calls == 3  # only trials 3, 4, 5 ran
    second = {t.number: t for t in recorder.trials.values() if t.run_id == resumed.run_id}
    assert sorted(second) == list(range(6))
    for number in (0, 1, 2):
        assert second[number].attributes["resumed_from"] == interrupted.run_id
        assert second[number].trial_run_id == first[number].trial_run_id
    fresh = MemoryRecorder()
    Scheduler(graph, fresh).run()  # resuming proposes what one uninterrupted run would have
    assert sorted((t.number, t.params["x"]) for t in fresh.trials.values()) == \
        sorted((n, t.params["x"]) for n, t in second.items())


def test_warm_start_tells_the_strategy_earlier_trials_over_the_same_space():
    from flowopt.nodes.tuner.random import RandomSearch
    from flowopt.nodes.tuner.strategy import register_tuner

    told: list[list[int]] = []

    class Spy(RandomSearch):
        """Random search that remembers what it was told before each ask."""

        def ask(self, pending):
            told.append([o.number for o in self.observations])
            return super().ask(pending)

    register_tuner("tunetest.spy", Spy)
    recorder = MemoryRecorder()
    Scheduler(pipeline({"mode": "min", "trials": 3}, kind="tunetest.spy"), recorder).run()
    assert told[0] == []
    told.clear()
    Scheduler(pipeline({"mode": "min", "trials": 2, "warm_start": True}, kind="tunetest.spy"),
              recorder).run()
    assert told[0] == [0, 1, 2]  # the first run's three trials, before the first ask
    told.clear()
    Scheduler(pipeline({"mode": "min", "trials": 2}, kind="tunetest.spy"), recorder).run()
    assert told[0] == []  # no warm start unless asked


def test_a_killed_tuning_process_resumes_from_the_store(tmp_path):
    """kill -9 mid-search; the re-run reads finished trials back instead of re-running them."""
    import signal
    import sqlite3
    import subprocess

    log = tmp_path / "calls.log"
    store = tmp_path / "store"
    path = tmp_path / "tune.yaml"
    path.write_text(f"""
pipeline: killed
plugins: [{PLUGIN}]
params: {{x: 0.0}}
search: {{x: {{low: -2.0, high: 3.0}}}}
nodes:
  src: {{kind: tunetoy.source, with: {{log: "{log}"}}}}
  f: {{kind: tunetoy.quad, in: {{base: src}}, with: {{x: "${{params.x}}", delay: 0.3, log: "{log}"}}}}
  tune: {{kind: tuner.random, in: {{objective: f.value}}, with: {{mode: min, trials: 6}}}}
""", encoding="utf-8")
    command = [sys.executable, "-m", "flowopt", "run", str(path), "--store", str(store), "--json"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    finished = 0
    while finished < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
        if (store / "flowopt.db").exists():
            with sqlite3.connect(store / "flowopt.db") as conn:
                try:
                    finished = conn.execute(
                        "select count(*) from trials where status='succeeded'").fetchone()[0]
                except sqlite3.OperationalError:
                    pass
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert finished >= 2
    before = log.read_text().splitlines()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    after = log.read_text().splitlines()[len(before):]
    with sqlite3.connect(store / "flowopt.db") as conn:
        rows = conn.execute("select number, status, params, attributes from trials "
                            "where run_id = ? order by number", (report["run_id"],)).fetchall()
    assert [r[0] for r in rows] == list(range(6)) and {r[1] for r in rows} == {"succeeded"}
    resumed = [json.loads(r[2])["x"] for r in rows if "resumed_from" in json.loads(r[3])]
    assert len(resumed) >= 2
    rerun_x = [float(line.split()[1]) for line in after if line.startswith("quad")]
    assert not set(resumed) & set(rerun_x)  # no finished trial ran again
    assert len(rerun_x) == 6 - len(resumed)
    assert not [line for line in after if line.startswith("source")]  # src came from the cache
