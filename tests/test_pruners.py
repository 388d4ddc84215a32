"""Early-stopping policies (flowopt.tuning.pruners), pure: no training, no store.

Each property is checked against a small reference written from the papers' definitions
under random values and random finishing orders of parallel jobs.
"""
from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowopt.tuning.pruners import (Asha, AshaConfig, Hyperband, HyperbandConfig, Median,
                                    MedianConfig, make_pruner, replay, rungs)




def simulate(pruner, value, trials: int, parallel: int, rng: random.Random, on_issue=None):
    """The tuning loop's job logic: free slots take `next_job`, else a new trial; jobs
    finish in a random order (parallel workers)."""
    running: list[tuple[int, int]] = []
    started = 0
    while True:
        while len(running) < parallel:
            job = pruner.next_job()
            if job is not None:
                if on_issue is not None:
                    on_issue(pruner, *job)
                pruner.issue(*job)
                running.append(job)
            elif started < trials:
                running.append((started, pruner.add(started)))
                started += 1
            else:
                break
        if not running:
            return pruner
        number, until = running.pop(rng.randrange(len(running)))
        pruner.report(number, until, value(number, until))


def curve(base):
    """Objective of trial n after `step` steps: rises with steps, ordered by base[n]."""
    return lambda n, step: base[n] + math.log1p(step) / 10


values = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40)


def test_rungs_are_geometric_with_the_training_steps_on_top():
    assert rungs(25, 3, 400) == (25, 75, 225, 400)
    assert rungs(10, 2, 80) == (10, 20, 40, 80)
    assert rungs(1, 4, 2) == (1, 2)


@settings(max_examples=60, deadline=None)
@given(base=values, parallel=st.integers(1, 4), eta=st.integers(2, 4),
       mode=st.sampled_from(["max", "min"]), seed=st.integers(0, 10**6))
def test_asha_promotes_only_the_best_fraction_of_a_rung_once(base, parallel, eta, mode, seed):
    steps = rungs(5, eta, 100)
    promoted: set[tuple[int, int]] = set()
    sign = -1 if mode == "max" else 1

    def check(pruner, number, until):
        k = steps.index(until) - 1
        scores = pruner.brackets[0].scores[k]
        # reference: the ⌊n/η⌋ best of the rung, as the paper's get_job defines them
        top = sorted(scores, key=lambda n: (sign * scores[n], n))[:len(scores) // eta]
        assert number in top
        assert (number, k) not in promoted
        # nothing promotable on a higher rung was passed over
        for j in range(k + 1, len(steps) - 1):
            higher = pruner.brackets[0].scores[j]
            best = sorted(higher, key=lambda n: (sign * higher[n], n))[:len(higher) // eta]
            assert all((n, j) in promoted for n in best)
        promoted.add((number, k))

    pruner = simulate(Asha(AshaConfig(min_steps=5, reduction_factor=eta),
                           steps=100, mode=mode), curve(base), len(base), parallel,
                      random.Random(seed), on_issue=check)
    # every rung above the first holds exactly the promoted trials of the one below
    for k in range(1, len(steps)):
        assert set(pruner.brackets[0].scores[k]) == {n for n, j in promoted if j == k - 1}
    # at the end nothing is promotable: the ⌊n_k/η⌋ best of each rung were all promoted
    # (asynchronously a few more may have been: a trial promoted while it was among the
    # best of the reports so far stays promoted, as in the paper)
    for k in range(len(steps) - 1):
        scores = pruner.brackets[0].scores[k]
        top = sorted(scores, key=lambda n: (sign * scores[n], n))[:len(scores) // eta]
        assert set(top) <= pruner.brackets[0].promoted[k]
    # every trial ran; the ones short of the top are paused, the others completed
    assert set(pruner.reached) == set(range(len(base)))
    assert set(pruner.paused()) | pruner.completed == set(range(len(base)))


@settings(max_examples=40, deadline=None)
@given(base=st.lists(st.floats(0, 1, allow_nan=False), min_size=9, max_size=40,
                     unique=True))
def test_asha_sequential_keeps_the_best_trial_to_the_top_rung(base):
    """One worker, objective ordered like the trials' bases at every step: the best trial
    of the first ⌊n/η⌋·η is always promoted, so the overall best of those reaches the top."""
    pruner = simulate(Asha(AshaConfig(min_steps=4, reduction_factor=3),
                           steps=36, mode="max"), curve(base), len(base), 1, random.Random(0))
    best = max(range(len(base)), key=base.__getitem__)
    assert best in pruner.completed or pruner.rung(best) == max(
        pruner.rung(n) for n in pruner.reached)
    assert pruner.completed  # at least 9 trials: something reached the top rung (4,12,36)


@settings(max_examples=40, deadline=None)
@given(base=values, parallel=st.integers(1, 4), seed=st.integers(0, 10**6),
       name=st.sampled_from(["asha", "hyperband", "median"]), cut=st.floats(0, 1))
def test_replaying_the_events_rebuilds_the_state(base, parallel, seed, name, cut):
    """What a restarted run does: the stored events, replayed into a fresh pruner, give the
    same rungs, paused trials and next decision as the pruner that made them."""
    config = {"asha": AshaConfig(min_steps=5),
              "hyperband": HyperbandConfig(min_steps=5),
              "median": MedianConfig(min_steps=20, startup_trials=2)}[name]
    full = simulate(make_pruner(name, config, steps=100, mode="max"), curve(base), len(base),
                    parallel, random.Random(seed))
    events = full.events[:int(cut * len(full.events))]
    first = replay(make_pruner(name, config, steps=100, mode="max"), events)
    again = replay(make_pruner(name, config, steps=100, mode="max"), first.events)
    for a, b in ((first, again),):
        assert a.next_job() == b.next_job()
        assert a.paused() == b.paused() and a.running == b.running
        assert a.completed == b.completed and a.pruned == b.pruned
        assert {n: a.rung(n) for n in a.reached} == {n: b.rung(n) for n in b.reached}
    if events == full.events:
        assert first.paused() == full.paused() and first.completed == full.completed


def test_hyperband_brackets_share_trials_as_hyperband_counts_them():
    hb = Hyperband(HyperbandConfig(min_steps=25, reduction_factor=3),
                   steps=400, mode="max")
    assert [b.steps for b in hb.brackets] == [(25, 75, 225, 400), (75, 225, 400), (225, 400)]
    cycle = [hb.bracket(n) for n in range(35)]
    # n_b = ceil(B/(s+1) * η^s), B = 3 brackets, s = promotions: 21, 9, 5
    assert [cycle.count(b) for b in range(3)] == [21, 9, 5]
    assert [hb.bracket(n) for n in range(35, 70)] == cycle  # a function of the number
    assert [hb.first_stop(n) for n in (0, 21, 30)] == [25, 75, 225]


@settings(max_examples=40, deadline=None)
@given(base=values, parallel=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_hyperband_promotes_within_a_bracket_only(base, parallel, seed):
    def check(pruner, number, until):
        bracket = pruner.brackets[pruner.bracket_of[number]]
        assert until in bracket.steps[1:]
        k = bracket.steps.index(until) - 1
        scores = bracket.scores[k]
        assert number in sorted(scores, key=lambda n: (-scores[n], n))[:len(scores) // 3]

    pruner = simulate(Hyperband(HyperbandConfig(min_steps=5), steps=100,
                                mode="max"), curve(base), len(base), parallel,
                      random.Random(seed), on_issue=check)
    for n in pruner.reached:
        assert pruner.reached[n] in pruner.brackets[pruner.bracket(n)].steps


def median_reference(history, number, step, startup, warmup, mode):
    """Optuna's MedianPruner.prune, from its documentation: `history` maps finished trials
    to {step: value}; `number`'s own values are in history too."""
    completed = [n for n, v in history.items() if n != number and v.get("done")]
    if len(completed) < max(1, startup) or step < warmup:
        return False
    own = [v for s, v in history[number].items() if s != "done"]
    best = max(own) if mode == "max" else min(own)
    others = [history[n][step] for n in completed if step in history[n]]
    if not others:
        return False
    median = statistics.median(others)
    return best < median if mode == "max" else best > median


@settings(max_examples=60, deadline=None)
@given(table=st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=5, max_size=5),
                      min_size=1, max_size=12),
       startup=st.integers(0, 4), warmup=st.sampled_from([0, 10, 30]),
       mode=st.sampled_from(["max", "min"]))
def test_median_prunes_exactly_when_optunas_rule_says(table, startup, warmup, mode):
    """Trials run one after another (the sequential case Optuna defines); values per
    report step come from `table`."""
    pruner = Median(MedianConfig(min_steps=10, startup_trials=startup,
                                 warmup_steps=warmup), steps=50, mode=mode)
    history: dict[int, dict] = {}
    for number, row in enumerate(table):
        history[number] = {}
        until = pruner.add(number)
        while True:
            value = row[until // 10 - 1]
            history[number][until] = value
            expected = until < 50 and median_reference(history, number, until, startup,
                                                       warmup, mode)
            pruner.report(number, until, value)
            assert (number in pruner.pruned) == expected
            job = pruner.next_job()
            if until == 50 or expected:
                assert job is None
                break
            assert job == (number, until + 10)
            pruner.issue(*job)
            until = job[1]
        history[number]["done"] = until == 50


def test_median_agrees_with_optuna_on_a_study():
    optuna = pytest.importorskip("optuna")
    rng = random.Random(3)
    table = [[rng.random() + s / 10 for s in range(5)] for _ in range(15)]
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3,
                                                                   n_warmup_steps=10))
    ours = Median(MedianConfig(min_steps=10, startup_trials=3, warmup_steps=10),
                  steps=50, mode="max")
    for number, row in enumerate(table):
        trial = study.ask()
        until = ours.add(number)
        pruned_optuna = False
        for index, value in enumerate(row[:-1]):
            step = 10 * (index + 1)
            trial.report(value, step)
            pruned_optuna = trial.should_prune()
            ours.report(number, step, value)
            assert (number in ours.pruned) == pruned_optuna, (number, step)
            if pruned_optuna:
                break
            ours.issue(*ours.next_job())
        if pruned_optuna:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            trial.report(row[-1], 50)
            ours.report(number, 50, row[-1])
            study.tell(trial, row[-1])
    assert ours.pruned  # the table makes some trials prunable: the comparison was not vacuous


# -- the registered pruners, through the contract's protocol ------------------------------------
def drive(pruner, value, trials: int, parallel: int, rng: random.Random, stop_after=None):
    """The pruning loop's use of the protocol (flowopt.tuning.pruning), without training:
    returns the decisions in order; stops early after `stop_after` reports."""
    running: list[tuple[int, int]] = []
    queue: list[tuple[int, int]] = []
    reached: dict[int, int] = {}
    log, started, reports = [], 0, 0
    while True:
        while len(running) < parallel:
            if queue:
                running.append(queue.pop(0))
                continue
            draining = started >= trials
            promoted = pruner.promote(draining)
            if promoted:
                queue.extend((n, pruner.next_report(n, reached[n]) or 100) for n in promoted)
                log.append(("promote", tuple(promoted)))
                continue
            if draining:
                break
            queue.append((started, pruner.next_report(started, 0) or 100))
            started += 1
        if not running or (stop_after is not None and reports >= stop_after):
            return log, (running, queue, reached, started)
        n, step = running.pop(rng.randrange(len(running)))
        decision = pruner.report(n, step, value(n, step))
        reports += 1
        reached[n] = step
        log.append(("report", n, step, decision))
        if step >= 100:
            pruner.ended(n, "succeeded")
        elif decision == "continue":
            queue.insert(0, (n, pruner.next_report(n, step) or 100))


@pytest.mark.parametrize("name,fields", [("asha", {"min_steps": 5}),
                                         ("hyperband", {"min_steps": 5}),
                                         ("median", {"min_steps": 20, "startup_trials": 2})])
@settings(max_examples=25, deadline=None)
@given(base=st.lists(st.floats(0, 1, allow_nan=False), min_size=3, max_size=30),
       parallel=st.integers(1, 3), seed=st.integers(0, 10**6), cut=st.integers(1, 40))
def test_a_pruner_rebuilt_from_its_json_state_decides_as_the_original(
        name, fields, base, parallel, seed, cut):
    """The state a killed run stored (as JSON) gives a pruner that goes on exactly as the
    one that was never stopped."""
    import json

    from flowopt.tuning.pruner import validate_pruner

    cls, config = validate_pruner({"name": name, **fields}, 100)
    original = cls(config, mode="max", max_steps=100, seed=0)
    drive(original, curve(base), len(base), parallel, random.Random(seed), stop_after=cut)
    state = json.loads(json.dumps(original.state()))
    rebuilt = cls(config, mode="max", max_steps=100, seed=0, state=state)
    assert rebuilt.state() == original.state()
    for n in range(len(base)):
        assert rebuilt.rung(n) == original.rung(n)
    assert rebuilt.promote(False) == original.promote(False)


def test_every_pruner_trains_some_trial_in_full_even_with_a_tiny_budget():
    """Three trials cannot fill ASHA's second rung (⌊1/3⌋ = 0): once draining (no new
    trial will come) each rung promotes ⌈n/η⌉, so the best trial goes on to the end, from
    its rung, and the tuner has a trained result."""
    from flowopt.tuning.pruner import validate_pruner

    cls, config = validate_pruner({"name": "asha", "min_steps": 10}, 100)
    pruner = cls(config, mode="max", max_steps=100)
    base = [0.2, 0.9, 0.5]
    log, _ = drive(pruner, curve(base), 3, 1, random.Random(0))
    finished = [e for e in log if e[0] == "report" and e[2] == 100]
    assert [e[1] for e in finished] == [1]  # the best one, resumed from its rung


def test_pruner_fields_are_checked_against_the_training_steps():
    from flowopt.tuning.pruner import validate_pruner

    with pytest.raises(ValueError, match=r"min_steps \(90\) must be below the training steps "
                                         r"\(90\)"):
        validate_pruner({"name": "hyperband", "min_steps": 90}, 90)
    with pytest.raises(ValueError, match="unknown field 'warmup_steps' for pruner 'asha'"):
        validate_pruner({"name": "asha", "min_steps": 9, "warmup_steps": 3}, 90)
