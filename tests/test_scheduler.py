"""The scheduler against its reference: the parallel executor must match a sequential run."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from flowopt.executors import SyncExecutor, ThreadExecutor
from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import PipelineSpec


def graph_of(nodes, seed=0):
    return compile_pipeline(PipelineSpec.model_validate({"pipeline": "s", "seed": seed, "nodes": nodes}))


@st.composite
def dags(draw):
    nodes = {}
    for i in range(draw(st.integers(1, 25))):
        earlier = list(nodes)
        if earlier and draw(st.booleans()):
            a = draw(st.sampled_from(earlier))
            port = "" if nodes[a]["kind"] == "toy.number" else (".total" if nodes[a]["kind"] == "toy.add" else ".value")
            kind = draw(st.sampled_from(["toy.add", "toy.noisy"]))
            nodes[f"n{i}"] = {"kind": kind, "in": {("a" if kind == "toy.add" else "x"): a + port}}
        else:
            nodes[f"n{i}"] = {"kind": "toy.number", "with": {"value": draw(st.integers(-9, 9))}}
    return nodes, draw(st.integers(0, 1000))


@settings(max_examples=40, deadline=None)
@given(dags())
def test_parallel_run_equals_sequential_run(case):
    nodes, seed = case
    graph = graph_of(nodes, seed)
    sequential = Scheduler(graph, MemoryRecorder(), SyncExecutor()).run()
    parallel = Scheduler(graph, MemoryRecorder(), ThreadExecutor(4)).run()
    assert sequential.status == parallel.status == "succeeded"
    assert sequential.metrics == parallel.metrics
    assert {n: r.status for n, r in sequential.nodes.items()} == \
        {n: r.status for n, r in parallel.nodes.items()}


def test_independent_nodes_run_concurrently():
    nodes = {"n": {"kind": "toy.number"}}
    nodes.update({f"s{i}": {"kind": "toy.slow", "in": {"x": "n"}, "with": {"steps": 10, "delay": 0.02}}
                  for i in range(4)})
    graph = graph_of(nodes)
    start = time.perf_counter()
    Scheduler(graph, MemoryRecorder(), ThreadExecutor(4)).run()
    parallel = time.perf_counter() - start
    start = time.perf_counter()
    Scheduler(graph, MemoryRecorder(), SyncExecutor()).run()
    sequential = time.perf_counter() - start
    assert parallel < sequential * 0.6


def test_second_run_is_all_cache_hits_with_same_metrics():
    recorder = MemoryRecorder()
    graph = graph_of({"a": {"kind": "toy.number", "with": {"value": 2}},
                      "s": {"kind": "toy.add", "in": {"a": "a"}}})
    first = Scheduler(graph, recorder).run()
    second = Scheduler(graph, recorder).run()
    assert {r.status for r in first.nodes.values()} == {"succeeded"}
    assert {r.status for r in second.nodes.values()} == {"cached"}
    assert second.metrics["s.total"] == first.metrics["s.total"] == 2.0
    assert second.value("s", "total") == 2.0
    third = Scheduler(graph, recorder, use_cache=False).run()
    assert {r.status for r in third.nodes.values()} == {"succeeded"}


def test_only_nodes_reached_by_a_change_rerun():
    recorder = MemoryRecorder()
    base = {"a": {"kind": "toy.number", "with": {"value": 1}},
            "b": {"kind": "toy.number", "with": {"value": 2}},
            "sa": {"kind": "toy.add", "in": {"a": "a"}},
            "sb": {"kind": "toy.add", "in": {"a": "b"}}}
    Scheduler(graph_of(base), recorder).run()
    changed = dict(base, b={"kind": "toy.number", "with": {"value": 3}})
    result = Scheduler(graph_of(changed), recorder).run()
    assert {n: r.status for n, r in result.nodes.items()} == \
        {"a": "cached", "b": "succeeded", "sa": "cached", "sb": "succeeded"}


def test_failure_is_fail_fast_recorded_and_resumable():
    recorder = MemoryRecorder()
    nodes = {"a": {"kind": "toy.number"},
             "bad": {"kind": "toy.fail", "in": {"x": "a"}, "with": {"message": "kaput"}},
             "after": {"kind": "toy.add", "in": {"a": "bad"}},
             "ok": {"kind": "toy.add", "in": {"a": "a"}}}
    result = Scheduler(graph_of(nodes), recorder).run()
    assert result.status == "failed" and result.failed_node == "bad"
    assert "RuntimeError: kaput" in result.error
    assert "Traceback" in result.traceback
    assert result.nodes["after"].status == "skipped"
    assert result.nodes["a"].status == "succeeded"
    # fixing the node resumes: finished nodes come from the cache
    fixed = dict(nodes, bad={"kind": "toy.add", "in": {"a": "a"}},
                 after={"kind": "toy.add", "in": {"a": "bad.total"}})
    resumed = Scheduler(graph_of(fixed), recorder).run()
    assert resumed.status == "succeeded"
    assert resumed.nodes["a"].status == "cached"


def test_a_run_cancelled_from_another_thread_is_interrupted_not_succeeded():
    recorder = MemoryRecorder()
    graph = graph_of({"a": {"kind": "toy.number"},
                      "slow": {"kind": "toy.slow", "in": {"x": "a"}, "with": {"steps": 500, "delay": 0.01}}})
    scheduler = Scheduler(graph, recorder, ThreadExecutor(2))
    threading.Timer(0.3, scheduler.cancel.set).start()  # what a tuner does to its trials
    result = scheduler.run()
    assert result.status == "interrupted" and result.error == "interrupted"
    assert recorder.runs[scheduler.run_id]["status"] == "interrupted"
    assert result.nodes["a"].status == "succeeded" and result.nodes["slow"].error == "interrupted"


def test_interrupt_marks_run_interrupted_and_keeps_finished_nodes():
    recorder = MemoryRecorder()
    graph = graph_of({"a": {"kind": "toy.number"},
                      "slow": {"kind": "toy.slow", "in": {"x": "a"}, "with": {"steps": 500, "delay": 0.01}}})
    scheduler = Scheduler(graph, recorder, ThreadExecutor(2))
    main = threading.main_thread()
    assert threading.current_thread() is main

    def interrupt():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        scheduler.run()
    run = recorder.runs[scheduler.run_id]
    assert run["status"] == "interrupted"
    statuses = {r.node_id: r.status for r in recorder.executions}
    assert statuses == {"a": "succeeded", "slow": "interrupted"}
    assert [r.error for r in recorder.executions if r.node_id == "slow"] == ["interrupted"]
    # resume: a is reused
    again = Scheduler(graph_of({"a": {"kind": "toy.number"},
                                "slow": {"kind": "toy.slow", "in": {"x": "a"}, "with": {"steps": 2}}}),
                      recorder).run()
    assert again.nodes["a"].status == "cached"


def test_seeded_nodes_are_reproducible_and_seed_sensitive():
    nodes = {"a": {"kind": "toy.number"}, "r": {"kind": "toy.noisy", "in": {"x": "a"}}}
    one = Scheduler(graph_of(nodes, seed=1), MemoryRecorder()).run().metrics["r.value"]
    again = Scheduler(graph_of(nodes, seed=1), MemoryRecorder(), ThreadExecutor(2)).run().metrics["r.value"]
    other = Scheduler(graph_of(nodes, seed=2), MemoryRecorder()).run().metrics["r.value"]
    assert one == again != other


def test_intermediate_values_are_freed_after_their_last_consumer():
    graph = graph_of({"a": {"kind": "toy.number"}, "b": {"kind": "toy.add", "in": {"a": "a"}},
                      "c": {"kind": "toy.add", "in": {"a": "b.total"}}})
    result = Scheduler(graph, MemoryRecorder()).run()
    assert set(result._values) == {"c"}


def test_logged_series_end_up_in_run_metrics():
    result = Scheduler(graph_of({"a": {"kind": "toy.number", "with": {"value": 1}},
                                 "s": {"kind": "toy.add", "in": {"a": "a"}}}), MemoryRecorder()).run()
    assert result.metrics["s.partial"] == 3.0
