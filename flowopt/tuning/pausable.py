"""Pausable trials: a trial's owned nodes around the training a pruner stops and resumes.

The training node is the one owned node whose kind declares ``training=``
(`flowopt.training.Training`): the tuning loop starts its `PausableTrainer` with the
node's config and inputs, runs it in segments, checkpoints it with the declaration's
``encode`` and resumes a promoted trial with ``decode`` + ``restore`` — which must be
exact, so a trial paused and resumed ends with the same bits as one trained straight
through (tested on the optimizer kinds).

`TrialTraining` runs one trial: the owned nodes upstream of the training (e.g. a model
whose width is searched) once per process, the training in segments, and the owned
nodes downstream of it (e.g. ``score``) on the partly trained model at each report —
as PBT scores at its ready points. When the trial reaches the training steps its
outputs are saved and its executions recorded in its child run, as a trial without a
pruner would have them (same cache keys, same values).

`check_resource` is a compile-time check besides the contract's (one pausable training
node, one objective, a valid ``pruner:``): the steps field, the pruner's resource, must
not be searched.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

import networkx as nx

from flowopt.artifacts import as_metric
from flowopt.context import Context
from flowopt.recording import ArtifactRef, ExecutionRecord, utcnow


def check_resource(plan: Any, spec: Any, kinds: Mapping[str, Any],
                   error: Callable[..., Exception]) -> None:
    """Refuse a searched steps field on the training node a pruner stops (one line)."""
    from flowopt.spec import PARAM_REF

    if len(plan.training) != 1:
        return  # refused by the contract's check already
    train = plan.training[0]
    field = kinds[train].training.steps
    raw = spec.nodes[train].config.get(field)
    searched = set(PARAM_REF.findall(str(raw))) & set(plan.space) if raw is not None else set()
    if searched:
        raise error(("nodes", plan.node_id, "with", "pruner"),
                    f"tuner '{plan.node_id}': a pruner uses {train}.with.{field} as its "
                    f"resource, which must not be searched (it is set by "
                    f"'{sorted(searched)[0]}')")


# -- one trial's owned nodes, trained in segments ------------------------------------------
def _quiet(*_: Any, **__: Any) -> None:
    return None


class TrialTraining:
    """One trial: the owned nodes of `graph` (a compiled trial graph) around its pausable
    node `train_id`. `values` are the frontier's live values ("node.port" -> value),
    `refs` their artifacts in the tuning run (the recorded executions' inputs)."""

    def __init__(self, graph: Any, plan: Any, train_id: str, values: Mapping[str, Any],
                 refs: Mapping[str, ArtifactRef], *, recorder: Any, run_id: str,
                 device: str, threads: int, cancel: threading.Event):
        self.graph, self.plan, self.train_id = graph, plan, train_id
        self.values, self.refs, self.recorder, self.run_id = values, refs, recorder, run_id
        self.device, self.threads, self.cancel = device, threads, cancel
        upstream = nx.ancestors(graph.dag, train_id)
        self.before = [nid for nid in plan.owned if nid in upstream]
        self.after = [nid for nid in plan.owned if nid not in upstream and nid != train_id]
        self.produced: dict[str, dict[str, Any]] = {}
        self.timing: dict[str, tuple[Any, float]] = {}  # node -> (started_at, seconds)
        self.kind = graph.nodes[train_id].kind
        self.port = self.kind.outputs[0].name  # a training node has one output (the model)
        self.training: Any = None
        self.trained = 0  # steps run in this object (a trial's consumed steps add these up)

    def _context(self, node: Any) -> Context:
        run_id, recorder = self.run_id, self.recorder
        return Context(run_id=run_id, node_id=node.id, seed=node.seed, device=self.device,
                   cancel=self.cancel, emit=_quiet, threads=self.threads,
                   log_metric=lambda k, v, s: recorder.log_metric(run_id, node.id, k, v, s))

    def _inputs(self, node: Any) -> dict[str, Any]:
        return {port: self.produced[b.node][b.port] if b.node in self.produced
                else self.values[f"{b.node}.{b.port}"] for port, b in node.inputs.items()}

    def _call(self, nid: str) -> None:
        node, started, start = self.graph.nodes[nid], utcnow(), time.perf_counter()
        self.produced[nid] = node.kind.call(self._context(node), self._inputs(node),
                                            dict(node.config))
        self.timing[nid] = (started, time.perf_counter() - start)

    def open(self, checkpoint: bytes | None = None) -> "TrialTraining":
        """Run the owned nodes before the training and open it (at `checkpoint`'s step)."""
        for nid in self.before:
            self._call(nid)
        node = self.graph.nodes[self.train_id]
        start = utcnow()
        self.training = self.kind.training.start(dict(node.config), self._inputs(node),
                                                 self._context(node))
        self.timing[self.train_id] = (start, 0.0)
        if checkpoint is not None:
            self.training.restore(self.kind.training.decode(checkpoint))
        return self

    @property
    def step(self) -> int:
        assert self.training is not None
        return self.training.step

    def advance(self, until: int) -> float:
        """Train on to step `until`; returns the objective of the model as of then."""
        assert self.training is not None
        started, start = self.timing.get(self.train_id, (utcnow(), 0.0))
        before = self.training.step
        clock = time.perf_counter()
        self.training.run(until)
        self.trained += self.training.step - before
        self.timing[self.train_id] = (started, start + time.perf_counter() - clock)
        final = self.training.step >= self.training.steps
        model = self.training.result() if final else self.training.snapshot()
        return self._score({self.port: model})

    def _score(self, outputs: Mapping[str, Any]) -> float:
        self.produced[self.train_id] = dict(outputs)
        for nid in self.after:
            self._call(nid)
        objective = self.plan.objective
        return as_metric(self.produced[objective.node][objective.port])

    def checkpoint(self) -> bytes:
        assert self.training is not None
        return self.kind.training.encode(self.training.checkpoint())

    def record(self) -> dict[str, dict[str, ArtifactRef]]:
        """Save the finished trial's owned outputs and record their executions in its
        child run; returns ``node -> {port: ref}``."""
        refs: dict[str, dict[str, ArtifactRef]] = {}
        order = list(self.graph.nodes)
        for nid in [*self.before, self.train_id, *self.after]:
            node, values = self.graph.nodes[nid], self.produced[nid]
            saved = self.recorder.save_outputs(nid, values)
            refs[nid] = saved
            inputs = {port: refs[b.node][b.port] if b.node in refs
                      else self.refs.get(f"{b.node}.{b.port}") for port, b in node.inputs.items()}
            started, seconds = self.timing.get(nid, (utcnow(), 0.0))
            self.recorder.record_execution(ExecutionRecord(
                run_id=self.run_id, node_id=nid, kind=node.kind.name,
                kind_version=node.kind.version, cache_key=node.cache_key, status="succeeded",
                config=dict(node.config), started_at=started, ended_at=utcnow(),
                seconds=seconds, inputs={p: r for p, r in inputs.items() if r is not None},
                outputs=saved, metrics={m: as_metric(values[m]) for m in node.kind.metrics},
                position=order.index(nid)))
        return refs


__all__ = ["TrialTraining", "check_resource"]
