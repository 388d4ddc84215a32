"""The built-in pruners ``median``, ``asha`` and ``hyperband`` (`flowopt.tuning.pruner`).

Each policy is a pure, deterministic state machine over *events* — no clock, no threads,
no I/O — and its `Pruner.state` is the list of events, so a killed run rebuilds the
exact same state by replaying them (`replay`). `MedianPruner`, `AshaPruner` and
`HyperbandPruner` put a policy behind the contract's protocol (next_report / report →
continue | pause | prune / promote / ended / rung / state) and are registered under
their ``name``. The resource is training steps. Events:

* ``add(number)`` — a new trial enters; `first_stop(number)` is the step it trains to;
* ``issue(number, until)`` — a job was handed out: the trial trains on to step `until`
  (a promoted or continued trial; a new trial's first job is issued by `add`);
* ``report(number, step, value)`` — the trial's objective after `step` steps;
* ``fail(number)`` — the trial failed (e.g. its loss diverged): it ends, never promoted;
* ``drain()`` — no new trial will come (the trial budget is spent): ASHA's rungs then
  promote ⌈n_k/η⌉ instead of ⌊n_k/η⌋, so the steps the missing new trials would have
  had go to the best trials that are left;
* ``finish(number)`` — a paused trial trains to the end regardless of the policy (a
  search that ended with no trial trained in full finishes its `best_paused`).

After each report the loop asks `next_job()`: ``(number, until)`` to resume a trial, or
None (start a new trial if the budget allows; when nothing runs either, the search is
over and every trial still `paused` ends ``pruned``). The loop gives jobs to free
workers, so the policies are asynchronous by construction: a decision only reads
reports already made, and a trial is handed out at most once per rung, however many
trials run at once (tested against a simple reference under random interleavings).

Policies (``mode`` max or min; a NaN objective is the worst value):

* ``asha`` — asynchronous successive halving, promotion-based (Li et al. 2018,
  "A System for Massively Parallel Hyperparameter Tuning", Algorithm 2). Rungs at
  ``min_steps · η^k`` below the training steps, and the training steps themselves as
  the top rung. ``next_job`` scans the rungs from the top down and promotes the first
  trial among the best ``⌊n_k / η⌋`` of rung k (ties: the lower number) that was not
  promoted yet (``⌈n_k / η⌉`` once draining, see `drain`). A trial not promoted is
  *paused*, not killed: its checkpoint is kept and a later promotion resumes it from
  there.
* ``hyperband`` — brackets of ASHA (Li et al. 2018, §3.3, asynchronous Hyperband):
  bracket b starts trials at ``min_steps · η^b``; trials go to brackets in a fixed
  cycle with each bracket's share of Hyperband's trial counts
  ``n_b = ⌈(B / (s+1)) · η^s⌉`` (``s`` = the bracket's promotions, ``B`` = brackets),
  so a trial's bracket is a function of its number (no state to lose). Promotions are
  decided within a bracket only.
* ``median`` — Optuna's ``MedianPruner``: a trial reports every ``min_steps`` steps; at
  a report step t ≥ ``warmup_steps``, once ``startup_trials`` trials completed, it is
  pruned if its best value so far is worse than the median of the values the
  completed trials reported at t (no completed value at t: it goes on). A pruned trial
  ends for good; others continue at once.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Iterable, Mapping

import pydantic
from pydantic import Field

from .pruner import register_pruner


# -- config (the ``pruner:`` mapping of a sampling tuner's ``with:``, besides ``name``) ------
class _Base(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    min_steps: Annotated[int, Field(ge=1)]


class AshaConfig(_Base):
    """``min_steps`` (the first rung), ``reduction_factor`` η (3, as in the paper and Ray)."""

    reduction_factor: Annotated[int, Field(ge=2)] = 3


class HyperbandConfig(AshaConfig):
    """As ``asha``; the brackets start at ``min_steps · η^b``."""


class MedianConfig(_Base):
    """``min_steps`` (steps between reports), ``startup_trials`` (5) and
    ``warmup_steps`` (0), Optuna's defaults."""

    startup_trials: Annotated[int, Field(ge=0)] = 5
    warmup_steps: Annotated[int, Field(ge=0)] = 0


def check_steps(config: Any, steps: int) -> str | None:
    """Why `config` cannot prune a training of `steps` steps (None: it can)."""
    if config.min_steps >= steps:
        return (f"pruner min_steps ({config.min_steps}) must be below the training steps "
                f"({steps})")
    return None


# -- the policies ---------------------------------------------------------------------------
def _key(value: float, mode: str) -> float:
    """Sort key, smaller is better; NaN last."""
    if value is None or math.isnan(value):
        return math.inf
    return -value if mode == "max" else value


def rungs(min_steps: int, eta: int, steps: int) -> tuple[int, ...]:
    """``min_steps · η^k`` below `steps`, then `steps`."""
    points, step = [], min_steps
    while step < steps:
        points.append(step)
        step *= eta
    return (*points, steps)


@dataclass
class _Bracket:
    """One successive-halving ladder: rung steps, reports and promotions per rung."""

    steps: tuple[int, ...]
    eta: int
    scores: list[dict[int, float]] = field(default_factory=list)
    promoted: list[set[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = [{} for _ in self.steps]
        self.promoted = [set() for _ in self.steps]

    def candidate(self, mode: str, failed: set[int],
                  draining: bool = False) -> tuple[int, int] | None:
        """(trial, rung it is promoted to), scanning from the top rung down; ``draining``
        rounds each rung's quota up instead of down."""
        for k in range(len(self.steps) - 2, -1, -1):
            scores = self.scores[k]
            quota = -(-len(scores) // self.eta) if draining else len(scores) // self.eta
            if quota == 0:
                continue
            best = sorted(scores, key=lambda n: (_key(scores[n], mode), n))[:quota]
            for number in best:
                if number not in self.promoted[k] and number not in failed:
                    return number, k + 1
        return None


class Policy:
    """The event interface every policy has (see the module docstring)."""

    name = ""

    def __init__(self, config: Any, *, steps: int, mode: str):
        self.config, self.steps, self.mode = config, steps, mode
        self.running: dict[int, int] = {}  # trial -> the step its current job trains to
        self.reached: dict[int, int] = {}  # trial -> last reported step
        self.values: dict[int, dict[int, float]] = {}  # trial -> step -> value
        self.pruned: set[int] = set()  # ended for good (median)
        self.failed: set[int] = set()
        self.completed: set[int] = set()  # reached the training steps
        self.draining = False  # no new trials will come (see `drain`)
        self.events: list[tuple] = []

    # -- events (each appended to `events`, which `replay` feeds back) -------------
    def add(self, number: int) -> int:
        self.events.append(("add", number))
        self._add(number)
        until = self.first_stop(number)
        self.running[number] = until
        return until

    def issue(self, number: int, until: int) -> None:
        self.events.append(("issue", number, until))
        self._issue(number, until)
        self.running[number] = until

    def report(self, number: int, step: int, value: float) -> None:
        self.events.append(("report", number, step, value))
        self.running.pop(number, None)
        self.reached[number] = step
        self.values.setdefault(number, {})[step] = value
        if step >= self.steps:
            self.completed.add(number)
        self._report(number, step, value)

    def drain(self) -> None:
        """No new trial will come: ASHA then promotes the best ⌈n_k/η⌉ of each rung
        instead of ⌊n_k/η⌋ — the trials that are left get the steps new trials would
        have had."""
        if not self.draining:
            self.events.append(("drain",))
            self.draining = True

    def finish(self, number: int) -> None:
        """Train paused trial `number` to the end, outside the policy (the loop does this
        when a search ends with no trial trained in full)."""
        self.events.append(("finish", number))
        self.running[number] = self.steps

    def best_paused(self) -> int | None:
        """The paused trial that got furthest, best objective there (ties: lower number)."""
        paused = self.paused()
        if not paused:
            return None
        return min(paused, key=lambda n: (-self.reached[n],
                                          _key(self.values[n][self.reached[n]], self.mode), n))

    def fail(self, number: int) -> None:
        self.events.append(("fail", number))
        self.running.pop(number, None)
        self.failed.add(number)
        self._fail(number)

    # -- questions ------------------------------------------------------------------
    def paused(self) -> list[int]:
        """Trials that stopped short of the training steps and may still resume."""
        return sorted(n for n in self.reached if n not in self.running and n not in self.failed
                      and n not in self.completed and n not in self.pruned)

    def rung(self, number: int) -> int | None:
        """The index of the last rung `number` reported at (None before its first)."""
        raise NotImplementedError

    def first_stop(self, number: int) -> int:
        raise NotImplementedError

    def next_job(self) -> tuple[int, int] | None:
        raise NotImplementedError

    def _add(self, number: int) -> None:
        pass

    def _issue(self, number: int, until: int) -> None:
        pass

    def _report(self, number: int, step: int, value: float) -> None:
        pass

    def _fail(self, number: int) -> None:
        pass


class Asha(Policy):
    """Promotion-based ASHA; `Hyperband` is several of its brackets."""

    name = "asha"

    def __init__(self, config: Any, *, steps: int, mode: str):
        super().__init__(config, steps=steps, mode=mode)
        self.brackets = [_Bracket(rungs(m, config.reduction_factor, steps), config.reduction_factor)
                         for m in self._bracket_starts()]
        self.bracket_of: dict[int, int] = {}

    def _bracket_starts(self) -> list[int]:
        return [self.config.min_steps]

    def bracket(self, number: int) -> int:
        return 0

    def first_stop(self, number: int) -> int:
        return self.brackets[self.bracket(number)].steps[0]

    def _add(self, number: int) -> None:
        self.bracket_of[number] = self.bracket(number)

    def _issue(self, number: int, until: int) -> None:
        b = self.brackets[self.bracket_of[number]]
        b.promoted[b.steps.index(until) - 1].add(number)

    def _report(self, number: int, step: int, value: float) -> None:
        b = self.brackets[self.bracket_of[number]]
        b.scores[b.steps.index(step)][number] = value

    def rung(self, number: int) -> int | None:
        step = self.reached.get(number)
        if step is None:
            return None
        return self.brackets[self.bracket_of[number]].steps.index(step)

    def next_job(self) -> tuple[int, int] | None:
        found: list[tuple[int, int, int]] = []
        for index, b in enumerate(self.brackets):
            job = b.candidate(self.mode, self.failed, self.draining)
            if job is not None:
                found.append((-job[1], index, job[0]))
        if not found:
            return None
        rung, index, number = min(found)  # the highest rung first, then the bracket order
        return number, self.brackets[index].steps[-rung]


class Hyperband(Asha):
    """Brackets of ASHA (module docstring)."""

    name = "hyperband"

    def _bracket_starts(self) -> list[int]:
        eta, start, starts = self.config.reduction_factor, self.config.min_steps, []
        while start < self.steps:
            starts.append(start)
            start *= eta
        return starts

    def _cycle(self) -> list[int]:
        count = len(self.brackets)
        cycle: list[int] = []
        for b, bracket in enumerate(self.brackets):
            s = len(bracket.steps) - 1  # promotions in this bracket
            cycle.extend([b] * math.ceil(count / (s + 1) * self.config.reduction_factor ** s))
        return cycle

    def bracket(self, number: int) -> int:
        cycle = getattr(self, "_cycle_cache", None)
        if cycle is None:
            cycle = self._cycle_cache = self._cycle()
        return cycle[number % len(cycle)]


class Median(Policy):
    """Optuna's MedianPruner semantics over reports every ``min_steps`` steps."""

    name = "median"

    def __init__(self, config: Any, *, steps: int, mode: str):
        super().__init__(config, steps=steps, mode=mode)
        self.queue: list[tuple[int, int]] = []  # continuations, in report order

    def points(self) -> tuple[int, ...]:
        m = self.config.min_steps
        return (*range(m, self.steps, m), self.steps)

    def first_stop(self, number: int) -> int:
        return self.points()[0]

    def rung(self, number: int) -> int | None:
        step = self.reached.get(number)
        return None if step is None else self.points().index(step)

    def _issue(self, number: int, until: int) -> None:
        self.queue = [job for job in self.queue if job[0] != number]

    def _fail(self, number: int) -> None:
        self.queue = [job for job in self.queue if job[0] != number]

    def _report(self, number: int, step: int, value: float) -> None:
        if step >= self.steps:
            return
        if self.should_prune(number, step):
            self.pruned.add(number)
            return
        points = self.points()
        self.queue.append((number, points[points.index(step) + 1]))

    def should_prune(self, number: int, step: int) -> bool:
        config = self.config
        if len(self.completed) < max(1, config.startup_trials) or step < config.warmup_steps:
            return False
        own = list(self.values[number].values())
        best = min(own, key=lambda v: _key(v, self.mode))
        if best is None or math.isnan(best):
            return True
        others = [self.values[n][step] for n in self.completed
                  if step in self.values[n] and not math.isnan(self.values[n][step])]
        if not others:
            return False
        median = statistics.median(others)
        return best < median if self.mode == "max" else best > median

    def next_job(self) -> tuple[int, int] | None:
        return self.queue[0] if self.queue else None


POLICIES: dict[str, type[Policy]] = {"asha": Asha, "hyperband": Hyperband, "median": Median}


def make_pruner(name: str, config: Any, *, steps: int, mode: str) -> Policy:
    return POLICIES[name](config, steps=steps, mode=mode)


def replay(pruner: Policy, events: Iterable[Any]) -> Policy:
    """Feed stored events back (a resumed run); returns `pruner` in the state they made."""
    for event in events:
        kind, *args = event
        getattr(pruner, kind)(*args)
    return pruner


# -- the contract's protocol (flowopt.tuning.pruner.Pruner) over a policy -------------------
class _Registered:
    """A policy behind `flowopt.tuning.pruner.Pruner` (see the module docstring).

    Decisions: a report at the training steps, or one the policy lets go on at once (its
    next job is this trial), is ``continue``; a median trial below the median is
    ``prune``; anything else ``pause``. `promote` hands out every job the policy has for a
    free worker, in the policy's order; ``draining`` (no new trials will come) with
    nothing running and no trial trained in full also finishes the policy's
    `best_paused` trial, so the tuner ends with a trained result.
    """

    Config: ClassVar[type[pydantic.BaseModel]]
    policy: ClassVar[type[Policy]]

    def __init__(self, config: Any, *, mode: str, max_steps: int, seed: int = 0,
                 state: Mapping[str, Any] | None = None):
        self.policy_state = self.policy(config, steps=max_steps, mode=mode)
        if state:
            replay(self.policy_state, [tuple(e) for e in state.get("events", ())])

    @classmethod
    def check(cls, config: Any, max_steps: int) -> None:
        problem = check_steps(config, max_steps)
        if problem is not None:
            raise ValueError(problem)

    def next_report(self, trial: int, step: int) -> int | None:
        p = self.policy_state
        if trial in p.running:
            return p.running[trial]
        if step == 0 and trial not in p.reached:
            return p.add(trial)
        return None

    def report(self, trial: int, step: int, value: float) -> str:
        p = self.policy_state
        p.report(trial, step, value)
        if step >= p.steps:
            return "continue"
        if trial in p.pruned:
            return "prune"
        job = p.next_job()
        if job is not None and job[0] == trial:
            p.issue(*job)
            return "continue"
        return "pause"

    def promote(self, draining: bool = False) -> list[int]:
        p, named = self.policy_state, []
        if draining:
            p.drain()
        while (job := p.next_job()) is not None:
            p.issue(*job)
            named.append(job[0])
        if not named and draining and not p.running and not p.completed:
            best = p.best_paused()
            if best is not None:
                p.finish(best)
                named.append(best)
        return named

    def ended(self, trial: int, status: str) -> None:
        if status == "failed":
            self.policy_state.fail(trial)

    def rung(self, trial: int) -> int | None:
        return self.policy_state.rung(trial)

    def state(self) -> Mapping[str, Any]:
        return {"events": [list(e) for e in self.policy_state.events]}


class AshaPruner(_Registered):
    """``asha``: asynchronous successive halving, promotion-based (Li et al. 2018)."""

    Config, policy = AshaConfig, Asha


class HyperbandPruner(_Registered):
    """``hyperband``: brackets of ASHA (Li et al. 2018, asynchronous Hyperband)."""

    Config, policy = HyperbandConfig, Hyperband


class MedianPruner(_Registered):
    """``median``: Optuna's MedianPruner rule at every ``min_steps`` steps."""

    Config, policy = MedianConfig, Median


for _name, _cls in (("asha", AshaPruner), ("hyperband", HyperbandPruner),
                    ("median", MedianPruner)):
    register_pruner(_name, _cls)


__all__ = ["Asha", "AshaConfig", "AshaPruner", "Hyperband", "HyperbandConfig",
           "HyperbandPruner", "Median", "MedianConfig", "MedianPruner", "POLICIES", "Policy",
           "check_steps", "make_pruner", "replay", "rungs"]
