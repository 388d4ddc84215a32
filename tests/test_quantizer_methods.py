"""quantizer.layerwise and quantizer.nupes: what they store is what runs, their options do
what they say, and their bad input is refused before anything runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowopt.artifacts import Dataset, Model, decode, encode
from flowopt.cli.app import app
from flowopt.nodes.model import build_mlp
from flowopt.nodes.quantizer import layerwise, nupes
from flowopt.nodes.quantizer.artifact import unpack_codes
from flowopt.nodes.quantizer.observers import record
from flowopt.nodes.quantizer.power import power_book


@pytest.fixture(scope="module")
def small():
    recipe = {"builder": "mlp", "n_inputs": 16, "n_outputs": 4, "hidden": [24]}
    module = build_mlp(**{k: v for k, v in recipe.items() if k != "builder"})
    g = torch.Generator().manual_seed(3)
    x = torch.rand(120, 16, generator=g)
    y = module(x).argmax(dim=1).detach()  # a task the float model solves
    data = Dataset(x=x, y=y, meta={"task": "classification", "n_features": 16, "n_classes": 4})
    return Model(module=module.eval(), recipe=recipe, meta={"task": "classification"}), data


def test_layerwise_weights_are_their_codes_on_a_symmetric_grid(small, make_ctx):
    model, data = small
    quantized = decode(*encode(layerwise.fn(model=model, calibration=data, ctx=make_ctx(),
                                            bits=3, iters=20)["model"]))
    for name in ("0.weight", "2.weight"):
        entry = quantized.layout["parameters"][name]
        codes = unpack_codes(quantized.packed[f"{name}.codes"].numpy(), 3, int(np.prod(entry["shape"])))
        scale = quantized.packed[f"{name}.scale"].numpy()
        expected = (codes.reshape(scale.size, -1).astype(np.float32) - np.float32(4)) * scale[:, None]
        assert entry["symmetric"] and codes.min() >= 1 and codes.max() <= 7
        assert np.array_equal(quantized.module.state_dict()[name].numpy().reshape(scale.size, -1), expected)


def test_bias_correction_matches_each_output_channels_mean_to_the_float_model(small, make_ctx):
    model, data = small
    means = {}
    for corrected in (False, True):
        q = layerwise.fn(model=model, calibration=data, ctx=make_ctx(), bits=2, iters=0,
                         sequential=False, bias_correction=corrected)["model"]
        out = record(q.module, data.x, ["2"], outputs=True)["2"]
        means[corrected] = (out - model.module(data.x).detach()).mean(dim=0).abs().max().item()
    assert means[True] < 1e-5 < means[False]


def test_a_size_budget_gives_the_chosen_widths_and_records_the_degradations(small, make_ctx):
    model, data = small
    out = layerwise.fn(model=model, calibration=data, ctx=make_ctx(), budget_bits=3.0, iters=10)
    meta = out["model"].meta
    assert set(meta["allocation"]) == {"0", "2"} and set(meta["degradation"]["0"]) == {"2", "3", "4", "8"}
    assert [row["bits"] for row in out["layers"]] == [meta["allocation"]["0"], meta["allocation"]["2"]]
    weights = [row["weights"] for row in out["layers"]]
    assert sum(w * row["bits"] for w, row in zip(weights, out["layers"])) <= 3.0 * sum(weights)


def test_nupes_codes_decode_through_the_stored_power_book(small, make_ctx):
    model, _ = small
    quantized = decode(*encode(nupes.fn(model=model, ctx=make_ctx(), bits=4, iters=30)["model"]))
    for name, exponent in quantized.meta["exponents"].items():
        key = f"{name}.weight"
        book = quantized.packed[f"codebook.power.{key}"].numpy()
        assert 0.1 <= exponent <= 1.0 and np.array_equal(book, power_book(4, exponent))
        entry = quantized.layout["parameters"][key]
        codes = unpack_codes(quantized.packed[f"{key}.codes"].numpy(), 4, int(np.prod(entry["shape"])))
        scale = quantized.packed[f"{key}.scale"].numpy()
        expected = book[codes].reshape(scale.size, -1) * scale[:, None]
        assert np.array_equal(quantized.module.state_dict()[key].numpy().reshape(scale.size, -1), expected)


def test_a_power_book_is_symmetric_and_denser_near_zero():
    book = power_book(4, 0.5)[:-1]  # the top code is never produced
    assert np.array_equal(book, -book[::-1]) and book[7] == 0
    steps = np.diff(book[7:])
    assert (np.diff(steps) > 0).all()  # steps grow away from zero
    assert np.allclose(power_book(4, 1.0)[:-1], np.arange(-7, 8) / 7)  # a = 1: the uniform grid


def test_data_driven_nupes_lowers_the_output_error_data_free_nupes_leaves(small, make_ctx):
    model, data = small
    free = nupes.fn(model=model, ctx=make_ctx(), bits=3, iters=100)
    driven = nupes.fn(model=model, ctx=make_ctx(), calibration=data, bits=3, iters=100)
    assert driven["model"].meta["mode"] == "data_driven" and free["model"].meta["mode"] == "data_free"
    with torch.no_grad():
        target = model.module(data.x)
        errors = {k: (v["model"].module(data.x) - target).square().mean().item()
                  for k, v in (("free", free), ("driven", driven))}
    assert errors["driven"] < errors["free"]


HEAD = ("pipeline: t\nnodes:\n  digits: {kind: data.digits}\n"
        "  net: {kind: model.mlp, in: {data: digits}}\n")


@pytest.mark.parametrize("body,fragments", [
    ("  q: {kind: quantizer.layerwise, in: {model: net, calibration: digits}, "
     "with: {budget_bits: 1.5}}\n", ["nodes.q.with.budget_bits", "no bit allocation meets 1.5 bits "
                                     "per weight: the smallest achievable is 2"]),
    ("  q: {kind: quantizer.layerwise, in: {model: net, calibration: digits}, "
     "with: {bit_choices: [4, 8], budget_bits: 3}}\n", ["the smallest achievable is 4"]),
    ("  q: {kind: quantizer.layerwise, in: {model: net}}\n", ["input 'calibration'", "is not bound"]),
    ("  q: {kind: quantizer.layerwise, in: {model: net, calibration: digits}, with: {bits: 5}}\n",
     ["nodes.q.with.bits", "2, 3, 4 or 8"]),
    ("  q: {kind: quantizer.nupes, in: {model: digits}}\n", ["port type mismatch", "takes a model"]),
])
def test_bad_layerwise_and_nupes_input_exits_2_with_one_line(tmp_path, body, fragments):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + body)
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    message = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert message.startswith(f"error: {path}:")
    for fragment in fragments:
        assert fragment in message, message
