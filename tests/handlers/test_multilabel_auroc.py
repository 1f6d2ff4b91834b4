"""The Ignite handler ``MultiLabelAUROC``: per-class and averaged AUROC over an engine's batches, masks read from
the batch."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine
from sklearn.metrics import roc_auc_score

from cxrkd_monai.handlers import MultiLabelAUROC
from tests.conftest import masked_auroc_case
from tests.handlers.conftest import decollated_batches


def test_handler_reports_macro_and_per_class_values():
    rng = np.random.default_rng(2)
    labels = torch.tensor(rng.integers(0, 2, size=(24, 2)), dtype=torch.float32)
    scores = torch.rand(24, 2) + labels * 0.3
    batches = [(scores[i : i + 8], labels[i : i + 8]) for i in range(0, 24, 8)]
    engine = Engine(lambda e, batch: batch)
    MultiLabelAUROC(["a", "b"]).attach(engine, "auroc")
    engine.run(batches)
    per_class = [roc_auc_score(labels[:, c], scores[:, c]) for c in range(2)]
    assert engine.state.metrics["auroc_a"] == pytest.approx(per_class[0])
    assert engine.state.metrics["auroc_b"] == pytest.approx(per_class[1])
    assert engine.state.metrics["auroc"] == pytest.approx(np.mean(per_class))


def test_wrong_class_count_names_classes():
    engine = Engine(lambda e, batch: batch)
    MultiLabelAUROC(["a", "b", "c"]).attach(engine, "auroc")
    with pytest.raises(ValueError, match="expects 3 classes"):
        engine.run([(torch.rand(4, 2), torch.ones(4, 2))])


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_handler_reads_the_mask_from_the_batch(average):
    scores, labels, mask = masked_auroc_case()
    scores = scores.astype(np.float32).astype(np.float64)  # what the float32 tensors hold
    engine = Engine(lambda e, batch: batch)
    MultiLabelAUROC(
        ["a", "b", "c"],
        average=average,
        output_transform=from_engine(["pred_prob", "label"]),
        mask_transform=from_engine(["label_mask"]),
    ).attach(engine, "auroc")
    engine.run(decollated_batches(scores, labels, mask))
    observed = mask > 0
    per_class = [roc_auc_score(labels[observed[:, k], k], scores[observed[:, k], k]) for k in range(3)]
    expected = np.mean(per_class) if average == "macro" else roc_auc_score(labels[observed], scores[observed])
    assert engine.state.metrics["auroc"] == pytest.approx(expected, abs=1e-12)
    if average == "macro":
        assert [engine.state.metrics[f"auroc_{name}"] for name in "abc"] == pytest.approx(per_class, abs=1e-12)
    else:
        assert "auroc_a" not in engine.state.metrics
