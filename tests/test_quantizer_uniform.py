"""quantizer.uniform: round-to-nearest grids, range setting, observers, and its bad input."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from flowopt.artifacts import Dataset, Model
from flowopt.cli.app import app
from flowopt.nodes.model import build_mlp
from flowopt.nodes.quantizer import uniform
from flowopt.nodes.quantizer.rtn import fit_grid


def _laplace(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(rows, cols, generator=g) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) * 0.05  # bell-shaped, heavy tails


def _error(grid, rows):
    return (grid.dequantize(grid.quantize(rows)) - rows).square().sum().item()


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_a_symmetric_grid_is_symmetric_around_an_exact_zero(bits):
    rows = _laplace(3, 500)
    grid = fit_grid(rows, bits, symmetric=True)
    levels = grid.dequantize(torch.arange(1, 2 ** bits, dtype=torch.float32).expand(3, -1))
    assert torch.equal(levels, -levels.flip(1))
    assert (levels == 0).sum(dim=1).tolist() == [1, 1, 1]
    codes = grid.quantize(rows)
    assert codes.min() >= 1 and codes.max() <= 2 ** bits - 1
    assert torch.allclose(grid.dequantize(codes).abs().amax(dim=1), rows.abs().amax(dim=1))


def test_an_asymmetric_grid_spans_min_to_max_and_represents_zero_exactly():
    rows = torch.rand(4, 300, generator=torch.Generator().manual_seed(0)) * 3 - 1
    grid = fit_grid(rows, 4, symmetric=False)
    assert torch.equal(grid.dequantize(grid.zero_point[:, None]), torch.zeros(4, 1))
    codes = grid.quantize(rows)
    assert codes.min(dim=1).values.tolist() == [0.0] * 4 and codes.max() == 15
    # Round-to-nearest: no value is further than half a step from its level.
    assert ((grid.dequantize(codes) - rows).abs() <= grid.scale[:, None] / 2 + 1e-6).all()


def test_mse_clipping_never_loses_to_min_max_and_wins_on_heavy_tails():
    rows = _laplace(8, 256)
    for bits in (2, 3, 4):
        minmax, mse = (_error(fit_grid(rows, bits, True, c), rows) for c in ("minmax", "mse"))
        assert mse <= minmax
    assert _error(fit_grid(rows, 3, True, "mse"), rows) < 0.7 * _error(fit_grid(rows, 3, True), rows)


def test_percentile_clipping_cuts_the_outliers_only():
    rows = torch.linspace(-1, 1, 10001).reshape(1, -1)
    rows[0, 0], rows[0, -1] = -50.0, 50.0
    grid = fit_grid(rows, 8, True, "percentile", percentile=99.9)
    assert grid.scale.item() == pytest.approx(1.0 / 127, rel=0.01)
    assert fit_grid(rows, 8, True, "minmax").scale.item() == pytest.approx(50 / 127)


def test_one_grid_per_channel_beats_one_grid_per_tensor_when_channels_differ_in_scale():
    rows = _laplace(8, 256) * torch.logspace(-2, 1, 8)[:, None]
    grid = fit_grid(rows, 4, True)
    per_channel = (grid.dequantize(grid.quantize(rows)) - rows).square().sum(dim=1)
    flat = rows.reshape(1, -1)
    one = fit_grid(flat, 4, True)
    per_tensor = (one.dequantize(one.quantize(flat)) - flat).square().reshape(8, -1).sum(dim=1)
    assert (per_channel <= per_tensor).all()
    assert (per_channel[:4] < per_tensor[:4] / 10).all()  # small channels all round to 0
    assert torch.equal(one.quantize(flat).reshape(8, -1)[0], torch.full((256,), 8.0))


@pytest.fixture(scope="module")
def small():
    recipe = {"builder": "mlp", "n_inputs": 10, "n_outputs": 3, "hidden": [32]}
    model = Model(module=build_mlp(**{k: v for k, v in recipe.items() if k != "builder"}),
                  recipe=recipe, meta={"task": "classification"})
    g = torch.Generator().manual_seed(0)
    data = Dataset(x=torch.rand(50, 10, generator=g), y=torch.randint(0, 3, (50,), generator=g),
                   meta={"task": "classification", "n_features": 10, "n_classes": 3})
    return model, data


def test_fewer_bits_give_a_larger_weight_and_output_error(small, make_ctx):
    model, data = small
    results = [uniform.fn(model=model, ctx=make_ctx(), calibration=data, bits=b) for b in (8, 4, 2)]
    assert results[0]["weight_mse"] < results[1]["weight_mse"] < results[2]["weight_mse"]
    outputs = [[row["output_mse"] for row in r["layers"]] for r in results]
    assert all(a < b < c for a, b, c in zip(*outputs, strict=True))
    assert [row["bits"] for row in results[1]["layers"]] == [4, 4]


def test_the_node_logs_per_layer_series_and_never_mutates_its_input(small, make_ctx):
    model, data = small
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    model.module.train()
    ctx = make_ctx()
    uniform.fn(model=model, ctx=ctx, calibration=data, bits=4, activation_bits=8)
    assert model.module.training
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    keys = {(key, step) for key, _, step in ctx.logged}
    assert {("layer_weight_mse", 0), ("layer_weight_mse", 1), ("layer_output_mse", 1),
            ("output_mse", 0)} <= keys


def test_activation_bits_without_a_calibration_set_is_a_clear_error(small, make_ctx):
    with pytest.raises(ValueError, match="activation_bits needs a calibration dataset"):
        uniform.fn(model=small[0], ctx=make_ctx(), activation_bits=8)


def test_a_calibration_set_of_the_wrong_width_is_named_before_any_work(small, make_ctx):
    model, data = small
    narrow = Dataset(x=data.x[:, :7], y=data.y, meta=data.meta)
    with pytest.raises(ValueError, match=r"rows of shape \[7\], but the model takes 10"):
        uniform.fn(model=model, ctx=make_ctx(), calibration=narrow)


HEAD = ("pipeline: t\nnodes:\n  digits: {kind: data.digits}\n"
        "  net: {kind: model.mlp, in: {data: digits}}\n")
BAD = {
    "bits outside the supported set": (
        HEAD + "  q: {kind: quantizer.uniform, in: {model: net}, with: {bits: 16}}\n",
        5, ["nodes.q.with.bits", "bad value 16", "2, 3, 4, 5, 6, 7 or 8"]),
    "not a model": (
        HEAD + "  q: {kind: quantizer.uniform, in: {model: digits}}\n",
        5, ["port type mismatch", "takes a model", "gives a dataset"]),
    "calibration that is not a dataset": (
        HEAD + "  q: {kind: quantizer.uniform, in: {model: net, calibration: net}}\n",
        5, ["port type mismatch", "takes a dataset"]),
    "unknown clipping": (
        HEAD + "  q: {kind: quantizer.uniform, in: {model: net}, with: {clipping: max}}\n",
        5, ["nodes.q.with.clipping", "'minmax', 'percentile' or 'mse'"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_quantizer_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path):
    text, line, fragments = BAD[case]
    path = tmp_path / "p.yaml"
    path.write_text(text)
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["run", str(path), "--store", str(store)])
    assert result.exit_code == 2, result.output
    message = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert message.splitlines()[0].startswith(f"error: {path}:{line}")
    for fragment in fragments:
        assert fragment in message, message
    assert not (store / "artifacts").exists() or not any((store / "artifacts").iterdir())
