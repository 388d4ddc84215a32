"""The tuning loop: ask → run the subgraph → tell, with trials as child runs.

`owner.TunerOwner` hands a tuner node to `TuningLoop` with the run's
`flowopt.owners.Host` (its kind's function is never called).
Policy, per trial, as a state machine::

    asked ──(child run starts)──► running ──► succeeded   (objective finite)
                                     │     └─► failed      (a node failed, compile error,
                                     │                      objective missing or not finite)
                                     └──(Ctrl-C)─────────► interrupted (re-run on resume)

* **Trials.** A trial compiles `subgraph.trial_spec` — the objective's upstream closure
  with the trial's values for the searched params — into an ordinary graph and runs it
  through `Host.run_subgraph` (an ordinary `Scheduler`) as a *child run* (``runs.parent_run_id`` = the tuning
  run), so its node executions, artifacts, metrics and lineage are recorded like any
  run's. Nodes the params do not reach have the same cache keys as in the tuning run,
  which already ran them: the child run reuses those outputs (in memory, without
  touching the store) and so they run exactly once however many trials there are. With
  ``--no-cache`` owned nodes are recomputed in every trial; otherwise a trial whose
  params were seen before (a grid point, a resumed trial) reuses their results too.
* **Parallel.** Up to ``parallel`` trials run at once, each on its own thread with
  ``cores / parallel`` threads for its nodes. `Strategy.ask` receives the params of the
  trials still running; `Strategy.tell` is called as each one finishes, in finishing
  order, from this loop's thread only (strategies need no locks).
* **Failures.** A failed trial is recorded (with its error) and told (``values=None``)
  and the search goes on, until the failure limit: with ``max_failures: N``, more than
  N failures in one execution of the tuner; by default (`kinds.TunerConfig`), its first
  `FIRST_FAILURES` trials all failing. Then running trials finish and the tuner node
  fails with the *first* error (a broken search repeats one error; the first is where
  to look).
* **Resume.** Unless caching is off, the trials of the newest earlier tuning run of
  the same tuner (same cache key: same config, space and upstream) that is not alive in
  another process are read back: succeeded (and pruned) ones are copied into this run's
  trial list and told to the strategy — not re-run; failed and unfinished ones are
  re-run first, under their numbers and params (running the same command again after
  fixing a cause, or after a transient failure, is how a user retries them).
  ``trials`` counts them all.
* **Warm start.** With ``warm_start: true``, finished trials of earlier tuning runs of
  the same pipeline over the same space and objective are told first (they do not count
  toward ``trials``).
* **Result.** The best finished trial (ties: the lowest number) gives the tuner's
  outputs: ``params``, ``objective``, and every output of every owned node as
  ``NODE.PORT`` — the trial's own artifacts (the same ids: lineage leads to the trial
  that made them). No successful trial is an error.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from flowopt.errors import FlowoptError, Interrupted
from flowopt.executors import default_workers
from flowopt.owners import Host
from flowopt.recording import ArtifactRef, RunInfo, utcnow

from .kinds import split_config, strategy_class
from .objectives import front_result, trial_values
from .records import FrozenTrial
from .subgraph import trial_spec

TrialInfo = FrozenTrial


#: The default failure limit: a search whose first this-many trials all failed stops
#: (`kinds.TunerConfig` says why).
FIRST_FAILURES = 5


class TuningFailed(RuntimeError):
    """The search ended without a result (every trial failed, or the failure limit)."""


@dataclass
class _Done:
    """A finished trial as the loop keeps it."""

    info: TrialInfo
    outputs: Mapping[str, Mapping[str, ArtifactRef]] | None = None  # None: read on demand


def _native(value: Any) -> Any:
    """Params as plain JSON values (a strategy may hand back numpy scalars)."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        return value.item()
    return value


def _steps(graph: Any, node_id: str | None) -> int | None:
    """The training steps of `node_id` in a trial's graph (None without a training node)."""
    if node_id is None:
        return None
    node = graph.nodes[node_id]
    return int(node.config[node.kind.training.steps])


class TuningLoop:
    """Runs one tuner node to completion (see the module docstring for the policy).

    `host` is the tuning run (`flowopt.owners.Host`): the loop shares its recorder, cancel
    flag, event stream, cache policy, device and compiled graph, and runs each trial
    through `Host.run_subgraph`.
    """

    def __init__(self, host: Host, run_id: str, node: Any, inputs: Mapping[str, Any],
                 done: Mapping[str, Mapping[str, ArtifactRef]]):
        self.host, self.run_id, self.node = host, run_id, node
        self.inputs, self.done = inputs, done  # the frontier: values or refs; refs
        self.graph = host.graph
        self.plan = self.graph.owners[node.id]
        # a trial trained in full consumed its training node's steps (None: no such node)
        self.train_id = self.plan.training[0] if len(self.plan.training) == 1 else None
        self.config, strategy_config = split_config(node.kind.name, dict(node.config))
        mode = self.config.mode
        self.modes = [mode] if isinstance(mode, str) else list(mode)
        self.multi = len(self.plan.objectives) > 1
        self.strategy = strategy_class(node.kind.name)(
            self.plan.space, mode=tuple(self.modes) if self.multi else self.modes[0],
            seed=node.seed, budget=self.config.trials, config=strategy_config)
        if self.multi and hasattr(self.strategy, "reference_point"):
            self.strategy.reference_point = self.config.reference_point
        owned = set(self.plan.owned)
        # Outputs of the nodes the params do not reach, by cache key: a trial's scheduler
        # finds them here (they ran once, in the tuning run) instead of running them.
        self.hits = {self.graph.nodes[nid].cache_key: dict(refs) for nid, refs in done.items()
                     if nid in self.graph.nodes and nid not in owned}
        self.live = {}
        for port, binding in self.plan.frontier.items():
            ref = done.get(binding.node, {}).get(binding.port)
            value = inputs.get(port)
            if ref is not None and value is not None and not isinstance(value, ArtifactRef):
                self.live[ref.id] = value
        self.attributes = {"tuner_key": node.cache_key, "space_key": self.plan.space_key}
        workers = host.workers
        self.trial_workers = max(1, workers // self.config.parallel)
        self.trial_threads = max(1, default_workers() // (self.config.parallel * self.trial_workers))
        self.finished: dict[int, _Done] = {}
        self.failures = 0
        self.first_error: str | None = None

    # -- the loop --------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Any], dict[str, ArtifactRef], dict[str, float]]:
        """Run the search; returns the tuner's (values, refs, metrics) for the scheduler."""
        if getattr(self.config, "pruner", None) is not None:  # early stopping: pruning.py
            from .pruning import PrunedSearch

            return PrunedSearch(self).run()
        reruns = self._read_back()
        total = self.config.trials
        number = max([*self.finished, *(n for n, _ in reruns)], default=-1) + 1
        started = len(self.finished)
        running: dict[Future, tuple[int, dict[str, Any]]] = {}
        pool = ThreadPoolExecutor(max_workers=self.config.parallel,
                                  thread_name_prefix=f"flowopt-{self.node.id}")
        stop = False
        try:
            while True:
                while not stop and len(running) < self.config.parallel and started < total:
                    pending = [p for _, p in running.values()]
                    if reruns:
                        trial, params = reruns.pop(0)
                    elif self.strategy.exhausted(pending):
                        break
                    else:
                        trial, params = number, {k: _native(v) for k, v in
                                                 self.strategy.ask(pending).items()}
                        number += 1
                    started += 1
                    running[pool.submit(self._run_trial, trial, params)] = (trial, params)
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    stop = self._take(future.result()) or stop
                if self.host.cancel.is_set():
                    stop = True
        except KeyboardInterrupt:
            self.host.cancel.set()
            wait(list(running))
            raise
        finally:
            pool.shutdown(wait=True)
        if self.host.cancel.is_set():
            raise Interrupted(f"tuner '{self.node.id}' interrupted")
        return self._result()

    def _take(self, done: _Done) -> bool:
        """Keep a finished trial and tell the strategy; True when the search must stop."""
        info = done.info
        if info.status == "interrupted":
            return True
        self.finished[info.number] = done
        self.strategy.tell(info.observation())
        if info.status == "failed":
            self.failures += 1
            self.first_error = self.first_error or info.error
        best = None if self.multi else self._best()
        self.host.emit("node_progress", node_id=self.node.id, step=len(self.finished),
                       total=self.config.trials,
                       info={"trial": info.number, "best": best.info.objective if best else None})
        self.host.emit("trial_finished", node_id=self.node.id, number=info.number,
                       status=info.status, objective=info.objective, params=dict(info.params),
                       seconds=info.seconds, error=info.error)
        return self._failure_limit() is not None

    def _failure_limit(self) -> str | None:
        """Why the failures stop the search (module docstring), or None."""
        limit = self.config.max_failures
        if limit is not None:
            return (f"{self.failures} trials failed (max_failures {limit})"
                    if self.failures > limit else None)
        if self.failures >= min(FIRST_FAILURES, self.config.trials) and self._best() is None \
                and self.failures < self.config.trials:
            return (f"its first {self.failures} trials failed (the default limit when none "
                    "succeeds; set max_failures to go on)")
        return None

    # -- one trial (on a pool thread) ------------------------------------------------
    def _run_trial(self, number: int, params: dict[str, Any]) -> _Done:
        from flowopt.graph import compile_pipeline

        started_at, start = utcnow(), time.perf_counter()
        info = TrialInfo(run_id=self.run_id, node_id=self.node.id, number=number,
                         params=params, status="running", started_at=started_at,
                         attributes=self.attributes)
        try:
            graph = compile_pipeline(trial_spec(self.graph, self.plan, params))
        except FlowoptError as exc:
            return self._end(info, start, status="failed", error=f"trial params rejected: {exc}")
        scope = TrialScope(self, info)
        try:  # the child run shares the tuning run's cancel flag: one Ctrl-C stops every trial
            result = self.host.run_subgraph(graph, scope, workers=self.trial_workers,
                                            threads=self.trial_threads)
        except Exception as exc:  # noqa: BLE001 - a broken trial is a failed trial
            return self._end(scope.info, start, status="failed", error=f"{type(exc).__name__}: {exc}")
        info = scope.info
        if self.host.cancel.is_set():
            return self._end(info, start, status="interrupted", error="interrupted")
        outputs = {nid: dict(result.nodes[nid].outputs) for nid in self.plan.owned
                   if nid in result.nodes}
        objective = result.metrics.get(self.plan.metric)
        if self.multi and result.status == "succeeded":
            values, error = trial_values(result.metrics, self.plan.metrics)
            ended = self._end(info, start, status="failed" if error else "succeeded",
                              values=values, error=error)
            return _Done(ended.info, outputs)
        if result.status != "succeeded":
            where = f"node '{result.failed_node}': " if result.failed_node else ""
            ended = self._end(info, start, status="failed", error=f"{where}{result.error}")
        elif objective is None:
            ended = self._end(info, start, status="failed",
                              error=f"the objective '{self.plan.metric}' was not produced")
        elif not math.isfinite(objective):
            ended = self._end(info, start, status="failed", values=None,
                              error=f"the objective '{self.plan.metric}' is not finite ({objective})")
        else:
            ended = self._end(info, start, status="succeeded", values=(float(objective),),
                              steps=_steps(graph, self.train_id))
        return _Done(ended.info, outputs)

    def _end(self, info: TrialInfo, start: float, **changes: Any) -> _Done:
        ended = replace(info, ended_at=utcnow(), seconds=time.perf_counter() - start, **changes)
        self.host.recorder.record_trial(ended)
        return _Done(ended)

    # -- resume and warm start -------------------------------------------------------
    def _read_back(self) -> list[tuple[int, dict[str, Any]]]:
        """Tell the strategy what earlier runs learned; returns the trials to re-run."""
        recorder, pipeline = self.host.recorder, self.graph.name
        if self.config.warm_start:
            for trial in recorder.warm_trials(pipeline=pipeline, space_key=self.plan.space_key,
                                              exclude_run=self.run_id):
                self.strategy.tell(trial.observation())
        if not self.host.use_cache:
            return []
        reruns = []
        for trial in recorder.resumable_trials(pipeline=pipeline, node_id=self.node.id,
                                               tuner_key=self.node.cache_key,
                                               exclude_run=self.run_id):
            if trial.finished and trial.status != "failed":
                copied = trial.moved(self.run_id, resumed_from=trial.run_id)
                recorder.record_trial(copied)
                self.finished[trial.number] = _Done(copied)
                self.strategy.tell(copied.observation())
            elif trial.number < self.config.trials:
                reruns.append((trial.number, dict(trial.params)))
        return reruns

    # -- the result ------------------------------------------------------------------
    def _best(self) -> _Done | None:
        scored = [d for d in self.finished.values()
                  if d.info.status == "succeeded" and d.info.objective is not None]
        if not scored:
            return None
        sign = 1.0 if self.config.mode == "max" else -1.0
        return max(scored, key=lambda d: (sign * d.info.objective, -d.info.number))

    def _result(self) -> tuple[dict[str, Any], dict[str, ArtifactRef], dict[str, float]]:
        stopped = self._failure_limit()
        if stopped is not None:
            raise TuningFailed(f"tuner '{self.node.id}' stopped: {stopped}; first error: "
                               f"{self.first_error}")
        front = None
        if self.multi:
            front = front_result([d.info for d in self.finished.values()], self.modes,
                                 self.config.reference_point)
            best = self.finished[front["best"].number] if front is not None else None
        else:
            best = self._best()
        if best is None:
            raise TuningFailed(f"tuner '{self.node.id}': no trial succeeded "
                               f"({len(self.finished)} failed); first error: {self.first_error}")
        outputs = best.outputs
        if outputs is None:  # a trial read back from an earlier run
            outputs = self.host.recorder.run_outputs(best.info.trial_run_id)
        values: dict[str, Any] = {"params": dict(best.info.params),
                                  "objective": float(best.info.objective)}
        if front is not None:
            for entry in front["pareto"]:  # every Pareto trial's models, as artifact ids
                entry["artifacts"] = self._artifact_ids(self.finished[entry["number"]])
            values.update(pareto=front["pareto"], hypervolume=float(front["hypervolume"]),
                          reference_point=front["reference_point"])
            for number, value in front["trace"]:
                self.host.recorder.log_metric(self.run_id, self.node.id, "hypervolume",
                                              float(value), number)
        refs = self.host.recorder.save_outputs(self.node.id, values)
        for nid in self.plan.owned:
            for port, ref in outputs.get(nid, {}).items():
                values[f"{nid}.{port}"] = refs[f"{nid}.{port}"] = ref
        metrics = {"objective": values["objective"]}
        if front is not None:
            metrics["hypervolume"] = values["hypervolume"]
        return values, refs, metrics


    def _artifact_ids(self, done: _Done) -> dict[str, str]:
        """``NODE.PORT -> artifact id`` of a trial's owned outputs (read back if resumed)."""
        outputs = done.outputs
        if outputs is None:
            outputs = self.host.recorder.run_outputs(done.info.trial_run_id) \
                if done.info.trial_run_id else {}
        return {f"{nid}.{port}": ref.id for nid in self.plan.owned
                for port, ref in sorted(outputs.get(nid, {}).items())}


class TrialScope:
    """The recorder a trial's scheduler sees: the tuning run's recorder, plus

    * ``begin_run`` makes the child run a trial (a ``running`` trial row, parent set);
    * ``find_cached`` answers first from the tuning run's own results (see `TuningLoop`);
    * ``load`` hands over live values of the frontier instead of decoding them again;
    * ``end_run`` records an interrupted trial's child run as ``interrupted``.
    """

    def __init__(self, loop: TuningLoop, info: TrialInfo):
        self.loop, self.info = loop, info
        self.inner = loop.host.recorder
        self.location = self.inner.location

    def begin_run(self, info: RunInfo) -> str:
        run_id = self.inner.begin_run(replace(info, parent_run_id=self.loop.run_id))
        self.info = replace(self.info, trial_run_id=run_id)
        self.inner.record_trial(self.info)
        return run_id

    def find_cached(self, cache_keys: Iterable[str]) -> dict[str, dict[str, ArtifactRef]]:
        keys = list(cache_keys)
        found = {k: self.loop.hits[k] for k in keys if k in self.loop.hits}
        rest = [k for k in keys if k not in found]
        if rest and self.loop.host.use_cache:
            found.update(self.inner.find_cached(rest))
        return found

    def load(self, ref: ArtifactRef) -> Any:
        live = self.loop.live.get(ref.id)
        return live if live is not None else self.inner.load(ref)

    def save_outputs(self, node_id: str, values: Mapping[str, Any]) -> dict[str, ArtifactRef]:
        return self.inner.save_outputs(node_id, values)

    def record_execution(self, record: Any) -> None:
        self.inner.record_execution(record)

    def log_metric(self, run_id: str, node_id: str, key: str, value: float,
                   step: int | None) -> None:
        self.inner.log_metric(run_id, node_id, key, value, step)

    def end_run(self, run_id: str, status: str, error: str | None = None) -> None:
        if self.loop.host.cancel.is_set() and status == "succeeded":
            status, error = "interrupted", "interrupted"
        self.inner.end_run(run_id, status, error)


__all__ = ["TrialScope", "TuningFailed", "TuningLoop"]
