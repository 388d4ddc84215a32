"""The papers' claims at small scale (issue 7, item 5), with fixed seeds, on a digits MLP
and a small digits CNN trained once for this module.

* 8-bit block-wise (Dettmers et al. 2022) and 8-bit uniform lose ≤ 0.5 point of accuracy;
* at 4 bits (weights and activations, one grid per tensor), layer-wise calibration
  (Hubara et al. 2021) loses clearly less accuracy than round-to-nearest min-max;
* NUPES' power grids (Yvinec et al. 2023) reconstruct bell-shaped weights with less error
  than uniform grids of equal width, min-max or MSE-clipped;
* the integer program's mixed precision beats every layer at 4 bits, at equal size.
"""
from __future__ import annotations

import threading

import pytest
import torch

from flowopt.artifacts import Dataset, Model
from flowopt.context import Context
from flowopt.nodes import data, evaluator, loss, model, optimizer, quantizer
from flowopt.nodes.model import build_mlp
from flowopt.nodes.quantizer.measure import layer_table

pytestmark = pytest.mark.slow


def _ctx(seed: int = 0) -> Context:
    return Context(run_id="claims", node_id="n", seed=seed, device="cpu", cancel=threading.Event(),
                   emit=lambda *a, **k: None, log_metric=lambda *a: None, threads=1)


@pytest.fixture(scope="module")
def digits():
    parts = data.split.fn(dataset=data.digits.fn(), ctx=_ctx(), val_fraction=0.3)
    train, val = parts["train"], parts["val"]
    calibration = Dataset(x=train.x[:256], y=train.y[:256], meta=train.meta)
    return train, val, calibration


def _train(net: Model, train: Dataset, steps: int) -> Model:
    return optimizer.adam.fn(model=net, data=train, loss=loss.cross_entropy.fn(), ctx=_ctx(),
                             lr=3e-3, steps=steps, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def mlp(digits):
    return _train(model.mlp.fn(data=digits[0], ctx=_ctx(), hidden=[128]), digits[0], 400)


@pytest.fixture(scope="module")
def cnn(digits):
    return _train(model.cnn.fn(data=digits[0], ctx=_ctx(), channels=[8, 16], hidden=32),
                  digits[0], 300)


def _score(m: Model, val: Dataset) -> dict[str, float]:
    return evaluator.classification.fn(model=m, data=val)


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_eight_bit_blockwise_and_uniform_lose_at_most_half_a_point(net, digits, request):
    trained = request.getfixturevalue(net)
    baseline = _score(trained, digits[1])["accuracy"]
    assert baseline > 0.95
    for quantized in (quantizer.blockwise.fn(model=trained, ctx=_ctx(), bits=8, block_size=256),
                      quantizer.uniform.fn(model=trained, ctx=_ctx(), bits=8)):
        assert quantized["size_ratio"] < 0.35
        assert _score(quantized["model"], digits[1])["accuracy"] >= baseline - 0.005


def test_at_four_bits_layerwise_calibration_loses_clearly_less_than_min_max_rounding(cnn, digits):
    _, val, calibration = digits
    baseline = _score(cnn, val)["accuracy"]
    rtn = quantizer.uniform.fn(model=cnn, ctx=_ctx(), calibration=calibration, bits=4,
                               per_channel=False, activation_bits=4)
    calibrated = quantizer.layerwise.fn(model=cnn, calibration=calibration, ctx=_ctx(), bits=4,
                                        activation_bits=4, per_channel=False)
    rtn_drop = baseline - _score(rtn["model"], val)["accuracy"]
    calibrated_drop = baseline - _score(calibrated["model"], val)["accuracy"]
    assert rtn_drop >= 0.015  # min-max rounding really hurts here (≈ 2.6 points) ...
    assert calibrated_drop <= rtn_drop / 2  # ... and layer-wise calibration recovers most of it
    assert calibrated["bits_per_parameter"] <= rtn["bits_per_parameter"] + 0.01


def test_layerwise_calibration_lowers_every_layers_held_out_output_error(mlp, digits):
    _, val, calibration = digits
    rtn = quantizer.uniform.fn(model=mlp, ctx=_ctx(), bits=4, clipping="mse")
    calibrated = quantizer.layerwise.fn(model=mlp, calibration=calibration, ctx=_ctx(), bits=4,
                                        bias_correction=False)
    ours = layer_table(mlp, calibrated["model"], val)  # measured on rows it was not fitted to
    theirs = layer_table(mlp, rtn["model"], val)
    for a, b in zip(ours, theirs, strict=True):
        assert a["output_mse"] < b["output_mse"], (a, b)


def _bell_shaped_layers() -> Model:
    recipe = {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": [128]}
    module = build_mlp(64, 10, [128])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module[0].weight.normal_(0, 0.05, generator=g)  # Gaussian
        u = torch.rand(module[2].weight.shape, generator=g) - 0.5
        module[2].weight.copy_(-torch.sign(u) * torch.log1p(-2 * u.abs()) * 0.05)  # Laplace
    return Model(module=module, recipe=recipe)


@pytest.mark.parametrize("bits", [4, 8])
def test_nupes_reconstructs_bell_shaped_weights_better_than_uniform_grids(bits):
    layers = _bell_shaped_layers()
    nupes = quantizer.nupes.fn(model=layers, ctx=_ctx(), bits=bits)["layers"]
    for clipping in ("minmax", "mse"):
        uniform = quantizer.uniform.fn(model=layers, ctx=_ctx(), bits=bits, clipping=clipping)
        for ours, theirs in zip(nupes, uniform["layers"], strict=True):
            assert ours["bits"] == theirs["bits"] == bits
            assert ours["weight_mse"] < theirs["weight_mse"], (clipping, ours, theirs)
    assert nupes[1]["weight_mse"] < 0.75 * quantizer.uniform.fn(
        model=layers, ctx=_ctx(), bits=bits, clipping="mse")["layers"][1]["weight_mse"]


def _cnn(train: Dataset, seed: int) -> Model:
    net = model.cnn.fn(data=train, ctx=_ctx(seed), channels=[8, 16], hidden=32)
    return optimizer.adam.fn(model=net, data=train, loss=loss.cross_entropy.fn(), ctx=_ctx(seed),
                             lr=3e-3, steps=300, batch_size=64, device="cpu")


def _program_cost(quantized: Model, widths: dict[str, int]) -> float:
    """The integer program's objective: the sum of the layers' measured degradations."""
    degradation = quantized["model"].meta["degradation"]
    return sum(degradation[layer][str(bits)] for layer, bits in widths.items())


def test_integer_programmed_mixed_precision_beats_uniform_four_bit_at_equal_size(cnn, digits):
    train, val, calibration = digits
    losses, accuracies = {"four": [], "mixed": []}, {"four": [], "mixed": []}
    for seed, net in enumerate([cnn, _cnn(train, 1), _cnn(train, 2)]):
        four = quantizer.layerwise.fn(model=net, calibration=calibration, ctx=_ctx(seed), bits=4)
        mixed = quantizer.layerwise.fn(model=net, calibration=calibration, ctx=_ctx(seed),
                                       budget_bits=4.0)
        widths = mixed["model"].meta["allocation"]
        sizes = {row["layer"]: row["weights"] for row in mixed["layers"]}
        assert sum(sizes[k] * widths[k] for k in sizes) <= 4.0 * sum(sizes.values())
        assert len(set(widths.values())) > 1  # really mixed
        # What the program optimises: every layer at 4 bits is a feasible allocation, so
        # the chosen one costs no more, and here clearly less.
        assert _program_cost(mixed, widths) < 0.9 * _program_cost(mixed, dict.fromkeys(widths, 4))
        for name, quantized in (("four", four), ("mixed", mixed)):
            scored = _score(quantized["model"], val)
            losses[name].append(scored["loss"])
            accuracies[name].append(scored["accuracy"])
    # The degradations are a proxy for the task loss; on held-out data, averaged over three
    # trained networks, the mixed widths lose less (≈ 8% on the first seed). Accuracy at
    # this size moves by single validation examples from one CPU to another, so it is only
    # held to "no worse" on the mean, with a margin of one point (≈ 16 examples of 1,617).
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(losses["mixed"]) < 0.97 * mean(losses["four"]), losses
    assert mean(accuracies["mixed"]) >= mean(accuracies["four"]) - 0.01, accuracies
