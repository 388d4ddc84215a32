"""What every quantizer node reports: size, and per-layer reconstruction error.

Metric ports (all kinds): ``bits_per_parameter`` (every stored byte — codes, scales,
codebooks, float biases — times 8 over the float model's parameter count),
``size_ratio`` (encoded artifact bytes over encoded fp32 model bytes: what the store
really holds), ``bytes`` and ``weight_mse`` (squared weight error summed over the
quantized layers, divided by their weight count). The ``layers`` output lists, per
quantized layer, its bits, weight MSE and — when a calibration set is bound — the MSE of
its output in the quantized model against the float model on that set (errors accumulate
through the network, as deployed). The same numbers are logged as series indexed by layer
(``layer_weight_mse``, ``layer_output_mse``), plus ``output_mse`` on the final output.
"""
from __future__ import annotations

from typing import Any

import torch

from flowopt.artifacts import Dataset, Model, QuantizedModel
from flowopt.context import Context

from .artifact import quantizable_layers, size_metrics
from .rtn import param_name
from .observers import record


def layer_table(model: Model, quantized: QuantizedModel,
                calibration: Dataset | None) -> list[dict[str, Any]]:
    """One row per quantized layer: name, bits, weights, weight MSE, output MSE (or None)."""
    float_layers = dict(quantizable_layers(model.module))
    quant_layers = dict(quantizable_layers(quantized.module))
    names = list(float_layers)
    outputs_float = outputs_quant = None
    if calibration is not None:
        outputs_float = record(model.module.eval(), calibration.x, names, outputs=True)
        outputs_quant = record(quantized.module, calibration.x, names, outputs=True)
    rows = []
    for name in names:
        weight = float_layers[name].weight.detach()
        error = (quant_layers[name].weight.detach() - weight).square()
        entry = quantized.layout["parameters"].get(param_name(name, "weight"), {})
        rows.append({
            "layer": name, "bits": entry.get("bits", 32), "weights": weight.numel(),
            "weight_sse": float(error.sum()), "weight_mse": float(error.mean()),
            "output_mse": None if outputs_float is None else
            float((outputs_quant[name] - outputs_float[name]).square().mean())})
    return rows


def report(ctx: Context, model: Model, quantized: QuantizedModel,
           calibration: Dataset | None) -> dict[str, Any]:
    """The node outputs besides the model: ``layers`` and the metric ports (logs series)."""
    rows = layer_table(model, quantized, calibration)
    for index, row in enumerate(rows):
        ctx.log_metric("layer_bits", row["bits"], index)
        ctx.log_metric("layer_weight_mse", row["weight_mse"], index)
        if row["output_mse"] is not None:
            ctx.log_metric("layer_output_mse", row["output_mse"], index)
    if calibration is not None:
        with torch.no_grad():
            final = (quantized.module(calibration.x) - model.module.eval()(calibration.x))
        ctx.log_metric("output_mse", float(final.square().mean()), 0)
    weights = sum(row["weights"] for row in rows)
    sse = sum(row.pop("weight_sse") for row in rows)
    return {"layers": rows, **size_metrics(quantized, model),
            "weight_mse": sse / max(weights, 1)}
