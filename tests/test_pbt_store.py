"""PBT lineage in the store: events and checkpoints written, read back, resumed, drawn."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from flowopt.nodes.tuner.pbt.checkpoints import RecorderCheckpoints
from flowopt.nodes.tuner.pbt.policy import PbtConfig
from flowopt.nodes.tuner.pbt.population import Population, fold
from flowopt.recording import RunInfo
from flowopt.spec import Domain
from flowopt.store import Store
from flowopt.store.population import read_events, schedule, schedule_rows, write_events


import pbt_support as SUPPORT  # noqa: E402 - registered by conftest.py

SPACE = {"h0": Domain(low=0, high=1), "h1": Domain(low=0, high=1)}
FLOWOPT = [sys.executable, "-m", "flowopt"]


PAPER_H, ToyTrainable = SUPPORT.PAPER_H, SUPPORT.ToyTrainable


def toy_checkpoints(store: Store) -> RecorderCheckpoints:
    return RecorderCheckpoints(store, lambda theta: np.asarray(theta, "<f8").tobytes(),
                               lambda payload: np.frombuffer(payload, "<f8").copy(), fmt="f8")


def pbt_run(store: Store, *, steps: int = 80, trainable=None, resume=(), checkpoints=None):
    run_id = resume[0].run_id if resume else store.begin_run(
        RunInfo("toy-pbt", 0, {}, {"pipeline": "toy-pbt"}))
    checkpoints = checkpoints or toy_checkpoints(store)
    population = Population(trainable or ToyTrainable(), SPACE, PbtConfig(population=2, interval=4),
                            steps=steps, seed=1, initial=PAPER_H, checkpoints=checkpoints,
                            on_event=lambda e: write_events(store.engine, run_id, "pbt", [e]))
    return run_id, population.run(resume=resume)


def test_every_decision_is_a_row_and_reading_them_back_rebuilds_the_population(store_location):
    store = Store.open(store_location)
    run_id, result = pbt_run(store)
    records = read_events(store.engine, run_id)
    fields = ("member", "step", "event", "from_member", "score", "from_score", "checkpoint_id")
    assert [tuple(getattr(r, f) for f in fields) for r in records] == \
        [tuple(getattr(e, f) for f in fields) for e in result.events]
    assert [dict(r.new_params) for r in records] == [dict(e.new_params) for e in result.events]
    assert {r.event for r in records} >= {"start", "keep", "exploit", "explore", "finish"}
    rebuilt = fold(records)
    assert tuple(rebuilt[k] for k in range(2)) == result.members
    theta = toy_checkpoints(Store.open(store_location)).load(result.best.checkpoint_id)
    assert 1.2 - float(np.sum(theta ** 2)) == pytest.approx(result.best.score)
    store.close()


def test_a_members_schedule_is_a_table_of_frozen_rows_or_a_dataframe(store_dir):
    store = Store.open(store_dir)
    run_id, result = pbt_run(store)
    member = result.best.member
    rows = schedule(store.engine, run_id, member)
    assert rows[0].event == "start" and rows[0].step == 0 and rows[0].params == PAPER_H[member]
    assert rows[-1].event == "finish" and rows[-1].score == pytest.approx(result.best.score)
    with pytest.raises(AttributeError):
        rows[0].step = 3  # frozen
    explores = [r for r in rows if r.event == "explore"]
    assert explores and all(r.from_member is not None for r in explores)
    frame = schedule(store.engine, run_id, member, as_frame=True)
    assert list(frame["step"]) == [r.step for r in rows]
    assert list(frame["h0"]) == [r.params["h0"] for r in rows]
    assert rows == schedule_rows(result.events, member)


def test_a_killed_run_resumes_from_the_checkpoints_in_the_store(store_dir):
    class Killed(ToyTrainable):
        calls = 0

        def train(self, state, params, steps):
            Killed.calls += 1
            if Killed.calls == 9:
                raise KeyboardInterrupt
            return super().train(state, params, steps)

    store = Store.open(store_dir)
    with pytest.raises(KeyboardInterrupt):
        pbt_run(store, trainable=Killed())
    written = read_events(store.engine, store.runs()[0].run_id)
    stopped = fold(written)
    assert all(0 < m.step < 80 for m in stopped.values())
    loaded = []

    class Watch(ToyTrainable):
        def train(self, state, params, steps):
            loaded.append(state.copy())
            return super().train(state, params, steps)

    fresh = toy_checkpoints(Store.open(store_dir))  # a new process: nothing cached in memory
    _, result = pbt_run(Store.open(store_dir), trainable=Watch(), resume=written,
                        checkpoints=fresh)
    expected = [fresh.load(stopped[k].checkpoint_id) for k in sorted(stopped)]
    assert all(np.array_equal(a, b) for a, b in zip(loaded[:2], expected))
    assert all(m.finished and m.step == 80 for m in result.members)
    again = read_events(store.engine, written[0].run_id)
    assert len(again) > len(written) and again[:len(written)] == written


def test_nan_scores_survive_the_round_trip(store_dir):
    store = Store.open(store_dir)
    run_id = store.begin_run(RunInfo("nan", 0, {}, {}))

    class E:
        member, step, event, new_params, old_params = 0, 4, "keep", {"lr": 0.1}, None
        from_member, score, from_score, checkpoint_id = None, math.nan, None, None

    write_events(store.engine, run_id, "pbt", [E()])
    (record,) = read_events(store.engine, run_id)
    assert math.isnan(record.score) and record.to_json()["score"] is None


def flowopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLOWOPT, *args], capture_output=True, text=True, timeout=120)


def test_the_cli_shows_and_draws_a_population(store_dir, tmp_path):
    store = Store.open(store_dir)
    run_id, result = pbt_run(store)
    store.close()
    shown = flowopt("pbt", "show", run_id[:8], "--store", str(store_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["run_id"] == run_id and data["node"] == "pbt"
    assert len(data["events"]) == len(result.events)
    table = flowopt("pbt", "show", run_id, "--store", str(store_dir))
    assert table.returncode == 0 and "exploit" in table.stdout and "h0=" in table.stdout
    png = tmp_path / "pop.png"
    drawn = flowopt("pbt", "plot", run_id, "--store", str(store_dir), "-o", str(png))
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    page = tmp_path / "pop.html"
    assert flowopt("pbt", "plot", run_id, "--store", str(store_dir), "-o", str(page)).returncode == 0
    text = page.read_text()
    assert "data:image/png;base64," in text and text.count("<tr>") == len(result.events) + 1


def test_the_cli_refuses_bad_requests_with_one_line_and_exit_2(store_dir, tmp_path):
    store = Store.open(store_dir)
    run_id, _ = pbt_run(store, steps=8)
    plain = store.begin_run(RunInfo("plain", 0, {}, {}))
    store.close()
    cases = [
        (("pbt", "plot", run_id, "-o", str(tmp_path / "x.pdf")), "is .png or .html"),
        (("pbt", "show", "zzzz"), "no run with id"),
        (("pbt", "show", plain), "no population events"),
        (("pbt", "show", run_id, "--node", "other"), "has no population events"),
    ]
    for args, needle in cases:
        done = flowopt(*args, "--store", str(store_dir))
        assert done.returncode == 2, (args, done.stderr)
        assert needle in done.stderr and done.stderr.startswith("error:")
        assert "Traceback" not in done.stderr


def test_the_cli_stays_light_when_pbt_commands_are_registered():
    code = ("import sys, flowopt.cli.app; "
            "print(sorted(m for m in ('torch', 'numba', 'matplotlib') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True).stdout.strip() == "[]"
