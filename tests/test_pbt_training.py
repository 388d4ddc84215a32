"""PBT on real training: digits MLP members that pause, copy, resume and replay exactly."""
from __future__ import annotations


import pytest

from flowopt.errors import FlowoptError
from flowopt.nodes import data, loss, model
from flowopt.nodes.tuner.pbt.checkpoints import RecorderCheckpoints
from flowopt.nodes.tuner.pbt.policy import PbtConfig
from flowopt.nodes.tuner.pbt.training import TrainerTrainable, check_space, decode, encode
from flowopt.spec import Domain
from flowopt.store import Store
from flowopt.store.population import read_events


import pbt_support as SUPPORT  # noqa: E402 - registered by conftest.py

best_member, replay_best = SUPPORT.best_member, SUPPORT.replay_best
run_population = SUPPORT.run_population
SPACE = {"lr": Domain(low=1e-3, high=0.3, log=True), "weight_decay": Domain(low=1e-6, high=1e-2, log=True)}
STEPS = 60


@pytest.fixture(scope="module")
def digits_task():
    from flowopt.context import Context
    import threading

    ctx = Context(run_id="t", node_id="n", seed=0, device="cpu", cancel=threading.Event(),
                  emit=lambda *a, **k: None, log_metric=lambda *a: None)
    out = data.split.fn(data.digits.fn(), ctx, val_fraction=0.2)
    train, val = out["train"], out["val"]
    net = model.mlp.fn(train, ctx, hidden=[32])
    return net, train, val, loss.cross_entropy.fn()


def trainable(digits_task, **kwargs) -> TrainerTrainable:
    net, train, val, xent = digits_task
    return TrainerTrainable(net, train, val, xent, optimizer="adam", steps=STEPS, batch_size=32,
                            seed=0, **kwargs)


def run(store, digits_task, **kwargs):
    return run_population(store, trainable(digits_task), SPACE,
                          PbtConfig(population=3, interval=15, fraction=0.34), steps=STEPS,
                          encode=encode, decode=decode, seed=4, **kwargs)


def test_a_member_trained_in_segments_equals_one_trained_straight_through(digits_task):
    t = trainable(digits_task)
    params = {"lr": 0.01, "weight_decay": 1e-4}
    state = t.start(0, params)
    for _ in range(4):
        state, pieces = t.train(decode(encode(state)), params, 15)
    straight, whole = t.train(t.start(0, params), params, 60)
    assert pieces == whole
    assert all((state[0][k] == straight[0][k]).all() for k in straight[0])


def test_pbt_on_digits_records_events_and_replays_the_best_member_exactly(digits_task, store_dir):
    store = Store.open(store_dir)
    done = run(store, digits_task)
    assert store.run(done.run_id).run.status == "succeeded"
    events = read_events(store.engine, done.run_id)
    assert {e.event for e in events} >= {"start", "keep", "finish"}
    assert all(e.checkpoint_id for e in events if e.event in ("keep", "finish", "exploit"))
    best = best_member(store, done.run_id)
    assert best == done.result.best and best.score > 0.8
    member, state, score = replay_best(store, done.run_id, trainable(digits_task))
    assert score == best.score
    stored = RecorderCheckpoints(Store.open(store_dir), encode, decode).load(best.checkpoint_id)
    assert all((stored[0][k] == state[0][k]).all() for k in stored[0] if k.startswith("module."))


def test_a_killed_pbt_run_resumes_in_the_same_run_without_retraining_finished_segments(
        digits_task, store_dir):
    class Killed(TrainerTrainable):
        calls = 0

        def train(self, state, params, steps):
            Killed.calls += 1
            if Killed.calls == 4:
                raise KeyboardInterrupt
            return super().train(state, params, steps)

    net, train, val, xent = digits_task
    store = Store.open(store_dir)
    with pytest.raises(KeyboardInterrupt):
        run_population(store, Killed(net, train, val, xent, steps=STEPS, batch_size=32), SPACE,
                       PbtConfig(population=3, interval=15, fraction=0.34), steps=STEPS,
                       encode=encode, decode=decode, seed=4)
    run_id = store.runs()[0].run_id
    assert store.run(run_id).run.status == "interrupted"
    before = read_events(store.engine, run_id)
    resumed_trainable = trainable(digits_task)
    segments = []
    original = resumed_trainable.train
    resumed_trainable.train = lambda s, p, n: segments.append(s[1]["step"]) or original(s, p, n)
    done = run_population(Store.open(store_dir), resumed_trainable, SPACE,
                          PbtConfig(population=3, interval=15, fraction=0.34), steps=STEPS,
                          encode=encode, decode=decode, seed=4, resume=run_id[:10])
    assert done.run_id == run_id and store.run(run_id).run.status == "succeeded"
    assert sorted(segments[:3]) == [15, 15, 15]  # all three first segments were done before the kill
    assert read_events(store.engine, run_id)[:len(before)] == before
    assert all(m.step == STEPS for m in done.result.members)


def test_searching_a_param_training_cannot_change_mid_run_is_refused():
    check_space(["lr", "weight_decay"], "adamw")
    check_space(["momentum"], "sgd")
    check_space(["lr", "betas"], "adam8bit")
    with pytest.raises(FlowoptError, match="searched param 'hidden' cannot change while a member "
                                           "trains .* it can change: lr, betas, weight_decay, schedule"):
        check_space(["lr", "hidden"], "adam")


def test_a_checkpoint_two_members_continue_from_is_not_changed_by_either(digits_task):
    # An exploit makes two members continue from one checkpoint object; torch keeps the
    # restored optimizer moments by reference, so training must not write into it.
    t = trainable(digits_task)
    params = {"lr": 0.01, "weight_decay": 1e-4}
    shared, _ = t.train(t.start(0, params), params, 15)
    before = {k: v.clone() for k, v in shared[0].items()}
    _, first = t.train(shared, params, 15)
    _, second = t.train(shared, params, 15)
    assert first == second
    assert all(bool((shared[0][k] == v).all()) for k, v in before.items())


def test_a_parked_trainer_goes_on_exactly_as_a_restored_one_would(digits_task):
    # Continuing with the live Trainer (the fast path) and restoring a fresh one from the
    # checkpoint at every ready point (live=0) must give the same bits, params changing
    # between segments (the restored path) or not (the parked one).
    schedule = [{"lr": 0.01, "weight_decay": 1e-4}] * 2 + [{"lr": 0.02, "weight_decay": 1e-3}] * 2
    runs = []
    for live in (16, 0):
        t = trainable(digits_task, live=live)
        state, scores = t.start(0, schedule[0]), []
        for params in schedule:
            state, score = t.train(state, params, 15)
            scores.append(score)
        runs.append((state, scores))
    (fast, fast_scores), (slow, slow_scores) = runs
    assert fast_scores == slow_scores
    assert fast[0].keys() == slow[0].keys()
    assert all(bool((fast[0][k] == slow[0][k]).all()) for k in slow[0])
    assert fast[1] == slow[1]


def test_a_trainer_is_parked_for_one_state_and_claimed_once(digits_task):
    t = trainable(digits_task)
    params = {"lr": 0.01, "weight_decay": 1e-4}
    state = t.start(0, params)
    assert t._claim(state, {"lr": 0.02, "weight_decay": 1e-4}) is None  # other params: restore
    assert t._claim(state, params) is not None  # ... and the parked one is still there
    state, _ = t.train(state, params, 15)
    copy = (dict(state[0]), dict(state[1]))  # equal, but not the state the trainer made
    assert t._claim(copy, params) is None
    trainer = t._claim(state, params)
    assert trainer is not None and trainer.step == 15
    assert t._claim(state, params) is None  # claimed once


def test_an_encoded_state_trains_on_exactly_as_the_state_and_is_stored_as_it_came(digits_task):
    """States cross to and from Ray actors as their checkpoint bytes (`Encoded`)."""
    from flowopt.nodes.tuner.pbt.actors import Encoded, as_state, checkpoint_bytes

    t = trainable(digits_task)
    params = {"lr": 0.01, "weight_decay": 1e-4}
    state, _ = t.train(t.start(0, params), params, 15)
    crossed = Encoded(encode(state))  # what an actor replies, and the store's bytes read back
    assert checkpoint_bytes(crossed) is crossed.payload == encode(state)
    plain, via_bytes = t.train(state, params, 15), t.train(as_state(crossed), params, 15)
    assert plain[1] == via_bytes[1]
    assert all((plain[0][0][k] == via_bytes[0][0][k]).all() for k in plain[0][0])
    assert as_state(state) is state  # a decoded state is used as it is
