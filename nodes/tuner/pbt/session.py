"""One execution of a ``tuner.pbt`` node (imports torch; loaded only when the node runs).

`build_trainable` turns the tuner's owned subgraph into a `Trainable`: the optimizer
node's inputs and fixed options, its searched fields set from each member's params, and
a score that runs the owned nodes between the optimizer and the objective on the
member's model. `PopulationSession` drives `population.Population` with the recorder of
the tuning run (`flowopt.tuning.owned.TrainingSession`): events and checkpoints in the
store as they happen, each member a trial row, a killed run continued; on an executor
with long-lived workers (Ray) its segments run on them (`actors.ActorTrainable`). `replay_run`
retrains a finished run's best member from scratch for ``flowopt pbt replay``.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Mapping

from flowopt.artifacts import as_metric
from flowopt.context import Context
from flowopt.errors import FlowoptError
from flowopt.tuning import FrozenTrial, PopulationRecorder, TrainingSession

from .checkpoints import RecorderCheckpoints

from .node import param_fields
from .policy import badness
from .population import Member, Population, fold, replay, settled
from .training import SHARED, TrainerTrainable, decode, encode
from .writer import WriteBehind


def _quiet(node: Any, device: str, cancel: threading.Event, threads: int) -> Context:
    return Context(run_id="pbt", node_id=node.id, seed=node.seed, device=device, cancel=cancel,
                   emit=lambda *_, **__: None, log_metric=lambda *_: None, threads=threads)


class NodeTrainable(TrainerTrainable):
    """Members of the owned optimizer node; a segment's score is the objective metric."""

    def __init__(self, graph: Any, plan: Any, train_id: str, values: Mapping[str, Any], *,
                 steps: int, seed: int, device: str, threads: int,
                 cancel: threading.Event) -> None:
        from ...optimizer.common import _SCHEDULE

        node = graph.nodes[train_id]
        config = dict(node.config)
        inputs = {port: values[f"{b.node}.{b.port}"] for port, b in node.inputs.items()}
        fixed = {k: v for k, v in config.items() if k not in SHARED}
        resolved = "cpu" if device == "auto" else device
        super().__init__(inputs["model"], inputs["data"], inputs.get("val"), inputs["loss"],
                         optimizer=node.kind.name, steps=steps,
                         batch_size=config["batch_size"], seed=seed, threads=threads,
                         device=resolved, fixed=fixed, cancel=cancel,
                         schedule=_SCHEDULE.validate_python(config["schedule"]))
        self.graph, self.plan, self.train_id, self.values = graph, plan, train_id, values
        self.fields = param_fields(graph.spec, train_id, list(plan.space))
        self.eval_seconds = 0.0

    def as_fields(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A member's params as the optimizer's fields (``lr: ${params.rate}`` → lr)."""
        return {key: value for name, value in params.items() for key in self.fields.get(name, ())}

    def _trainer(self, member: int, params: Mapping[str, Any]) -> Any:
        return super()._trainer(member, self.as_fields(params))

    def score(self, trainer: Any) -> float:
        started = time.perf_counter()
        _, objective = self.evaluate(trainer.snapshot())
        with self._timing:
            self.eval_seconds += time.perf_counter() - started
        return objective

    def evaluate(self, model: Any) -> tuple[dict[str, dict[str, Any]], float]:
        """Run the owned nodes after the optimizer on `model`: their outputs and the objective."""
        produced: dict[str, dict[str, Any]] = {self.train_id: {"model": model}}
        for nid in self.plan.owned:
            if nid == self.train_id:
                continue
            node = self.graph.nodes[nid]
            inputs = {port: produced[b.node][b.port] if b.node in produced
                      else self.values[f"{b.node}.{b.port}"] for port, b in node.inputs.items()}
            ctx = _quiet(node, self.device, self.cancel, self.threads)
            produced[nid] = node.kind.call(ctx, inputs, dict(node.config))
        objective = self.plan.objective
        return produced, as_metric(produced[objective.node][objective.port])


def build_trainable(graph: Any, plan: Any, config: Any, values: Mapping[str, Any], *,
                    seed: int, device: str = "auto", threads: int = 1,
                    cancel: threading.Event | None = None) -> NodeTrainable:
    """The `Trainable` of a ``tuner.pbt`` plan; ``config`` is the node's `PbtNodeConfig`."""
    train_id = plan.training[0]
    steps = config.steps or int(graph.nodes[train_id].config["steps"])
    return NodeTrainable(graph, plan, train_id, values, steps=steps, seed=seed, device=device,
                         threads=threads, cancel=cancel or threading.Event())


def schedule_value(member: Member, steps: int) -> dict[str, Any]:
    """The ``schedule`` output: whose initial weights, then params from each step on."""
    return {"member": member.member, "origin": member.origin, "steps": steps,
            "schedule": [{"step": step, "params": dict(params)} for step, params in member.schedule]}


def best_of(members: Mapping[int, Member], mode: str) -> Member:
    return min(members.values(), key=lambda m: (badness(m.score, mode), m.member))  # type: ignore[arg-type]


class PopulationSession:
    """Runs the population for one node execution (see the module docstring)."""

    def __init__(self, strategy: Any, session: TrainingSession) -> None:
        self.strategy, self.session = strategy, session
        self.config = strategy.config
        self.trainable = build_trainable(session.graph, session.plan, self.config, session.values,
                                         seed=session.node.seed, device=session.device,
                                         threads=session.threads, cancel=session.cancel)
        self.trainable.live = self.config.population  # a parked Trainer per member
        self.recorder = session.recorder
        self.writer: WriteBehind | None = None  # while the population trains
        self.checkpoints = RecorderCheckpoints(self.recorder, encode, decode,
                                               keep=4 * self.config.population)
        self.params: dict[int, dict[str, Any]] = {}
        self.trained = 0

    def run(self) -> dict[str, Any]:
        s, config = self.session, self.config
        previous: list[Any] = []
        earlier = s.resumable()
        if earlier is not None:  # continue a killed run: its decisions become ours
            previous = settled(self.recorder.population_events(earlier, s.node.id))
            self.recorder.record_population_events(s.run_id, s.node.id, previous)
            for member in fold(previous).values():
                self._member_row(member.member, member.params, member.score, member.finished)
        population = Population(self.trainable, s.plan.space, config,
                                steps=self.trainable.steps, mode=s.config.mode,
                                seed=s.node.seed, parallel=s.config.parallel,
                                checkpoints=self.checkpoints, on_event=self._on_event)
        started = time.perf_counter()
        if s.actors is not None:  # members on the executor's actors (see actors.py)
            from .actors import Encoded, checkpoint_bytes, on_actors

            population.trainable = on_actors(s.actors, s, self.trainable, config)
            # states stay encoded in the driver, as they cross (actors.py)
            self.checkpoints.encode, self.checkpoints.decode = checkpoint_bytes, Encoded
        self.writer = self.checkpoints.writer = WriteBehind()
        try:
            result = population.run(resume=previous)
        finally:  # what was decided reaches the store, whatever stopped the population
            self.writer.close()
            self.writer = self.checkpoints.writer = None
            if population.trainable is not self.trainable:
                population.trainable.group.close()
        wall = time.perf_counter() - started
        trainable = population.trainable
        for key, value in (("steps_trained", result.steps_trained), ("wall_seconds", wall),
                           ("train_seconds", trainable.train_seconds),
                           ("eval_seconds", trainable.eval_seconds),
                           ("checkpoint_seconds", self.checkpoints.seconds),
                           ("trainer_builds", trainable.builds),
                           ("actors", getattr(trainable, "actors_built", 0)),
                           # until the last actor answered (a process, imports, the build)
                           ("actors_ready_seconds",
                            max(getattr(trainable, "ready_seconds", {}).values(), default=0))):
            s.log_metric(key, float(value), None)
        for member in result.members:  # a worker died twice under it: recorded with the cause
            if member.failed is not None:
                self._member_row(member.member, self.params.get(member.member, member.params),
                                 member.score, False, error=member.failed)
        best = result.best
        if best.checkpoint_id is None or not math.isfinite(best.score or math.nan):
            raise FlowoptError(f"tuner '{s.node.id}': every member diverged (no finite score)")
        state = self.checkpoints.load(best.checkpoint_id)
        produced, _ = self.trainable.evaluate(trainable.model_from(state, best.params))
        values: dict[str, Any] = {"params": dict(best.params), "objective": float(best.score),
                                  "schedule": schedule_value(best, self.trainable.steps)}
        for nid, outputs in produced.items():
            for port, value in outputs.items():
                values[f"{nid}.{port}"] = value
        return values

    def _on_event(self, event: Any) -> None:
        s = self.session
        rows = [lambda: self.recorder.record_population_events(s.run_id, s.node.id, [event])]
        if event.event in ("start", "explore"):
            self.params[event.member] = dict(event.new_params)
        if event.event in ("start", "keep", "finish", "explore"):
            score = event.from_score if event.event == "explore" else event.score
            params = self.params.get(event.member, event.new_params)
            finished = event.event == "finish"
            rows.append(lambda: self._member_row(event.member, params, score, finished))
        for write in rows:  # behind the training while it runs (see writer.py)
            if self.writer is not None:
                self.writer.submit(write)
            else:
                write()
        if event.event in ("keep", "finish"):
            self.trained += 1
            s.emit("node_progress", node_id=s.node.id, step=self.trained,
                   total=self.config.population * math.ceil(
                       self.trainable.steps / self.config.interval),
                   info={"member": event.member, "step": event.step})

    def _member_row(self, member: int, params: Mapping[str, Any], score: float | None,
                    finished: bool, error: str | None = None) -> None:
        s = self.session
        score = score if score is not None and math.isfinite(score) else None
        status = "failed" if error is not None else "succeeded" if finished else "running"
        self.recorder.record_trial(FrozenTrial(
            run_id=s.run_id, node_id=s.node.id, number=member, params=dict(params),
            status=status, values=score, error=error, attributes=dict(s.attributes)))


def replay_run(recorder: PopulationRecorder, run_id: str, node_id: str | None = None, *,
               pipeline: Any = None, plugins: Any = None) -> dict[str, Any]:
    """Retrain run `run_id`'s best member from scratch along its schedule (same inputs,
    read back through `recorder`); returns the member, the recorded and the replayed scores.

    `run_id` must be a full id (the CLI resolves prefixes). The stored spec's plugins are
    imported only from `pipeline` (the run's own file, hash-checked) or `plugins` (named
    by the caller): see `flowopt.spec.stored_spec`."""
    from flowopt.graph import compile_pipeline
    from flowopt.spec import stored_spec
    from flowopt.tuning.kinds import split_config

    nodes = recorder.population_nodes(run_id)
    if not nodes:
        raise FlowoptError(f"run {run_id} has no population events (is it a tuner.pbt run?)")
    node_id = node_id or nodes[0]
    spec, refs = recorder.node_inputs(run_id, node_id)
    if not refs:
        raise FlowoptError(f"run {run_id}: tuner '{node_id}' did not finish, nothing to replay",
                           hint="run the pipeline again to resume it, then replay")
    graph = compile_pipeline(stored_spec(spec, source_hash=recorder.run_source_hash(run_id),
                                         pipeline=pipeline, plugins=plugins))
    plan, node = graph.owners[node_id], graph.nodes[node_id]
    framework, config = split_config(node.kind.name, dict(node.config))
    values = {port: recorder.load(ref) for port, ref in refs.items()}
    trainable = build_trainable(graph, plan, config, values, seed=node.seed)
    member = best_of(fold(recorder.population_events(run_id, node_id)), framework.mode)
    _, score = replay(trainable, member)
    return {"run_id": run_id, "node": node_id, "member": member.member, "origin": member.origin,
            "recorded": member.score, "replayed": score, "same": score == member.score,
            "schedule": schedule_value(member, trainable.steps)["schedule"]}
