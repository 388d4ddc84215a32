"""The loop for tuners that own training (``owns_training = True``, e.g. ``tuner.pbt``).

The ask → run a whole trial → tell loop (`trials`) cannot serve a strategy that changes
params *while* a model trains: PBT needs to stop members at ready points, copy
checkpoints between them and record every decision; a Self-Tuning Network trains its
hyperparameters with the weights in one run. So `owner.TunerOwner` hands such a tuner
node to `OwnedLoop` instead, which gives the strategy a `TrainingSession` — the compiled
graph and the tuner's plan, the frontier values (what non-owned nodes produced, live),
the run id, the cancel flag, and the recorder, reached only through the protocols of
`records` (`TrialRecorder`, `PopulationRecorder`): neither the strategy nor this layer
imports the store. The strategy's ``run_owned(session)`` trains and returns the tuner's
values (``params``, ``objective``, its ``extra_outputs`` and every owned node's outputs
as ``NODE.PORT``); this loop saves them as the tuner's outputs.

The owned training node is `TrainingSession.training_node`; its kind's declaration
(`flowopt.training.Training`: the mutable fields, a pausable trainer, checkpoint
encoding) is `TrainingSession.training`, so a strategy works with every kind that
declares one.

Members are recorded as trial rows (number = member, params = its current params,
objective = its latest score, ``attributes.owned`` true), so ``runs show`` lists the
population and resume finds a killed run the way the trial loop does (same
``tuner_key``, not alive): `TrainingSession.resumable` names it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from flowopt.errors import Interrupted
from flowopt.executors import default_workers
from flowopt.owners import Host
from flowopt.recording import ArtifactRef
from flowopt.training import Training

from .kinds import TrainingTunerConfig, split_config, strategy_class, strategy_mode
from .records import TuningRecorder
from .subgraph import TunerPlan


@dataclass
class TrainingSession:
    """What a strategy that owns training may use (see the module docstring)."""

    run_id: str
    node: Any  # flowopt.graph.Node of the tuner
    graph: Any  # flowopt.graph.Graph, compiled (owned nodes included)
    plan: TunerPlan
    values: Mapping[str, Any]  # frontier "node.port" -> live value
    recorder: TuningRecorder
    cancel: threading.Event
    emit: Callable[..., None]
    log_metric: Callable[[str, float, int | None], None]  # NODE.key series of the tuning run
    config: TrainingTunerConfig  # mode, parallel
    device: str = "auto"
    threads: int = 1
    use_cache: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)  # on every member's trial row
    # the executor's long-lived workers (`Host.actors`: Ray), None to train in this process
    actors: Callable[..., Any] | None = None

    @property
    def training_node(self) -> Any:
        """The owned node that trains (`flowopt.graph.Node`), or None if there is none."""
        return self.graph.nodes[self.plan.training[0]] if self.plan.training else None

    @property
    def training(self) -> Training | None:
        """Its kind's training declaration (mutable fields, pausable trainer, encoding)."""
        node = self.training_node
        return node.kind.training if node is not None else None

    def value(self, binding: Any) -> Any:
        """The live value a binding of an owned node reads (a frontier output)."""
        return self.values[f"{binding.node}.{binding.port}"]

    def resumable(self) -> str | None:
        """The run id of an interrupted or killed earlier run of this tuner (same cache key,
        not alive) whose population this run continues; None with caching off or none."""
        trials = self.resumable_trials()
        return trials[0].run_id if trials else None

    def resumable_trials(self) -> list[Any]:
        """That run's trial rows (a member's row may name its last checkpoint in its
        attributes, as ``tuner.stn``'s does); empty with caching off or none."""
        if not self.use_cache:
            return []
        return list(self.recorder.resumable_trials(
            pipeline=self.graph.name, node_id=self.node.id, tuner_key=self.node.cache_key,
            exclude_run=self.run_id))


def member_threads(parallel: int, cores: int | None = None) -> int:
    """Intra-op threads for each of `parallel` members: the cores less one, shared.

    One core is left to the strategy's own threads (PBT's controller and store writer):
    with an OpenMP team on every core, each time one of those threads runs, a training
    op waits at its barrier for the descheduled team member. Measured with PBT on two
    cores and one member: two threads trained 3x slower than one (benchmarks/RESULTS.md).
    """
    cores = default_workers() if cores is None else cores
    return max(1, (cores - 1) // parallel)


class OwnedLoop:
    """Runs one tuner node whose strategy owns training; same interface as `TuningLoop`."""

    def __init__(self, host: Host, run_id: str, node: Any, inputs: Mapping[str, Any],
                 done: Mapping[str, Mapping[str, ArtifactRef]]):
        self.host, self.run_id, self.node = host, run_id, node
        graph = host.graph
        plan = graph.owners[node.id]
        config, strategy_config = split_config(node.kind.name, dict(node.config))
        self.strategy = strategy_class(node.kind.name)(
            plan.space, mode=strategy_mode(config), seed=node.seed,
            budget=getattr(strategy_config, "population", 1), config=strategy_config)
        values = {}
        for port in plan.frontier:
            value = inputs.get(port)
            values[port] = host.recorder.load(value) if isinstance(value, ArtifactRef) else value
        self.session = TrainingSession(
            run_id=run_id, node=node, graph=graph, plan=plan, values=values,
            recorder=host.recorder, cancel=host.cancel, emit=host.emit,
            log_metric=lambda k, v, s: host.log_metric(node.id, k, v, s), config=config,
            device=host.device, threads=member_threads(config.parallel),
            use_cache=host.use_cache, actors=host.actors,
            # no space_key: a member's score came from a schedule, not from fixed params,
            # so another tuner's warm start must not read it as a trial of those params
            attributes={"tuner_key": node.cache_key, "owned": True})

    def run(self) -> tuple[dict[str, Any], dict[str, ArtifactRef], dict[str, float]]:
        values = dict(self.strategy.run_owned(self.session))
        if self.host.cancel.is_set():
            raise Interrupted(f"tuner '{self.node.id}' interrupted")
        refs = self.host.recorder.save_outputs(self.node.id, values)
        return values, refs, {"objective": float(values["objective"])}


__all__ = ["OwnedLoop", "TrainingSession", "member_threads"]
