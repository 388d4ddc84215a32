"""evaluator.classification and its expected calibration error."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flowopt.artifacts import Dataset, Model
from flowopt.nodes import evaluator
from flowopt.nodes.evaluator import expected_calibration_error


def test_ece_of_a_hand_computed_example():
    # Five bins of width 0.2. (0.8, 1]: two predictions, accuracy 1/2, confidence 0.9;
    # (0.6, 0.8]: one right at 0.7; (0.2, 0.4]: one right at 0.3.
    # ECE = 2/4·|0.5−0.9| + 1/4·|1−0.7| + 1/4·|1−0.3| = 0.2 + 0.075 + 0.175 = 0.45
    ece = expected_calibration_error([0.9, 0.9, 0.7, 0.3], [1, 0, 1, 1], bins=5)
    assert ece == pytest.approx(0.45)


def test_ece_bins_are_closed_on_the_right_as_in_guo_et_al():
    # 0.8 belongs to (0.6, 0.8], not (0.8, 1.0]: |1−0.8|/2 + |0−0.81|/2 = 0.505.
    # (Had both shared a bin the gaps would cancel: |1−1.61|/2 = 0.305.)
    assert expected_calibration_error([0.8, 0.81], [1, 0], bins=5) == pytest.approx(0.505)


def test_ece_is_zero_when_confidence_matches_accuracy_in_every_bin():
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0], bins=10) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0


def test_ece_with_one_bin_is_the_gap_between_mean_confidence_and_accuracy():
    conf, correct = [0.9, 0.6, 0.3, 0.95], [1, 0, 0, 1]
    assert expected_calibration_error(conf, correct, bins=1) == pytest.approx(abs(0.5 - 0.6875))


def logits_model() -> Model:
    """A 'model' that returns its input, so a dataset's x holds the logits to score."""
    return Model(module=nn.Identity(), recipe={"builder": "identity"})


def scored(logits, labels, **config):
    dataset = Dataset(x=torch.tensor(logits), y=torch.tensor(labels),
                      meta={"task": "classification", "n_classes": 2, "n_features": 2})
    return evaluator.classification.fn(logits_model(), dataset, **config)


def test_classification_metrics_of_known_logits():
    # Softmax probabilities (no confidence near a bin edge, where float32 rounding could
    # move it): predictions 0 (0.9, right), 1 (0.75, right), 0 (0.7, wrong), 1 (0.55, wrong).
    probabilities = [[0.9, 0.1], [0.25, 0.75], [0.7, 0.3], [0.45, 0.55]]
    labels = [0, 1, 1, 0]
    metrics = scored([[math.log(p) for p in row] for row in probabilities], labels, bins=5)
    assert set(metrics) == {"accuracy", "loss", "ece"}
    assert metrics["accuracy"] == pytest.approx(0.5)
    expected_loss = -(math.log(0.9) + math.log(0.75) + math.log(0.3) + math.log(0.45)) / 4
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
    # Bins: (0.8, 1] holds 0.9 (right); (0.6, 0.8] holds 0.75 (right) and 0.7 (wrong);
    # (0.4, 0.6] holds 0.55 (wrong). ECE = 1/4·0.1 + 2/4·|0.5−0.725| + 1/4·0.55 = 0.275
    assert metrics["ece"] == pytest.approx(0.275, rel=1e-6)
    assert all(isinstance(v, float) for v in metrics.values())


def test_classification_does_not_change_the_shared_input_model():
    net = Model(module=nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), recipe={})
    dataset = Dataset(x=torch.randn(8, 2), y=torch.zeros(8, dtype=torch.int64),
                      meta={"task": "classification", "n_classes": 2, "n_features": 2})
    first = evaluator.classification.fn(net, dataset)
    assert net.module.training  # evaluation switched a copy to eval mode, not the input
    assert evaluator.classification.fn(net, dataset) == first  # dropout was off


def test_a_model_already_in_eval_mode_is_scored_without_a_copy_and_left_as_it_was(monkeypatch):
    import copy

    net = Model(module=nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval(), recipe={})
    dataset = Dataset(x=torch.randn(8, 2), y=torch.zeros(8, dtype=torch.int64),
                      meta={"task": "classification", "n_classes": 2, "n_features": 2})
    expected = evaluator.classification.fn(net, dataset)
    copies = []
    monkeypatch.setattr(copy, "deepcopy", lambda *a, **k: copies.append(a) or a[0])
    assert evaluator.classification.fn(net, dataset) == expected
    assert copies == [] and not any(m.training for m in net.module.modules())


def test_classification_refuses_a_regression_dataset():
    dataset = Dataset(x=torch.zeros(2, 1), y=torch.zeros(2), meta={"task": "regression"})
    with pytest.raises(ValueError, match="classification dataset"):
        evaluator.classification.fn(logits_model(), dataset)


def test_evaluator_kind_exposes_its_metrics_as_output_ports():
    kind = evaluator.classification.kind
    assert [p.name for p in kind.outputs] == ["accuracy", "loss", "ece"]
    assert kind.deterministic and kind.config().bins == 15
