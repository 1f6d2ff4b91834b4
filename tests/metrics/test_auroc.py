import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sklearn.metrics import roc_auc_score

from cxrkd_monai.metrics import MultiLabelAUROC, per_class_auroc


def test_per_class_matches_sklearn_and_flags_undefined_classes():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(40, 3)).astype(float)
    labels[:, 2] = 0.0  # no positives: AUROC undefined
    scores = rng.random((40, 3)) + 0.5 * labels
    values = per_class_auroc(scores, labels)
    assert values[0] == pytest.approx(roc_auc_score(labels[:, 0], scores[:, 0]))
    assert values[1] == pytest.approx(roc_auc_score(labels[:, 1], scores[:, 1]))
    assert math.isnan(values[2])


def test_mask_excludes_unobserved_labels():
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    scores = np.array([[0.9], [0.1], [0.05], [0.2]])
    mask = np.array([[1.0], [1.0], [0.0], [1.0]])  # hide the badly ranked positive
    assert per_class_auroc(scores, labels, mask)[0] == pytest.approx(1.0)
    assert per_class_auroc(scores, labels)[0] == pytest.approx(roc_auc_score(labels[:, 0], scores[:, 0]))


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
