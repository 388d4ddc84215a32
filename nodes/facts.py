"""Static facts of the built-in kinds: what an output is known to be before anything runs.

Each function is a kind's ``describe=`` (see `flowopt.registry`): it gets the node's
config and the facts of its bound inputs (``{}`` when unknown) and returns the facts of
its outputs, raising `ValueError` on a mismatch the compiler should refuse with exit
code 2. Facts: datasets ``task``, ``n_features``, ``n_classes``; models ``task``,
``n_inputs``, ``n_classes``; losses ``task``. A fact nobody declared is simply unknown
(``data.csv`` with ``task: auto`` infers its task from the file), so checks only fire
when both sides are known; the run-time checks (`loss.check_task`, the quantizers'
calibration check) stay as the backstop.
"""
from __future__ import annotations

from typing import Any, Callable

Facts = dict[str, Any]
Inputs = dict[str, Facts]

DIGITS: Facts = {"task": "classification", "n_features": 64, "n_classes": 10}


def digits(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    return {"dataset": DIGITS}


def synthetic(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    facts = {"task": config["task"], "n_features": config["n_features"]}
    if config["task"] == "classification":
        facts["n_classes"] = config["n_classes"]
    return {"dataset": facts}


def csv(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    return {"dataset": {"task": config["task"]}} if config.get("task") != "auto" else {}


def split(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    dataset = inputs.get("dataset", {})
    return {"train": dataset, "val": dataset}


def model(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    data = inputs.get("data", {})
    return {"model": {"task": data.get("task"), "n_inputs": data.get("n_features"),
                      "n_classes": data.get("n_classes")}}


def loss(task: str) -> Callable[[Facts, Inputs], dict[str, Facts]]:
    """The describer of a loss kind for `task` (classification | regression)."""
    return lambda config, inputs: {"loss": {"task": task}}


def training(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    """Optimizer kinds: the loss, model and datasets must agree on the task and width."""
    model_facts = inputs.get("model", {})
    task = inputs.get("loss", {}).get("task")
    for what in ("model", "data", "val"):
        other = inputs.get(what, {}).get("task")
        if task and other and other != task:
            raise ValueError(f"its loss is a {task} loss, but its {what} is for {other} (use "
                             "loss.mse for regression, loss.cross_entropy or another "
                             "classification loss for classifiers)")
    for what in ("data", "val"):
        _same_width(what, inputs.get(what, {}), model_facts)
    return {"model": model_facts}


def quantizer(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    """Quantizer kinds: a calibration set must have the model's input width."""
    model_facts = inputs.get("model", {})
    _same_width("calibration", inputs.get("calibration", {}), model_facts)
    return {"model": model_facts}


def classification_evaluator(config: Facts, inputs: Inputs) -> dict[str, Facts]:
    model_facts = inputs.get("model", {})
    if model_facts.get("task") == "regression":
        raise ValueError("it scores classifiers, but its model is a regression model")
    _same_width("data", inputs.get("data", {}), model_facts)
    return {}


def _same_width(what: str, data: Facts, model_facts: Facts) -> None:
    features, inputs = data.get("n_features"), model_facts.get("n_inputs")
    if features is not None and inputs is not None and features != inputs:
        raise ValueError(f"its {what} dataset has rows of {features} features, but the model "
                         f"takes {inputs} inputs")
