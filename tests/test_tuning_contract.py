"""The public tuner contract in `flowopt.tuning` (issue 12): what a plugin builds on.

A strategy, a pruner and the records are plain values a plugin can use without the node
library; capabilities a strategy lacks are refused when the pipeline is compiled, with
one line naming the tuner (exit 2 from the CLI, nothing stored).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

import flowopt.tuning as tuning
from flowopt.errors import SpecError
from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec

PLUGIN = Path(__file__).parent / "plugins" / "tuning_toys.py"

PIPELINE = """pipeline: contract
plugins: [PLUGIN]
params: {x: 0.0, y: 0.0}
search:
  x: {low: -2.0, high: 3.0}
nodes:
  src: {kind: tunetoy.source}
  f: {kind: tunetoy.quad, in: {base: src}, with: {x: "${params.x}"}}
  tune: {kind: KIND, in: {objective: f.value}, with: WITH}
"""


def write(tmp_path: Path, kind: str = "tuner.random", with_: str = "{mode: min, trials: 4}") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.replace("PLUGIN", str(PLUGIN)).replace("KIND", kind)
                    .replace("WITH", with_), encoding="utf-8")
    return path


def compile_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(path))
    return caught.value


# -- values ------------------------------------------------------------------------------
def test_an_observation_holds_one_value_per_objective_and_reads_the_single_one_as_objective():
    one = tuning.Observation(3, {"x": 1.0}, 0.25, "succeeded")
    assert one.values == (0.25,) and one.objective == 0.25 and one.feasible
    failed = tuning.Observation(4, {"x": 2.0}, None, "failed")
    assert failed.values is None and failed.objective is None and not failed.feasible
    several = tuning.Observation(5, {"x": 0.0}, (0.9, 1200.0), "succeeded", steps=400)
    assert several.values == (0.9, 1200.0) and several.steps == 400
    with pytest.raises(ValueError, match="2 objectives"):
        several.objective
    with pytest.raises(ValueError, match="status"):
        tuning.Observation(6, {}, 1.0, "running")


def test_a_pruned_trial_is_told_with_the_values_it_reported_and_its_steps():
    trial = tuning.Trial(run_id="r", node_id="tune", number=2, params={"x": 1.0})
    trial.reports[25] = (0.5,)
    trial.status, trial.values, trial.steps, trial.rung = "pruned", (0.5,), 25, 0
    frozen = trial.freeze()
    assert frozen.finished and frozen.objective == 0.5
    told = frozen.observation()
    assert (told.status, told.values, told.steps) == ("pruned", (0.5,), 25)
    data = frozen.to_json()
    assert (data["status"], data["steps"], data["rung"]) == ("pruned", 25, 0)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert not tuning.FrozenTrial("r", "tune", 3, {}, "paused").finished
    assert tuning.FrozenTrial("r", "tune", 3, {}, "failed", values=None).observation().values is None


def test_the_node_library_re_exports_the_contract_it_used_to_define():
    from flowopt.nodes.tuner import strategy

    assert strategy.Strategy is tuning.Strategy and strategy.Observation is tuning.Observation
    assert strategy.register_tuner is tuning.register_tuner and strategy.tuner is tuning.tuner
    assert tuning.TrialInfo is tuning.FrozenTrial


def test_a_plugin_strategy_registered_with_the_decorator_runs_as_a_tuner():
    @tuning.tuner("contract.first_of_two")
    class FirstOfTwo(tuning.Strategy):
        """Proposes x = 2 then x = 1, then has nothing new."""

        def ask(self, pending):
            return {"x": 2.0 if not self.observations and not pending else 1.0}

        def exhausted(self, pending=()):
            return len(self.observations) + len(pending) >= 2

    assert tuning.register_tuner("contract.first_of_two", FirstOfTwo) is FirstOfTwo  # no-op
    path = write(Path(__import__("tempfile").mkdtemp()), kind="contract.first_of_two",
                 with_="{mode: min, trials: 5}")
    recorder = MemoryRecorder()
    result = Scheduler(compile_pipeline(load_spec(path)), recorder).run()
    assert result.status == "succeeded"
    assert sorted(t.params["x"] for t in recorder.trials.values()) == [1.0, 2.0]
    assert result.best["params"] == {"x": 1.0}


# -- capabilities, refused at compile time ------------------------------------------------
def test_several_objectives_on_a_single_objective_strategy_are_refused(tmp_path):
    @tuning.tuner("contract.one_objective")
    class OneObjective(tuning.Strategy):
        """Proposes x = 0 (single-objective: no ``multi_objective``)."""

        def ask(self, pending):
            return {"x": 0.0}

    error = compile_error(write(tmp_path, kind="contract.one_objective",
                                with_="{mode: [min, max], trials: 4}"))
    assert error.key == "nodes.tune.with.mode"
    assert "tuner 'tune' (contract.one_objective) takes one objective, got 2" in str(error)


def test_a_pruner_on_a_tuner_that_owns_no_pausable_training_node_is_refused(tmp_path):
    error = compile_error(write(tmp_path, with_="{mode: min, trials: 4, pruner: {name: asha}}"))
    assert error.key == "nodes.tune.with.pruner"
    assert "tuner 'tune' cannot prune: it owns no node that trains and can pause" in str(error)
    assert "f (tunetoy.quad)" in str(error)


def test_a_tuner_that_owns_training_takes_no_pruner_and_no_trials(tmp_path):
    error = compile_error(write(tmp_path, kind="tuner.pbt",
                                with_="{mode: max, trials: 3}"))
    assert error.key == "nodes.tune.with.trials" and "unknown field" in str(error)


def test_the_cli_refuses_an_unsupported_combination_with_one_line_and_stores_nothing(tmp_path):
    path = write(tmp_path, with_="{mode: [min, min], trials: 4}")
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(path), "--store",
                           str(store)], capture_output=True, text=True)
    assert done.returncode == 2
    # tuner.random takes several objectives, so it is the lists' lengths that are refused
    assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
    assert "mode has 2 directions but objective has 1 metric port" in done.stderr
    assert "Traceback" not in done.stderr and not store.exists()


# -- the pruner contract -------------------------------------------------------------------
class KeepBest:
    """A toy pruner obeying the contract: pause at step 10 unless best so far; JSON state."""

    class Config(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        at: int = pydantic.Field(10, ge=1)

    @classmethod
    def check(cls, config, max_steps):
        if config.at >= max_steps:
            raise ValueError(f"at ({config.at}) must be below the training steps ({max_steps})")

    def __init__(self, config, *, mode, max_steps, seed, state=None):
        self.config, self.mode = config, mode
        self.seen = dict(state["seen"]) if state else {}
        self.paused = list(state["paused"]) if state else []

    def next_report(self, trial, step):
        return self.config.at if step < self.config.at else None

    def report(self, trial, step, value):
        best = max(self.seen.values(), default=-math.inf)
        self.seen[str(trial)] = value
        if value >= best:
            return "continue"
        self.paused.append(trial)
        return "pause"

    def promote(self, draining=False):
        promoted, self.paused = (self.paused, []) if draining else ([], self.paused)
        return promoted

    def ended(self, trial, status):
        pass

    def rung(self, trial):
        return 0 if str(trial) in self.seen else None

    def state(self):
        return {"seen": self.seen, "paused": self.paused}


def test_a_pruner_is_a_policy_whose_state_survives_json():
    tuning.register_pruner("contract.keep_best", KeepBest)
    cls, config = tuning.pruner.validate_pruner({"name": "contract.keep_best", "at": 5}, 100)
    first = cls(config, mode="max", max_steps=100, seed=0)
    assert isinstance(first, tuning.Pruner)
    assert [first.report(0, 5, 0.5), first.report(1, 5, 0.2)] == ["continue", "pause"]
    again = cls(config, mode="max", max_steps=100, seed=0,
                state=json.loads(json.dumps(first.state())))
    assert again.report(2, 5, 0.1) == first.report(2, 5, 0.1) == "pause"
    assert again.promote() == [] and again.promote(draining=True) == [1, 2]
    with pytest.raises(ValueError, match="must be below the training steps"):
        tuning.pruner.validate_pruner({"name": "contract.keep_best", "at": 100}, 100)
    with pytest.raises(ValueError, match="unknown field 'every' for pruner"):
        tuning.pruner.validate_pruner({"name": "contract.keep_best", "every": 3}, 100)
    with pytest.raises(ValueError, match="unknown pruner 'nope'"):
        tuning.pruner.validate_pruner({"name": "nope"}, 100)


def test_an_owner_node_sees_the_run_only_through_the_typed_host():
    """The scheduler hands a tuner a `Host` (recorder, cancel, device, threads, metric
    logging, run_subgraph) — every member the protocol declares, nothing private."""
    import typing

    from flowopt.owners import Host
    from flowopt.scheduler import RunHost

    seen = {}

    class Spy(tuning.Strategy):
        def ask(self, pending):
            return {"x": 1.0}

    original = tuning.owner.TunerOwner.run

    def spy_run(self, host, run_id, node, inputs, done):
        seen["host"] = host
        return original(self, host, run_id, node, inputs, done)

    tuning.register_tuner("contract.spy", Spy)
    path = write(Path(__import__("tempfile").mkdtemp()), kind="contract.spy",
                 with_="{mode: min, trials: 1}")
    tuning.owner.TunerOwner.run = spy_run
    try:
        result = Scheduler(compile_pipeline(load_spec(path)), MemoryRecorder()).run()
    finally:
        tuning.owner.TunerOwner.run = original
    assert result.status == "succeeded"
    host = seen["host"]
    assert isinstance(host, RunHost)
    declared = set(typing.get_type_hints(Host)) | {
        name for name, value in vars(Host).items() if callable(value) and not name.startswith("_")}
    assert {"recorder", "cancel", "device", "threads", "log_metric", "run_subgraph"} <= declared
    public = {name for name in dir(host) if not name.startswith("_")}
    assert declared <= public and public <= declared
