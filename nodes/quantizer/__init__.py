"""Quantizer kinds: a trained model in, a quantized model artifact out (issue 7).

``quantizer.uniform`` (round-to-nearest), ``quantizer.blockwise`` (block-wise dynamic
quantization), ``quantizer.layerwise`` (layer-wise calibration with bit allocation by
integer programming) and ``quantizer.nupes`` (power-exponent non-uniform quantization).

Every kind takes ``model`` (a `Model`; anything else is refused when the graph is built)
and optionally a ``calibration`` dataset, and outputs:

* ``model`` — a `QuantizedModel`: packed integer codes plus scales/zero-points/codebooks
  (format: `artifact`), whose module is rebuilt from the stored codes, so any evaluator
  runs exactly what was stored;
* ``layers`` — per quantized layer: bits, weight MSE and output MSE on the calibration set;
* metrics ``bits_per_parameter``, ``size_ratio``, ``bytes``, ``weight_mse`` (see `measure`).

Linear and Conv weights are quantized; biases (and any other state) stay float32, as in
the papers. The implementations import torch, so they live in submodules imported when a
node runs; this module only declares the kinds (validating ``with:`` fields up front).
"""
from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo

from flowopt.artifacts import Dataset, Model, QuantizedModel, register_builder
from flowopt.context import Context
from flowopt.registry import node

from .. import facts

Bits = Literal[2, 3, 4, 5, 6, 7, 8]
Clipping = Literal["minmax", "percentile", "mse"]
Percentile = Annotated[float, Field(gt=50, le=100)]
METRICS = ["bits_per_parameter", "size_ratio", "bytes", "weight_mse"]
OUTPUTS = {"model": QuantizedModel, "layers": Any}


@register_builder("quantized")
def build_quantized(recipe: dict[str, Any], layout: dict[str, Any], packed: dict[str, Any]) -> Any:
    """The module a `QuantizedModel` runs, rebuilt from its stored codes (`artifact`)."""
    from .artifact import decode_module

    return decode_module(recipe, layout, packed)


def _prepare(model: Model, calibration: Dataset | None, ctx: Context, kind: str) -> Model:
    """Check the calibration set, share the cores, and take a private eval-mode copy."""
    import torch

    from .observers import check_calibration

    torch.set_num_threads(ctx.threads)
    private = Model(module=copy.deepcopy(model.module).eval(), recipe=dict(model.recipe),
                    meta=dict(model.meta))
    check_calibration(private, calibration, kind)
    return private


def _outputs(ctx: Context, model: Model, quantized: QuantizedModel,
             calibration: Dataset | None) -> dict[str, Any]:
    from .measure import report

    return {"model": quantized, **report(ctx, model, quantized, calibration)}


@node("quantizer.uniform", outputs=OUTPUTS, metrics=METRICS, describe=facts.quantizer, deterministic=True)
def uniform(model: Model, ctx: Context, calibration: Dataset | None = None, bits: Bits = 8,
            symmetric: bool = True, per_channel: bool = True, clipping: Clipping = "minmax",
            percentile: Percentile = 99.99, activation_bits: Bits | None = None,
            activation_clipping: Clipping = "minmax") -> dict[str, Any]:
    """Uniform round-to-nearest post-training quantization (Nagel et al. 2021, white paper).

    Inputs: ``model``; ``calibration`` (optional; needed for ``activation_bits`` and for
    the per-layer output MSE). Outputs: ``model``, ``layers`` and the metrics above.
    ``with:`` fields (defaults):

    * ``bits`` (8; 2–8) — weight codes per value;
    * ``symmetric`` (true: codes −(2^(b−1)−1)..2^(b−1)−1 around a zero-point of 0; false:
      0..2^b−1 with an integer zero-point), ``per_channel`` (true: one grid per output
      channel, the white paper's recommendation for weights; false: one per tensor);
    * ``clipping`` (minmax | percentile | mse: the range-setting rules of the white paper
      §3.4, see `rtn`), ``percentile`` (99.99, NVIDIA pytorch-quantization's default);
    * ``activation_bits`` (null: weights only) — fake-quantize each layer's input on an
      asymmetric per-tensor grid fitted on ``calibration`` by ``activation_clipping``
      (minmax).
    """
    from .rtn import quantize_model

    private = _prepare(model, calibration, ctx, "quantizer.uniform")
    quantized = quantize_model(private, calibration, bits=bits, symmetric=symmetric,
                               per_channel=per_channel, clipping=clipping,
                               percentile=percentile, activation_bits=activation_bits,
                               activation_clipping=activation_clipping)
    return _outputs(ctx, private, quantized, calibration)


BlockSize = Literal[64, 128, 256, 512, 1024, 2048, 4096]


@node("quantizer.blockwise", outputs=OUTPUTS, metrics=METRICS, describe=facts.quantizer, deterministic=True)
def blockwise(model: Model, ctx: Context, calibration: Dataset | None = None,
              bits: Literal[4, 8] = 8, code_map: Literal["dynamic", "linear"] = "dynamic",
              block_size: BlockSize = 2048) -> dict[str, Any]:
    """Block-wise dynamic quantization of the weights (Dettmers et al. 2022).

    Inputs: ``model``; ``calibration`` (optional: only for the per-layer output MSE).
    Outputs: ``model``, ``layers`` and the metrics above. ``with:`` fields (defaults):

    * ``bits`` (8 | 4) — code width; 4-bit codes are stored two per byte;
    * ``code_map`` (dynamic: the paper's dynamic-tree map, signed | linear: evenly spaced
      in [−1, 1]), both from `flowopt.nodes.blockwise.codebook`;
    * ``block_size`` (2048, the paper's block size; a power of two from 64 to 4096, the
      sizes bitsandbytes' kernels accept, so the stored layout is one bitsandbytes shares).

    Codes are the exact nearest code of ``w / absmax(block)`` (numba kernels, checked bit
    for bit against a searchsorted reference).
    """
    from .blocks import quantize_model

    private = _prepare(model, calibration, ctx, "quantizer.blockwise")
    quantized = quantize_model(private, bits=bits, code_map=code_map, block_size=block_size)
    return _outputs(ctx, private, quantized, calibration)


Width = Literal[2, 3, 4, 8]


def _budget_fits_choices(budget: float | None, info: ValidationInfo) -> float | None:
    choices = info.data.get("bit_choices") or [2]
    if budget is not None and budget < min(choices):
        raise ValueError(f"no bit allocation meets {budget:g} bits per weight: the smallest "
                         f"achievable is {min(choices)} (every layer at {min(choices)} bits)")
    return budget


@node("quantizer.layerwise", outputs=OUTPUTS, metrics=METRICS, describe=facts.quantizer)
def layerwise(model: Model, calibration: Dataset, ctx: Context, bits: Width = 4,
              bit_choices: Annotated[list[Width], Field(min_length=1)] = [2, 3, 4, 8],  # noqa: B006
              budget_bits: Annotated[float | None, AfterValidator(_budget_fits_choices)] = None,
              activation_bits: Bits | None = None, per_channel: bool = True,
              sequential: bool = True, bias_correction: bool = True, iters: Annotated[int, Field(ge=0)] = 100,
              batch_size: Annotated[int, Field(gt=0)] = 50) -> dict[str, Any]:
    """Layer-wise calibration (AdaQuant) with bit allocation by integer programming and
    bias correction (Hubara et al. 2021; see `calibration` and `allocation`).

    Inputs: ``model``, ``calibration`` (a small dataset with labels: AdaQuant fits each
    layer's output on it, and the program's degradations are the loss on it). Outputs:
    ``model``, ``layers`` and the metrics above; the chosen widths and measured
    degradations are in the model's ``meta``. ``with:`` fields (defaults):

    * ``bits`` (4; 2 | 3 | 4 | 8) — every layer's width when no budget is given;
    * ``bit_choices`` ([2, 3, 4, 8], the issue's set) and ``budget_bits`` (null: no
      allocation) — an average bits-per-weight budget for the integer program; a budget
      below the smallest choice is refused before anything runs;
    * ``activation_bits`` (null: weights only) — also fit an input grid per layer;
    * ``per_channel`` (true: a weight grid per output channel; false: one per tensor);
    * ``sequential`` (true, the paper's better variant) — fit each layer on what the
      quantized layers before it produce; false fits all on the float model's inputs;
    * ``bias_correction`` (true) — the paper's statistics correction (see `calibration`);
    * ``iters`` (100) and ``batch_size`` (50) — Adam steps and rows per step per layer,
      the paper code's values (0 gives round-to-nearest on an MSE-clipped grid).
    """
    from .calibration import quantize_model

    private = _prepare(model, calibration, ctx, "quantizer.layerwise")
    quantized = quantize_model(private, calibration, bits=bits, choices=sorted(set(bit_choices)),
                               budget=budget_bits, input_bits=activation_bits,
                               sequential=sequential, per_channel=per_channel,
                               bias_correction=bias_correction,
                               iters=iters, batch_size=batch_size,
                               generator=ctx.torch_generator(), progress=ctx.progress)
    return _outputs(ctx, private, quantized, calibration)


@node("quantizer.nupes", outputs=OUTPUTS, metrics=METRICS, describe=facts.quantizer)
def nupes(model: Model, ctx: Context, calibration: Dataset | None = None, bits: Bits = 4,
          iters: Annotated[int, Field(ge=0)] = 200,
          batch_size: Annotated[int, Field(gt=0)] = 50) -> dict[str, Any]:
    """NUPES power-exponent non-uniform quantization of the weights (Yvinec et al. 2023).

    Inputs: ``model``; ``calibration`` (optional: bound, the mode is data-driven — each
    layer's output error on it is minimised over its exponent, magnitudes and weights
    moved anywhere in the quantized space; unbound, data-free — the weight error is
    minimised over exponent and magnitudes). Outputs: ``model``, ``layers`` and the
    metrics above; the learned exponent per layer is in the model's ``meta``.
    ``with:`` fields (defaults, ours — see `power`): ``bits`` (4; 2–8), ``iters`` (200
    Adam steps per layer; 0 keeps the grid-searched exponent, PowerQuant's data-free
    method), ``batch_size`` (50 calibration rows per step, as AdaQuant's).
    """
    from .power import quantize_model

    private = _prepare(model, calibration, ctx, "quantizer.nupes")
    quantized = quantize_model(private, calibration, bits=bits, iters=iters,
                               batch_size=batch_size, generator=ctx.torch_generator())
    return _outputs(ctx, private, quantized, calibration)

from . import method as _method  # noqa: E402,F401 - registers quantizer.method
