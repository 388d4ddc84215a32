"""Evaluator kinds: ``evaluator.classification`` (accuracy, loss, ECE).

Metrics are output ports (``score.accuracy``), so tuners bind them like any input.
"""
from __future__ import annotations

import copy
import math
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from flowopt.artifacts import Dataset, Model
from flowopt.registry import node

from . import facts


def expected_calibration_error(confidences: Any, correct: Any, bins: int = 15) -> float:
    """ECE with `bins` equal-width confidence bins (Guo et al. 2017, eq. 3).

    ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|, where bin B_m holds the predictions whose
    confidence lies in ((m−1)/M, m/M] (a confidence of exactly 0 goes to the first bin).
    """
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidences.size == 0:
        raise ValueError("ECE of an empty set of predictions is undefined")
    which = np.clip(np.ceil(confidences * bins).astype(np.int64) - 1, 0, bins - 1)
    # Per bin, |Σ correct − Σ confidence| / n equals |B_m|/n · |acc(B_m) − conf(B_m)|.
    gap = np.bincount(which, weights=correct - confidences, minlength=bins)
    return float(np.abs(gap).sum() / confidences.size)


@node("evaluator.classification", metrics=["accuracy", "loss", "ece"], deterministic=True,
      describe=facts.classification_evaluator)
def classification(model: Model, data: Dataset,
                   bins: Annotated[int, Field(gt=0)] = 15) -> dict[str, float]:
    """Accuracy, cross-entropy and expected calibration error of a classifier on `data`.

    Inputs: ``model`` (outputs class logits), ``data`` (a classification dataset).
    Outputs (metrics): ``accuracy`` (fraction of argmax predictions that are right),
    ``loss`` (mean softmax cross-entropy in nats, without label smoothing), ``ece``
    (Guo et al. 2017, on the max softmax probability). ``with:`` fields (defaults):
    ``bins`` (15, the number of equal-width ECE bins, as in Guo et al.).
    """
    import torch
    import torch.nn.functional as F

    if data.meta.get("task") != "classification":
        raise ValueError("evaluator.classification needs a classification dataset "
                         f"(this one's task is {data.meta.get('task')!r})")
    if len(data) == 0:
        raise ValueError("evaluator.classification: the dataset is empty")
    module = model.module
    if any(m.training for m in module.modules()):  # eval() would otherwise flip a shared input
        module = copy.deepcopy(module).eval()
    with torch.no_grad():
        logits = module(data.x).float()
    probabilities = logits.softmax(dim=-1)
    confidence, predicted = probabilities.max(dim=-1)
    correct = predicted == data.y
    return {"accuracy": correct.double().mean().item(),
            "loss": F.cross_entropy(logits, data.y).item(),
            "ece": expected_calibration_error(confidence.numpy(), correct.numpy(), bins)}


@node("evaluator.steps_to_target", metrics=["steps", "reached"], deterministic=True)
def steps_to_target(model: Model,
                    target: Annotated[float, Field(gt=0, le=1)] = 0.95) -> dict[str, float]:
    """Training steps until the validation accuracy first reached `target` (AlgoPerf-style).

    Time-to-result as in "Benchmarking Neural Network Training Algorithms" (Dahl et al.
    2023), counted in steps rather than seconds so that it does not depend on the machine:
    the first evaluation step whose accuracy is ≥ ``target``, read from the validation
    curve an optimizer node records in ``model.meta["val_curve"]`` when its ``val`` input is
    bound (so the resolution is the trainer's ``eval_every``). Not reached within the
    budget: ``steps`` is +inf (AlgoPerf scores such a run as infinitely slow), ``reached`` 0.

    Inputs: ``model`` (trained with ``val`` bound). Outputs (metrics): ``steps``,
    ``reached`` (1.0 or 0.0). ``with:`` fields (defaults): ``target`` (0.95).
    """
    curve = model.meta.get("val_curve")
    if not curve:
        raise ValueError("evaluator.steps_to_target needs a model trained with a 'val' input "
                         "(its meta has no 'val_curve')")
    first = next((step for step, accuracy in curve if accuracy >= target), None)
    return {"steps": float(first) if first is not None else math.inf,
            "reached": 1.0 if first is not None else 0.0}
