"""The scheduler: executes a compiled `Graph` over an injected executor.

Policy, as a state machine per node::

    pending ──(all upstream nodes done)──► ready ──(cache hit)──────────► cached
                                             └──(submitted)──► running ─► succeeded | failed
    pending/ready ──(a node failed, or Ctrl-C)──────────────────────────► skipped

* **Order.** Ready nodes are taken in the graph's deterministic topological order and
  submitted as long as nothing has failed; the main thread then waits for any running
  node to finish. Only the main thread touches scheduler state.
* **Cache.** Before anything runs, the recorder is asked once for every node's cache key.
  A hit is not executed: its stored outputs are handed downstream as `ArtifactRef`s and
  loaded lazily, in the worker, by the first consumer that actually runs.
* **Memory.** A node's in-memory outputs are dropped as soon as its last consumer has
  finished (sinks are kept for the result).
* **Failure.** Fail-fast: after the first failure no new node starts; running nodes
  finish and are recorded (so a re-run reuses them); the rest are recorded as skipped.
  Errors are values: the worker returns them, with the traceback, instead of raising.
* **Owners.** A node whose kind owns a subgraph (a tuner) runs the nodes it owns itself:
  the scheduler runs the reduced graph `Graph.scheduled` and, when such a node is ready,
  calls its kind's ``owner.run`` (`flowopt.owners`) with a `RunHost` — the run's
  recorder, cancel flag, device, threads, metric logging and `RunHost.run_subgraph`,
  which runs a compiled graph as a child run with a `Scheduler` of its own — and the
  outputs of every finished node. The scheduler knows nothing else about tuners.
* **Interrupt.** Ctrl-C sets the cancel flag, which nodes see at their next
  ``ctx.progress``; finished work is recorded, the run is marked ``interrupted``, and
  `KeyboardInterrupt` propagates. Re-running the same pipeline resumes from the cache.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Mapping

from .artifacts import as_metric
from .context import Context
from .errors import Interrupted, NoSuchValue
from .events import Broadcast, RunListener
from .executors import Executor, SyncExecutor, child_executor, default_workers
from .graph import Graph, Node
from .recording import ArtifactRef, ExecutionRecord, Recorder, RunInfo, utcnow


@dataclass(frozen=True)
class NodeResult:
    status: str
    seconds: float = 0.0
    error: str | None = None
    outputs: Mapping[str, ArtifactRef] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run (the live values of sink nodes are kept for `value`)."""

    run_id: str
    pipeline: str
    status: str
    store: str
    seconds: float
    nodes: Mapping[str, NodeResult]
    metrics: Mapping[str, float]
    error: str | None = None
    failed_node: str | None = None
    traceback: str | None = None
    tuned: bool = False  # the graph has an owner node (a tuner)
    best: Mapping[str, Any] | None = None  # a tuned run's {node, params, objective}
    _values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    _recorder: Any = field(default=None, repr=False, compare=False)
    _graph: Any = field(default=None, repr=False, compare=False)  # to name default outputs

    def value(self, node_id: str, port: str | None = None) -> Any:
        """A node's output value: its default output unless `port` is given.

        Names read as in a pipeline's ``in:``: ``value("score", "accuracy")`` or
        ``value("score.accuracy")``; a tuner's best trial's outputs are
        ``value("tune.train")`` (node ``train``'s default output) or
        ``value("tune", "train.model")``. A wrong name raises `NoSuchValue` (a
        `KeyError`) listing the nodes or ports that exist.
        """
        node_id, port = self._output_name(node_id, port)
        live = self._values.get(node_id, {}).get(port)
        if live is not None and not isinstance(live, ArtifactRef):
            return live
        return self._recorder.load(self.nodes[node_id].outputs[port])

    def _output_name(self, name: str, port: str | None) -> tuple[str, str]:
        """``(node id, port)`` for `value` (its docstring), or `NoSuchValue`."""
        if name not in self.nodes and port is None and "." in name:
            name, port = name.split(".", 1)
        if name not in self.nodes:
            raise NoSuchValue(f"run {self.run_id[:12]} has no node '{name}' "
                              f"(nodes: {', '.join(self.nodes)})")
        result = self.nodes[name]
        ports = list(result.outputs)
        if not ports:
            raise NoSuchValue(f"node '{name}' has no outputs in run {self.run_id[:12]} "
                              f"(status {result.status})")
        node = self._graph.nodes.get(name) if self._graph is not None else None
        if port is None:
            default = node.kind.outputs[0].name if node is not None and node.kind.outputs else None
            return name, default if default in result.outputs else ports[0]
        if port in result.outputs:
            return name, port
        owned = self._graph.nodes.get(port) if self._graph is not None else None
        if owned is not None and owned.kind.outputs:  # a tuner's NODE: that node's default output
            exported = f"{port}.{owned.kind.outputs[0].name}"
            if exported in result.outputs:
                return name, exported
        under = [p for p in ports if p.startswith(port + ".")]
        if len(under) == 1:
            return name, under[0]
        raise NoSuchValue(f"node '{name}' has no output '{port}' (outputs: {', '.join(ports)})")

    def to_json(self) -> dict[str, Any]:
        """The ``flowopt run --json`` object (docs/cli.md)."""
        return {"run_id": self.run_id, "pipeline": self.pipeline, "status": self.status,
                "store": self.store, "seconds": round(self.seconds, 4),
                "nodes": {nid: {"status": r.status, "seconds": round(r.seconds, 4),
                                **({"error": r.error} if r.error else {})}
                          for nid, r in self.nodes.items()},
                "metrics": dict(self.metrics), "error": self.error,
                **({"best": dict(self.best) if self.best else None} if self.tuned else {})}


@dataclass
class _Outcome:
    values: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, ArtifactRef] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    started_at: Any = None
    seconds: float = 0.0


class RunHost:
    """The `flowopt.owners.Host` an owner node sees: a typed view of one run (module
    docstring, "Owners"); it exposes nothing else of the scheduler."""

    def __init__(self, scheduler: "Scheduler", run_id: str):
        self._scheduler, self._run_id = scheduler, run_id
        self.recorder = scheduler.recorder
        self.cancel = scheduler.cancel
        self.device, self.threads = scheduler.device, scheduler.threads
        self.workers = max(1, getattr(scheduler.executor, "workers", 1) or 1)
        self.use_cache, self.source = scheduler.use_cache, scheduler.source
        self.graph = scheduler.compiled  # the whole compiled graph, owned nodes included
        # long-lived workers for owners that keep state between calls (Ray only)
        self.actors = getattr(scheduler.executor, "actors", None)

    def emit(self, event: str, **kwargs: Any) -> None:
        self._scheduler.emit(event, **kwargs)

    def log_metric(self, node_id: str, key: str, value: float, step: int | None) -> None:
        self._scheduler.log_metric(self._run_id, node_id, key, value, step)

    def run_subgraph(self, graph: Graph, recorder: Recorder, *, workers: int = 1,
                     threads: int = 1) -> "RunResult":
        # The same kind of executor as this run's (local threads, or Ray).
        return Scheduler(graph, recorder, child_executor(self._scheduler.executor, workers),
                         use_cache=True, device=self.device, source=self.source,
                         cancel=self.cancel, threads=threads).run()


class Scheduler:
    """Runs one graph once; see the module docstring for the policy.

    `cancel` is the run's cancel flag (a child run shares its parent's, so one Ctrl-C
    stops both); `threads` the CPU threads each node may use (default: the cores shared
    between the executor's workers).
    """

    def __init__(self, graph: Graph, recorder: Recorder, executor: Executor | None = None, *,
                 use_cache: bool = True, device: str = "auto",
                 listeners: list[RunListener] | tuple = (), source: str | None = None,
                 cancel: threading.Event | None = None, threads: int | None = None):
        # An owner's nodes run when the owner runs, not here (flowopt.owners).
        self.compiled = graph
        self.graph = graph.scheduled()
        self.recorder = recorder
        self.executor = executor or SyncExecutor()
        self.use_cache, self.device, self.source = use_cache, device, source
        self.emit = Broadcast(list(listeners))
        self.cancel = cancel if cancel is not None else threading.Event()
        self._series_last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.run_id: str | None = None  # set once the run is recorded (also if it is interrupted)
        self.threads = threads if threads is not None else max(
            1, default_workers() // max(1, self.executor.workers))

    # -- worker side -----------------------------------------------------------------
    def _execute(self, run_id: str, node: Node, inputs: dict[str, Any],
                 done: dict[str, dict[str, ArtifactRef]] | None = None) -> _Outcome:
        """Run one node; an owner node (`done`: outputs of finished nodes) runs its subgraph."""
        outcome = _Outcome(started_at=utcnow())
        start = time.perf_counter()
        try:
            if done is not None:
                outcome.values, outcome.refs, outcome.metrics = node.kind.owner.run(
                    RunHost(self, run_id), run_id, node, inputs, done)
                outcome.seconds = time.perf_counter() - start
                return outcome
            resolved = {port: self.recorder.load(v) if isinstance(v, ArtifactRef) else v
                        for port, v in inputs.items()}
            ctx = Context(run_id=run_id, node_id=node.id, seed=node.seed, device=self.device,
                          cancel=self.cancel, emit=self.emit, threads=self.threads,
                          log_metric=lambda k, v, s: self.log_metric(run_id, node.id, k, v, s))
            remote = getattr(self.executor, "call", None)  # the Ray executor runs it there
            outcome.values = (remote(node, ctx, resolved) if remote is not None
                              else node.kind.call(ctx, resolved, dict(node.config)))
            outcome.metrics = {m: as_metric(outcome.values[m]) for m in node.kind.metrics}
            outcome.refs = self.recorder.save_outputs(node.id, outcome.values)
        except Interrupted:
            outcome.error = "interrupted"
        except Exception as exc:  # noqa: BLE001 - errors are values; recorded by the caller
            outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.traceback = traceback.format_exc()
        outcome.seconds = time.perf_counter() - start
        return outcome

    def log_metric(self, run_id: str, node_id: str, key: str, value: float,
                   step: int | None) -> None:
        """One point of series ``node_id.key`` of run `run_id` (its last value becomes the
        run's metric when the run ends)."""
        with self._lock:
            self._series_last[f"{node_id}.{key}"] = value
        self.recorder.log_metric(run_id, node_id, key, value, step)

    # -- main thread -----------------------------------------------------------------
    def run(self) -> RunResult:
        graph, recorder = self.graph, self.recorder
        start = time.perf_counter()
        run_id = self.run_id = recorder.begin_run(RunInfo(
            pipeline=graph.name, seed=graph.seed, params=dict(graph.params),
            spec=graph.spec.to_data(), source=self.source))
        self.emit("run_started", run_id=run_id, graph=graph)
        cached = recorder.find_cached(graph.cache_keys().values()) if self.use_cache else {}

        position = {nid: index for index, nid in enumerate(graph.nodes)}
        waiting = {n.id: len({b.node for b in n.inputs.values()}) for n in graph}
        consumers_left = {n.id: len(graph.consumers(n.id)) for n in graph}
        values: dict[str, dict[str, Any]] = {}
        refs: dict[str, dict[str, ArtifactRef]] = {}
        results: dict[str, NodeResult] = {}
        metrics: dict[str, float] = {}
        ready = deque(n.id for n in graph if waiting[n.id] == 0)
        running: dict[Future, str] = {}
        failed: str | None = None
        failed_trace: str | None = None
        interrupted = False

        def complete(node: Node) -> None:
            for consumer in graph.consumers(node.id):
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    ready.append(consumer)
            for upstream in {b.node for b in node.inputs.values()}:
                consumers_left[upstream] -= 1
                if consumers_left[upstream] == 0:
                    values.pop(upstream, None)

        def record(node: Node, status: str, outcome: _Outcome | None = None,
                   outputs: Mapping[str, ArtifactRef] | None = None,
                   node_metrics: Mapping[str, float] | None = None) -> None:
            input_refs = {p: refs[b.node][b.port] for p, b in node.inputs.items()
                          if b.node in refs and b.port in refs[b.node]}
            outcome = outcome or _Outcome()
            recorder.record_execution(ExecutionRecord(
                run_id=run_id, node_id=node.id, kind=node.kind.name,
                kind_version=node.kind.version, cache_key=node.cache_key, status=status,
                config=dict(node.config), started_at=outcome.started_at,
                ended_at=utcnow() if outcome.started_at else None, seconds=outcome.seconds,
                inputs=input_refs if status != "skipped" else {},
                outputs=dict(outputs or {}), metrics=dict(node_metrics or {}),
                error=outcome.error, position=position[node.id]))
            results[node.id] = NodeResult(status, outcome.seconds, outcome.error, dict(outputs or {}))
            for name, value in (node_metrics or {}).items():
                metrics[f"{node.id}.{name}"] = value
            self.emit("node_finished", node_id=node.id, status=status,
                      seconds=outcome.seconds, error=outcome.error)

        def take(future: Future) -> None:
            nonlocal failed, failed_trace
            node = graph.nodes[running.pop(future)]
            outcome: _Outcome = future.result()
            if outcome.error is None:
                values[node.id], refs[node.id] = outcome.values, outcome.refs
                record(node, "succeeded", outcome, outcome.refs, outcome.metrics)
                complete(node)
            else:
                # Stopped by Ctrl-C (or a tuner's cancel) is not a failure of the node.
                record(node, "interrupted" if outcome.error == "interrupted" else "failed", outcome)
                if failed is None and outcome.error != "interrupted":
                    failed, failed_trace = node.id, outcome.traceback

        try:
            while True:
                while ready and failed is None:
                    node = graph.nodes[ready.popleft()]
                    hit = cached.get(node.cache_key)
                    if hit is not None and all(p.name in hit for p in node.kind.outputs
                                               if not p.optional):
                        refs[node.id] = values[node.id] = dict(hit)
                        hit_metrics = {m: as_metric(recorder.load(hit[m])) for m in node.kind.metrics
                                       if m in hit}
                        record(node, "cached", outputs=hit, node_metrics=hit_metrics)
                        complete(node)
                        continue
                    inputs = {p: values[b.node][b.port] for p, b in node.inputs.items()}
                    self.emit("node_started", node_id=node.id)
                    done = {n: dict(r) for n, r in refs.items()} if node.id in graph.owners else None
                    running[self.executor.submit(
                        lambda node=node, inputs=inputs, done=done:
                        self._execute(run_id, node, inputs, done))] = node.id
                if not running:
                    break
                # A timeout keeps the main thread responsive to Ctrl-C while nodes run.
                done, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    take(future)
        except KeyboardInterrupt:
            interrupted = True
            self.cancel.set()
            for future in list(running):
                future.exception()  # waits; the node stops at its next ctx.progress
                take(future)
        finally:
            for node in graph:
                if node.id not in results:
                    record(node, "skipped")
            # Cancelled from another thread (a tuner stopping its trials) is interrupted too,
            # though no KeyboardInterrupt reached this one.
            interrupted_nodes = any(r.error == "interrupted" for r in results.values())
            if interrupted or (failed is None and interrupted_nodes):
                status, error = "interrupted", "interrupted"
            else:
                status = "failed" if failed else "succeeded"
                error = results[failed].error if failed else None
            with self._lock:
                for key, value in self._series_last.items():
                    metrics.setdefault(key, value)
            recorder.end_run(run_id, status, error)
            self.emit("run_finished", run_id=run_id, status=status)
            self.executor.shutdown()

        if interrupted:
            raise KeyboardInterrupt
        best = None
        for nid in graph.owners:  # the last finished owner's summary (run --json "best")
            result = results.get(nid)
            if result is not None and result.status in ("succeeded", "cached"):
                best = graph.nodes[nid].kind.owner.summary(graph, nid, result.outputs,
                                                           recorder) or best
        return RunResult(run_id=run_id, pipeline=graph.name, status=status,
                         store=recorder.location, seconds=time.perf_counter() - start,
                         nodes={nid: results[nid] for nid in graph.nodes}, metrics=metrics,
                         error=error, failed_node=failed,
                         traceback=failed_trace, tuned=bool(graph.owners), best=best,
                         _values=values, _recorder=recorder)
