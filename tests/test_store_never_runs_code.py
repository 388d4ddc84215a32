"""Reading a store never imports code the store names (issue 17, item 8): `pbt replay`
loads a stored pipeline's plugins only from the run's own pipeline file (hash-checked)
or from plugins the user names; a stored relative path never resolves against the
current directory."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from flowopt.errors import SpecError
from flowopt.spec import stored_spec
from flowopt.store import Store

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "tune_pbt.yaml"
SMALL = ["nodes.train.with.steps=60", "nodes.tune.with.interval=20",
         "nodes.tune.with.population=3", "nodes.tune.with.parallel=1"]
MARKER_PLUGIN = "from pathlib import Path\nPath(__file__).with_name('imported').write_text('x')\n"


def flowopt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowopt", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def pbt_run_with_a_plugin(tmp_path_factory):
    """A finished PBT run whose pipeline loads `marker.py` (which leaves a file when
    imported), started from `work/pipeline.yaml`; the marker is removed afterwards."""
    work = tmp_path_factory.mktemp("work")
    (work / "marker.py").write_text(MARKER_PLUGIN, encoding="utf-8")
    pipeline = work / "pipeline.yaml"
    pipeline.write_text(PIPELINE.read_text(encoding="utf-8").replace(
        "nodes:\n", "plugins: [marker.py]\nnodes:\n", 1), encoding="utf-8")
    overrides = [arg for o in SMALL for arg in ("-s", o)]
    done = flowopt("run", str(pipeline), *overrides, "--store", str(work / "store"), "--json",
                   cwd=work)
    assert done.returncode == 0, done.stderr
    assert (work / "imported").exists()  # running the pipeline does import its plugin
    (work / "imported").unlink()
    return work, json.loads(done.stdout)["run_id"]


def test_replay_refuses_to_import_a_stored_plugin_on_its_own(pbt_run_with_a_plugin, tmp_path):
    work, run_id = pbt_run_with_a_plugin
    stranger = tmp_path / "elsewhere"
    stranger.mkdir()
    (stranger / "marker.py").write_text(MARKER_PLUGIN, encoding="utf-8")  # a stranger's file
    done = flowopt("pbt", "replay", run_id, "--store", str(work / "store"), cwd=stranger)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "loads plugins (marker.py)" in done.stderr and "--pipeline" in done.stderr
    assert not (stranger / "imported").exists() and not (work / "imported").exists()


def test_a_plugin_planted_in_a_stored_spec_is_never_imported(pbt_run_with_a_plugin, tmp_path):
    work, run_id = pbt_run_with_a_plugin
    planted = tmp_path / "planted.py"
    planted.write_text(MARKER_PLUGIN, encoding="utf-8")
    store = Store.open(work / "store", create=False)
    with store.engine.begin() as conn:
        spec = json.loads(conn.execute(text("SELECT spec FROM runs WHERE id = :id"),
                                       {"id": run_id}).scalar())
        original = dict(spec)
        spec["plugins"] = [str(planted)]
        conn.execute(text("UPDATE runs SET spec = :spec WHERE id = :id"),
                     {"spec": json.dumps(spec), "id": run_id})
    try:
        for command in (["pbt", "replay", run_id], ["pbt", "show", run_id],
                        ["runs", "show", run_id], ["runs", "list"]):
            done = flowopt(*command, "--store", str(work / "store"), cwd=tmp_path)
            assert not (tmp_path / "imported").exists(), command
        assert done.returncode == 0
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE runs SET spec = :spec WHERE id = :id"),
                         {"spec": json.dumps(original), "id": run_id})


def test_replay_with_another_pipeline_file_is_refused(pbt_run_with_a_plugin):
    work, run_id = pbt_run_with_a_plugin
    changed = work / "changed.yaml"
    changed.write_text((work / "pipeline.yaml").read_text(encoding="utf-8") + "# edited\n",
                       encoding="utf-8")
    done = flowopt("pbt", "replay", run_id, "--store", str(work / "store"),
                   "--pipeline", str(changed), cwd=work)
    assert done.returncode == 2
    assert "not the file the run was started from" in done.stderr
    assert not (work / "imported").exists()


def test_replay_with_the_runs_own_file_loads_its_plugins_beside_it(pbt_run_with_a_plugin,
                                                                   tmp_path):
    work, run_id = pbt_run_with_a_plugin
    done = flowopt("pbt", "replay", run_id, "--store", str(work / "store"), "--json",
                   "--pipeline", str(work / "pipeline.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["same"] is True
    assert (work / "imported").exists()  # the plugin beside the file, not one in the cwd
    (work / "imported").unlink()


def test_stored_spec_resolves_named_plugins_and_never_the_stored_relative_ones(tmp_path):
    data = {"pipeline": "p", "plugins": ["mine.py"], "nodes": {"a": {"kind": "toy.number"}}}
    with pytest.raises(SpecError, match="never imports code"):
        stored_spec(data)
    named = stored_spec(data, plugins=[str(tmp_path / "other.py")])
    assert named.spec.plugins == [str(tmp_path / "other.py")]
    assert stored_spec({**data, "plugins": []}).base_dir is None
