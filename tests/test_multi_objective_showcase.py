"""pipelines/pareto_quantize.yaml runs and reports an honest front; quantizer.method maps
each point of the searched box to a setting its method has."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowopt.graph import compile_pipeline
from flowopt.recording import MemoryRecorder
from flowopt.scheduler import Scheduler
from flowopt.spec import load_spec
from flowopt.tuning.pareto import hypervolume, pareto_mask, to_loss

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "pareto_quantize.yaml"


def test_layerwise_widths_are_the_nearest_it_has():
    from flowopt.nodes.quantizer.method import layerwise_width

    assert [layerwise_width(b) for b in range(2, 9)] == [2, 3, 4, 4, 8, 8, 8]  # 6: a tie, to the wider


def test_the_showcase_compiles_with_two_objectives_and_a_reference_point():
    graph = compile_pipeline(load_spec(PIPELINE))
    plan = graph.tuners["tune"]
    assert plan.metrics == ("score.accuracy", "quant.bytes")
    assert set(plan.space) == {"width", "method", "bits", "bits_mid", "bits_out", "block_size"}
    assert set(plan.owned) == {"net", "train", "quant", "score"}


@pytest.mark.slow
def test_the_showcase_front_is_non_dominated_and_its_bytes_are_what_was_stored():
    graph = compile_pipeline(load_spec(PIPELINE, ["nodes.tune.with.trials=8"]))
    recorder = MemoryRecorder()
    result = Scheduler(graph, recorder).run()
    assert result.status == "succeeded"
    trials = sorted((t for t in recorder.trials.values() if t.run_id == result.run_id),
                    key=lambda t: t.number)
    assert len(trials) == 8 and all(t.status == "succeeded" for t in trials)
    values = np.array([t.values for t in trials])
    assert np.all((values[:, 0] > 0.1) & (values[:, 0] <= 1.0)) and np.all(values[:, 1] > 0)
    losses = to_loss(values, ["max", "min"])
    front = [t.number for t, on in zip(trials, pareto_mask(losses)) if on]
    assert [p["number"] for p in result.best["pareto"]] == front
    assert result.best["reference_point"] == [0.93, 12000]
    ref = to_loss([[0.93, 12000.0]], ["max", "min"])[0]
    assert result.best["hypervolume"] == pytest.approx(hypervolume(losses, ref))
    # the objective is the quantizer's own measurement of what it stored
    for entry in recorder.load(result.nodes["tune"].outputs["pareto"]):
        model_id = entry["artifacts"]["quant.model"]
        stored = next(r for n, outs in recorder.run_outputs(entry["trial_run_id"]).items()
                      for p, r in outs.items() if n == "quant" and p == "bytes")
        assert recorder.load(stored) == entry["objectives"][1] and model_id
