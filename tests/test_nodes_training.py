"""model.mlp, the loss kinds and the optimizer kinds (training loop)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flowopt.artifacts import Dataset, Loss, Model, build, decode, encode
from flowopt.errors import Interrupted
from flowopt.nodes import data, loss, model, optimizer
from flowopt.nodes.layers import SeededDropout


def mlp(dataset, make_ctx, seed=0, **config) -> Model:
    return model.mlp.fn(dataset, make_ctx(seed), **config)


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- model.mlp ---------------------------------------------------------------------------


def test_mlp_layers_are_sized_from_the_dataset_meta(blobs, make_ctx):
    net = mlp(blobs, make_ctx, hidden=[32, 16], activation="tanh")
    assert [(m.in_features, m.out_features) for m in linears(net.module)] == \
        [(6, 32), (32, 16), (16, 3)]
    assert sum(isinstance(m, nn.Tanh) for m in net.module) == 2
    assert net.module(blobs.x).shape == (240, 3)
    n_params = (6 * 32 + 32) + (32 * 16 + 16) + (16 * 3 + 3)
    assert net.meta == {"task": "classification", "n_params": n_params}
    assert net.recipe == {"builder": "mlp", "n_inputs": 6, "n_outputs": 3, "hidden": [32, 16],
                          "activation": "tanh", "dropout": 0.0}


def test_mlp_for_regression_has_one_output_and_empty_hidden_is_linear(make_ctx):
    reg = data.synthetic.fn(make_ctx(), task="regression", n_samples=10, n_features=4)
    net = mlp(reg, make_ctx, hidden=[])
    assert [(m.in_features, m.out_features) for m in linears(net.module)] == [(4, 1)]


def test_mlp_init_is_reproducible_per_seed_and_differs_between_seeds(blobs, make_ctx):
    a, b, c = (mlp(blobs, make_ctx, seed).module for seed in (5, 5, 6))
    assert state_equal(a, b)
    assert not state_equal(a, c)


def test_mlp_init_uses_pytorch_linear_bounds_and_never_the_global_rng(blobs, make_ctx):
    state = torch.get_rng_state()
    net = mlp(blobs, make_ctx, hidden=[256])
    assert torch.equal(state, torch.get_rng_state())
    for layer in linears(net.module):
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        # Not degenerate: uniform draws fill most of the interval.
        assert layer.weight.abs().max() > 0.9 * bound


def test_mlp_round_trips_through_the_artifact_codec(blobs, make_ctx):
    net = mlp(blobs, make_ctx, hidden=[8], activation="gelu", dropout=0.25)
    type_name, fmt, payload = encode(net)
    assert (type_name, fmt) == ("model", "safetensors")
    restored = decode(type_name, fmt, payload)
    assert restored.recipe == net.recipe and restored.meta == net.meta
    assert state_equal(restored.module, net.module)
    assert any(isinstance(m, SeededDropout) for m in restored.module)
    net.module.eval(), restored.module.eval()
    assert torch.equal(restored.module(blobs.x), net.module(blobs.x))


def test_mlp_builder_alone_is_deterministic(blobs):
    recipe = {"builder": "mlp", "n_inputs": 6, "n_outputs": 3, "hidden": [4]}
    assert state_equal(build(recipe), build(recipe))


# --- losses ------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_cross_entropy_matches_torch_including_label_smoothing(smoothing):
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(16, 5, generator=generator)
    targets = torch.randint(0, 5, (16,), generator=generator)
    fn = loss.cross_entropy.fn(label_smoothing=smoothing).build()
    expected = F.cross_entropy(logits, targets, label_smoothing=smoothing)
    assert torch.allclose(fn(logits, targets), expected)
    if smoothing:
        # Smoothing by hand: (1 - s) * NLL + s * mean over classes of -log p.
        logp = logits.log_softmax(-1)
        by_hand = ((1 - smoothing) * -logp.gather(1, targets[:, None]).squeeze(1)
                   - smoothing * logp.mean(-1)).mean()
        assert torch.allclose(fn(logits, targets), by_hand)


def test_cross_entropy_z_loss_adds_the_squared_log_partition():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1])
    plain = loss.cross_entropy.fn().build()(logits, targets)
    with_z = loss.cross_entropy.fn(z_loss=0.01).build()(logits, targets)
    z = logits.logsumexp(-1)
    assert torch.allclose(with_z - plain, 0.01 * (z ** 2).mean())


def test_loss_recipes_survive_the_codec_and_rebuild():
    xent = loss.cross_entropy.fn(label_smoothing=0.2)
    assert xent.recipe == {"builder": "cross_entropy", "label_smoothing": 0.2, "z_loss": 0.0}
    restored = decode(*encode(xent))
    assert isinstance(restored, Loss) and restored.recipe == xent.recipe
    logits, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.equal(restored.build()(logits, targets), xent.build()(logits, targets))


def test_mse_compares_a_single_output_column_with_flat_targets():
    fn = loss.mse.fn().build()
    outputs, targets = torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])
    assert fn(outputs, targets).item() == pytest.approx((1 + 4) / 2)


# --- optimizers --------------------------------------------------------------------------


def full_loss(net: Model, dataset: Dataset) -> float:
    with torch.no_grad():
        return F.cross_entropy(net.module.eval()(dataset.x), dataset.y).item()


XENT = Loss(recipe={"builder": "cross_entropy", "label_smoothing": 0.0, "z_loss": 0.0})
TRAINERS = {"sgd": (optimizer.sgd, {"lr": 0.1, "momentum": 0.9}),
            "adam": (optimizer.adam, {"lr": 0.01}),
            "adamw": (optimizer.adamw, {"lr": 0.01})}


def train(name, net, dataset, ctx, **config):
    factory, defaults = TRAINERS[name]
    return factory.fn(net, dataset, XENT, ctx, **{**defaults, "steps": 60, "batch_size": 32,
                                                  "device": "cpu", **config})


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_a_short_training_run_lowers_the_loss(blobs, make_ctx, name):
    net = mlp(blobs, make_ctx, hidden=[16])
    before = full_loss(net, blobs)
    trained = train(name, net, blobs, make_ctx())
    assert full_loss(trained, blobs) < 0.5 * before
    assert trained.meta["optimizer"] == f"optimizer.{name}" and trained.meta["steps"] == 60
    assert trained.recipe == net.recipe


def test_training_leaves_its_input_model_untouched(blobs, make_ctx):
    net = mlp(blobs, make_ctx, hidden=[16])
    snapshot = {k: v.clone() for k, v in net.module.state_dict().items()}
    trained = train("adam", net, blobs, make_ctx())
    assert trained.module is not net.module
    assert all(torch.equal(v, snapshot[k]) for k, v in net.module.state_dict().items())


def test_training_is_reproducible_per_seed_even_with_dropout(blobs, make_ctx):
    net = mlp(blobs, make_ctx, hidden=[16], dropout=0.5)
    runs = [train("adam", net, blobs, make_ctx(seed)).module for seed in (3, 3, 4)]
    assert state_equal(runs[0], runs[1])
    assert not state_equal(runs[0], runs[2])


def test_training_logs_the_loss_every_ten_steps_and_reports_each_step(blobs, make_ctx):
    ctx = make_ctx()
    trained = train("adam", mlp(blobs, make_ctx), blobs, ctx, steps=25)
    losses = [(value, step) for key, value, step in ctx.logged if key == "loss"]
    assert [step for _, step in losses] == [10, 20, 25]
    assert losses[-1][0] < losses[0][0]
    assert trained.meta["final_loss"] == losses[-1][0]
    assert [step for key, _, step in ctx.logged if key == "lr"] == list(range(1, 26))
    assert {key for key, _, _ in ctx.logged} == {"loss", "lr", "state_bytes_per_param"}
    progress = [fields for event, fields in ctx.events if event == "node_progress"]
    assert [(p["step"], p["total"]) for p in progress] == [(s, 25) for s in range(1, 26)]


def test_trained_model_is_returned_on_the_cpu_in_eval_mode(blobs, make_ctx):
    trained = train("sgd", mlp(blobs, make_ctx), blobs, make_ctx(), steps=2)
    assert not trained.module.training
    assert all(p.device.type == "cpu" for p in trained.module.parameters())


def test_cancelling_the_run_stops_training(blobs, make_ctx):
    ctx = make_ctx()
    ctx.cancel_event.set()
    with pytest.raises(Interrupted):
        train("adam", mlp(blobs, make_ctx), blobs, ctx)


def test_a_diverging_run_fails_instead_of_returning_garbage(blobs, make_ctx):
    with pytest.raises(FloatingPointError, match="lower lr"):
        train("sgd", mlp(blobs, make_ctx), blobs, make_ctx(), lr=1e30, momentum=0.0)


def test_regression_trains_with_mse(make_ctx):
    reg = data.synthetic.fn(make_ctx(), task="regression", n_samples=200, n_features=3, noise=0.1)
    net = mlp(reg, make_ctx, hidden=[16])
    mse = Loss(recipe={"builder": "mse"})
    trained = optimizer.adam.fn(net, reg, mse, make_ctx(), lr=0.01, steps=150, device="cpu")
    with torch.no_grad():
        before = F.mse_loss(net.module(reg.x).squeeze(1), reg.y).item()
        after = F.mse_loss(trained.module(reg.x).squeeze(1), reg.y).item()
    assert after < 0.1 * before


def test_optimizer_defaults_follow_the_papers_and_pytorch():
    def defaults(factory):
        return factory.kind.config().model_dump()

    shared = {"steps": 200, "batch_size": 64, "device": "auto", "on_nonfinite": "fail",
              "eval_every": 50, "schedule": {"name": "constant", "warmup": 0.0}}
    assert defaults(optimizer.adam) == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                        "weight_decay": 0.0, **shared}
    assert defaults(optimizer.adamw) == {**defaults(optimizer.adam), "weight_decay": 0.01}
    assert defaults(optimizer.sgd) == {"lr": 1e-3, "momentum": 0.0, "nesterov": False,
                                       "weight_decay": 0.0, **shared}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_returns_a_cpu_model_close_to_cpu_training(blobs, make_ctx):
    net = mlp(blobs, make_ctx, hidden=[16])
    on_gpu = train("adam", net, blobs, make_ctx(), device="cuda")
    assert all(p.device.type == "cpu" for p in on_gpu.module.parameters())
    assert full_loss(on_gpu, blobs) < 0.5 * full_loss(net, blobs)


# --- non-finite losses, task checks, validation curves, checkpoints ------------------------

class PoisonAt:
    """A loss recipe stand-in: cross-entropy, but NaN at the given call numbers."""

    def __init__(self, bad_calls):
        self.bad_calls, self.calls = set(bad_calls), 0
        self.recipe = {"builder": "cross_entropy"}

    def build(self):
        def fn(outputs, targets):
            self.calls += 1
            value = F.cross_entropy(outputs, targets)
            return value * float("nan") if self.calls in self.bad_calls else value
        return fn


def test_a_nan_loss_fails_the_node_naming_the_exact_step(blobs, make_ctx):
    from flowopt.nodes.optimizer.training import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match="at step 7;") as info:
        optimizer.adam.fn(mlp(blobs, make_ctx), blobs, PoisonAt({7}), make_ctx(), steps=30,
                          device="cpu")
    assert info.value.step == 7


def test_skip_step_drops_the_update_of_a_nan_step_and_counts_it(blobs, make_ctx):
    net = mlp(blobs, make_ctx, hidden=[16])
    trained = optimizer.adam.fn(net, blobs, PoisonAt({3, 4, 20}), make_ctx(), steps=40,
                                device="cpu", on_nonfinite="skip_step", lr=0.01)
    assert trained.meta["skipped_steps"] == 3
    assert all(torch.isfinite(p).all() for p in trained.module.parameters())
    assert full_loss(trained, blobs) < 0.5 * full_loss(net, blobs)


def test_a_regression_loss_on_a_classifier_fails_before_the_first_step(blobs, make_ctx):
    ctx = make_ctx()
    with pytest.raises(ValueError, match="'mse' is a regression loss, but the model is for "
                                         "classification"):
        optimizer.lion.fn(mlp(blobs, make_ctx), blobs, Loss(recipe={"builder": "mse"}), ctx)
    assert ctx.events == [] and ctx.logged == []


def test_a_validation_set_gives_accuracy_and_loss_curves(blobs, make_ctx):
    ctx = make_ctx()
    trained = optimizer.adam.fn(mlp(blobs, make_ctx), blobs, XENT, ctx, val=blobs, lr=0.01,
                                steps=25, eval_every=10, device="cpu")
    accuracy = [(step, value) for key, value, step in ctx.logged if key == "val_accuracy"]
    assert [step for step, _ in accuracy] == [10, 20, 25]
    assert [step for key, _, step in ctx.logged if key == "val_loss"] == [10, 20, 25]
    assert trained.meta["val_curve"] == [[s, v] for s, v in accuracy]
    assert accuracy[-1][1] > 0.9


@pytest.mark.parametrize("name,options", [
    ("adam", {"lr": 0.01}),
    ("adam8bit", {"lr": 0.01, "block_size": 64, "min_8bit_size": 0}),
    ("stable_spam", {"lr": 0.01, "reset_every": 7}),
])
def test_a_run_resumed_from_a_checkpoint_equals_an_uninterrupted_run(blobs, make_ctx, name, options):
    from safetensors.torch import load, save

    from flowopt.nodes.optimizer.training import Trainer

    net = mlp(blobs, make_ctx, hidden=[16], dropout=0.3)
    factory = {"adam": lambda p: torch.optim.Adam(p, **options)}
    if name != "adam":
        from flowopt.nodes.optimizer.algorithms.eightbit import Adam8bit
        from flowopt.nodes.optimizer.algorithms.stable_spam import StableSPAM

        cls = Adam8bit if name == "adam8bit" else StableSPAM
        factory[name] = lambda p: cls(p, **options)

    def trainer():
        return Trainer(net, blobs, XENT, make_ctx(5), make_optimizer=factory[name], steps=23,
                       batch_size=32, device="cpu", name=name,
                       schedule=optimizer.common._SCHEDULE.validate_python("cosine"))

    straight = trainer().run().result()
    first = trainer().run(until=13)
    tensors, meta = first.checkpoint()
    tensors = load(save(tensors))  # through safetensors, as a store would keep it
    resumed = trainer().restore(tensors, meta).run().result()
    assert state_equal(straight.module, resumed.module)
    assert resumed.meta["final_loss"] == straight.meta["final_loss"]


def test_resuming_never_writes_into_the_checkpoint_it_came_from(blobs, make_ctx):
    """PBT members copy one checkpoint: training one of them must leave it intact."""
    from flowopt.nodes.optimizer.training import Trainer

    net = mlp(blobs, make_ctx, hidden=[16])

    def trainer():
        return Trainer(net, blobs, XENT, make_ctx(5),
                       make_optimizer=lambda p: torch.optim.Adam(p, lr=0.01), steps=20,
                       batch_size=32, device="cpu", name="adam",
                       schedule=optimizer.common._SCHEDULE.validate_python("constant"))

    tensors, meta = trainer().run(until=10).checkpoint()
    before = {k: v.clone() for k, v in tensors.items()}
    first = trainer().restore(tensors, meta).run().result()
    assert all(torch.equal(before[k], tensors[k]) for k in tensors)
    second = trainer().restore(tensors, meta).run().result()
    assert state_equal(first.module, second.module)
