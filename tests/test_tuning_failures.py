"""Failed trials, from the user's side (issue 18, item 1): the CLI and the Python API.

A broken search stops early and says the first error; each failed trial's error is in
``runs show`` (and its ``--json``); running the same command again after fixing the
cause re-runs the failed trials instead of carrying them forward as finished.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import flowopt as fo

PIPELINE = """pipeline: branin
plugins: [branin.py]
params: {x1: 0.0, x2: 0.0}
search:
  x1: {low: -5.0, high: 10.0}
  x2: {low: 0.0, high: 15.0}
nodes:
  f: {kind: demo.branin_%(tag)s, with: {x1: "${params.x1}", x2: "${params.x2}"%(extra)s}}
  tune: {kind: tuner.random, in: {objective: f.value}, with: {mode: min, trials: %(trials)d}}
"""

# The README's plugin, missing its `import math` as the issue found it.
BROKEN = '''import flowopt as fo


@fo.node("demo.branin_%(tag)s", metrics=["value"])
def branin(x1: float = 0.0, x2: float = 0.0) -> float:
    return (x2 - 5.1 / 39.48 * x1**2 + 5 / 3.1416 * x1 - 6) ** 2 + 10 * (1 - 1 / 25.13) * math.cos(x1) + 10
'''
FIXED = "import math\n" + BROKEN

# A node that fails while a flag file exists (a full disk, a missing mount...).
FLAKY = '''from pathlib import Path

import flowopt as fo


@fo.node("demo.branin_%(tag)s", metrics=["value"])
def branin(x1: float = 0.0, x2: float = 0.0, flag: str = "") -> float:
    if Path(flag).exists():
        raise OSError("the scratch disk is full")
    return (x1 - 1.0) ** 2 + (x2 - 2.0) ** 2
'''


def flowopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowopt", *args], capture_output=True,
                          text=True, timeout=300)


def write(folder: Path, plugin: str, *, tag: str, trials: int, extra: str = "") -> Path:
    (folder / "branin.py").write_text(plugin % {"tag": tag}, encoding="utf-8")
    path = folder / "branin.yaml"
    path.write_text(PIPELINE % {"tag": tag, "trials": trials, "extra": extra}, encoding="utf-8")
    return path


def test_twenty_identical_failures_stop_after_five_with_the_first_error(tmp_path):
    path = write(tmp_path, BROKEN, tag="broken", trials=20)
    store = str(tmp_path / "store")
    done = flowopt("run", str(path), "--store", store, "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "failed"
    assert "tuner 'tune' stopped: its first 5 trials failed" in result["error"]
    assert "first error: node 'f': NameError: name 'math' is not defined" in result["error"]
    shown = json.loads(flowopt("runs", "show", result["run_id"], "--store", store,
                               "--json").stdout)
    assert len(shown["trials"]) == 5  # not 20
    assert all(t["status"] == "failed" and "NameError: name 'math' is not defined" in t["error"]
               for t in shown["trials"])
    text = flowopt("runs", "show", result["run_id"], "--store", store).stdout
    for number in range(5):  # every failed trial's own error, in the human output too
        assert f"tune trial {number}: node 'f': NameError: name 'math' is not defined" in text

    # Fixed as the hint says, the same command runs the search: nothing failed is reused.
    (tmp_path / "branin.py").write_text(FIXED % {"tag": "broken"}, encoding="utf-8")
    again = flowopt("run", str(path), "--store", store, "--json")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(flowopt("runs", "show", json.loads(again.stdout)["run_id"], "--store",
                               store, "--json").stdout)
    assert len(rerun["trials"]) == 20
    assert all(t["status"] == "succeeded" for t in rerun["trials"])


def test_failed_trials_of_an_earlier_run_are_run_again_when_the_run_is_repeated(tmp_path):
    flag = tmp_path / "disk-full"
    flag.write_text("", encoding="utf-8")
    path = write(tmp_path, FLAKY, tag="flaky", trials=4, extra=f', flag: "{flag}"')
    store = str(tmp_path / "store")
    first = flowopt("run", str(path), "--store", store, "--json")
    assert first.returncode == 1
    error = json.loads(first.stdout)["error"]
    assert "no trial succeeded (4 failed); first error: node 'f': OSError: the scratch disk " \
           "is full" in error

    flag.unlink()  # the cause is gone; the pipeline (and so every cache key) is unchanged
    run = fo.Pipeline.from_yaml(path).run(store=store)  # the Python API this time
    assert run.status == "succeeded", run.error
    opened = fo.Store.open(store)
    trials = opened.run(run.run_id).trials
    before = opened.run(json.loads(first.stdout)["run_id"]).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.status == "succeeded" and t.objective is not None for t in trials)
    # the same trials, tried again under their numbers and params (resumed, not redrawn)
    assert [dict(t.params) for t in trials] == [dict(t.params) for t in before]
