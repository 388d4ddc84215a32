"""STN layers: a fresh STN computes the plain model, export folds the gates exactly,
hyperparameters map from and to their unconstrained form, and STN models store as recipes."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from flowopt.artifacts import Model
from flowopt.nodes.layers import make_cnn, make_mlp
from flowopt.nodes.stn_layers import (Hyper, StnConv2d, StnLinear, build_stn, default_hyper,
                                      load_general)

MLP = {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": [32, 16],
       "activation": "relu", "dropout": 0.1}
CNN = {"builder": "cnn", "n_inputs": 64, "n_outputs": 10, "image": [1, 8, 8],
       "channels": [4, 8], "hidden": 16}


def _x(rows: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(rows, 64, generator=torch.Generator().manual_seed(seed))


def _randomise_gates(net: nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.stn_layers():
            layer.gate.copy_(0.3 * torch.randn(layer.gate.shape, generator=generator))


@pytest.mark.parametrize("cls, plain, x", [
    (StnLinear, lambda g: make_mlp(5, 3, [], generator=g)[0], torch.randn(7, 5)),
    (StnConv2d, lambda g: make_cnn(16, 3, [1, 4, 4], [2], 4, generator=g)[1],
     torch.randn(7, 1, 4, 4)),
])
def test_a_layer_with_zero_hyper_gates_equals_the_plain_layer_at_any_gate_input(cls, plain, x):
    layer = cls(x.shape[1], 3 if cls is StnLinear else 2, 4, torch.Generator().manual_seed(0))
    reference = plain(torch.Generator().manual_seed(3))
    with torch.no_grad():
        layer.weight.copy_(reference.weight)
        layer.bias.copy_(reference.bias)
    gate_input = torch.randn(7, 4)
    assert torch.allclose(layer(x, gate_input), reference(x), atol=1e-6)
    with torch.no_grad():
        layer.gate.fill_(0.5)  # gates open: the response weights now change the output
    assert not torch.allclose(layer(x, gate_input), reference(x), atol=1e-3)


@pytest.mark.parametrize("base, build", [(MLP, make_mlp), (CNN, make_cnn)])
def test_a_fresh_stn_predicts_what_the_plain_model_it_was_built_from_predicts(base, build):
    plain = build(**{k: v for k, v in base.items() if k != "builder"},
                  generator=torch.Generator().manual_seed(4)).eval()
    net = build_stn(base, default_hyper(base), generator=torch.Generator().manual_seed(5))
    load_general(net, plain)
    net.eval()
    x = _x()
    assert torch.allclose(net(x), plain(x), atol=1e-5)


@pytest.mark.parametrize("base", [MLP, CNN])
@pytest.mark.parametrize("delta", [False, True])
def test_export_is_a_plain_model_that_predicts_exactly_what_the_stn_predicts(base, delta):
    net = build_stn(base, default_hyper(base), delta=delta).eval()
    _randomise_gates(net)
    with torch.no_grad():
        net.point.copy_(torch.linspace(-2.0, 1.0, len(net.point)))
    plain, recipe = net.to_plain()
    x = _x()
    assert torch.allclose(plain.eval()(x), net(x), atol=1e-5)
    assert recipe["builder"] == base["builder"]
    now = net.current()
    assert recipe["dropout"] == pytest.approx([now[f"dropout.{i}"]
                                               for i in range(len(recipe["dropout"]))])
    assert recipe["input_noise"] == pytest.approx(now["input_noise"])
    # a Delta-STN's gates see λ - λ_now: silent at its own point, unlike an STN's
    assert torch.allclose(net(x), net(x, gate=torch.zeros(20, len(net.point))), atol=1e-6) == delta


def test_dropout_rates_are_one_per_example_while_training():
    net = build_stn(MLP, [{"name": "dropout.0", "low": 0.0, "high": 0.9}]).train()
    x = torch.ones(2, 64)
    values = torch.tensor([[0.0], [0.85]])
    net.generator = torch.Generator().manual_seed(0)
    hidden = net.activation(net.layers[0](net._noise(x, values), net.default_gate(2)))
    dropped = net._drop(hidden, values, 0)
    assert torch.equal(dropped[0], hidden[0])  # rate 0: untouched
    zeroed = (dropped[1] == 0) & (hidden[1] != 0)
    assert 0.6 < zeroed.float().sum() / (hidden[1] != 0).float().sum() < 1.0


@pytest.mark.parametrize("hyper, value", [
    (Hyper("dropout.0", 0.0, 0.9), 0.05),
    (Hyper("input_noise", 0.0, math.inf), 0.3),
    (Hyper("x", -math.inf, 2.0), 1.5),
    (Hyper("x", 1e-4, 1e-1, log=True), 3e-3),
    (Hyper("cutout", 0.0, 4.0, integer=True), 2.0),
])
def test_hyperparameters_map_from_their_unconstrained_form_and_back(hyper, value):
    u = torch.tensor([hyper.unconstrained(value)])
    assert hyper.value(u).item() == pytest.approx(value, rel=1e-4)
    far = hyper.value(torch.tensor([-40.0, 40.0]))
    slack = 1e-6 * max(1.0, abs(hyper.low) if math.isfinite(hyper.low) else 1.0)  # float32
    assert hyper.low - slack <= far.min().item() and far.max().item() <= hyper.high + 1e-6


def test_an_integer_hyperparameter_takes_every_value_of_its_range_and_only_those():
    hyper = Hyper("cutout", 0.0, 4.0, integer=True)
    values = hyper.value(torch.linspace(-8, 8, 2001))
    assert set(values.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}


def test_an_stn_model_is_stored_as_a_recipe_and_weights():
    from safetensors.torch import load, save

    base = dict(CNN, cutout=2)
    hyper = default_hyper(base)
    net = build_stn(base, hyper, generator=torch.Generator().manual_seed(7)).eval()
    _randomise_gates(net)
    with torch.no_grad():
        net.point.fill_(0.4)
    recipe = {"builder": "stn", "base": base, "hyper": hyper, "delta": False}
    buffer = io.BytesIO(save(net.state_dict()))
    again = Model.from_recipe(recipe).module
    again.load_state_dict(load(buffer.getvalue()))
    again.eval()
    x = _x()
    assert torch.equal(again(x), net(x))
    assert again.current() == net.current()


def test_model_nodes_build_stn_layers_when_asked(make_ctx):
    from flowopt.artifacts import Dataset
    from flowopt.nodes.model import cnn, mlp

    data = Dataset(x=_x(), y=torch.zeros(20, dtype=torch.long),
                   meta={"task": "classification", "n_classes": 10, "n_features": 64})
    for kind, options in ((mlp, {"hidden": [8], "dropout": 0.2}), (cnn, {"channels": [2]})):
        plain = kind.fn(data, make_ctx(3), **options)
        stn = kind.fn(data, make_ctx(3), **options, stn=True)
        assert stn.recipe["builder"] == "stn" and stn.recipe["base"] == plain.recipe
        names = [h["name"] for h in stn.recipe["hyper"]]
        assert "input_noise" in names and "dropout.0" in names
        x = _x()
        assert torch.allclose(stn.module.eval()(x), plain.module.eval()(x), atol=1e-5)


def test_cutout_zeroes_a_square_of_each_examples_own_size():
    from flowopt.nodes.layers import cutout

    x = torch.ones(64, 1, 12, 12)
    sizes = torch.tensor([0.0, 1.0, 2.0, 3.0] * 16)
    out = cutout(x, sizes, torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1).float()
    assert torch.all(zeros <= sizes ** 2)  # a square, clipped at the border
    assert torch.equal(zeros[sizes == 0], torch.zeros(16))
    # most centres are far enough from the border for the whole square
    for size in (1.0, 2.0, 3.0):
        assert (zeros[sizes == size] == size ** 2).float().mean() > 0.5


def test_a_cnn_stn_tunes_an_integer_cutout_with_per_example_sizes():
    import torch.nn.functional as F

    from flowopt.artifacts import Dataset
    from flowopt.nodes.tuner.stn.loop import Settings, StnLoop

    generator = torch.Generator().manual_seed(2)
    data = Dataset(x=torch.rand(64, 64, generator=generator),
                   y=torch.randint(10, (64,), generator=generator),
                   meta={"task": "classification", "n_classes": 10, "n_features": 64})
    base = dict(CNN, cutout=2)
    hyper = [{"name": "cutout", "low": 0.0, "high": 4.0, "integer": True},
             {"name": "dropout.2", "low": 0.0, "high": 0.9}]
    net = build_stn(base, hyper)
    assert net.current()["cutout"] == 2.0
    result = StnLoop(net, base, data, data, F.cross_entropy,
                     lambda p: torch.optim.SGD(p, lr=0.01), seed=0,
                     settings=Settings(steps=8, batch_size=16, warmup=2, train_steps=2)).run()
    assert all(values["cutout"] in (0.0, 1.0, 2.0, 3.0, 4.0) for _, values in result.schedule)
    assert result.plain.recipe["cutout"] == int(result.final["cutout"])
    x = data.x[:5]
    assert torch.allclose(result.plain.module.eval()(x), result.net(x), atol=1e-5)


def test_plain_models_take_a_dropout_rate_per_layer_and_input_noise():
    from flowopt.nodes.layers import InputNoise, SeededDropout

    module = make_mlp(64, 10, [16, 8], dropout=[0.1, 0.3], input_noise=0.2, noise="masking")
    drops = [m.p for m in module if type(m) is SeededDropout]
    noise = [m for m in module if isinstance(m, InputNoise)]
    assert drops == [0.1, 0.3] and noise[0].p == 0.2 and noise[0].kind == "masking"
    with pytest.raises(ValueError, match="3 rates for 2 hidden layers"):
        make_mlp(64, 10, [16, 8], dropout=[0.1, 0.2, 0.3])
    gaussian = InputNoise(0.5).train()
    gaussian.generator = torch.Generator().manual_seed(0)
    x = torch.zeros(4000, 1)
    assert gaussian(x).std().item() == pytest.approx(0.5, rel=0.05)
    assert torch.equal(gaussian.eval()(x), x)  # off in eval mode


# --- Delta-STN's linearised output ---------------------------------------------------

def _delta_net(base: dict) -> nn.Module:
    names = [n for n in default_hyper(base) if n["name"].startswith("dropout")]
    net = build_stn(base, names, delta=True).double().eval()
    _randomise_gates(net)
    return net


def _gate(net: nn.Module, rows: int, seed: int = 2) -> torch.Tensor:
    return 0.5 * torch.randn(rows, len(net.hyper), generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64)


@pytest.mark.parametrize("base", [MLP, CNN])
def test_the_linearised_output_at_zero_perturbation_is_the_plain_output(base):
    net = _delta_net(base)
    x = _x().double()
    zero = torch.zeros(len(x), len(net.hyper), dtype=torch.float64)
    assert torch.equal(net.linearised(x, zero), net(x, zero))
    plain, _ = net.to_plain()
    torch.testing.assert_close(net.linearised(x, zero), plain.double().eval()(x))


@pytest.mark.parametrize("base", [MLP, CNN])
def test_the_linearised_term_is_the_directional_derivative_in_the_weight_perturbation(base):
    net = _delta_net(base)
    x, gate = _x().double(), _gate(net, 20)
    zero = torch.zeros_like(gate)
    tangent = net.linearised(x, gate) - net(x, zero)
    h = 1e-6  # central finite difference of the full network along the gate input
    numeric = (net(x, h * gate) - net(x, -h * gate)) / (2 * h)
    torch.testing.assert_close(tangent, numeric, rtol=1e-6, atol=1e-8)
    # first order only: the full network differs from it at a finite perturbation
    assert not torch.allclose(net(x, gate), net.linearised(x, gate), atol=1e-6)
    # and it is linear in the perturbation
    torch.testing.assert_close(net.linearised(x, 3 * gate) - net(x, zero), 3 * tangent)


def test_gradients_reach_the_gates_response_weights_and_the_perturbation_through_the_jvp():
    net = _delta_net(MLP)
    x = _x().double()
    gate = _gate(net, 20).requires_grad_(True)
    net.linearised(x, gate).square().sum().backward()
    layer = net.stn_layers()[0]
    assert gate.grad is not None and gate.grad.abs().sum() > 0
    assert layer.gate.grad.abs().sum() > 0 and layer.response_weight.grad.abs().sum() > 0
