"""tuner.pbt as a pipeline node: the example pipeline, bad input, replay, resume, runs show."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pbt_support
from flowopt.errors import SpecError
from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec
from flowopt.store import Store
from flowopt.store.population import read_events

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "tune_pbt.yaml"
FLOWOPT = [sys.executable, "-m", "flowopt"]
SMALL = ["nodes.train.with.steps=60", "nodes.tune.with.interval=20",
         "nodes.tune.with.population=3", "nodes.tune.with.parallel=1"]


def run(recorder, *overrides: str):
    graph = compile_pipeline(load_spec(PIPELINE, list(overrides)))
    return graph, Scheduler(graph, recorder).run()


def flowopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLOWOPT, *args], capture_output=True, text=True, timeout=300)


def test_the_example_pipeline_trains_a_population_and_exports_the_best_member():
    recorder = MemoryRecorder()
    started = time.perf_counter()
    graph, result = run(recorder)  # as shipped: 4 members × 400 steps, 2 at a time
    assert time.perf_counter() - started < 120
    assert result.status == "succeeded", result.error
    assert graph.tuners["tune"].owned == ("train", "score")
    members = [t for t in recorder.trials.values() if t.node_id == "tune"]
    assert sorted(t.number for t in members) == [0, 1, 2, 3]
    assert all(t.status == "succeeded" for t in members)
    # `final` re-scores the exported model: it is the best member's, and it is the best.
    assert result.metrics["final.accuracy"] == result.best["objective"] > 0.9
    assert result.best["objective"] == max(t.objective for t in members)
    events = [e for r, n, e in recorder.population if r == result.run_id]
    assert sum(e.event == "start" for e in events) == 4
    assert sum(e.event == "finish" for e in events) == 4
    assert any(e.event == "exploit" for e in events)
    schedule = result.value("tune", "schedule")
    assert schedule["steps"] == 400 and schedule["schedule"][0]["step"] == 0
    assert schedule["schedule"][-1]["params"] == result.best["params"]


@pytest.mark.parametrize("override, message", [
    ("nodes.tune.with.population=1", "population"),
    ("nodes.tune.with.interval=0", "interval"),
    ("nodes.tune.with.fraction=0.6", "fraction"),
    ("nodes.tune.with.factors=[0.8, -1.2]", "factors"),
    ("nodes.tune.with.trials=4", "trials"),
])
def test_bad_pbt_fields_are_refused_before_anything_runs(override, message):
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(PIPELINE, [override]))
    assert f"nodes.tune.with.{message}" in str(caught.value)


def test_a_searched_param_training_cannot_change_mid_run_is_refused_with_one_line(tmp_path):
    text = PIPELINE.read_text(encoding="utf-8")
    text = text.replace("  weight_decay: 1.0e-4\n", "  weight_decay: 1.0e-4\n  width: 64\n", 1)
    text = text.replace("search:\n", "search:\n  width: {low: 16, high: 128, integer: true}\n", 1)
    text = text.replace("hidden: [64]", 'hidden: ["${params.width}"]')
    path = tmp_path / "width.yaml"
    path.write_text(text, encoding="utf-8")
    store = tmp_path / "store"
    done = flowopt("run", str(path), "--store", str(store))
    assert done.returncode == 2
    line = done.stderr.splitlines()[0]
    assert "key 'search.width'" in line
    assert "tuner.pbt: searched param 'width' sets net.with.hidden, which cannot change while " \
           "train trains (tuner.pbt can change train's lr, betas, weight_decay, schedule)" in line
    assert not store.exists()


def test_replay_retrains_the_best_member_from_scratch_to_the_same_score(tmp_path):
    store_dir = tmp_path / "store"
    _, result = run(Store.open(store_dir), *SMALL)
    assert result.status == "succeeded", result.error
    done = flowopt("pbt", "replay", result.run_id, "--store", str(store_dir), "--json")
    assert done.returncode == 0, done.stderr
    replayed = json.loads(done.stdout)
    assert replayed["same"] is True
    assert replayed["replayed"] == replayed["recorded"] == result.best["objective"]
    assert replayed["schedule"][-1]["params"] == result.best["params"]
    shown = json.loads(flowopt("runs", "show", result.run_id, "--store", str(store_dir),
                               "--json").stdout)
    population = [t for t in shown["trials"] if t["node"] == "tune"]
    assert [t["number"] for t in population] == [0, 1, 2]
    assert max(t["objective"] for t in population) == result.best["objective"]


def test_a_killed_pbt_run_resumes_from_the_latest_checkpoints_in_the_store(tmp_path):
    store_dir = tmp_path / "store"
    overrides = ["nodes.train.with.steps=200", "nodes.tune.with.interval=20",
                 "nodes.tune.with.population=3", "nodes.tune.with.parallel=1"]
    args = [str(a) for o in overrides for a in ("-s", o)]
    killed_run, before = None, []

    def ready() -> bool:
        nonlocal killed_run, before
        if not (store_dir / "flowopt.db").exists():
            return False
        store = Store.open(store_dir, create=False)
        runs = store.runs()
        if runs:
            killed_run = runs[0].run_id
            before = read_events(store.engine, killed_run, "tune")
        store.close()
        return sum(e.event == "keep" for e in before) >= 8

    pbt_support.kill_when([*FLOWOPT, "run", str(PIPELINE), "--store", str(store_dir), *args],
                          ready)
    assert killed_run is not None and sum(e.event == "keep" for e in before) >= 8, \
        "the run finished before it could be killed"
    store = Store.open(store_dir)
    before = read_events(store.engine, killed_run, "tune")
    graph = compile_pipeline(load_spec(PIPELINE, overrides))
    result = Scheduler(graph, store).run()
    assert result.status == "succeeded", result.error
    after = read_events(store.engine, result.run_id, "tune")
    key = ("member", "step", "event", "from_member", "checkpoint_id")
    # The killed run's decisions are the resumed run's first ones; nothing restarts.
    assert [tuple(getattr(e, k) for k in key) for e in after[:len(before)]] == \
        [tuple(getattr(e, k) for k in key) for e in before]
    assert not any(e.event == "start" for e in after[len(before):])
    segments = sum(e.event in ("keep", "exploit", "finish") for e in after)
    assert sum(e.event in ("keep", "exploit", "finish") for e in after[len(before):]) < segments
    assert sorted(e.member for e in after if e.event == "finish") == [0, 1, 2]
    from flowopt.nodes.tuner.pbt.session import replay_run

    assert replay_run(store, result.run_id)["same"] is True
    store.close()


def test_a_checkpoint_that_cannot_be_written_fails_the_run_and_no_event_names_it():
    class DiskFull(MemoryRecorder):
        def save_checkpoint(self, label, payload, fmt, checkpoint_id=None):
            if len(self.checkpoints) >= 5:
                raise OSError(28, "No space left on device")
            return super().save_checkpoint(label, payload, fmt, checkpoint_id)

    recorder = DiskFull()
    _, result = run(recorder, *SMALL)
    assert result.status == "failed"
    assert "No space left on device" in result.error
    named = {e.checkpoint_id for r, n, e in recorder.population if e.checkpoint_id}
    assert named and named <= set(recorder.checkpoints)  # written behind, but never ahead


@pytest.mark.parametrize("parallel, cores, threads", [(1, 2, 1), (2, 2, 1), (1, 16, 15), (4, 16, 3),
                                                      (8, 4, 1)])
def test_members_share_all_cores_but_one_left_to_the_controller_and_writer(parallel, cores, threads):
    from flowopt.tuning.owned import member_threads

    assert member_threads(parallel, cores) == threads
