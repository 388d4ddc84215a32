"""quantizer.blockwise: exact nearest codes from the shared kernels, per-block absmax, and
stored codes that decode to exactly the weights the model runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowopt.artifacts import Model, decode, encode
from flowopt.cli.app import app
from flowopt.nodes.blockwise.codebook import codebook, nearest_code_reference
from flowopt.nodes.blockwise.quantize import (dequantize_blockwise, pack_nibbles,
                                              quantize_blockwise_reference)
from flowopt.nodes.model import build_mlp
from flowopt.nodes.quantizer import blockwise
from flowopt.nodes.quantizer.artifact import pack_codes, unpack_codes


@pytest.fixture(scope="module")
def model() -> Model:
    recipe = {"builder": "mlp", "n_inputs": 40, "n_outputs": 5, "hidden": [30]}
    module = build_mlp(**{k: v for k, v in recipe.items() if k != "builder"})
    with torch.no_grad():  # bell-shaped weights with an outlier: the case block-wise helps
        module[0].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
        module[0].weight[0, 0] = 3.0
    return Model(module=module, recipe=recipe, meta={"task": "classification"})


@pytest.mark.parametrize("code_map", ["dynamic", "linear"])
@pytest.mark.parametrize("bits", [4, 8])
def test_stored_codes_are_the_exact_nearest_codes_of_the_reference(model, make_ctx, bits, code_map):
    quantized = blockwise.fn(model=model, ctx=make_ctx(), bits=bits, code_map=code_map,
                             block_size=64)["model"]
    book = codebook(code_map, True, bits)
    weight = model.module[0].weight.detach().reshape(-1).numpy()
    codes = unpack_codes(quantized.packed["0.weight.codes"].numpy(), bits, weight.size)
    ref_codes, ref_absmax = quantize_blockwise_reference(weight, book, 64)
    assert np.array_equal(codes, ref_codes)
    assert np.array_equal(quantized.packed["0.weight.scale"].numpy(), ref_absmax)
    blocks = np.pad(weight, (0, -weight.size % 64)).reshape(-1, 64)
    normalized = (blocks / ref_absmax[:, None]).reshape(-1)[:weight.size].astype(np.float32)
    assert np.array_equal(codes, nearest_code_reference(normalized, book.values))


@pytest.mark.parametrize("bits", [4, 8])
def test_the_weights_that_run_are_what_the_dequantize_kernel_makes_of_the_codes(model, make_ctx, bits):
    quantized = blockwise.fn(model=model, ctx=make_ctx(), bits=bits, block_size=128)["model"]
    again = decode(*encode(quantized))
    book = codebook("dynamic", True, bits)
    for name in ("0.weight", "2.weight"):
        shape = quantized.layout["parameters"][name]["shape"]
        codes = unpack_codes(again.packed[f"{name}.codes"].numpy(), bits, int(np.prod(shape)))
        expected = dequantize_blockwise(codes, again.packed[f"{name}.scale"].numpy(), book, 128)
        assert np.array_equal(again.module.state_dict()[name].numpy().reshape(-1), expected)
        assert torch.equal(quantized.module.state_dict()[name], again.module.state_dict()[name])


def test_four_bit_codes_are_packed_like_the_kernels_pack_nibbles():
    codes = np.random.default_rng(0).integers(0, 16, 999).astype(np.uint8)
    assert np.array_equal(pack_codes(codes, 4), pack_nibbles(codes))


def test_smaller_blocks_isolate_an_outlier_and_lower_the_error(model, make_ctx):
    errors = {size: blockwise.fn(model=model, ctx=make_ctx(), bits=4, block_size=size)["layers"][0]
              ["weight_mse"] for size in (64, 1024)}
    assert errors[64] < errors[1024] / 2


def test_the_dynamic_map_beats_the_linear_map_on_bell_shaped_weights(model, make_ctx):
    errors = {m: blockwise.fn(model=model, ctx=make_ctx(), bits=8, code_map=m,
                              block_size=1024)["weight_mse"] for m in ("dynamic", "linear")}
    assert errors["dynamic"] < errors["linear"]


def test_the_eight_bit_artifact_is_about_a_quarter_of_the_float_model(make_ctx):
    recipe = {"builder": "mlp", "n_inputs": 256, "n_outputs": 10, "hidden": [256]}
    big = Model(module=build_mlp(**{k: v for k, v in recipe.items() if k != "builder"}),
                recipe=recipe)
    out = blockwise.fn(model=big, ctx=make_ctx(), bits=8, block_size=256)
    assert 0.25 < out["size_ratio"] < 0.28  # codes, one absmax per 256 values, the map, biases
    four = blockwise.fn(model=big, ctx=make_ctx(), bits=4, block_size=256)
    assert 0.13 < four["size_ratio"] < 0.15


@pytest.mark.parametrize("field,value,fragment", [
    ("block_size", 100, "64, 128, 256, 512, 1024, 2048 or 4096"),
    ("bits", 3, "4 or 8"), ("code_map", "log", "'dynamic' or 'linear'")])
def test_bad_blockwise_settings_exit_2_before_anything_runs(tmp_path, field, value, fragment):
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: t\nnodes:\n  digits: {kind: data.digits}\n"
                    "  net: {kind: model.mlp, in: {data: digits}}\n"
                    f"  q: {{kind: quantizer.blockwise, in: {{model: net}}, with: {{{field}: {value}}}}}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    message = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert message.startswith(f"error: {path}:5, key 'nodes.q.with.{field}'") and fragment in message
