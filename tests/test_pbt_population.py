"""The asynchronous PBT controller, with fake trainables and the paper's toy problem."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from flowopt.nodes.tuner.pbt.policy import PbtConfig
from flowopt.nodes.tuner.pbt.population import (MemberFailed, MemoryCheckpoints, Population,
                                                fold, replay)
from flowopt.spec import Domain


import pbt_support as SUPPORT  # noqa: E402 - registered by conftest.py

PAPER_H, ToyTrainable, q = SUPPORT.PAPER_H, SUPPORT.ToyTrainable, SUPPORT.q
LR = {"lr": Domain(low=1e-3, high=1.0, log=True)}


class Counter:
    """State = (member it started as, steps trained); score = lr-weighted progress."""

    def __init__(self, fail_above: float | None = None) -> None:
        self.fail_above = fail_above
        self.calls: list[tuple[int, int, int]] = []  # (origin, step at start, steps)
        self.lock = threading.Lock()

    def start(self, member, params):
        return (member, 0, 0.0)

    def train(self, state, params, steps):
        origin, step, total = state
        with self.lock:
            self.calls.append((origin, step, steps))
        if self.fail_above is not None and params["lr"] > self.fail_above:
            raise FloatingPointError("diverged")
        total = total + steps * params["lr"]
        return (origin, step + steps, total), total


def test_a_slow_member_does_not_stall_the_others():
    done = {1: threading.Event(), 2: threading.Event()}
    waited = {}

    class Slow(Counter):
        def train(self, state, params, steps):
            if state[0] == 0 and state[1] == 0:  # member 0's first segment waits for the others
                waited["ok"] = all(e.wait(timeout=20) for e in done.values())
            return super().train(state, params, steps)

    def on_event(event):
        if event.event == "finish" and event.member in done:
            done[event.member].set()

    config = PbtConfig(population=3, interval=10, fraction=0.34, resample_probability=0.0)
    initial = [{"lr": 0.01}, {"lr": 0.5}, {"lr": 0.4}]
    result = Population(Slow(), LR, config, steps=50, parallel=3, initial=initial,
                        on_event=on_event).run()
    assert waited["ok"], "members 1 and 2 could not finish while member 0 was training"
    first_of_0 = next(i for i, e in enumerate(result.events) if e.member == 0 and e.event != "start")
    finished = [e.member for e in result.events[:first_of_0] if e.event == "finish"]
    assert sorted(finished) == [1, 2]
    assert all(m.finished and m.step == 50 for m in result.members)


def test_a_ready_member_in_the_bottom_copies_the_checkpoint_and_params_of_a_top_member():
    config = PbtConfig(population=4, interval=10, fraction=0.25, resample_probability=0.0)
    initial = [{"lr": 0.001}, {"lr": 0.01}, {"lr": 0.1}, {"lr": 0.9}]
    checkpoints = MemoryCheckpoints()
    result = Population(Counter(), LR, config, steps=30, initial=initial,
                        checkpoints=checkpoints).run()
    exploits = [e for e in result.events if e.event == "exploit"]
    assert exploits
    for e in exploits:
        assert e.from_score > e.score
    first = exploits[0]
    source = first.from_member
    assert first.new_params == initial[source] and first.old_params == initial[first.member]
    scored = {e.member: e.score for e in result.events[:result.events.index(first)]
              if e.score is not None}
    assert first.score == min({**scored, first.member: first.score}.values())  # the worst one
    explore = result.events[result.events.index(first) + 1]
    assert explore.event == "explore" and explore.old_params == initial[source]
    copied = checkpoints.load(first.checkpoint_id)
    assert copied[0] == source and copied[1] == explore.step  # the source's weights, at its step
    assert explore.step <= first.step  # async: the source may still be behind
    assert explore.new_params["lr"] in (pytest.approx(initial[source]["lr"] * 0.8),
                                        pytest.approx(min(initial[source]["lr"] * 1.2, 1.0)))


def test_every_member_reaches_the_last_step_and_the_best_is_reported():
    config = PbtConfig(population=4, interval=7, burn_in=10)
    result = Population(Counter(), LR, config, steps=40, seed=3).run()
    assert [m.step for m in result.members] == [40, 40, 40, 40]
    assert result.best.score == max(m.score for m in result.members)
    ready_steps = {e.step for e in result.events if e.event in ("keep", "exploit")}
    assert min(ready_steps) >= 10  # no decision during the burn-in
    assert {e.member for e in result.events if e.event == "finish"} == {0, 1, 2, 3}


def test_a_diverged_member_scores_worst_and_is_replaced_by_exploit():
    config = PbtConfig(population=3, interval=5, fraction=0.34, resample_probability=0.0,
                       factors=(1.0,))
    initial = [{"lr": 0.01}, {"lr": 0.02}, {"lr": 0.8}]
    result = Population(Counter(fail_above=0.5), LR, config, steps=20, initial=initial).run()
    first = next(e for e in result.events if e.member == 2 and e.event != "start")
    assert first.event == "exploit" and math.isnan(first.score)
    assert first.from_member == 1 and first.new_params == {"lr": 0.02}
    assert all(math.isfinite(m.score) for m in result.members)


def test_a_failed_member_stops_with_its_cause_and_the_others_train_on():
    class Dies(Counter):  # member 1's worker dies at its second segment (e.g. a Ray actor)
        def train(self, state, params, steps):
            if state[0] == 1 and state[1] == 10 and params["lr"] == 0.9:
                raise MemberFailed("the Ray actor of slot 0 died (tried 2 times): ActorDiedError")
            return super().train(state, params, steps)

    config = PbtConfig(population=3, interval=10, fraction=0.34, resample_probability=0.0)
    initial = [{"lr": 0.01}, {"lr": 0.9}, {"lr": 0.2}]
    result = Population(Dies(), LR, config, steps=40, initial=initial, parallel=2).run()
    failed = result.members[1]
    assert failed.failed.startswith("the Ray actor of slot 0 died") and failed.step == 10
    assert not any(e.member == 1 and e.event == "finish" for e in result.events)
    assert [m.step for m in result.members if m.member != 1] == [40, 40]
    assert result.best.failed is None  # its score was the best, but it did not finish


def test_one_worker_gives_the_same_run_for_the_same_seed():
    config = PbtConfig(population=4, interval=5)
    a = Population(Counter(), LR, config, steps=30, seed=7).run()
    b = Population(Counter(), LR, config, steps=30, seed=7).run()
    c = Population(Counter(), LR, config, steps=30, seed=8).run()
    assert a.events == b.events and a.events != c.events


def test_folding_the_events_rebuilds_every_members_state():
    config = PbtConfig(population=4, interval=5)
    result = Population(Counter(), LR, config, steps=30, seed=1).run()
    assert tuple(fold(result.events)[k] for k in range(4)) == result.members


def test_a_killed_population_resumes_from_its_latest_checkpoints():
    class Killed(Counter):
        def train(self, state, params, steps):
            if len(self.calls) == 7:
                raise KeyboardInterrupt
            return super().train(state, params, steps)

    config = PbtConfig(population=3, interval=5)
    checkpoints = MemoryCheckpoints()
    written = []
    with pytest.raises(KeyboardInterrupt):
        Population(Killed(), LR, config, steps=30, seed=2, checkpoints=checkpoints,
                   on_event=written.append).run()
    before = fold(written)
    assert 0 < sum(m.step for m in before.values()) < 90
    again = Counter()
    result = Population(again, LR, config, steps=30, seed=2, checkpoints=checkpoints).run(
        resume=written)
    # each member's first segment starts from where it stopped, not from scratch
    assert sorted(step for _, step, _ in again.calls[:3]) == sorted(m.step for m in before.values())
    assert all(m.step == 30 and m.finished for m in result.members)


@pytest.mark.parametrize("seed", range(5))
def test_pbt_beats_either_member_alone_on_the_papers_toy_problem(seed):
    space = {"h0": Domain(low=0, high=1), "h1": Domain(low=0, high=1)}
    config = PbtConfig(population=2, interval=4)
    result = Population(ToyTrainable(), space, config, steps=200, seed=seed,
                        initial=PAPER_H).run()
    alone = [ToyTrainable().train(np.array([0.9, 0.9]), h, 200)[1] for h in PAPER_H]
    assert max(alone) == pytest.approx(1.2 - 0.81, abs=1e-2)  # each h leaves one θᵢ at 0.9
    assert result.best.score > 1.05 > max(alone) + 0.6
    assert q(np.zeros(2)) == 1.2  # the optimum PBT approaches


def test_replaying_the_best_schedule_from_scratch_gives_the_same_result():
    space = {"h0": Domain(low=0, high=1), "h1": Domain(low=0, high=1)}
    result = Population(ToyTrainable(), space, PbtConfig(population=2, interval=4), steps=120,
                        seed=3, initial=PAPER_H).run()
    assert len(result.best.schedule) > 1  # the weights changed hands and params
    state, score = replay(ToyTrainable(), result.best)
    assert score == result.best.score


@pytest.mark.parametrize("kwargs,needle", [({"steps": 0}, "steps"), ({"parallel": 0}, "parallel"),
                                          ({"initial": [{"lr": 0.1}]}, "initial")])
def test_bad_arguments_to_the_controller_are_refused(kwargs, needle):
    args = {"steps": 10, **kwargs}
    with pytest.raises(ValueError, match=needle):
        Population(Counter(), LR, PbtConfig(population=2), **args)


class LuckyPeak:
    """Scores 1.0 only at step 25 and 0.5 everywhere else: one lucky checkpoint."""

    def start(self, member, params):
        return 0

    def train(self, state, params, steps):
        return state + steps, 1.0 if state + steps == 25 else 0.5


def test_a_lucky_checkpoint_does_not_trap_the_population_in_copies_of_itself():
    # Were a copy to take over its source's score, every member at step 50 would rank
    # below the copies of the step-25 peak and copy it again, for ever.
    config = PbtConfig(population=4, interval=25, fraction=0.25)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        result=Population(LuckyPeak(), LR, config, steps=200, seed=0).run()), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert "result" in outcome, "the population never finished"
    result = outcome["result"]
    assert all(m.finished and m.step == 200 for m in result.members)
    assert result.steps_trained <= 2 * 4 * 200


class _Killed(Exception):
    """Stands in for a kill: raised from the event callback, as the process would stop."""


def test_a_resumed_sequential_run_makes_the_decisions_of_an_uninterrupted_one():
    """parallel: 1 is exactly reproducible, so a run killed after any event and resumed from
    its recorded events must end with the same events: members go on in the order they had
    (the order their segments were queued in), not in index order (issue 17, item 13)."""
    space = {"lr": Domain(low=1e-3, high=1.0, log=True)}
    config = PbtConfig(population=4, interval=10, fraction=0.25, resample_probability=0.25)

    def population(checkpoints, on_event=None):
        return Population(Counter(), space, config, steps=60, seed=3, parallel=1,
                          checkpoints=checkpoints, on_event=on_event)

    def decisions(result):
        return [(e.member, e.step, e.event, dict(e.new_params), e.from_member)
                for e in result.events]

    straight = population(MemoryCheckpoints()).run()
    assert len(straight.events) > 30
    for kill_after in range(1, len(straight.events)):  # killed after every event in turn
        checkpoints, recorded = MemoryCheckpoints(), []

        def record_then_die(event):
            recorded.append(event)
            if len(recorded) == kill_after:
                raise _Killed

        with pytest.raises(_Killed):
            population(checkpoints, record_then_die).run()
        resumed = population(checkpoints).run(resume=recorded)
        assert decisions(resumed)[:kill_after - 1] == decisions(straight)[:kill_after - 1]
        assert decisions(resumed) == decisions(straight), f"killed after event {kill_after}"
        assert (resumed.best.params, resumed.best.score) == \
            (straight.best.params, straight.best.score)


def test_a_segment_whose_actor_died_on_every_try_fails_only_that_member():
    from types import SimpleNamespace

    from flowopt.nodes.tuner.pbt.actors import ActorTrainable, Encoded
    from flowopt.ray_actors import WorkerDied

    class DeadGroup:  # what `ActorGroup.call` raises once its retries are spent
        replaced = 2

        def __len__(self):
            return 1

        def call(self, slot, method, *args):
            raise WorkerDied(f"the Ray actor of tuner 'tune' slot {slot} died during "
                             f"'{method}' (tried 2 times): ActorDiedError")

    local = SimpleNamespace(steps=10, live=2, train_seconds=0.0, eval_seconds=0.0)
    trainable = ActorTrainable(DeadGroup(), local)
    with pytest.raises(MemberFailed, match=r"slot 0 died during 'train' \(tried 2 times\)"):
        trainable.train(Encoded(b"a state"), {"lr": 0.1}, 5)  # as the actors return them
    assert trainable._free == {0}  # the slot is free again for the other members
