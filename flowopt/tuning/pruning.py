"""The tuning loop with a pruner: trials trained in segments, paused at rungs, resumed.

`TuningLoop` hands a tuner whose ``with:`` has a ``pruner:`` to `PrunedSearch`. Instead
of whole trials it runs **jobs** — "train trial n on to step s" — on ``parallel``
workers. Policy, on the loop's own thread (strategies and pruners need no locks):

* A free worker takes the pruner's `next_job` (a promotion, or a median trial going on);
  else, while ``trials`` allows, a new trial: its params from `Strategy.ask` (``pending``
  = params of new trials not told yet), its first job up to the pruner's first stop.
* A job opens the trial's training (`pausable.TrialTraining`: the owned nodes before
  the training, then the training itself, from the trial's last checkpoint) unless the
  worker still holds it live, trains to the stop, scores the partly trained model with
  the owned nodes after the training, and saves a checkpoint. The objective at each
  stop is logged in the trial's child run as the series ``TUNER.objective`` (step =
  training steps) and reported to the pruner.
* Trial statuses: ``running`` → ``paused`` (stopped at a rung, checkpoint kept; may be
  promoted and resume from it) → ``succeeded`` (reached the training steps: its
  outputs and executions are recorded like any trial's) | ``pruned`` (ended for good:
  the median rule, or still paused when the search ends) | ``failed``. Each trial row
  carries ``steps`` (training steps run for it), ``rung`` (the last rung reached) and
  ``seconds`` (the wall-clock time of its jobs, pauses excluded).
* The strategy is told each trial once, when it first stops: a paused trial as
  ``pruned`` with its objective at that rung (a low-fidelity value, like the lowest
  budget of BOHB), a finished one as it ended. The tuner's result is the best
  *succeeded* trial (trained the full steps).
* **End.** When no job is left and ``trials`` are used up, the search is over. If no
  trial reached the training steps (too few trials for the rungs), the best paused trial
  of the highest rung is trained to the end from its checkpoint, so the tuner has a
  trained result.
* **Restart.** Every pruner event (add, issue, report with its checkpoint, fail) and
  every tell is written to the store before the next decision. A rerun of a killed tuning run (same
  tuner key, caching on) copies the old run's events and trials, replays the events
  into a fresh pruner — the same rungs, promotions and paused trials — re-issues the
  jobs that were in flight (from their last checkpoint) and goes on.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Mapping

from flowopt.errors import FlowoptError, Interrupted
from flowopt.recording import ArtifactRef, RunInfo, utcnow

from .pausable import TrialTraining, pausable_node, steps_field
from .pruners import make_pruner, replay
from .records import TrialInfo
from .subgraph import trial_spec


@dataclass
class _Stop:
    """What a job hands back to the loop."""

    number: int
    step: int
    value: float | None = None
    checkpoint_id: str | None = None
    trained: int = 0
    outputs: Mapping[str, Mapping[str, ArtifactRef]] | None = None
    error: str | None = None
    seconds: float = 0.0  # the job's wall-clock time


def _observation(info: TrialInfo, objective: float | None, status: str) -> Any:
    from flowopt.nodes.tuner.strategy import Observation

    return Observation(number=info.number, params=dict(info.params), objective=objective,
                       status=status)


class PrunedSearch:
    """Runs a tuner with a pruner; `loop` is its `TuningLoop` (config, strategy, host)."""

    def __init__(self, loop: Any):
        self.loop = loop
        host, plan, graph = loop.host, loop.plan, loop.graph
        kinds = {nid: node.kind for nid, node in graph.nodes.items()}
        self.train_id = pausable_node(plan, kinds)[0]
        node = graph.nodes[self.train_id]
        self.steps = int(node.config[steps_field(node.kind.name)])
        self.pruner = make_pruner(loop.config.pruner, steps=self.steps, mode=loop.config.mode)
        self.recorder = host.recorder
        self.values = {port: self.recorder.load(v) if isinstance(v, ArtifactRef) else v
                       for port, v in loop.inputs.items()}
        self.refs = {port: loop.done[b.node][b.port] for port, b in plan.frontier.items()
                     if b.port in loop.done.get(b.node, {})}
        self.trials: dict[int, TrialInfo] = {}
        self.told: set[int] = set()
        self.checkpoints: dict[int, str] = {}  # trial -> its latest checkpoint id
        self.live: OrderedDict[int, TrialTraining] = OrderedDict()  # parked, by trial
        self.keep = 2 * loop.config.parallel

    # -- the loop --------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Any], dict[str, ArtifactRef], dict[str, float]]:
        loop, pruner = self.loop, self.pruner
        reissue = self._read_back()
        added = sum(1 for e in pruner.events if e[0] == "add")
        number = max(self.trials, default=-1) + 1
        running: dict[Future, int] = {}
        pool = ThreadPoolExecutor(max_workers=loop.config.parallel,
                                  thread_name_prefix=f"flowopt-{loop.node.id}")
        stop = False
        try:
            while True:
                while not stop and len(running) < loop.config.parallel:
                    pending = [dict(self.trials[n].params) for n in self.trials
                               if n not in self.told and n in pruner.running]
                    if reissue:
                        job = reissue.pop(0)
                    elif (job := pruner.next_job()) is not None:
                        self._event("issue", job[0], step=job[1])
                        self._status(job[0], "running")
                    elif added < loop.config.trials and not loop.strategy.exhausted(pending):
                        params = {k: _native(v) for k, v in loop.strategy.ask(pending).items()}
                        job = (number, self._event("add", number))
                        self._begin(number, params)
                        number += 1
                        added += 1
                    else:
                        break
                    running[pool.submit(self._job, *job)] = job[0]
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    stop = self._take(future.result()) or stop
                if loop.host.cancel.is_set():
                    stop = True
        except KeyboardInterrupt:
            loop.host.cancel.set()
            wait(list(running))
            raise
        finally:
            pool.shutdown(wait=True)
        if not stop and not loop.host.cancel.is_set():
            self._finish_one()
        if loop.host.cancel.is_set():
            raise Interrupted(f"tuner '{loop.node.id}' interrupted")
        for n in pruner.paused():  # the search is over: whatever still waits ends here
            self._end(n, "pruned")
        return loop._result()

    def _finish_one(self) -> None:
        """No trial trained the full steps (a budget too small for the rungs): train the
        best paused trial of the highest rung to the end, from its checkpoint, so the
        tuner has a trained result."""
        done = any(d.info.status == "succeeded" for d in self.loop.finished.values())
        n = None if done else self.pruner.best_paused()
        if n is None:
            return
        self._event("finish", n)
        self._status(n, "running")
        self._take(self._job(n, self.steps))

    # -- events and rows (loop thread) -----------------------------------------------
    def _event(self, kind: str, n: int, *, step: int | None = None, value: float | None = None,
               checkpoint_id: str | None = None) -> int:
        """Apply one event to the pruner and write it at once; returns the stop of an add."""
        result = 0
        if kind == "add":
            result = self.pruner.add(n)
        elif kind == "issue":
            self.pruner.issue(n, step)
        elif kind == "report":
            self.pruner.report(n, step, value)
        elif kind == "finish":
            self.pruner.finish(n)
        else:
            self.pruner.fail(n)
        self.recorder.record_pruner_events(self.loop.run_id, self.loop.node.id, [{
            "event": kind, "number": n, "step": step if kind != "add" else result,
            "value": value, "checkpoint_id": checkpoint_id, "status": None}])
        return result

    def _tell(self, info: TrialInfo, objective: float | None, status: str) -> None:
        """Tell the strategy (once per trial), and write it down: a resumed run re-tells
        exactly what this one told, in the same order."""
        objective = objective if status != "failed" else None
        self.told.add(info.number)
        self.loop.strategy.tell(_observation(info, objective, status))
        self.recorder.record_pruner_events(self.loop.run_id, self.loop.node.id, [{
            "event": "tell", "number": info.number, "step": None, "value": objective,
            "checkpoint_id": None, "status": status}])

    def _begin(self, n: int, params: dict[str, Any]) -> None:
        loop = self.loop
        graph = loop.graph
        run_id = self.recorder.begin_run(RunInfo(
            pipeline=graph.name, seed=graph.seed, params={**graph.params, **params},
            spec=graph.spec.to_data(), source=loop.host.source, parent_run_id=loop.run_id))
        info = TrialInfo(run_id=loop.run_id, node_id=loop.node.id, number=n, params=params,
                         status="running", trial_run_id=run_id, started_at=utcnow(),
                         attributes={**loop.attributes, "pruner": self.pruner.name})
        self._record(info)

    def _record(self, info: TrialInfo) -> None:
        self.trials[info.number] = info
        self.recorder.record_trial(info)

    def _status(self, n: int, status: str, **changes: Any) -> TrialInfo:
        info = replace(self.trials[n], status=status, rung=self.pruner.rung(n), **changes)
        self._record(info)
        return info

    def _take(self, stop: _Stop) -> bool:
        """Report a finished job, update the trial; True when the search must stop."""
        loop, pruner, n = self.loop, self.pruner, stop.number
        info = self.trials[n]
        steps = info.steps + stop.trained
        self.trials[n] = info = replace(info, seconds=info.seconds + stop.seconds)
        if stop.error == "interrupted":
            self._status(n, "running", steps=steps)
            return True
        if stop.error is not None or stop.value is None or not math.isfinite(stop.value):
            error = stop.error or f"the objective '{loop.plan.metric}' is not finite ({stop.value})"
            self._event("fail", n)
            ended = self._end(n, "failed", steps=steps, error=error, objective=None)
            loop.failures += 1
            loop.last_error = error
            limit = loop.config.max_failures
            return limit is not None and loop.failures > limit
        self.checkpoints[n] = stop.checkpoint_id or self.checkpoints.get(n, "")
        # the trial's curve: objective against training steps, in its child run
        self.recorder.log_metric(info.trial_run_id, loop.node.id, "objective", stop.value,
                                 stop.step)
        self._event("report", n, step=stop.step, value=stop.value,
                    checkpoint_id=stop.checkpoint_id)
        if stop.step >= self.steps:
            self._end(n, "succeeded", steps=steps, objective=stop.value, outputs=stop.outputs)
        elif n in pruner.pruned:
            self._end(n, "pruned", steps=steps, objective=stop.value)
        else:
            info = self._status(n, "paused", steps=steps, objective=stop.value)
            if n not in self.told and _next(pruner, n) is None:  # not going on at once
                self._tell(info, stop.value, "pruned")
        return False

    def _end(self, n: int, status: str, outputs: Any = None, **changes: Any) -> TrialInfo:
        from .trials import _Done

        ended = self._status(n, status, ended_at=utcnow(), **changes)
        self.recorder.end_run(ended.trial_run_id, "succeeded" if status == "succeeded"
                              else status, ended.error)
        self.live.pop(n, None)
        if n not in self.told:
            self._tell(ended, ended.objective, status)
        loop = self.loop
        loop.finished[n] = _Done(ended, outputs)
        best = loop._best()
        loop.host.emit("node_progress", node_id=loop.node.id, step=len(loop.finished),
                       total=loop.config.trials,
                       info={"trial": n, "best": best.info.objective if best else None})
        loop.host.emit("trial_finished", node_id=loop.node.id, number=n, status=status,
                       objective=ended.objective, params=dict(ended.params),
                       seconds=ended.seconds, error=ended.error)
        return ended

    # -- one job (on a pool thread) --------------------------------------------------
    def _job(self, n: int, until: int) -> _Stop:
        start = time.perf_counter()
        stop = self._segment(n, until)
        stop.seconds = time.perf_counter() - start
        return stop

    def _segment(self, n: int, until: int) -> _Stop:
        loop = self.loop
        info = self.trials[n]
        try:
            training = self.live.pop(n, None)
            if training is None:
                from flowopt.graph import compile_pipeline

                graph = compile_pipeline(trial_spec(loop.graph, loop.plan, dict(info.params)))
                checkpoint = self.checkpoints.get(n)
                payload = self.recorder.load_checkpoint(checkpoint) if checkpoint else None
                training = TrialTraining(
                    graph, loop.plan, self.train_id, self.values, self.refs,
                    recorder=self.recorder, run_id=info.trial_run_id,
                    device=loop.host.device, threads=loop.trial_threads,
                    cancel=loop.host.cancel).open(payload)
            before = training.trained
            value = training.advance(until)
            trained = training.trained - before
            if until >= self.steps:
                return _Stop(n, until, value, None, trained, outputs=training.record())
            checkpoint_id = self.recorder.save_checkpoint(
                f"{loop.node.id}.trial{n}.step{until}", training.checkpoint(), "safetensors")
            self.live[n] = training
            while len(self.live) > self.keep:
                self.live.popitem(last=False)
            return _Stop(n, until, value, checkpoint_id, trained)
        except Interrupted:
            return _Stop(n, until, error="interrupted")
        except FlowoptError as exc:
            return _Stop(n, until, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken trial is a failed trial
            if loop.host.cancel.is_set():
                return _Stop(n, until, error="interrupted")
            return _Stop(n, until, error=f"{type(exc).__name__}: {exc}")

    # -- restart ---------------------------------------------------------------------
    def _read_back(self) -> list[tuple[int, int]]:
        """Continue a killed run of this tuner (module docstring); returns jobs to re-issue."""
        loop, recorder = self.loop, self.recorder
        if not loop.host.use_cache:
            return []
        earlier = recorder.resumable_trials(
            pipeline=loop.graph.name, node_id=loop.node.id, tuner_key=loop.node.cache_key,
            exclude_run=loop.run_id)
        if not earlier:
            return []
        events = recorder.pruner_events(earlier[0].run_id, loop.node.id)
        recorder.record_pruner_events(loop.run_id, loop.node.id, events)
        replay(self.pruner, [_as_tuple(e) for e in events if e["event"] != "tell"])
        from .trials import _Done

        for trial in earlier:
            moved = trial.moved(loop.run_id, resumed_from=trial.run_id)
            if moved.status in ("succeeded", "failed", "pruned"):
                loop.finished[moved.number] = _Done(moved)
            elif moved.number in self.pruner.running:
                moved = replace(moved, status="running")
            elif moved.number in self.pruner.paused():  # killed before its row said so
                moved = replace(moved, status="paused")
            self._record(moved)
        for event in events:
            n = event["number"]
            if event["event"] == "report" and event["checkpoint_id"]:
                self.checkpoints[n] = event["checkpoint_id"]
            elif event["event"] == "tell" and n in self.trials:
                self.told.add(n)
                loop.strategy.tell(_observation(self.trials[n], event["value"], event["status"]))
        # jobs in flight when the run was killed: from their last checkpoint (or step 0)
        return [(n, until) for n, until in self.pruner.running.items() if n in self.trials]


def _next(pruner: Any, n: int) -> int | None:
    job = pruner.next_job()
    return job[1] if job is not None and job[0] == n else None


def _as_tuple(event: Mapping[str, Any]) -> tuple:
    kind, n = event["event"], event["number"]
    if kind == "add":
        return ("add", n)
    if kind == "issue":
        return ("issue", n, event["step"])
    if kind == "report":
        return ("report", n, event["step"], event["value"])
    return (kind, n)  # fail, finish


def _native(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        return value.item()
    return value


__all__ = ["PrunedSearch"]
