"""Learning-rate schedules: the values, the validation of the field, and the lr series."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from flowopt.artifacts import Dataset, Loss
from flowopt.graph import compile_pipeline
from flowopt.errors import GraphError
from flowopt.nodes import model, optimizer
from flowopt.nodes.optimizer.schedules import Constant, Cosine, Linear, Schedule, Step, factor
from flowopt.spec import load_spec

parse = TypeAdapter(Schedule).validate_python


def curve(schedule, steps):
    return [factor(schedule, step, steps) for step in range(1, steps + 1)]


def test_constant_is_one_at_every_step():
    assert curve(Constant(), 7) == [1.0] * 7


def test_warmup_rises_linearly_from_one_over_w_to_the_full_rate():
    values = curve(Constant(warmup=0.4), 10)  # W = 4 steps
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4:] == [1.0] * 6


def test_cosine_starts_at_the_full_rate_after_warmup_and_ends_near_final():
    steps = 100
    values = curve(Cosine(warmup=0.1, final=0.1), steps)
    assert values[9] == 1.0 and values[10] == 1.0  # last warm-up step, first cosine step
    # Half-way through the decay the cosine is at the midpoint between 1 and final.
    assert values[10 + 45] == pytest.approx(0.1 + 0.9 * 0.5)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert 0.1 < values[-1] < 0.1 + 0.9 * (1 - math.cos(math.pi / 90)) + 1e-9


def test_cosine_matches_torch_cosine_annealing():
    steps, lr = 50, 0.3
    param = torch.nn.Parameter(torch.zeros(1))
    sgd = torch.optim.SGD([param], lr=lr)
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=steps)
    torch_lrs = []
    for _ in range(steps):
        torch_lrs.append(sgd.param_groups[0]["lr"])
        sgd.step()
        torch_schedule.step()
    assert [lr * f for f in curve(Cosine(), steps)] == pytest.approx(torch_lrs)


def test_linear_decays_by_equal_steps_to_final():
    values = curve(Linear(final=0.0), 4)
    assert values == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_step_multiplies_by_gamma_every_n_steps_after_warmup():
    values = curve(Step(every=3, gamma=0.5, warmup=0.2), 10)  # W = 2
    assert values == pytest.approx([0.5, 1.0, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_a_bare_name_means_that_schedule_with_its_defaults():
    assert parse("cosine") == Cosine()
    assert parse({"name": "linear", "final": 0.2}) == Linear(final=0.2)


@pytest.mark.parametrize("bad", [{"name": "exponential"}, {"name": "cosine", "warmup": 1.0},
                                 {"name": "step"}, {"name": "linear", "final": 2},
                                 {"name": "constant", "gamma": 0.5}, "warmup"])
def test_bad_schedules_are_validation_errors(bad):
    with pytest.raises(ValidationError):
        parse(bad)


def test_a_bad_schedule_in_a_pipeline_names_the_file_line_and_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""pipeline: p
nodes:
  d: {kind: data.synthetic}
  net: {kind: model.mlp, in: {data: d}}
  xent: {kind: loss.cross_entropy}
  train:
    kind: optimizer.adam
    in: {model: net, data: d, loss: xent}
    with: {schedule: {name: cosine, warmup: 1.5}}
""")
    with pytest.raises(GraphError) as info:
        compile_pipeline(load_spec(path))
    assert "p.yaml:9" in str(info.value) and "nodes.train.with.schedule" in str(info.value)


def test_training_logs_the_scheduled_lr_of_every_step(make_ctx):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = Dataset(x=x, y=(x[:, 0] > 0).long(),
                   meta={"task": "classification", "n_classes": 2, "n_features": 4})
    net = model.mlp.fn(data, make_ctx(), hidden=[8])
    ctx = make_ctx()
    trained = optimizer.sgd.fn(net, data, Loss(recipe={"builder": "cross_entropy"}), ctx,
                               lr=0.2, steps=20, batch_size=16, device="cpu",
                               schedule={"name": "cosine", "warmup": 0.25})
    lrs = [value for key, value, _ in ctx.logged if key == "lr"]
    assert lrs == pytest.approx([0.2 * f for f in curve(Cosine(warmup=0.25), 20)])
    assert trained.meta["schedule"] == {"name": "cosine", "warmup": 0.25, "final": 0.0}
