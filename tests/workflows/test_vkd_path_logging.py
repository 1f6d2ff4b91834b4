"""The VKD bundle logs its KL every epoch and, at each validation, the AUROC of its posterior and prior paths."""

from __future__ import annotations

import json
import math

import pytest
from ignite.engine import Events

from tests.workflows.conftest import vkd_tiny_overrides, vkd_workflow

pytestmark = pytest.mark.slow


def test_kl_per_epoch_and_path_aurocs_each_validation(phantom, tmp_path):
    """The shipped settings (``classifier_input="z"``, ``kl_reduction="mean"``); the others are unit-tested."""
    classifier_input, kl_reduction = "z", "mean"
    overrides = vkd_tiny_overrides(phantom, tmp_path, epochs=2)
    workflow = vkd_workflow(["train.json"], "train", **overrides)
    assert workflow.check_properties() in (None, [])
    parser = workflow.parser
    assert parser.get_parsed_content("loss").kl_reduction == kl_reduction
    assert parser.get_parsed_content("network_def").classifier_input == classifier_input
    trainer = parser.get_parsed_content("train#trainer")
    paths = parser.get_parsed_content("validate#paths#evaluator")
    kl_values, epoch_metrics, path_metrics = [], [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: kl_values.append(e.state.output[0]["kl"]))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epoch_metrics.append(dict(e.state.metrics)))
    paths.add_event_handler(Events.EPOCH_COMPLETED, lambda e: path_metrics.append(dict(e.state.metrics)))
    workflow.run()
    workflow.finalize()

    assert len(epoch_metrics) == 2 and len(path_metrics) == 2, "one path validation per epoch's validation"
    iterations = len(kl_values) // 2
    for epoch, metrics in enumerate(epoch_metrics):
        mean_kl = sum(kl_values[epoch * iterations : (epoch + 1) * iterations]) / iterations
        assert metrics["epoch_kl"] == pytest.approx(mean_kl, rel=1e-6) and mean_kl > 0
        assert metrics["epoch_kl_per_dim"] == pytest.approx(mean_kl / overrides["latent_dim"], rel=1e-6)
    for metrics in path_metrics:
        for name in ("val_posterior_auroc", "val_prior_auroc"):
            assert 0.0 <= metrics[name] <= 1.0 and not math.isnan(metrics[name])
    validation = json.loads((phantom / "datalist_vkd.json").read_text())["validation"]
    assert paths.state.iteration > 0
    assert len(paths.data_loader.dataset) == sum(1 for item in validation if item.get("report"))
