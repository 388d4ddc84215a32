"""The Ray executor (`flowopt.ray_executor`), with a real Ray: one local cluster shared by
the session (`ray_local`), and one test that starts a two-node cluster of its own.

What it promises: the same run as the local executor (values, metrics, rows, lineage),
only the driver writes to the store, trials run on Ray workers, PBT members on long-lived
actors that keep their trainers, nodes are scheduled with their ``resources``, a dead
worker is retried once and then a failed node with its cause, Ctrl-C cancels the tasks,
and bad input is one line with exit 2, nothing stored.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app
from flowopt.errors import FlowoptError
from flowopt.graph import compile_pipeline
from flowopt.spec import load_spec

PLUGIN = Path(__file__).parent / "plugins" / "ray_nodes.py"
TRAINING = """
pipeline: ray-training
seed: 3
nodes:
  digits: {kind: data.digits}
  split:  {kind: data.split, in: {dataset: digits}, with: {val_fraction: 0.2}}
  net:    {kind: model.mlp, in: {data: split.train}, with: {hidden: [32]}}
  xent:   {kind: loss.cross_entropy}
  train:
    kind: optimizer.adam
    in: {model: net, data: split.train, loss: xent, val: split.val}
    with: {lr: 0.01, steps: 60, batch_size: 64, eval_every: 20}
  score:  {kind: evaluator.classification, in: {model: train, data: split.val}}
"""
SEARCH = f"""
pipeline: ray-search
seed: 0
plugins: ["{PLUGIN}"]
params: {{x: 0.0}}
search: {{x: {{low: -1.0, high: 1.0}}}}
nodes:
  probe: {{kind: raytest.where, with: {{x: "${{params.x}}", pause: 0.3}}}}
  tune:
    kind: tuner.random
    in: {{objective: probe.value}}
    with: {{mode: min, trials: 4, parallel: 2}}
"""


# the README's PBT pipeline, shorter: 4 members, 200 steps, ready every 50, one at a time
TUNE_PBT = Path(__file__).resolve().parents[1] / "pipelines" / "tune_pbt.yaml"
PBT = ["seed=5", "nodes.train.with.steps=200", "nodes.tune.with.parallel=1"]
SEGMENTS = 4 * 200 // 50  # members x ready points: what a rebuild per segment would build


def _write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _run(path: Path, store: Path, overrides=(), **options):
    from flowopt.runner import execute

    return execute(compile_pipeline(load_spec(path, list(overrides))), store=str(store),
                   **options)


def test_a_run_on_ray_equals_the_local_run_value_for_value_and_row_for_row(ray_local, tmp_path):
    path = _write(tmp_path, TRAINING)
    local = _run(path, tmp_path / "local", workers=2)
    remote = _run(path, tmp_path / "ray", workers=2, executor="ray")
    assert local.status == remote.status == "succeeded"
    assert remote.metrics == local.metrics  # bit-identical: same seeds, same threads
    assert remote.value("score", "accuracy") == local.value("score", "accuracy")
    from flowopt.store import Store

    a, b = Store.open(str(tmp_path / "local")), Store.open(str(tmp_path / "ray"))
    ra, rb = a.run(local.run_id), b.run(remote.run_id)
    assert [(n.id, n.status, n.cache_key) for n in ra.nodes] == \
           [(n.id, n.status, n.cache_key) for n in rb.nodes]
    assert sorted((x.node, x.port, x.hash) for x in ra.artifacts) == \
           sorted((x.node, x.port, x.hash) for x in rb.artifacts)
    # the training curve logged in a worker was recorded once, point for point
    curve = a.metric_series(local.run_id, "train.val_accuracy")
    assert len(curve) == 3 and b.metric_series(remote.run_id, "train.val_accuracy") == curve
    # lineage: the same ancestry as the local run's, node for node
    def ancestry(store, detail):
        model = next(x for x in detail.artifacts if x.node == "score")
        return sorted(e.node for e in store.lineage(model.id, "upstream").upstream)

    assert ancestry(b, rb) == ancestry(a, ra) and "train" in ancestry(b, rb)


def test_trials_run_in_ray_worker_processes_two_at_a_time(ray_local, tmp_path):
    result = _run(_write(tmp_path, SEARCH), tmp_path / "store", executor="ray", workers=2)
    assert result.status == "succeeded"
    from flowopt.store import Store

    store = Store.open(str(tmp_path / "store"))
    trials = store.run(result.run_id).trials
    assert len(trials) == 4 and all(t.status == "succeeded" for t in trials)
    children = [store.run(t.trial_run_id).run for t in trials]
    assert os.getpid() not in {c.metrics["probe.pid"] for c in children}  # not in the driver
    # the metric series a worker logged reached each trial's child run
    assert all(len(store.metric_series(t.trial_run_id, "probe.curve")) == 3 for t in trials)
    # two at a time: with 0.3 s per trial, four trials overlap in pairs
    spans = sorted((c.started_at, c.ended_at) for c in children)
    assert any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))


def test_a_node_runs_with_the_cpus_it_declares_and_one_no_machine_has_is_refused(
        ray_local, tmp_path):
    declared = f"""
    pipeline: ray-resources
    plugins: ["{PLUGIN}"]
    nodes:
      probe: {{kind: raytest.where, with: {{x: 1.0}}, resources: {{cpus: 2}}}}
    """
    result = _run(_write(tmp_path, declared), tmp_path / "store", executor="ray", workers=1)
    assert result.status == "succeeded"
    assert result.metrics["probe.threads"] == 2.0
    too_big = _write(tmp_path, declared.replace("cpus: 2", "cpus: 64"), "big.yaml")
    with pytest.raises(FlowoptError, match=r"node 'probe': resources .*cpus: 64.* fit no machine"):
        _run(too_big, tmp_path / "nothing", executor="ray")
    assert not (tmp_path / "nothing").exists()  # refused before the store was opened


def test_a_killed_worker_is_retried_once_then_the_node_fails_with_the_cause(ray_local, tmp_path):
    marker = tmp_path / "died-once"
    once = f"""
    pipeline: ray-faults
    plugins: ["{PLUGIN}"]
    nodes:
      flaky: {{kind: raytest.die_once, with: {{marker: "{marker}"}}}}
    """
    result = _run(_write(tmp_path, once), tmp_path / "store", executor="ray", workers=1)
    assert marker.exists() and result.status == "succeeded"  # died, retried, succeeded
    always = _write(tmp_path, once.replace(f'marker: "{marker}"',
                                           f'marker: "{marker}", always: true'), "always.yaml")
    failed = _run(always, tmp_path / "store", executor="ray", workers=1)
    assert failed.status == "failed" and failed.failed_node == "flaky"
    assert "Ray worker running 'flaky' died (tried 2 times)" in failed.nodes["flaky"].error


def test_cancelling_a_run_cancels_its_ray_tasks(ray_local, tmp_path):
    from flowopt.runner import open_recorder
    from flowopt.ray_executor import RayExecutor
    from flowopt.scheduler import Scheduler

    done = tmp_path / "finished"
    path = _write(tmp_path, f"""
    pipeline: ray-cancel
    plugins: ["{PLUGIN}"]
    nodes:
      slow: {{kind: raytest.hang, with: {{done: "{done}", seconds: 4.0}}}}
    """)
    scheduler = Scheduler(compile_pipeline(load_spec(path)), open_recorder(str(tmp_path / "s")),
                          RayExecutor(1))
    threading.Timer(1.5, scheduler.cancel.set).start()
    result = scheduler.run()
    assert result.status == "interrupted"
    time.sleep(4.0)
    assert not done.exists()  # the task was cancelled, not left to finish


def test_bad_executor_input_is_one_line_exit_2_and_nothing_stored(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'flowopt[ray]'")
    path = _write(tmp_path, TRAINING)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    start = time.perf_counter()
    nowhere = runner.invoke(app, ["run", str(path), "--executor", "ray",
                                  "--address", "127.0.0.1:9"])
    assert nowhere.exit_code == 2 and time.perf_counter() - start < 30
    assert "no Ray cluster answers at 127.0.0.1:9" in nowhere.output
    zero = runner.invoke(app, ["run", str(path), "--executor", "ray", "--workers", "0"])
    assert zero.exit_code == 2
    local_address = runner.invoke(app, ["run", str(path), "--address", "auto"])
    assert local_address.exit_code == 2 and "--address is for --executor ray" in local_address.output
    assert not (tmp_path / ".flowopt").exists()


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    from flowopt.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(FlowoptError) as caught:
        make_executor("ray", 1)
    assert caught.value.hint == "pip install 'flowopt[ray]'"


def test_the_local_executor_refuses_resources_the_machine_does_not_have(tmp_path, monkeypatch):
    path = _write(tmp_path, f"""
    pipeline: too-big
    plugins: ["{PLUGIN}"]
    nodes:
      probe: {{kind: raytest.die_once, resources: {{cpus: 512}}}}
    """)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "node 'probe': resources.cpus 512 is more than this machine's" in result.output
    assert not (tmp_path / ".flowopt").exists()
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0  # a fact of the run


TWO_NODES = """
import json, sys
from ray.cluster_utils import Cluster
import flowopt as fo
from flowopt.graph import compile_pipeline
from flowopt.runner import execute
from flowopt.spec import load_spec

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    result = execute(compile_pipeline(load_spec(sys.argv[1])), store=sys.argv[2],
                     executor="ray", address=cluster.address, workers=2)
    print(json.dumps({"status": result.status, "run_id": result.run_id}))
finally:
    import ray
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.slow
def test_a_tuning_run_spreads_over_a_two_node_cluster_into_postgresql(postgres_url, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'flowopt[ray]'")
    script = _write(tmp_path, TWO_NODES, "two_nodes.py")
    path = _write(tmp_path, SEARCH.replace("pause: 0.3", "pause: 1.0"))
    done = subprocess.run([sys.executable, str(script), str(path), postgres_url],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "succeeded"
    from flowopt.store import Store

    store = Store.open(postgres_url)
    trials = store.run(outcome["run_id"]).trials
    assert len(trials) == 4
    machines = {store.run(t.trial_run_id).run.metrics["probe.node"] for t in trials}
    assert len(machines) == 2  # each node of the cluster ran trials


class Keeper:
    """An actor's object for `test_actors_...`: counts its calls; `die` kills its process."""

    def __init__(self, shared: list) -> None:
        self.shared, self.calls = shared, 0

    def hello(self) -> tuple[int, int, int]:
        self.calls += 1
        return os.getpid(), self.calls, len(self.shared)

    def die(self) -> None:
        os._exit(1)


def test_actors_keep_their_object_between_calls_and_a_killed_one_is_replaced(ray_local):
    from flowopt.ray_actors import WorkerDied
    from flowopt.ray_executor import RayExecutor

    executor = RayExecutor(2)
    tag = f"flowopt-test/{os.getpid()}"
    group = executor.actors(Keeper, list(range(1000)), 2, functions=[Keeper], tag=tag)
    try:
        first = [group.call(slot, "hello") for slot in (0, 1)]
        again = [group.call(slot, "hello") for slot in (0, 1)]
        assert len({pid for pid, _, _ in first}) == 2 and os.getpid() not in {first[0][0]}
        assert again == [(pid, 2, 1000) for pid, _, _ in first]  # same process, same object
        ray_local.kill(ray_local.get_actor(f"{tag}/0.0"))
        pid, calls, _ = group.call(0, "hello")  # retried on a new actor, built again
        assert pid != first[0][0] and calls == 1 and group.replaced == 1
        with pytest.raises(WorkerDied, match=r"slot 1 died during 'die' \(tried 2 times\)"):
            group.call(1, "die")
        assert group.replaced == 3
    finally:
        group.close()
    crowd = executor.actors(Keeper, [], 5, functions=[Keeper])
    try:  # no more actors than the cluster has CPUs for (2): the others would never start
        assert len(crowd) == 2 and crowd.call(1, "hello")[1:] == (1, 0)
    finally:
        crowd.close()
        executor.shutdown()


def _events(store, run_id: str) -> list[tuple]:
    return [(e.member, e.step, e.event, dict(e.new_params), e.score, e.from_member)
            for e in store.population_events(run_id, "tune")]


@pytest.fixture(scope="module")
def pbt_local(tmp_path_factory):
    """The PBT pipeline run by the local executor (the reference of the Ray runs)."""
    from flowopt.store import Store

    folder = tmp_path_factory.mktemp("pbt-local")
    result = _run(TUNE_PBT, folder / "store", PBT)
    assert result.status == "succeeded"
    return result, _events(Store.open(str(folder / "store")), result.run_id), folder / "store"


def _checkpoints(store, run_id: str) -> list[bytes]:
    """The bytes of every checkpoint the run's events name, in event order."""
    return [store.load_checkpoint(e.checkpoint_id)
            for e in store.population_events(run_id, "tune") if e.event in ("keep", "finish")]


def test_pbt_members_on_ray_actors_equal_the_local_run_and_keep_their_trainers(
        ray_local, pbt_local, tmp_path):
    from flowopt.store import Store

    local, local_events, local_store = pbt_local
    remote = _run(TUNE_PBT, tmp_path / "store", PBT, executor="ray", workers=2)
    assert remote.status == "succeeded"
    assert remote.metrics["tune.actors"] == 1.0 and local.metrics["tune.actors"] == 0.0
    # parallel 1: one actor, segments in order, so the same decisions on the same scores
    reader = Store.open(str(tmp_path / "store"))
    assert _events(reader, remote.run_id) == local_events
    # the checkpoints the actor encoded are the bytes the local run stored
    stored = _checkpoints(reader, remote.run_id)
    assert len(stored) >= 4 and stored == _checkpoints(Store.open(str(local_store)), local.run_id)
    assert remote.best == local.best and remote.metrics["tune.objective"] == \
        local.metrics["tune.objective"]
    # parked trainers went on between segments in the actor: a trainer per member's start
    # and per copy, as locally, not one per segment
    builds = remote.metrics["tune.trainer_builds"]
    explores = sum(1 for e in local_events if e[2] == "explore")
    assert builds == local.metrics["tune.trainer_builds"] == 4 + explores < SEGMENTS


def _pbt_in_the_background(ray, tmp_path: Path, act, overrides=()) -> tuple[Any, Any]:
    """Run the PBT pipeline on Ray in a thread; once some segments are done (the next ones
    under way), call ``act(scheduler, actor 0)``; returns the run's result and a store reader."""
    from flowopt.ray_executor import RayExecutor
    from flowopt.runner import open_recorder
    from flowopt.scheduler import Scheduler
    from flowopt.store import Store

    store = str(tmp_path / "store")
    scheduler = Scheduler(compile_pipeline(load_spec(TUNE_PBT, [*PBT, *overrides])),
                          open_recorder(store),
                          RayExecutor(2))
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(result=scheduler.run()))
    runner.start()
    reader, acted = Store.open(store), False
    deadline = time.monotonic() + 240
    while not acted and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
        if scheduler.run_id is None:
            continue
        if any(e.event in ("keep", "exploit")
               for e in reader.population_events(scheduler.run_id, "tune")):
            act(scheduler, ray.get_actor(f"flowopt/{scheduler.run_id}/tune/0.0"))
            acted = True
    runner.join(timeout=240)
    assert acted, "the run ended before any segment was seen"
    return outcome["result"], reader


def test_a_pbt_actor_killed_mid_run_is_replaced_and_the_run_ends_as_if_it_had_not(
        ray_local, pbt_local, tmp_path):
    local, local_events, _ = pbt_local
    result, reader = _pbt_in_the_background(ray_local, tmp_path,
                                            lambda _, actor: ray_local.kill(actor))
    assert result.status == "succeeded"
    assert result.metrics["tune.actors"] == 2.0  # the first one, and the one that replaced it
    assert _events(reader, result.run_id) == local_events  # restore is exact: same run
    assert result.best == local.best
    members = reader.run(result.run_id).trials
    assert sorted((t.number, t.status) for t in members) == [(k, "succeeded") for k in range(4)]


def test_cancelling_a_pbt_run_on_ray_stops_its_actors_and_the_same_command_resumes_it(
        ray_local, tmp_path):
    longer = ["nodes.train.with.steps=2000"]
    result, reader = _pbt_in_the_background(  # 160 segments: far from done when cancelled
        ray_local, tmp_path, lambda scheduler, _: scheduler.cancel.set(), longer)
    assert result.status == "interrupted"

    def alive() -> list[str]:  # this run's actors Ray still lists (it learns of a kill late)
        names = ray_local.util.list_named_actors()
        return [n for n in names if n.startswith(f"flowopt/{result.run_id}/")]

    deadline = time.monotonic() + 60
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive()
    events = reader.population_events(result.run_id, "tune")
    assert len({e.member for e in events if e.event == "finish"}) < 4  # stopped mid-way
    # run again: the members go on from the checkpoints read back from the store (sent to
    # the actor as the bytes they were stored as), after the decisions already made
    before = _events(reader, result.run_id)
    resumed = _run(TUNE_PBT, tmp_path / "store", [*PBT, *longer], executor="ray", workers=2)
    assert resumed.status == "succeeded" and resumed.run_id != result.run_id
    after = _events(reader, resumed.run_id)
    settled = before[:-1] if before[-1][2] == "exploit" else before
    assert len(settled) > 4 and after[:len(settled)] == settled
    finished = [e for e in after if e[2] == "finish"]
    assert sorted(e[0] for e in finished) == [0, 1, 2, 3] and {e[1] for e in finished} == {2000}
