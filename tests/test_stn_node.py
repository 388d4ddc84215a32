"""tuner.stn as a pipeline node: the example pipeline, the store's schedule series,
export, every optimizer kind for the weight steps, Delta-STN, and bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowopt.artifacts import Dataset, Model
from flowopt.context import Context
from flowopt.errors import SpecError
from flowopt.graph import compile_pipeline
from flowopt.registry import REGISTRY
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec
from flowopt.store import Store

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "tune_stn.yaml"
SHORT = ["nodes.train.with.steps=200", "nodes.tune.with.warmup=40"]


def flowopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowopt", *args], capture_output=True,
                          text=True, timeout=300)


def test_the_example_pipeline_tunes_per_layer_dropout_and_input_noise_in_one_run(tmp_path):
    store = Store.open(str(tmp_path / "store"))
    graph = compile_pipeline(load_spec(PIPELINE, SHORT))
    result = Scheduler(graph, store).run()
    assert result.status == "succeeded", result.error
    assert graph.tuners["tune"].owned == ("net", "train", "score")
    params = result.best["params"]
    assert set(params) == {"dropout", "noise"} and len(params["dropout"]) == 2
    assert all(0.0 <= rate < 0.9 for rate in params["dropout"]) and 0.0 <= params["noise"] < 1
    # tune.train is a plain MLP at the final hyperparameters; `final` re-scores it
    exported = result.value("tune", "train.model")
    assert exported.recipe["builder"] == "mlp"
    assert exported.recipe["dropout"] == pytest.approx(params["dropout"])
    assert exported.recipe["input_noise"] == pytest.approx(params["noise"])
    assert result.metrics["final.loss"] == pytest.approx(result.best["objective"])
    # ... and predicts what the trained STN predicts
    network = result.value("tune", "network")
    assert network.recipe["builder"] == "stn"
    x = torch.rand(30, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(exported.module.eval()(x), network.module.eval()(x), atol=1e-5)
    # the schedule: the output and the metric series in the store agree
    schedule = result.value("tune", "schedule")
    hyper_steps = schedule["hyper_steps"]
    # one hyper step after each cycle of 5 weight steps but the last (nothing follows it)
    assert schedule["weight_steps"] == 200 and hyper_steps == (200 - 40) // 5 - 1
    assert schedule["schedule"][0]["params"]["dropout"] == pytest.approx([0.05, 0.05], abs=1e-4)
    assert schedule["schedule"][-1]["params"] == params
    store.flush()
    for name in ("dropout.0", "dropout.1", "input_noise"):
        series = store.metric_series(result.run_id, f"tune.hyper.{name}")
        assert len(series) == hyper_steps + 1  # the start, then after every hyper step
        steps = [step for step, _ in series]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] < 200
        assert len(store.metric_series(result.run_id, f"tune.hyper_scale.{name}")) == len(series)
    assert series[-1][1] == pytest.approx(params["noise"])
    trials = store.run(result.run_id).trials
    assert [(t.node, t.number, t.status) for t in trials] == [("tune", 0, "succeeded")]


@pytest.mark.parametrize("kind", sorted(k for k in REGISTRY.names() if k.startswith("optimizer.")))
def test_every_optimizer_kind_can_make_the_weight_steps(kind):
    import torch.nn.functional as F

    from flowopt.nodes.stn_layers import build_stn
    from flowopt.nodes.tuner.stn.loop import Settings, StnLoop
    from flowopt.nodes.optimizer.common import is_optimizer_kind, optimizer_for

    assert is_optimizer_kind(kind), f"{kind} is not built through optimizer_kind"
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 64, generator=generator), torch.randint(10, (128,), generator=generator)
    data = Dataset(x=x, y=y, meta={"task": "classification", "n_classes": 10, "n_features": 64})
    base = {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": [16], "dropout": 0.1}
    net = build_stn(base, [{"name": "dropout.0", "low": 0.0, "high": 0.9}])
    config = REGISTRY.get(kind).config.model_validate({"lr": 1e-2}).model_dump()
    loop = StnLoop(net, base, data, data, F.cross_entropy, optimizer_for(kind, config),
                   Settings(steps=12, batch_size=32, warmup=2, train_steps=2), seed=0)
    result = loop.run()
    assert result.hyper_steps == 4 and result.weight_steps == 12  # 5 cycles, none after the last
    before, after = net.layers[0].weight, result.net.layers[0].weight
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    assert result.net.point.item() != net.point.item()  # the hyper steps moved λ


def test_delta_stn_trains_general_and_response_weights_apart_and_its_gates_are_silent_at_lambda():
    import torch.nn.functional as F

    from flowopt.nodes.stn_layers import build_stn
    from flowopt.nodes.tuner.stn.loop import Settings, StnLoop

    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(96, 64, generator=generator), torch.randint(10, (96,), generator=generator)
    data = Dataset(x=x, y=y, meta={"task": "classification", "n_classes": 10, "n_features": 64})
    base = {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": [16], "dropout": 0.1}
    net = build_stn(base, [{"name": "dropout.0", "low": 0.0, "high": 0.9}], delta=True)
    loop = StnLoop(net, base, data, data, F.cross_entropy,
                   lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
                   Settings(steps=20, batch_size=32, warmup=5, train_steps=5, delta=True), seed=0)
    result = loop.run()
    assert result.passes == 2 * 20 + result.hyper_steps  # general + response update per step
    trained = result.net
    assert trained.layers[0].gate.abs().sum() > 0
    # at its own λ the Delta-STN is its general weights: the export is those weights
    plain, _ = trained.to_plain()
    assert torch.equal(plain[0].weight, trained.layers[0].weight)


# -- bad input -------------------------------------------------------------------------

def _variant(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = PIPELINE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "variant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


LR = (("  noise: 0.05\n", "  noise: 0.05\n  lr: 0.01\n"),
      ("search:\n", "search:\n  lr: {low: 1.0e-3, high: 0.1, log: true}\n"),
      ("lr: 0.01, momentum", 'lr: "${params.lr}", momentum'))
WIDTH = (("  noise: 0.05\n", "  noise: 0.05\n  width: 128\n"),
         ("search:\n", "search:\n  width: {low: 16, high: 256, integer: true}\n"),
         ("hidden: [128, 128]", 'hidden: ["${params.width}", 128]'))


@pytest.mark.parametrize("replacements, key, message", [
    (LR, "search.lr", "searched param 'lr' sets train.with.lr, which STN cannot tune "
                      "(STN tunes net's dropout, input_noise)"),
    (WIDTH, "search.width", "searched param 'width' sets net.with.hidden, which STN cannot "
                            "tune (STN tunes net's dropout, input_noise)"),
    ((("dropout: {low: 0.0, high: 0.9}", "dropout: {choices: [0.1, 0.5]}"),),
     "search.dropout", "has choices; STN tunes a range"),
    ((("dropout: {low: 0.0, high: 0.9}", "dropout: {low: 0.0, high: 1.0}"),),
     "search.dropout", "must lie in [0, 1)"),
    ((("kind: model.mlp", "kind: model.linear_toy"),),
     "nodes.net.kind", "model kind 'model.linear_toy' has no STN layers (STN layers exist for "
                       "model.mlp, model.cnn)"),
])
def test_what_stn_cannot_tune_is_refused_with_one_line_naming_what_it_can(
        tmp_path, replacements, key, message):
    if any("linear_toy" in new for _, new in replacements):
        _register_toy_model()
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(_variant(tmp_path, *replacements)))
    assert f"key '{key}'" in str(caught.value) and message in str(caught.value)


def _register_toy_model() -> None:
    from flowopt.registry import node

    if "model.linear_toy" in REGISTRY.names():
        return

    @node("model.linear_toy")
    def linear_toy(data: Dataset, ctx: Context, dropout: float = 0.0,
                   input_noise: float = 0.0, hidden: list[int] = [1]) -> Model:  # noqa: B006
        """A toy model kind without STN layers. Inputs ``data``; outputs ``model``;
        ``with:`` ``dropout``, ``input_noise``, ``hidden`` (ignored)."""
        raise AssertionError("never runs: the pipeline is refused first")


@pytest.mark.parametrize("override, field", [
    ("nodes.tune.with.train_steps=0", "train_steps"),
    ("nodes.tune.with.valid_steps=0", "valid_steps"),
    ("nodes.tune.with.entropy_weight=-0.001", "entropy_weight"),
    ("nodes.tune.with.warmup=5000", "warmup"),
    ("nodes.tune.with.parallel=2", "parallel"),
])
def test_bad_stn_fields_are_refused_before_anything_runs(override, field):
    with pytest.raises(SpecError) as caught:
        compile_pipeline(load_spec(PIPELINE, [override]))
    assert f"nodes.tune.with.{field}" in str(caught.value)


@pytest.mark.parametrize("args", [
    ["-s", "nodes.tune.with.entropy_weight=-1"],
    [],  # the learning rate searched: see _variant(LR)
])
def test_bad_input_exits_2_with_one_line_and_stores_nothing(tmp_path, args):
    path = PIPELINE if args else _variant(tmp_path, *LR)
    store = tmp_path / "store"
    done = flowopt("run", str(path), "--store", str(store), *args)
    assert done.returncode == 2, done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert ("entropy_weight" in first) if args else ("which STN cannot tune" in first)
    assert not store.exists()


@pytest.mark.parametrize("delta", [False, True])
def test_a_run_restored_from_a_checkpoint_ends_bit_for_bit_as_one_never_stopped(delta):
    import torch.nn.functional as F

    from flowopt.nodes.optimizer.common import optimizer_for
    from flowopt.nodes.optimizer.training import decode_checkpoint, encode_checkpoint
    from flowopt.nodes.stn_layers import build_stn
    from flowopt.nodes.tuner.stn.loop import Settings, StnLoop

    generator = torch.Generator().manual_seed(3)
    x, y = torch.rand(96, 64, generator=generator), torch.randint(10, (96,), generator=generator)
    data = Dataset(x=x, y=y, meta={"task": "classification", "n_classes": 10, "n_features": 64})
    base = {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": [16], "dropout": 0.1}
    net = build_stn(base, [{"name": "dropout.0", "low": 0.0, "high": 0.9}], delta=delta)
    make = optimizer_for("optimizer.adam", {"lr": 1e-2})
    settings = Settings(steps=40, batch_size=32, warmup=4, train_steps=3, delta=delta,
                        eval_every=10, checkpoint_every=10)

    def loop(log=None):
        return StnLoop(net, base, data, data, F.cross_entropy, make, settings, seed=5,
                       log=log)

    straight = loop().run()
    saved: list[bytes] = []
    first = loop()
    first.run(on_checkpoint=lambda run: saved.append(encode_checkpoint(run.checkpoint())))
    assert len(saved) == 3  # after steps 13, 25 and 37 (warm-up 4, cycles of 3)
    logged: list[tuple[str, float, int | None]] = []
    resumed = loop(lambda *row: logged.append(row)).restore(decode_checkpoint(saved[1])).run()
    assert resumed.schedule == straight.schedule  # whole, no point twice
    assert resumed.final == straight.final and resumed.scales == straight.scales
    assert (resumed.weight_steps, resumed.hyper_steps, resumed.passes) == \
        (straight.weight_steps, straight.hyper_steps, straight.passes)
    for a, b in zip(resumed.net.state_dict().values(), straight.net.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    series = [step for key, _, step in logged if key == "hyper.dropout.0"]
    assert series == [step - 1 for step, _ in straight.schedule]


def test_a_killed_stn_run_resumes_from_its_last_checkpoint_and_ends_as_one_never_killed(tmp_path):
    import json

    import pbt_support

    overrides = ["nodes.train.with.steps=600", "nodes.tune.with.warmup=20",
                 "nodes.tune.with.checkpoint_every=40"]
    args = [a for o in overrides for a in ("-s", o)]
    command = [sys.executable, "-m", "flowopt", "run", str(PIPELINE), "--json", *args]
    killed = tmp_path / "killed"
    saved_at = None

    def ready() -> bool:  # trial row 0 names a checkpoint past weight step 120
        nonlocal saved_at
        if not (killed / "flowopt.db").exists():
            return False
        store = Store.open(killed, create=False)
        runs = store.runs()
        trials = store.run(runs[0].run_id).trials if runs else []
        store.close()
        row = next((t for t in trials if t.node == "tune" and t.status == "running"), None)
        if row is not None and row.steps >= 150:  # passes: 120+ weight steps saved
            saved_at = row.steps
        return saved_at is not None

    pbt_support.kill_when([*command, "--store", str(killed)], ready, timeout=600)
    assert saved_at is not None and saved_at < 600, "the run finished before it could be killed"
    resumed = subprocess.run([*command, "--store", str(killed)], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run([*command, "--store", str(tmp_path / "straight")],
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = json.loads(resumed.stdout), json.loads(straight.stdout)
    # it went on from a checkpoint (a weight step of a cycle boundary), not from scratch
    assert 120 <= a["metrics"]["tune.resumed_from"] < 600
    assert "tune.resumed_from" not in b["metrics"]
    assert a["best"]["params"] == b["best"]["params"]  # bit for bit: same floats
    assert a["best"]["objective"] == b["best"]["objective"]
    series = {}
    for name, report in (("resumed", a), ("straight", b)):
        store = Store.open(tmp_path / ("killed" if name == "resumed" else "straight"))
        series[name] = store.metric_series(report["run_id"], "tune.hyper.dropout.0")
        store.close()
    assert series["resumed"] == series["straight"]  # the whole schedule, no point twice
    steps = [step for step, _ in series["resumed"]]
    assert len(steps) == len(set(steps))
