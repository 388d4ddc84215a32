"""``quantizer.method``: one quantizer node whose method is a ``with:`` field, so a tuner
can search it (pipelines/pareto_quantize.yaml searches method, bits and block size for
the front of accuracy against bytes).

A searched space is a box, but the methods accept different settings; rather than fail
the trials that fall outside a method's settings (each would cost a trial and teach the
tuner nothing), every point of the box maps to the nearest setting the method has, and
the node's metrics (``bytes``, ``bits_per_parameter``) report what was actually stored —
so the objective is always honest:

* ``uniform`` (round-to-nearest, `quantizer.uniform`): ``bits`` as given (2–8);
* ``blockwise`` (`quantizer.blockwise`): 4-bit codes for ``bits`` ≤ 4, else 8-bit; ``block_size``;
* ``nupes`` (`quantizer.nupes`): ``bits``; ``iters`` Adam steps per layer;
* ``layerwise`` (`quantizer.layerwise`, AdaQuant): ``bits`` rounded to its widths {2, 3, 4, 8}
  (ties to the wider); ``iters`` steps per layer; needs ``calibration``;
* ``per_layer``: AdaQuant with one width per quantized layer, ``layer_bits`` in layer order
  (the last entry repeats if the model has more layers) — the non-uniform allocation
  EvoPress (Sieberling et al. 2024) finds beats one width for all layers; needs ``calibration``.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from flowopt.artifacts import Dataset, Model
from flowopt.context import Context
from flowopt.registry import node

from .. import facts
from . import METRICS, OUTPUTS, BlockSize, _outputs, _prepare, blockwise, layerwise, nupes, uniform

Method = Literal["uniform", "blockwise", "nupes", "layerwise", "per_layer"]
AnyBits = Annotated[int, Field(ge=2, le=8)]
LAYERWISE_WIDTHS = (2, 3, 4, 8)


def layerwise_width(bits: int) -> int:
    """The width of {2, 3, 4, 8} nearest to `bits` (ties to the wider)."""
    return min(LAYERWISE_WIDTHS, key=lambda w: (abs(w - bits), -w))


@node("quantizer.method", outputs=OUTPUTS, metrics=METRICS, describe=facts.quantizer)
def method(model: Model, ctx: Context, calibration: Dataset | None = None,
           method: Method = "uniform", bits: AnyBits = 8, block_size: BlockSize = 64,
           layer_bits: Annotated[list[AnyBits], Field(min_length=1)] = [8],  # noqa: B006
           iters: Annotated[int, Field(ge=0)] = 20) -> dict[str, Any]:
    """A quantizer whose method is a field (see the module docstring for the mapping).

    Inputs: ``model``; ``calibration`` (needed by layerwise and per_layer). Outputs as every
    quantizer's: ``model``, ``layers``, metrics bits_per_parameter, size_ratio, bytes,
    weight_mse. ``with:`` (defaults): ``method`` (uniform), ``bits`` (8; 2–8),
    ``block_size`` (64; blockwise only), ``layer_bits`` ([8]; per_layer only), ``iters``
    (20; nupes, layerwise and per_layer — fewer than their kinds' defaults, for searches).
    """
    common = dict(model=model, ctx=ctx, calibration=calibration)
    if method == "uniform":
        return uniform.fn(**common, bits=bits)
    if method == "blockwise":
        return blockwise.fn(**common, bits=4 if bits <= 4 else 8, block_size=block_size)
    if method == "nupes":
        return nupes.fn(**common, bits=bits, iters=iters)
    if calibration is None:
        raise ValueError(f"quantizer.method: method {method} needs a calibration dataset "
                         "(bind in: {calibration: ...})")
    if method == "layerwise":
        return layerwise.fn(model=model, calibration=calibration, ctx=ctx,
                            bits=layerwise_width(bits), iters=iters)
    return _per_layer(model, calibration, ctx, list(layer_bits), iters)


def _per_layer(model: Model, calibration: Dataset, ctx: Context, layer_bits: list[int],
               iters: int) -> dict[str, Any]:
    from .artifact import quantizable_layers
    from .calibration import correct_biases, fit_model, pack

    private = _prepare(model, calibration, ctx, "quantizer.method")
    names = [name for name, _ in quantizable_layers(private.module)]
    widths = {name: layer_bits[min(i, len(layer_bits) - 1)] for i, name in enumerate(names)}
    fits = fit_model(private.module, calibration.x, widths, input_bits=None, sequential=True,
                     iters=iters, batch_size=50, per_channel=True,
                     generator=ctx.torch_generator())
    fits = correct_biases(private.module, calibration.x, fits)
    quantized = pack(private, fits, allocation=widths)
    return _outputs(ctx, private, quantized, calibration)
