"""The tuning loop with a pruner: trials trained in segments, paused at rungs, resumed.

`TuningLoop` hands a tuner whose ``with:`` has a ``pruner:`` to `PrunedSearch`. Instead
of whole trials it runs **jobs** — "train trial n on to step s" — on ``parallel``
workers. Policy, on the loop's own thread (strategies and pruners need no locks):

* A free worker takes a queued job (a trial the pruner let go on takes its own worker
  again at once), else the trials `Pruner.promote` names (``draining`` once no new
  trial will come), else, while ``trials`` allows, a new trial: its params from
  `Strategy.ask` (``pending`` = params of new trials not told yet), trained up to the
  step `Pruner.next_report` names.
* A job opens the trial's training (`pausable.TrialTraining`: the owned nodes before
  the training, then the training itself, from the trial's last checkpoint) unless the
  worker still holds it live, trains to the stop, scores the partly trained model with
  the owned nodes after the training, and saves a checkpoint. The objective at each
  stop is logged in the trial's child run as the series ``TUNER.objective`` (step =
  training steps) and reported to the pruner, whose decision — continue, pause,
  prune — the loop carries out.
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
* **End.** When no job is left, no promotion is named and ``trials`` are used up, the
  search is over; paused trials end ``pruned``.
* **Restart.** The loop keeps a log — a trial started or resumed up to a step, a
  report (with its checkpoint and the decision), a tell, an end — and writes each
  entry together with the pruner's `Pruner.state` after it, in one transaction,
  before acting on it. A rerun of a killed tuning run (same tuner key, caching on)
  copies the old run's log, state and trials, rebuilds the pruner from the state (the
  same rungs, promotions and paused trials), re-tells the strategy what it was told,
  re-issues the jobs that were in flight (from their last checkpoint) and goes on.
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

from .pausable import TrialTraining
from .pruner import validate_pruner
from .records import FrozenTrial
from .strategy import Observation
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


@dataclass
class _Done:
    """A finished trial as `TuningLoop` keeps it (``info``, ``outputs``: None when read
    back from an earlier run)."""

    info: FrozenTrial
    outputs: Mapping[str, Mapping[str, ArtifactRef]] | None = None


class PrunedSearch:
    """Runs a tuner with a pruner; `loop` is its `TuningLoop` (config, strategy, host)."""

    def __init__(self, loop: Any):
        self.loop = loop
        host, plan, graph = loop.host, loop.plan, loop.graph
        self.train_id = plan.training[0]
        node = graph.nodes[self.train_id]
        self.steps = int(node.config[node.kind.training.steps])
        self.mode = loop.config.modes[0]
        self.pruner_cls, self.pruner_config = validate_pruner(loop.config.pruner, self.steps)
        self.recorder = host.recorder
        self.values = {port: self.recorder.load(v) if isinstance(v, ArtifactRef) else v
                       for port, v in loop.inputs.items()}
        self.refs = {port: loop.done[b.node][b.port] for port, b in plan.frontier.items()
                     if b.port in loop.done.get(b.node, {})}
        self.trials: dict[int, FrozenTrial] = {}
        self.reached: dict[int, int] = {}  # trial -> its last reported step
        self.told: set[int] = set()
        self.checkpoints: dict[int, str] = {}  # trial -> its latest checkpoint id
        self.live: OrderedDict[int, TrialTraining] = OrderedDict()  # parked, by trial
        self.keep = 2 * loop.config.parallel
        self.pruner: Any = None
        self._events: list[dict[str, Any]] = []  # log entries not written yet
        self._rows: dict[int, FrozenTrial] = {}  # trial rows not written yet

    def _new_pruner(self, state: Any = None) -> Any:
        return self.pruner_cls(self.pruner_config, mode=self.mode, max_steps=self.steps,
                               seed=self.loop.node.seed, state=state)

    # -- the loop --------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Any], dict[str, ArtifactRef], dict[str, float]]:
        loop = self.loop
        queue = self._read_back()
        if self.pruner is None:
            self.pruner = self._new_pruner()
        added = self._added
        number = max(self.trials, default=-1) + 1
        running: dict[Future, int] = {}
        pool = ThreadPoolExecutor(max_workers=loop.config.parallel,
                                  thread_name_prefix=f"flowopt-{loop.node.id}")
        stop = False
        try:
            while True:
                while not stop and len(running) < loop.config.parallel:
                    if queue:
                        self._flush()  # a decision is in the store before it is acted on
                        job = queue.pop(0)
                        running[pool.submit(self._job, *job)] = job[0]
                        continue
                    pending = [dict(self.trials[n].params) for n in self.trials
                               if n not in self.told and self.trials[n].status == "running"]
                    draining = added >= loop.config.trials or loop.strategy.exhausted(pending)
                    promoted = self.pruner.promote(draining)
                    if promoted:
                        jobs = [(n, self._until(n)) for n in promoted]
                        self._log([{"event": "resume", "number": n, "step": until}
                                   for n, until in jobs])
                        for n, _ in jobs:
                            self._status(n, "running")
                        queue.extend(jobs)
                        continue
                    if draining:
                        break
                    params = {k: _native(v) for k, v in loop.strategy.ask(pending).items()}
                    self._begin(number, params)
                    until = self.pruner.next_report(number, 0) or self.steps
                    self._log([{"event": "start", "number": number, "step": until}])
                    queue.append((number, until))
                    number += 1
                    added += 1
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    stop = self._take(future.result(), queue) or stop
                    self._flush()
                if loop.host.cancel.is_set():
                    stop = True
        except KeyboardInterrupt:
            loop.host.cancel.set()
            wait(list(running))
            raise
        finally:
            pool.shutdown(wait=True)
        if loop.host.cancel.is_set():
            raise Interrupted(f"tuner '{loop.node.id}' interrupted")
        for n in sorted(self.trials):  # the search is over: whatever still waits ends here
            if self.trials[n].status == "paused":
                self._log([{"event": "end", "number": n, "status": "pruned"}])
                self._end(n, "pruned")
        self._flush()
        return loop._result()

    def _until(self, n: int) -> int:
        return self.pruner.next_report(n, self.reached.get(n, 0)) or self.steps

    # -- the log, rows and tells (loop thread) ----------------------------------------
    def _log(self, events: list[dict[str, Any]]) -> None:
        """Log entries, written by the next `_flush`."""
        self._events.extend(events)

    def _flush(self) -> None:
        """Write what one decision changed — log entries, trial rows — with the pruner's
        state after it, in one transaction, before the loop acts on it."""
        if self._events or self._rows:
            self.recorder.record_pruner_events(
                self.loop.run_id, self.loop.node.id, self._events, self.pruner.state(),
                trials=list(self._rows.values()))
            self._events, self._rows = [], {}

    def _tell(self, info: FrozenTrial, value: float | None, status: str) -> None:
        """Tell the strategy (once per trial), and log it: a resumed run re-tells exactly
        what this one told, in the same order."""
        value = value if status != "failed" else None
        self.told.add(info.number)
        self.loop.strategy.tell(Observation(number=info.number, params=dict(info.params),
                                            values=value, status=status, steps=info.steps))
        self._log([{"event": "tell", "number": info.number, "value": value, "status": status}])

    def _begin(self, n: int, params: dict[str, Any]) -> None:
        loop = self.loop
        graph = loop.graph
        run_id = self.recorder.begin_run(RunInfo(
            pipeline=graph.name, seed=graph.seed, params={**graph.params, **params},
            spec=graph.spec.to_data(), source=loop.host.source, parent_run_id=loop.run_id))
        self._record(FrozenTrial(
            run_id=loop.run_id, node_id=loop.node.id, number=n, params=params,
            status="running", trial_run_id=run_id, started_at=utcnow(), steps=0,
            attributes={**loop.attributes, "pruner": loop.config.pruner["name"]}))

    def _record(self, info: FrozenTrial) -> None:
        """Keep a trial's new row; written by the next `_flush`."""
        self.trials[info.number] = info
        self._rows[info.number] = info

    def _status(self, n: int, status: str, **changes: Any) -> FrozenTrial:
        info = replace(self.trials[n], status=status, rung=self.pruner.rung(n), **changes)
        self._record(info)
        return info

    def _take(self, stop: _Stop, queue: list[tuple[int, int]]) -> bool:
        """Act on a finished job; True when the search must stop."""
        loop, n = self.loop, stop.number
        info = self.trials[n]
        steps = (info.steps or 0) + stop.trained
        self.trials[n] = replace(info, seconds=info.seconds + stop.seconds, steps=steps)
        if stop.error == "interrupted":
            self._status(n, "running")
            return True
        if stop.error is not None or stop.value is None or not math.isfinite(stop.value):
            error = stop.error or f"the objective '{loop.plan.metric}' is not finite ({stop.value})"
            self.pruner.ended(n, "failed")
            self._log([{"event": "end", "number": n, "status": "failed"}])
            self._end(n, "failed", error=error, values=None)
            loop.failures += 1
            loop.last_error = error
            limit = loop.config.max_failures
            return limit is not None and loop.failures > limit
        if stop.checkpoint_id:
            self.checkpoints[n] = stop.checkpoint_id
        self.reached[n] = stop.step
        # the trial's curve: objective against training steps, in its child run
        self.recorder.log_metric(info.trial_run_id, loop.node.id, "objective", stop.value,
                                 stop.step)
        decision = self.pruner.report(n, stop.step, stop.value)
        report = {"event": "report", "number": n, "step": stop.step, "value": stop.value,
                  "checkpoint_id": stop.checkpoint_id, "status": decision}
        if stop.step >= self.steps:
            self.pruner.ended(n, "succeeded")
            self._log([report, {"event": "end", "number": n, "status": "succeeded"}])
            self._end(n, "succeeded", values=(stop.value,), outputs=stop.outputs)
        elif decision == "prune":
            self._log([report, {"event": "end", "number": n, "status": "pruned"}])
            self._end(n, "pruned", values=(stop.value,))
        elif decision == "continue":
            until = self._until(n)
            self._log([report, {"event": "resume", "number": n, "step": until}])
            self._status(n, "running", values=(stop.value,))
            queue.insert(0, (n, until))  # its worker goes on with it (the trainer is live)
        else:  # pause: the checkpoint stays; a promotion resumes it
            self._log([report])
            paused = self._status(n, "paused", values=(stop.value,))
            if n not in self.told:
                self._tell(paused, stop.value, "pruned")
        return False

    def _end(self, n: int, status: str, outputs: Any = None, **changes: Any) -> FrozenTrial:
        ended = self._status(n, status, ended_at=utcnow(), **changes)
        self.recorder.end_run(ended.trial_run_id, status, ended.error)
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
    _added = 0

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
        old = earlier[0].run_id
        events = recorder.pruner_events(old, loop.node.id)
        state = recorder.pruner_state(old, loop.node.id)
        self.pruner = self._new_pruner(state)
        recorder.record_pruner_events(loop.run_id, loop.node.id, events, state)

        last: dict[int, dict[str, Any]] = {}
        for event in events:
            n = event["number"]
            if event["event"] in ("start", "resume", "report", "end"):
                last[n] = event
            if event["event"] == "start":
                self._added += 1
            if event["event"] == "report":
                self.reached[n] = event["step"]
                if event["checkpoint_id"]:
                    self.checkpoints[n] = event["checkpoint_id"]
        inflight = {n: e["step"] for n, e in last.items() if e["event"] in ("start", "resume")}
        for trial in earlier:
            moved = trial.moved(loop.run_id, resumed_from=trial.run_id)
            if moved.status in ("succeeded", "failed", "pruned"):
                loop.finished[moved.number] = _Done(moved)
            elif moved.number in inflight:
                moved = replace(moved, status="running")
            elif moved.number in self.reached:  # killed before its row said so
                moved = replace(moved, status="paused")
            self._record(moved)
        for event in events:
            n = event["number"]
            if event["event"] == "tell" and n in self.trials:
                self.told.add(n)
                loop.strategy.tell(Observation(
                    number=n, params=dict(self.trials[n].params), values=event["value"],
                    status=event["status"], steps=self.trials[n].steps))
        self._rows = {}  # the copies are written with the state, at once
        self.recorder.record_pruner_events(loop.run_id, loop.node.id, [], None,
                                           trials=[self.trials[n] for n in sorted(self.trials)])
        # jobs in flight when the run was killed: from their last checkpoint (or step 0)
        return [(n, until) for n, until in inflight.items() if n in self.trials]


def _native(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        return value.item()
    return value


__all__ = ["PrunedSearch"]
