"""Early stopping on sampling tuners (``with: {pruner: ...}``), end to end on the digits MLP.

Specification: a paused trial resumed from its checkpoint ends with the same bits as one
trained straight through; a killed tuning run resumes with its brackets intact and ends
exactly as an uninterrupted one; parallel trials keep ASHA's promotion rule and never
train a step twice; bad ``pruner:`` input exits 2 with one line and stores nothing.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowopt.nodes  # noqa: F401 - registers the kinds
from flowopt.errors import SpecError
from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "tune_random.yaml"
ASHA = "{name: asha, min_steps: 10, reduction_factor: 3}"


def overrides(steps=90, trials=9, parallel=1, pruner=ASHA):
    return [f"nodes.train.with.steps={steps}", f"nodes.tune.with.trials={trials}",
            f"nodes.tune.with.parallel={parallel}", f"nodes.tune.with.pruner={pruner}"]


def run(*sets, recorder=None):
    recorder = recorder if recorder is not None else MemoryRecorder()
    graph = compile_pipeline(load_spec(PIPELINE, list(sets)))
    return graph, recorder, Scheduler(graph, recorder).run()


def trials_of(recorder):
    return sorted(recorder.trials.values(), key=lambda t: t.number)


def events_of(recorder, run_id):
    return recorder.pruner_events(run_id, "tune")


def straight_through(params):
    """The same pipeline with the trial's params and no tuner: the model trained at once."""
    spec = load_spec(PIPELINE, ["nodes.train.with.steps=90"]).spec
    spec = spec.model_copy(update={
        "params": {**spec.params, **params}, "search": {},
        "nodes": {k: v for k, v in spec.nodes.items() if k != "tune"}})
    recorder = MemoryRecorder()
    result = Scheduler(compile_pipeline(spec), recorder).run()
    assert result.status == "succeeded", result.error
    model = next(r for r in recorder.executions if r.node_id == "train").outputs["model"]
    return recorder.load(model), result.metrics["score.accuracy"]


@pytest.mark.parametrize("live", [True, False], ids=["parked-trainer", "from-checkpoint"])
def test_pause_promote_resume_equals_training_straight_through(live, monkeypatch):
    import torch

    if not live:  # every resume decodes the stored checkpoint into a fresh Trainer
        from flowopt.tuning import pruning

        original = pruning.PrunedSearch.__init__

        def no_parking(self, loop):
            original(self, loop)
            self.keep = 0

        monkeypatch.setattr(pruning.PrunedSearch, "__init__", no_parking)
    graph, recorder, result = run(*overrides())
    assert result.status == "succeeded", result.error
    done = [t for t in trials_of(recorder) if t.status == "succeeded"]
    assert done, "some trial reached the training steps"
    for trial in done:
        # it stopped at 10 and 30 steps and went on: never more than 90 steps in all
        stops = [e["step"] for e in events_of(recorder, result.run_id)
                 if e["event"] == "report" and e["number"] == trial.number]
        assert stops == [10, 30, 90] and trial.steps == 90
        model, accuracy = straight_through(trial.params)
        ref = next(r for r in recorder.executions if r.run_id == trial.trial_run_id
                   and r.node_id == "train").outputs["model"]
        resumed = recorder.load(ref)
        for key, tensor in model.module.state_dict().items():
            assert torch.equal(tensor, resumed.module.state_dict()[key]), key
        assert trial.objective == accuracy
    assert result.best["objective"] == max(t.objective for t in done)


def test_parallel_trials_keep_the_promotion_rule_and_never_retrain_a_step():
    graph, recorder, result = run(*overrides(trials=12, parallel=3))
    assert result.status == "succeeded", result.error
    events = events_of(recorder, result.run_id)
    # the log, read in order, checks each promotion against the rung as it was when made
    rung: dict[int, dict[int, float]] = {}
    promoted: set[tuple[int, int]] = set()
    steps = (10, 30, 90)
    starts = 0
    for e in events:
        starts += e["event"] == "start"
        if e["event"] == "resume":
            k = steps.index(e["step"]) - 1
            scores = rung.get(k, {})
            # ⌊n/η⌋ while trials still come; ⌈n/η⌉ once all 12 started (draining)
            quota = -(-len(scores) // 3) if starts == 12 else len(scores) // 3
            top = sorted(scores, key=lambda n: (-scores[n], n))[:quota]
            assert e["number"] in top and (e["number"], k) not in promoted
            promoted.add((e["number"], k))
        elif e["event"] == "report":
            rung.setdefault(steps.index(e["step"]), {})[e["number"]] = e["value"]
    reports = [(e["number"], e["step"]) for e in events if e["event"] == "report"]
    assert len(reports) == len(set(reports))  # no segment trained twice
    for trial in trials_of(recorder):
        reached = max(step for number, step in reports if number == trial.number)
        assert trial.steps == reached  # paused, not killed: resumed where it stopped
        assert trial.status == ("succeeded" if reached == 90 else "pruned")
        assert trial.rung == steps.index(reached)
    total = sum(t.steps for t in trials_of(recorder))
    assert total < 0.5 * 12 * 90  # the point of it: far fewer steps than full training


def test_median_prunes_for_good_and_completed_trials_train_in_full():
    graph, recorder, result = run(*overrides(
        trials=8, pruner="{name: median, min_steps: 30, startup_trials: 2}"))
    assert result.status == "succeeded", result.error
    trials = trials_of(recorder)
    assert {t.status for t in trials} == {"succeeded", "pruned"}
    for t in trials:
        assert (t.steps == 90) == (t.status == "succeeded")
    # the objective at each stop is a series of the trial's child run, step = training steps
    series = [(step, value) for run_id, node, key, value, step in recorder.metrics
              if run_id == trials[0].trial_run_id and node == "tune" and key == "objective"]
    assert [s for s, _ in series] == [30, 60, 90][:len(series)] and series


def _count_reports(store: Path) -> int:
    db = store / "flowopt.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM pruner_events WHERE event = 'report'"
                                ).fetchone()[0]
    except sqlite3.Error:
        return 0


def _cli(store: Path, *extra: str):
    sets = [a for s in overrides(trials=8) for a in ("-s", s)]
    return [sys.executable, "-m", "flowopt", "run", str(PIPELINE), "--store", str(store),
            *sets, *extra]


def test_a_killed_run_resumes_with_its_brackets_intact(tmp_path):
    """kill -9 mid-bracket, run again: the same decisions, rungs and results as a run that
    was never interrupted, and no finished segment trained again."""
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _count_reports(killed) < 7 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = subprocess.run(_cli(killed, "--json"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    whole = tmp_path / "whole"
    once = subprocess.run(_cli(whole, "--json"), capture_output=True, text=True, timeout=300)
    assert once.returncode == 0, once.stderr

    from flowopt.store import Store

    def read(store, out):
        run_id = json.loads(out)["run_id"]
        s = Store(str(store))
        events = [(e["event"], e["number"], e["step"], e["value"], e.get("status"))
                  for e in s.pruner_events(run_id, "tune")]
        s.close()
        rows = _trials(s, run_id)
        return run_id, events, rows, json.loads(out)["best"]

    resumed_id, resumed, resumed_rows, resumed_best = read(killed, again.stdout)
    whole_id, whole_events, whole_rows, whole_best = read(whole, once.stdout)
    assert resumed == whole_events
    assert resumed_best == whole_best
    assert {n: (t.status, t.objective, t.steps, t.rung) for n, t in resumed_rows.items()} == \
        {n: (t.status, t.objective, t.steps, t.rung) for n, t in whole_rows.items()}
    # the killed run's events are the resumed run's first events, unchanged
    s = Store(str(killed))
    first = [r for r in _tuning_runs(s) if r != resumed_id]
    assert len(first) == 1
    before = [(e["event"], e["number"], e["step"], e["value"], e.get("status"))
              for e in s.pruner_events(first[0], "tune")]
    assert s.pruner_state(resumed_id, "tune")["events"][:len(s.pruner_state(
        first[0], "tune")["events"])] == s.pruner_state(first[0], "tune")["events"]
    assert 7 <= sum(e[0] == "report" for e in before) and resumed[:len(before)] == before


def _trials(store, run_id):
    from sqlalchemy import select

    from flowopt.store.schema import Trial
    from flowopt.store.tuning import _trial_info

    with store.engine.connect() as conn:
        rows = conn.execute(select(Trial.__table__).where(Trial.run_id == run_id)).mappings()
        return {r["number"]: _trial_info(dict(r)) for r in rows}


def _tuning_runs(store):
    from sqlalchemy import select

    from flowopt.store.schema import Run

    with store.engine.connect() as conn:
        return [r for (r,) in conn.execute(select(Run.id).where(Run.parent_run_id.is_(None)))]


# -- bad input ---------------------------------------------------------------------------
BAD = [
    ("{name: fancy, min_steps: 10}", "unknown pruner 'fancy' (pruners: asha, hyperband, "
                                     "median)"),
    ("{name: asha, min_steps: 10, patience: 3}", "unknown field 'patience' for pruner 'asha'"),
    ("{name: median, min_steps: 10, reduction_factor: 3}",
     "unknown field 'reduction_factor' for pruner 'median'"),
    ("{name: asha, min_steps: 0}", "pruner 'asha' field 'min_steps': Input should be greater "
                                   "than or equal to 1"),
    ("{name: hyperband, min_steps: 10, reduction_factor: 1}",
     "pruner 'hyperband' field 'reduction_factor': Input should be greater than or equal to 2"),
    ("{name: asha, min_steps: 150}", "pruner min_steps (150) must be below the training steps "
                                     "(150)"),
]


@pytest.mark.parametrize("pruner,message", BAD, ids=[m.split(" (")[0][:40] for _, m in BAD])
def test_bad_pruner_input_exits_2_with_one_line_and_stores_nothing(tmp_path, pruner, message):
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(PIPELINE), "--store",
                           str(store), "-s", f"nodes.tune.with.pruner={pruner}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and "nodes.tune.with.pruner" in lines[0]
    assert message in lines[0]
    assert not [line for line in lines[1:] if not line.startswith("hint:")]
    assert not store.exists()


def test_a_pruner_needs_a_training_node_the_tuner_runs(tmp_path):
    """Searching only the evaluator's input split leaves no optimizer among the owned nodes."""
    text = PIPELINE.read_text(encoding="utf-8")
    text = text.replace("lr: {low: 3.0e-4, high: 3.0e-2, log: true}\n  hidden: {choices: "
                        "[32, 64, 128]}", "frac: {low: 0.1, high: 0.3}")
    text = text.replace("params:\n  lr: 0.003", "params:\n  frac: 0.2\n  lr: 0.003")
    text = text.replace("score:  {kind: evaluator.classification, in: {model: train, data: "
                        "split.val}}", "part:   {kind: data.split, in: {dataset: digits}, with: "
                        "{val_fraction: \"${params.frac}\"}}\n  score:  {kind: evaluator."
                        "classification, in: {model: train, data: part.val}}")
    text = text.replace("parallel: 2}", "parallel: 2, pruner: {name: asha, min_steps: 10}}")
    path = tmp_path / "no_training.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(path))
    assert caught.value.key == "nodes.tune.with.pruner"
    assert "cannot prune: it owns no node that trains and can pause" in str(caught.value)
    assert "part (data.split), score (evaluator.classification)" in str(caught.value)


def test_a_pruner_with_several_objectives_is_refused(tmp_path):
    """A rung ranks trials by one value: a multi-objective strategy cannot take a pruner."""
    from flowopt.tuning import Strategy, register_tuner

    class TwoObjectives(Strategy):
        multi_objective = True

        def ask(self, pending):
            return {"lr": 0.01, "hidden": 64}

    register_tuner("tuner.test_two_objectives", TwoObjectives)
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(PIPELINE, [
            "nodes.tune.kind=tuner.test_two_objectives", "nodes.tune.with.mode=[max, min]",
            "nodes.tune.in.objective=[score.accuracy, score.loss]",
            f"nodes.tune.with.pruner={ASHA}"]))
    assert caught.value.key == "nodes.tune.with.pruner"
    assert "a pruner needs one objective, got 2" in str(caught.value)


def test_runs_show_json_gives_each_trial_its_steps_and_rung(tmp_path):
    """Without a pruner a trial trained in full reports its steps and no rung; with one,
    the steps it ran and the rung it reached; statuses include pruned."""
    def show(*extra):
        store = tmp_path / f"store{len(extra)}"
        done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(PIPELINE), "--store",
                               str(store), "--json", "-s", "nodes.train.with.steps=30",
                               "-s", "nodes.tune.with.trials=4", *extra],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        shown = subprocess.run([sys.executable, "-m", "flowopt", "runs", "show", run_id,
                                "--store", str(store), "--json"],
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["trials"]

    plain = show()
    assert [(t["status"], t["steps"], t["rung"]) for t in plain] == [("succeeded", 30, None)] * 4
    pruned = show("-s", "nodes.tune.with.pruner={name: asha, min_steps: 10}")
    assert {t["status"] for t in pruned} <= {"succeeded", "pruned"}
    assert "pruned" in {t["status"] for t in pruned}
    for t in pruned:
        assert t["steps"] == (10, 30)[t["rung"]] and isinstance(t["steps"], int)
        assert (t["status"] == "succeeded") == (t["rung"] == 1)


def test_hyperband_starts_each_trial_at_its_brackets_first_rung():
    """Brackets (10, 30, 90) and (30, 90) share trials 6:3 (Hyperband's counts); a trial
    first reports at its bracket's first rung and never trains a step twice."""
    graph, recorder, result = run(*overrides(
        trials=9, parallel=2, pruner="{name: hyperband, min_steps: 10, reduction_factor: 3}"))
    assert result.status == "succeeded", result.error
    reports: dict[int, list[int]] = {}
    for e in events_of(recorder, result.run_id):
        if e["event"] == "report":
            reports.setdefault(e["number"], []).append(e["step"])
    assert {n: steps[0] for n, steps in reports.items()} == {n: 10 if n < 6 else 30
                                                             for n in range(9)}
    for trial in trials_of(recorder):
        stops = reports[trial.number]
        assert stops == sorted(set(stops)) and trial.steps == stops[-1]
        assert trial.status == ("succeeded" if stops[-1] == 90 else "pruned")
