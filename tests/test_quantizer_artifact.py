"""The quantized-model artifact: packed codes round-trip, decode to exactly what they mean,
really shrink on disk, and run unchanged in `evaluator.classification`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from flowopt.artifacts import Dataset, Model, QuantizedModel, decode, encode
from flowopt.nodes.evaluator import classification
from flowopt.nodes.model import build_mlp
from flowopt.nodes.quantizer import uniform
from flowopt.nodes.quantizer.artifact import Packer, fake_quantize, pack_codes, unpack_codes


@pytest.fixture(scope="module")
def mlp() -> Model:
    recipe = {"builder": "mlp", "n_inputs": 12, "n_outputs": 3, "hidden": [16]}
    module = build_mlp(**{k: v for k, v in recipe.items() if k != "builder"})
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return Model(module=module, recipe=recipe, meta={"task": "classification"})


@pytest.fixture(scope="module")
def calibration() -> Dataset:
    g = torch.Generator().manual_seed(1)
    return Dataset(x=torch.rand(64, 12, generator=g), y=torch.randint(0, 3, (64,), generator=g),
                   meta={"task": "classification", "n_features": 12, "n_classes": 3})


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 1001])
def test_codes_of_any_width_round_trip_through_packing(bits, count):
    codes = np.random.default_rng(bits * 1000 + count).integers(0, 2 ** bits, count).astype(np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-count * bits // 8)
    assert np.array_equal(unpack_codes(packed, bits, count), codes)


def test_four_bit_codes_put_the_first_code_in_the_low_nibble():
    assert pack_codes(np.array([1, 2, 15], np.uint8), 4).tolist() == [0x21, 0x0F]
    assert pack_codes(np.array([1, 2, 7], np.uint8), 3).tolist() == [0b11010001, 0b1]


def _uniform_reference(quantized: QuantizedModel, name: str) -> np.ndarray:
    """(code − zero_point) · scale in float32 numpy, straight from the stored tensors."""
    entry = quantized.layout["parameters"][name]
    count = int(np.prod(entry["shape"]))
    codes = unpack_codes(quantized.packed[f"{name}.codes"].numpy(), entry["bits"], count)
    scale = quantized.packed[f"{name}.scale"].numpy()
    rows = codes.reshape(scale.size, -1).astype(np.float32)
    zero = (np.float32(2 ** (entry["bits"] - 1)) if entry["symmetric"] else
            quantized.packed[f"{name}.zero_point"].numpy().astype(np.float32)[:, None])
    return ((rows - zero) * scale[:, None]).reshape(entry["shape"])


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_the_weights_that_run_are_exactly_what_the_stored_codes_mean(mlp, make_ctx, bits, symmetric):
    out = uniform.fn(model=mlp, ctx=make_ctx(), bits=bits, symmetric=symmetric)
    quantized = out["model"]
    state = quantized.module.state_dict()
    for name in ("0.weight", "2.weight"):
        assert np.array_equal(state[name].numpy(), _uniform_reference(quantized, name)), name
        assert len(np.unique(state[name][0].numpy())) <= 2 ** bits
    assert torch.equal(state["0.bias"], mlp.module.state_dict()["0.bias"])  # biases stay float32


def test_encoding_and_decoding_rebuilds_the_identical_module(mlp, calibration, make_ctx):
    quantized = uniform.fn(model=mlp, ctx=make_ctx(), calibration=calibration, bits=4,
                           activation_bits=6)["model"]
    type_name, fmt, payload = encode(quantized)
    assert (type_name, fmt) == ("quantized_model", "safetensors")
    again = decode(type_name, fmt, payload)
    assert isinstance(again, QuantizedModel) and again.layout == quantized.layout
    for (name, a), b in zip(quantized.module.state_dict().items(),
                            again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(quantized.module(calibration.x), again.module(calibration.x))


def test_input_quantizers_run_as_a_numpy_fake_quantizer_predicts(mlp, calibration, make_ctx):
    quantized = uniform.fn(model=mlp, ctx=make_ctx(), calibration=calibration, bits=8,
                           activation_bits=3)["model"]
    spec = quantized.layout["activations"]["0"]
    x = calibration.x.numpy()
    scale, zero = np.float32(spec["scale"]), np.float32(spec["zero_point"])
    codes = np.clip(np.round(x / scale) + zero, 0, 7)
    assert len(np.unique(codes)) > 2  # the grid is really used, not collapsed
    expected = (codes - zero) * scale
    seen = fake_quantize(calibration.x, torch.tensor(scale), spec["zero_point"], 3)
    assert np.array_equal(seen.numpy(), expected)
    first = quantized.module[0]
    with torch.no_grad():
        direct = torch.nn.functional.linear(torch.from_numpy(expected), first.weight, first.bias)
        hooked = quantized.module[0](calibration.x)
    assert torch.equal(direct, hooked)


def test_four_bit_weights_take_half_the_bytes_of_eight_bit_ones(make_ctx):
    recipe = {"builder": "mlp", "n_inputs": 64, "n_outputs": 10, "hidden": [256]}
    big = Model(module=build_mlp(**{k: v for k, v in recipe.items() if k != "builder"}),
                recipe=recipe)
    sizes = {b: uniform.fn(model=big, ctx=make_ctx(), bits=b) for b in (8, 4, 3)}
    codes = {b: sizes[b]["model"].packed["0.weight.codes"].numel() for b in sizes}
    assert codes == {8: 64 * 256, 4: 64 * 256 // 2, 3: 64 * 256 * 3 // 8}
    fp32 = len(encode(big)[2])
    for b, out in sizes.items():
        assert out["bytes"] == len(encode(out["model"])[2])
        assert out["size_ratio"] == pytest.approx(out["bytes"] / fp32)
    assert 0.25 < sizes[8]["size_ratio"] < 0.30  # codes + per-channel scales + float biases
    assert sizes[4]["size_ratio"] < 0.6 * sizes[8]["size_ratio"]
    assert 8 < sizes[8]["bits_per_parameter"] < 9.5 and 4 < sizes[4]["bits_per_parameter"] < 5


def test_the_evaluator_scores_a_quantized_model_like_the_float_model_it_decodes_to(
        mlp, calibration, make_ctx):
    quantized = uniform.fn(model=mlp, ctx=make_ctx(), bits=2)["model"]
    as_float = Model(module=quantized.module, recipe=quantized.recipe)
    decoded_float = decode(*encode(as_float))
    assert classification.fn(model=quantized, data=calibration) == \
        classification.fn(model=decoded_float, data=calibration)
    assert classification.fn(model=quantized, data=calibration) != \
        classification.fn(model=mlp, data=calibration)


def test_a_packer_refuses_codes_that_do_not_fit_their_width(mlp):
    with pytest.raises(ValueError, match="codes out of range for 3 bits"):
        Packer(mlp).uniform("0.weight", np.full(16 * 12, 8), [1.0] * 16, None, 3, [16, 12])
