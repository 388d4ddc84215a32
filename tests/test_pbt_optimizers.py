"""Every optimizer kind declares, once, what may change while it trains (issue 12, item 2).

PBT (and early stopping, STN) read that declaration instead of a list of kind names, so
they train with every optimizer kind — here the quickstart's own ``optimizer.adam8bit``
— and a search over a field the kind cannot change mid-run is refused at compile time
with one line naming the field.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowopt.errors import SpecError
from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.registry import REGISTRY
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def quickstart_pbt(tmp_path: Path, search: dict, train_with: dict | None = None) -> Path:
    """The quickstart with its tuner swapped for tuner.pbt, small enough for a test."""
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["search"] = search
    data["nodes"]["train"]["with"].update({"steps": 60, **(train_with or {})})
    data["nodes"]["tune"] = {"kind": "tuner.pbt", "in": {"objective": "score.accuracy"},
                             "with": {"mode": "max", "population": 3, "interval": 20,
                                      "parallel": 1}}
    path = tmp_path / "quickstart_pbt.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def optimizer_kinds() -> list[str]:
    return [n for n in REGISTRY.names() if n.startswith("optimizer.")]


def test_every_optimizer_kind_declares_its_shared_fields_and_what_may_change_mid_run():
    kinds = optimizer_kinds()
    assert {"optimizer.adam8bit", "optimizer.lion", "optimizer.stable_spam",
            "optimizer.sgd", "optimizer.momentum8bit"} <= set(kinds)
    for name in kinds:
        kind = REGISTRY.get(name)
        fields = list(kind.config.model_fields)
        assert fields[-6:] == ["steps", "batch_size", "schedule", "on_nonfinite", "eval_every",
                               "device"], name
        assert [p.name for p in kind.inputs] == ["model", "data", "loss", "val"], name
        declared = kind.training
        assert declared is not None and declared.steps == "steps", name
        assert {"lr", "weight_decay", "schedule"} <= set(declared.mutable), name
        assert not {"steps", "batch_size", "eps", "block_size", "device"} & set(declared.mutable)
        assert ("betas" in fields) == ("betas" in declared.mutable), name
        assert ("momentum" in fields) == ("momentum" in declared.mutable), name


def test_pbt_tunes_the_quickstarts_adam8bit(tmp_path):
    path = quickstart_pbt(tmp_path, {"lr": {"low": 3.0e-4, "high": 3.0e-2, "log": True}})
    recorder = MemoryRecorder()
    graph = compile_pipeline(load_spec(path))
    assert graph.tuners["tune"].owned == ("train", "quant", "score")
    result = Scheduler(graph, recorder).run()
    assert result.status == "succeeded", result.error
    members = [t for t in recorder.trials.values() if t.node_id == "tune"]
    assert sorted(t.number for t in members) == [0, 1, 2]
    assert len({t.params["lr"] for t in members}) == 3  # each member its own rate
    model = result.value("tune", "train.model")
    assert model.meta["optimizer"] == "optimizer.adam8bit"
    assert model.meta["state_bytes_per_param"] < 4  # trained with 8-bit state, not Adam's 8
    # the exported best member, scored again downstream, is the best one
    assert result.metrics["final.accuracy"] == result.best["objective"] == \
        max(t.objective for t in members)
    events = [e.event for run, node, e in recorder.population]
    assert "exploit" in events and "explore" in events


@pytest.mark.parametrize("kind", ["optimizer.lion", "optimizer.stable_spam"])
def test_pbt_trains_other_optimizer_kinds_changing_their_weight_decay(tmp_path, kind):
    path = quickstart_pbt(tmp_path, {"wd": {"low": 1.0e-5, "high": 1.0e-2, "log": True}},
                          {"weight_decay": "${params.wd}", "steps": 40})
    text = path.read_text(encoding="utf-8").replace("optimizer.adam8bit", kind)
    path.write_text(text.replace("params:\n", "params:\n  wd: 1.0e-4\n", 1), encoding="utf-8")
    recorder = MemoryRecorder()
    result = Scheduler(compile_pipeline(load_spec(path)), recorder).run()
    assert result.status == "succeeded", result.error
    assert result.value("tune", "train.model").meta["optimizer"] == kind
    assert 1.0e-5 <= result.best["params"]["wd"] <= 1.0e-2


def test_a_field_the_kind_cannot_change_mid_run_is_refused_naming_it(tmp_path):
    path = quickstart_pbt(tmp_path, {"eps": {"low": 1.0e-9, "high": 1.0e-6, "log": True}},
                          {"eps": "${params.eps}"})
    text = path.read_text(encoding="utf-8").replace("params:\n", "params:\n  eps: 1.0e-8\n", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(path))
    assert caught.value.key == "search.eps"
    assert "searched param 'eps' sets train.with.eps, which optimizer.adam8bit cannot change " \
           "while train trains (tuner.pbt can change train's lr, betas, weight_decay, " \
           "schedule)" in str(caught.value)


def test_the_quickstart_searching_the_width_with_pbt_exits_2_with_one_line(tmp_path):
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["nodes"]["tune"]["kind"] = "tuner.pbt"
    data["nodes"]["tune"]["with"] = {"mode": "max", "population": 2}
    path = tmp_path / "width.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(path), "--store",
                           str(store)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) <= 2  # the line, and perhaps a hint
    assert "searched param 'hidden' sets net.with.hidden, which cannot change while train " \
           "trains" in done.stderr
    assert not store.exists()


def test_a_trainer_changes_its_mutable_fields_between_steps_and_refuses_the_rest():
    import torch

    from flowopt.context import Context
    from flowopt.nodes import data, loss, model

    import threading

    ctx = Context(run_id="t", node_id="train", seed=0, device="cpu",
                  cancel=threading.Event(), emit=lambda *a, **k: None,
                  log_metric=lambda *a: None)
    digits = data.digits.fn()
    net = model.mlp.fn(digits, ctx, hidden=[16])
    kind = REGISTRY.get("optimizer.adam8bit")
    config = kind.config.model_validate({"steps": 20, "batch_size": 32}).model_dump(mode="json")
    inputs = {"model": net, "data": digits, "loss": loss.cross_entropy.fn()}
    trainer = kind.training.start(config, inputs, ctx)
    trainer.run(until=10)
    trainer.update({"lr": 0.01, "betas": [0.8, 0.99]})
    assert trainer.base_lrs == [0.01] * len(trainer.optimizer.param_groups)
    assert all(g["betas"] == (0.8, 0.99) for g in trainer.optimizer.param_groups)
    with pytest.raises(ValueError, match="'eps' cannot change while it trains"):
        trainer.update({"eps": 1e-6})
    state = kind.training.decode(kind.training.encode(trainer.checkpoint()))
    again = kind.training.start(config, inputs, ctx).restore(state)
    assert again.step == 10
    assert all(torch.equal(a, b) for a, b in zip(again.module.state_dict().values(),
                                                trainer.module.state_dict().values()))
