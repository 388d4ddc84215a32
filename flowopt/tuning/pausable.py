"""Pausable training: how a pruner stops a trial at a rung and resumes it later.

The contract, engine side (the node library implements it; nothing here imports it):

* A node kind **declares** that its training can pause with `register_pausable(kind,
  steps_field)` (every optimizer kind does): ``steps_field`` names its ``with:`` field
  holding the training steps, the pruner's resource.
* To open a training instead of running it, the tuning loop calls the kind's function
  with a `PausingContext`. A pausable kind builds its training loop and hands it to
  ``ctx.pause_training(training)`` (which raises, so the function never returns); the
  training is a `PausableTraining`: ``run(until)``, ``checkpoint() -> bytes``,
  ``restore(bytes)``, ``snapshot()`` (the outputs as of now, for scoring at a rung) and
  ``result()`` (the outputs when done). A restored training must continue
  bit-identically to one that never paused (the optimizer nodes' `Trainer` does).

`TrialTraining` runs one trial's owned nodes around that training: the owned nodes
upstream of it (e.g. a model whose width is searched) once per process, the training
in segments, and the owned nodes downstream of it (e.g. ``score``) on the partly
trained model at each rung — as PBT scores at its ready points. When the trial reaches
the training steps its outputs are saved and its executions recorded in its child run,
as a trial without a pruner would have them (same cache keys, same values).

`check_pruner` is the compile-time half: a tuner with ``pruner:`` must own exactly one
pausable node whose steps are not searched, ``min_steps`` must be below those steps,
and the tuner must have one objective (several objectives are refused: a rung ranks
trials by one value).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping, Protocol

import networkx as nx

from flowopt.artifacts import as_metric
from flowopt.context import Context
from flowopt.errors import FlowoptError
from flowopt.recording import ArtifactRef, ExecutionRecord, utcnow

_PAUSABLE: dict[str, str] = {}  # kind name -> the with: field holding its training steps
_lock = threading.Lock()


def register_pausable(kind: str, steps_field: str = "steps") -> None:
    """Declare that node kind `kind` can pause its training (module docstring)."""
    with _lock:
        _PAUSABLE[kind] = steps_field


def steps_field(kind: str) -> str | None:
    """The steps field of a pausable kind; None if `kind` cannot pause."""
    return _PAUSABLE.get(kind)


class PausableTraining(Protocol):
    """A training a tuner can stop and resume (module docstring)."""

    steps: int  # the whole training's length
    step: int  # steps done

    def run(self, until: int) -> None: ...

    def checkpoint(self) -> bytes: ...

    def restore(self, payload: bytes) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def result(self) -> dict[str, Any]: ...


class Opened(Exception):
    """Raised by `PausingContext.pause_training`: carries the opened training out."""

    def __init__(self, training: PausableTraining):
        super().__init__("training opened")
        self.training = training


class PausingContext(Context):
    """A `Context` that asks a pausable kind for its training instead of its result."""

    def pause_training(self, training: PausableTraining) -> None:
        raise Opened(training)


# -- compile time --------------------------------------------------------------------------
def pausable_node(plan: Any, kinds: Mapping[str, Any]) -> list[str]:
    """The owned nodes whose kind can pause its training."""
    return [nid for nid in plan.owned if steps_field(_name(kinds[nid])) is not None]


def _name(kind: Any) -> str:
    return kind if isinstance(kind, str) else kind.name


def check_pruner(plan: Any, spec: Any, kinds: Mapping[str, Any],
                 configs: Mapping[str, Any], pruner: Any, error: Callable[..., Exception]) -> None:
    """Refuse a ``pruner:`` this tuner cannot use (module docstring), one line each."""
    from flowopt.spec import PARAM_REF

    from .pruners import check_steps

    where = ("nodes", plan.node_id, "with", "pruner")
    objectives = getattr(plan, "objectives", None)
    if objectives is not None and len(objectives) > 1:
        raise error(where, f"tuner '{plan.node_id}': a pruner ranks trials by one objective; "
                           f"this tuner has {len(objectives)}",
                    hint="remove pruner:, or tune one objective")
    found = pausable_node(plan, kinds)
    if not found:
        owned = ", ".join(f"{nid} ({_name(kinds[nid])})" for nid in plan.owned)
        raise error(where, f"tuner '{plan.node_id}': pruner needs a training node it can pause "
                           f"among the nodes it runs per trial, and none can pause (it runs: "
                           f"{owned}; pausable kinds: {', '.join(sorted(_PAUSABLE)) or 'none'})",
                    hint="search a param of the optimizer node (or one upstream of it), or "
                         "remove pruner:")
    if len(found) > 1:
        raise error(where, f"tuner '{plan.node_id}': pruner pauses one training node; this "
                           f"tuner runs {len(found)} per trial ({', '.join(found)})",
                    hint="tune them with separate tuners, or remove pruner:")
    train = found[0]
    field = steps_field(_name(kinds[train]))
    raw = spec.nodes[train].config.get(field)
    searched = set(PARAM_REF.findall(str(raw))) & set(plan.space) if raw is not None else set()
    if searched:
        raise error(where, f"tuner '{plan.node_id}': pruner uses {train}.with.{field} as its "
                           f"resource, which must not be searched (it is set by "
                           f"'{sorted(searched)[0]}')")
    problem = check_steps(pruner, int(configs[train][field]))
    if problem is not None:
        raise error((*where, "min_steps"), f"{problem} of '{train}'")


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
        self.training: PausableTraining | None = None
        self.trained = 0  # steps run in this object (a trial's consumed steps add these up)

    def _context(self, node: Any, cls: type = Context) -> Context:
        run_id, recorder = self.run_id, self.recorder
        return cls(run_id=run_id, node_id=node.id, seed=node.seed, device=self.device,
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
        try:
            node.kind.call(self._context(node, PausingContext), self._inputs(node),
                           dict(node.config))
        except Opened as opened:
            self.training = opened.training
        else:
            raise FlowoptError(f"node '{node.id}' ({node.kind.name}) is declared pausable but "
                               "did not hand over its training")
        if checkpoint is not None:
            self.training.restore(checkpoint)
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
        outputs = self.training.result() if final else self.training.snapshot()
        return self._score(outputs)

    def _score(self, outputs: Mapping[str, Any]) -> float:
        self.produced[self.train_id] = dict(outputs)
        for nid in self.after:
            self._call(nid)
        objective = self.plan.objective
        return as_metric(self.produced[objective.node][objective.port])

    def checkpoint(self) -> bytes:
        assert self.training is not None
        return self.training.checkpoint()

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


__all__ = ["Opened", "PausableTraining", "PausingContext", "TrialTraining", "check_pruner",
           "pausable_node", "register_pausable", "steps_field"]
