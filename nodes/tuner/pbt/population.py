"""The asynchronous PBT controller: members train on worker threads, no generation barrier.

Policy (Jaderberg et al. 2017, Algorithm 1, asynchronous form):

* Each member trains in segments on one of ``parallel`` worker threads. A segment ends
  at the member's next *ready* point: every ``interval`` steps, the first one not before
  ``burn_in``. When a segment ends the controller thread — and only it — decides, using
  the latest score each member has reported so far (members still training keep their
  previous score; members with none count as worst). Nothing waits for the rest of the
  population: a slow member delays only itself.
* Exploit copies the source member's latest checkpoint (weights **and** optimizer state:
  whatever the `Trainable` put in its state) together with its params and its step —
  the step is the age of the weights, as in Ray Tune — then explore perturbs the params.
  The member keeps its own last score until its next ready point (as Ray Tune's trials
  do), so one score is never counted twice in the ranking.
  Checkpoints are immutable, so a copy is the same checkpoint id; nothing is duplicated.
* A segment that raises `FloatingPointError` or returns a non-finite score leaves the
  member on its previous checkpoint with score NaN, the worst, so its next decision
  replaces it by exploit. Any other exception stops the population and is re-raised
  (the events written so far let a later run resume).
* A segment that raises `MemberFailed` (its worker died, and so did the retry: see
  `actors.ActorTrainable`) ends that member: it is marked ``failed`` with the cause, keeps
  its last checkpoint and score (others may still copy them), and the rest of the
  population trains on. The best member is a member that did not fail, while there is one.
* A member is finished when its step reaches ``steps``; the run ends when all are.

Every decision is an `Event`, handed to ``on_event`` as it happens (the store writes
them as ``population_events`` rows). `fold` rebuilds every member's state from events
alone, which is how a killed run resumes from its latest checkpoints and how a member's
schedule is read back.

Random numbers: a member's decision at a step draws from ``decision_rng(seed, member,
step)``. With ``parallel=1`` segments run in submission order, so a run is exactly
reproducible — also across a kill: a resumed run queues its members in the order of
their latest events, the order they were queued in before — and with more workers the
decisions are reproducible given the scores seen.
"""
from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from flowopt.spec import Domain

from .policy import Mode, PbtConfig, badness, decision_rng, exploit, explore, initial_params

Params = Mapping[str, Any]
Schedule = tuple[tuple[int, Params], ...]  # (step from which they apply, params)


class Trainable(Protocol):
    """What PBT trains. States are opaque values and must never be mutated once returned."""

    def start(self, member: int, params: Params) -> Any:
        """The untrained state (weights at step 0) of `member`."""

    def train(self, state: Any, params: Params, steps: int) -> tuple[Any, float]:
        """Train `steps` more steps from `state` with `params`; return the new state and its score."""


class MemberFailed(RuntimeError):
    """Raised by `Trainable.train` when a member cannot go on (not when it diverges)."""


class Checkpoints(Protocol):
    """Where states live between segments; ids are what events record and copies share."""

    def save(self, member: int, step: int, state: Any) -> str: ...

    def load(self, checkpoint_id: str) -> Any: ...


class MemoryCheckpoints:
    """Checkpoints kept in process: ids are ``"member:step:n"``, states held by reference."""

    def __init__(self) -> None:
        self._states: dict[str, Any] = {}
        self._lock = threading.Lock()

    def save(self, member: int, step: int, state: Any) -> str:
        with self._lock:
            checkpoint_id = f"{member}:{step}:{len(self._states)}"
            self._states[checkpoint_id] = state
        return checkpoint_id

    def load(self, checkpoint_id: str) -> Any:
        return self._states[checkpoint_id]


@dataclass(frozen=True)
class Event:
    """One population decision (the ``population_events`` row without its run/node ids).

    ``event``: ``start`` (initial params), ``keep`` (ready, kept its own weights),
    ``exploit`` (ready and copied ``from_member``: ``new_params`` and the checkpoint are
    the source's; ``step`` and ``score`` are the member's own before the copy),
    ``explore`` (right after an exploit: source params → perturbed; ``step`` is the
    copied weights' step, where the member carries on), ``finish`` (the last step).
    """

    member: int
    step: int
    event: str
    new_params: Params
    old_params: Params | None = None
    from_member: int | None = None
    score: float | None = None
    from_score: float | None = None
    checkpoint_id: str | None = None


@dataclass(frozen=True)
class Member:
    """A member between segments: its step, params, last score, checkpoint and schedule.

    ``schedule`` is the history of the *weights* it holds: which params trained them from
    which step, following copies back to ``origin``, the member whose initial weights
    they started from. Training ``origin``'s initial state along ``schedule`` to ``step``
    reproduces the checkpoint (this is replay).
    """

    member: int
    step: int
    params: Params
    score: float | None = None
    checkpoint_id: str | None = None
    origin: int = 0
    schedule: Schedule = ()
    finished: bool = False
    failed: str | None = None  # why it stopped before `steps` (MemberFailed's message)


@dataclass(frozen=True)
class Result:
    members: tuple[Member, ...]
    events: tuple[Event, ...]
    best: Member
    steps_trained: int  # training steps actually run (copies make it differ from population × steps)


def fold(events: Iterable[Event]) -> dict[int, Member]:
    """Every member's latest state, rebuilt from its events in order (resume and queries)."""
    members: dict[int, Member] = {}
    for e in events:
        params = dict(e.new_params)
        if e.event == "start":
            members[e.member] = Member(e.member, e.step, params, origin=e.member,
                                       schedule=((0, params),))
            continue
        current = members[e.member]
        if e.event == "exploit":
            source = members[e.from_member]  # the source's state when it was copied
            # keeps its own score (a copy of finished weights is settled by its finish event)
            members[e.member] = replace(current, step=source.step, params=params,
                                        score=e.score, checkpoint_id=e.checkpoint_id,
                                        schedule=_history_at(source, source.step),
                                        origin=source.origin)
        elif e.event == "explore":
            members[e.member] = replace(current, step=e.step, params=params,
                                        schedule=_append(current.schedule, e.step, params))
        else:  # keep, finish
            members[e.member] = replace(current, step=e.step, score=e.score,
                                        checkpoint_id=e.checkpoint_id,
                                        finished=e.event == "finish")
    return members


def settled(events: Sequence[Event]) -> list[Event]:
    """The events of a killed run that a resumed one continues from: all of them, less a
    last ``exploit`` whose ``explore`` was never written (the controller emits the two
    together, so only the very last event can be one). Without it the member is back
    before that decision: it trains the segment again — same score, it is deterministic —
    and decides again, as the run that was killed would have."""
    events = list(events)
    return events[:-1] if events and events[-1].event == "exploit" else events


def _history_at(member: Member, step: int) -> Schedule:
    return tuple((s, p) for s, p in member.schedule if s < step) or member.schedule[:1]


def _append(schedule: Schedule, step: int, params: Params) -> Schedule:
    kept = tuple((s, p) for s, p in schedule if s < step)
    return kept + ((step, dict(params)),)


class Population:
    """Runs PBT over a `Trainable` (see the module docstring for the policy)."""

    def __init__(self, trainable: Trainable, space: Mapping[str, Domain], config: PbtConfig, *,
                 steps: int, mode: Mode = "max", seed: int = 0, parallel: int = 1,
                 checkpoints: Checkpoints | None = None,
                 initial: Sequence[Params] | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        if initial is not None and len(initial) != config.population:
            raise ValueError(f"{len(initial)} initial param sets for a population of "
                             f"{config.population}")
        self.trainable, self.space, self.config = trainable, dict(space), config
        self.steps, self.mode, self.seed, self.parallel = steps, mode, seed, parallel
        self.checkpoints = checkpoints if checkpoints is not None else MemoryCheckpoints()
        self.initial = initial
        self.on_event = on_event
        self.events: list[Event] = []
        self.steps_trained = 0

    # -- decisions (controller thread only) -----------------------------------------------
    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _initial_params(self, member: int) -> dict[str, Any]:
        if self.initial is not None:
            return dict(self.initial[member])
        return initial_params(self.space, self.seed, member)

    def _next_ready(self, step: int) -> int:
        return min(max(step + self.config.interval, self.config.burn_in), self.steps)

    def _decide(self, members: dict[int, Member], m: Member) -> Member:
        """A ready member: keep its weights, or exploit a better one and explore."""
        if m.step >= self.steps:
            self._emit(Event(m.member, m.step, "finish", m.params, score=m.score,
                             checkpoint_id=m.checkpoint_id))
            return replace(m, finished=True)
        scores = {k: v.score for k, v in members.items()}
        rng = decision_rng(self.seed, m.member, m.step)
        source_id = exploit(scores, m.member, self.config, mode=self.mode, rng=rng)
        if source_id is None:
            self._emit(Event(m.member, m.step, "keep", m.params, score=m.score,
                             checkpoint_id=m.checkpoint_id))
            return m
        source = members[source_id]
        new_params = explore(source.params, self.space, self.config, rng)
        self._emit(Event(m.member, m.step, "exploit", source.params, old_params=m.params,
                         from_member=source_id, score=m.score, from_score=source.score,
                         checkpoint_id=source.checkpoint_id))
        self._emit(Event(m.member, source.step, "explore", new_params,
                         old_params=source.params, from_member=source_id,
                         checkpoint_id=source.checkpoint_id))
        # The copy keeps its own last score until it reports again (as Ray Tune's trials
        # do): taking the source's would count one (often lucky) score twice, and with
        # decisions seeded by (member, step) the population could cycle for ever — every
        # member at step s copying a copy of the best checkpoint of step s − interval.
        own = source.score if source.step >= self.steps else m.score
        copied = replace(m, step=source.step, params=new_params, score=own,
                         checkpoint_id=source.checkpoint_id, origin=source.origin,
                         schedule=_append(_history_at(source, source.step), source.step,
                                          new_params))
        return self._decide(members, copied) if copied.step >= self.steps else copied

    # -- segments (worker threads) --------------------------------------------------------
    def _segment(self, m: Member) -> tuple[Member, int]:
        state = (self.checkpoints.load(m.checkpoint_id) if m.checkpoint_id is not None
                 else self.trainable.start(m.origin, m.params))
        target = self._next_ready(m.step)
        try:
            state, score = self.trainable.train(state, m.params, target - m.step)
            score = float(score)
        except FloatingPointError:
            score = math.nan
        if not math.isfinite(score):  # diverged: keep the last good weights, rank worst
            return replace(m, step=target, score=math.nan), target - m.step
        checkpoint_id = self.checkpoints.save(m.member, target, state)
        return replace(m, step=target, score=score, checkpoint_id=checkpoint_id), target - m.step

    # -- the loop -------------------------------------------------------------------------
    def run(self, resume: Iterable[Event] = ()) -> Result:
        """Train the population to ``steps``; `resume` = events of an interrupted run."""
        previous = settled(list(resume))
        self.events.extend(previous)
        members = fold(previous)
        for k in range(self.config.population):
            if k not in members:
                params = self._initial_params(k)
                self._emit(Event(k, 0, "start", params))
                members[k] = fold([self.events[-1]])[k]
        pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="pbt")
        running: dict[Future, tuple[int, int]] = {}  # future -> (submission number, member)
        submitted = itertools.count()
        # Members go back to work in the order their segments were queued in — the order of
        # their latest decisions — not in index order: with one worker that order decides
        # which scores each later decision sees, so a resumed run decides as if never killed.
        latest = {e.member: i for i, e in enumerate(self.events)}
        try:
            for k in sorted(members, key=lambda k: (latest.get(k, -1), k)):
                if not members[k].finished:
                    running[pool.submit(self._segment, members[k])] = (next(submitted), k)
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                # in submission order: with one worker that is completion order, so a run
                # does not depend on how many segments finished before the controller woke
                for future in sorted(done, key=lambda f: running[f]):
                    _, k = running.pop(future)
                    try:
                        member, trained = future.result()
                    except MemberFailed as exc:  # the others train on
                        members[k] = replace(members[k], finished=True, failed=str(exc))
                        continue
                    self.steps_trained += trained
                    members[k] = self._decide({**members, k: member}, member)
                    if not members[k].finished:
                        running[pool.submit(self._segment, members[k])] = (next(submitted), k)
        finally:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True)
        ordered = tuple(members[k] for k in sorted(members))
        best = min(ordered, key=lambda m: (m.failed is not None, badness(m.score, self.mode),
                                           m.member))
        return Result(ordered, tuple(self.events), best, self.steps_trained)


def replay(trainable: Trainable, member: Member, steps: int | None = None) -> tuple[Any, float]:
    """Train ``member.origin``'s initial state along ``member.schedule``, from scratch.

    Returns the final state and score; for a deterministic `Trainable` they equal the
    member's own checkpoint and score.
    """
    end = member.step if steps is None else steps
    schedule = list(member.schedule)
    state = trainable.start(member.origin, schedule[0][1])
    score = math.nan
    for i, (start, params) in enumerate(schedule):
        stop = schedule[i + 1][0] if i + 1 < len(schedule) else end
        if stop > start:
            state, score = trainable.train(state, params, stop - start)
    return state, float(score)
