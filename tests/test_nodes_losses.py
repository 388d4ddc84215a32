"""Loss kinds: spherical Z-loss invariances, StableMax vs Softmax Collapse, focal, task checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from flowopt.artifacts import Dataset, Loss, Model, decode, encode
from flowopt.nodes import loss
from flowopt.nodes.loss import check_task, log_stablemax

LOGITS = st.integers(min_value=0, max_value=2**31 - 1).map(
    lambda seed: torch.randn(6, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
TARGETS = torch.tensor([0, 1, 2, 3, 4, 0])


def build(factory, **config):
    return factory.fn(**config).build()


# --- spherical Z-loss ----------------------------------------------------------------------

def z_loss_by_hand(o: torch.Tensor, targets: torch.Tensor, a: float, b: float) -> float:
    total = 0.0
    for row, c in zip(o.tolist(), targets.tolist(), strict=True):
        d = len(row)
        mu = sum(row) / d
        sigma = math.sqrt(sum(v * v for v in row) / d - mu * mu)
        z = (row[c] - mu) / sigma
        total += math.log1p(math.exp(a * (b - z))) / a
    return total / len(targets)


def test_z_loss_follows_the_papers_formula():
    o = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.1, 0.3, 0.2, -0.4]], dtype=torch.float64)
    t = torch.tensor([0, 3])
    fn = build(loss.spherical_z, a=0.5, b=2.0)
    assert fn(o, t).item() == pytest.approx(z_loss_by_hand(o, t, 0.5, 2.0), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(o=LOGITS, shift=st.floats(-1e3, 1e3), scale=st.floats(1e-3, 1e3))
def test_z_loss_is_invariant_to_shifting_and_scaling_the_logits(o, shift, scale):
    fn = build(loss.spherical_z)
    base = fn(o, TARGETS).item()
    assert fn(o + shift, TARGETS).item() == pytest.approx(base, rel=1e-9, abs=1e-9)
    assert fn(o * scale, TARGETS).item() == pytest.approx(base, rel=1e-9, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(o=LOGITS, shift=st.floats(-1e3, 1e3))
def test_softmax_cross_entropy_is_shift_but_not_scale_invariant(o, shift):
    # The contrast that motivates the Z-loss: log-softmax changes when logits are scaled.
    assert F.cross_entropy(o + shift, TARGETS).item() == pytest.approx(
        F.cross_entropy(o, TARGETS).item(), rel=1e-9)
    assert F.cross_entropy(3 * o, TARGETS).item() != pytest.approx(
        F.cross_entropy(o, TARGETS).item(), rel=1e-3)


def test_z_loss_decreases_as_the_true_class_stands_out():
    fn = build(loss.spherical_z)
    values = []
    for runner_up in (0.9, 0.5, 0.2, 0.0):  # the true class 0 at 1.0, a rival falling back
        logits = torch.zeros(1, 10)
        logits[0, 0], logits[0, 1] = 1.0, runner_up
        values.append(fn(logits, torch.tensor([0])).item())
    assert all(a > b for a, b in zip(values, values[1:]))


# --- StableMax ------------------------------------------------------------------------------

def s(x: float) -> float:
    return x + 1 if x >= 0 else 1 / (1 - x)


def test_stablemax_is_s_normalised_and_its_loss_is_minus_log_of_it():
    x = torch.tensor([[2.0, -3.0, 0.0, 0.5]], dtype=torch.float64)
    by_hand = [s(v) / sum(s(u) for u in x[0].tolist()) for v in x[0].tolist()]
    assert log_stablemax(x).exp()[0].tolist() == pytest.approx(by_hand, rel=1e-12)
    fn = build(loss.stablemax)
    assert fn(x, torch.tensor([1])).item() == pytest.approx(-math.log(by_hand[1]), rel=1e-12)


def test_s_is_continuous_with_a_continuous_slope_at_zero():
    x = torch.tensor([-1e-6, 0.0, 1e-6], dtype=torch.float64, requires_grad=True)
    s_x = log_stablemax(torch.stack([x, torch.zeros(3, dtype=torch.float64)], dim=1))
    # s(0) = 1 from both sides and s'(0) = 1 from both sides.
    assert torch.allclose(s_x[:, 0] - s_x[:, 1], torch.log(torch.tensor([1 / 1.000001, 1, 1.000001],
                                                                           dtype=torch.float64)))


@pytest.mark.parametrize("lead", [40.0, 200.0, 1e4])
def test_stablemax_keeps_a_gradient_where_softmax_collapses_in_float32(lead):
    """Softmax Collapse: with the true logit far ahead, float32 softmax rounds p_c to exactly
    1, so the loss and the true class's gradient (p_c − 1) are exactly 0 and learning stops;
    StableMax's are not."""
    logits = torch.zeros(2, 10)
    logits[:, 3] = lead
    targets = torch.tensor([3, 3])
    soft = logits.clone().requires_grad_(True)
    value = F.cross_entropy(soft, targets)
    value.backward()
    assert value.item() == 0.0 and soft.grad[:, 3].abs().max().item() == 0.0
    stable = logits.clone().requires_grad_(True)
    value = build(loss.stablemax)(stable, targets)
    value.backward()
    assert math.isfinite(value.item()) and value.item() > 0
    assert (stable.grad[:, 3] < 0).all() and torch.isfinite(stable.grad).all()


def test_stablemax_is_finite_for_logits_that_overflow_exp_in_float32():
    logits = torch.tensor([[1e30, -1e30, 0.0]], dtype=torch.float32)
    assert torch.isinf(logits.exp()).any()  # a naive softmax overflows
    value = build(loss.stablemax)(logits, torch.tensor([1]))
    assert math.isfinite(value.item()) and value.item() > 50


# --- focal ----------------------------------------------------------------------------------

def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy():
    generator = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(8, 4, generator=generator), torch.randint(0, 4, (8,), generator=generator)
    assert torch.allclose(build(loss.focal, gamma=0.0)(logits, targets), F.cross_entropy(logits, targets))


def test_focal_follows_lin_et_al_with_class_weights():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    targets = torch.tensor([0, 2])
    alpha = [0.25, 0.5, 0.75]
    p = logits.softmax(-1)[torch.arange(2), targets].tolist()
    by_hand = [-alpha[c] * (1 - pt) ** 2 * math.log(pt) for pt, c in zip(p, targets.tolist())]
    fn = build(loss.focal, gamma=2.0, alpha=alpha)
    assert fn(logits, targets).item() == pytest.approx(sum(by_hand) / 2, rel=1e-12)


def test_focal_down_weights_easy_examples_relative_to_cross_entropy():
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    target = torch.tensor([0])
    focal = build(loss.focal)
    ratio_easy = focal(easy, target) / F.cross_entropy(easy, target)
    ratio_hard = focal(hard, target) / F.cross_entropy(hard, target)
    assert ratio_easy < 0.01 < 0.2 < ratio_hard


def test_focal_refuses_alpha_of_the_wrong_length():
    with pytest.raises(ValueError, match="alpha has 2 weights, the model 3 classes"):
        build(loss.focal, alpha=[0.5, 0.5])(torch.zeros(1, 3), torch.tensor([0]))


# --- recipes and the task check -------------------------------------------------------------

@pytest.mark.parametrize("factory,config", [(loss.spherical_z, {"a": 2.0, "b": 1.0}),
                                            (loss.stablemax, {}), (loss.focal, {"alpha": [1, 2]})])
def test_new_loss_recipes_survive_the_codec(factory, config):
    made = factory.fn(**config)
    restored = decode(*encode(made))
    logits, targets = torch.randn(3, 2), torch.tensor([0, 1, 1])
    assert restored.recipe == made.recipe
    assert torch.equal(restored.build()(logits, targets), made.build()(logits, targets))


def classifier_meta():
    return {"task": "classification", "n_classes": 3, "n_features": 2}


def test_a_regression_loss_on_a_classifier_is_refused_with_a_clear_message():
    net = Model(module=None, recipe={}, meta={"task": "classification"})
    data = Dataset(x=np.zeros((1, 2)), y=np.zeros(1), meta=classifier_meta())
    with pytest.raises(ValueError, match="loss 'mse' is a regression loss, but the model is "
                                         "for classification"):
        check_task("optimizer.adam", Loss(recipe={"builder": "mse"}), net, data)
    check_task("optimizer.adam", Loss(recipe={"builder": "focal"}), net, data)
    # A plugin's loss that declares no task is not second-guessed.
    check_task("optimizer.adam", Loss(recipe={"builder": "my_plugin_loss"}), net, data)
