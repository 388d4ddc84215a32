"""Many writers at once, and runs whose process died (kill -9), in real subprocesses."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from flowopt.recording import RunInfo, utcnow
from flowopt.store import Store
from flowopt.store.schema import Execution, Metric, Run

TOY_PLUGIN = Path(__file__).parent / "plugins" / "toy.py"

PROCESSES, RUNS_EACH = 8, 5

# The subprocesses use only the toy kinds: skipping the built-in library's entry point keeps
# eight interpreters from importing numpy and friends at once on a two-core machine.
WRITER = textwrap.dedent("""
    import sys, time
    from flowopt.registry import REGISTRY, load_plugin
    REGISTRY._entry_points_loaded = True
    load_plugin(sys.argv[1])
    from flowopt.graph import compile_pipeline
    from flowopt.scheduler import Scheduler
    from flowopt.spec import PipelineSpec
    from flowopt.store import Store

    location, barrier, worker = sys.argv[2], sys.argv[3], int(sys.argv[4])
    graphs = [compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "many", "seed": worker * 100 + i, "params": {"worker": worker, "i": i},
        "nodes": {"a": {"kind": "toy.number", "with": {"value": float(worker * 100 + i)}},
                  "s": {"kind": "toy.add", "in": {"a": "a"}}}})) for i in range(%d)]
    import os
    open(os.path.join(barrier, str(worker)), "w").close()
    while len(os.listdir(barrier)) < %d:  # every process opens the new store at the same moment
        time.sleep(0.01)
    store = Store.open(location)
    for g in graphs:
        assert Scheduler(g, store).run().status == "succeeded"
""" % (RUNS_EACH, PROCESSES))


def test_eight_processes_writing_to_one_brand_new_store_lose_nothing(store_location, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(TOY_PLUGIN), store_location,
                               str(barrier), str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(PROCESSES)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert "locked" not in err.lower()
        assert proc.returncode == 0, err[-2000:]
    store = Store.open(store_location)
    runs = store.runs()
    assert len(runs) == PROCESSES * RUNS_EACH and {r.status for r in runs} == {"succeeded"}
    assert {(r.params["worker"], r.params["i"]) for r in runs} == {
        (w, i) for w in range(PROCESSES) for i in range(RUNS_EACH)}
    assert all(r.metrics["s.total"] == r.params["worker"] * 100 + r.params["i"] for r in runs)
    with store.engine.connect() as conn:
        # per run: 3 series points of s.partial, and finals s.total + s.partial
        assert conn.execute(select(func.count()).select_from(Metric)).scalar() == len(runs) * 5
        assert conn.execute(select(func.count()).select_from(Execution)).scalar() == len(runs) * 2


KILLED = textwrap.dedent("""
    import sys
    from flowopt.registry import REGISTRY, load_plugin
    REGISTRY._entry_points_loaded = True
    load_plugin(sys.argv[1])
    from flowopt.graph import compile_pipeline
    from flowopt.scheduler import Scheduler
    from flowopt.spec import PipelineSpec
    from flowopt.store import Store

    Scheduler(compile_pipeline(PipelineSpec.model_validate({
        "pipeline": "doomed", "seed": 0,
        "nodes": {"a": {"kind": "toy.number", "with": {"value": 7.0}},
                  "slow": {"kind": "toy.slow", "in": {"x": "a"},
                           "with": {"steps": int(sys.argv[3]), "delay": 0.05}}}})),
        Store.open(sys.argv[2])).run()
""")


def test_a_killed_run_shows_as_abandoned_and_its_finished_nodes_are_reused(store_location):
    env = {**os.environ, "FLOWOPT_FLUSH_SECONDS": "0.1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(TOY_PLUGIN), store_location,
                             "2000"], env=env, stderr=subprocess.PIPE, text=True)
    store = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until node 'a' is in the store (flushed by the timer)
            if store is None and (os.path.exists(os.path.join(store_location, "flowopt.db"))
                                  or "://" in store_location):
                try:
                    store = Store.open(store_location)
                except Exception:  # noqa: BLE001 - the other process may still be creating it
                    store = None
            if store is not None:
                with store.engine.connect() as conn:
                    if conn.execute(select(Execution.id).where(Execution.node_id == "a")).first():
                        break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        else:
            pytest.fail("node 'a' never reached the store")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    [run] = store.runs()
    assert run.status == "abandoned" and "process stopped" in (run.error or "")
    assert store.run(run.run_id).run.status == "abandoned"
    assert [r.run_id for r in store.runs(status="abandoned")] == [run.run_id]
    rerun = subprocess.run([sys.executable, "-c", KILLED, str(TOY_PLUGIN), store_location, "1"],
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    latest = store.runs()[0]
    assert latest.status == "succeeded"
    assert {n.id: n.status for n in store.run(latest.run_id).nodes} == {"a": "cached",
                                                                        "slow": "succeeded"}


def test_a_run_with_a_stale_heartbeat_on_another_host_is_abandoned(store_location):
    store = Store.open(store_location)
    ids = [store.begin_run(RunInfo(pipeline="remote", seed=0, params={}, spec={})) for _ in range(2)]
    for run_id in ids:
        store._heartbeat.closed(run_id)  # as if these runs belonged to other machines
    with store.engine.begin() as conn:
        conn.execute(update(Run).values(host="elsewhere", pid=1))
        conn.execute(update(Run).where(Run.id == ids[0]).values(
            heartbeat_at=utcnow() - timedelta(minutes=10)))
    status = {r.run_id: r.status for r in store.runs()}
    assert status == {ids[0]: "abandoned", ids[1]: "running"}


def test_a_heartbeat_revives_a_run_that_was_wrongly_marked_abandoned(store_location):
    store = Store.open(store_location)
    run_id = store.begin_run(RunInfo(pipeline="frozen", seed=0, params={}, spec={}))
    with store.engine.begin() as conn:
        conn.execute(update(Run).values(status="abandoned"))
    store._heartbeat.beat(store)
    assert store.run(run_id).run.status == "running"
    store.end_run(run_id, "succeeded")
    assert store.run(run_id).run.status == "succeeded"


def test_buffered_metric_points_reach_the_database_on_the_timer_without_ending_the_run(
        store_location, monkeypatch):
    import flowopt.store.liveness as liveness

    monkeypatch.setattr(liveness, "FLUSH_SECONDS", 0.05)
    store = Store.open(store_location)
    run_id = store.begin_run(RunInfo(pipeline="live", seed=0, params={}, spec={}))
    for step in range(100):
        store.log_metric(run_id, "train", "loss", 1.0 / (step + 1), step)
    deadline = time.time() + 10
    count = 0
    while time.time() < deadline and count < 100:
        time.sleep(0.05)
        with store.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(Metric)).scalar()
    assert count == 100
    store.end_run(run_id, "succeeded")
    assert store.metrics(run_id, "loss")[-1].value == pytest.approx(0.01)


def test_a_run_opened_just_as_the_previous_one_ends_keeps_a_heartbeat(store_location, monkeypatch):
    import flowopt.store.liveness as liveness

    monkeypatch.setattr(liveness, "FLUSH_SECONDS", 0.02)
    store = Store.open(store_location)
    for _ in range(20):
        first = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
        store.end_run(first, "succeeded")
        second = store.begin_run(RunInfo(pipeline="p", seed=0, params={}, spec={}))
        time.sleep(0.05)  # the old thread has seen the wake-up by now
        assert store._heartbeat._thread is not None and store._heartbeat._thread.is_alive()
        store.end_run(second, "succeeded")
