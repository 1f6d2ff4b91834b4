import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine
from sklearn.metrics import roc_auc_score

from cxrkd_monai.handlers import MultiLabelAUROC
from cxrkd_monai.metrics import micro_auroc, per_class_auroc


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


def masked_case(seed: int = 3, n: int = 60, c: int = 3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, c)).astype(float)
    scores = rng.random((n, c)) + 0.4 * labels
    mask = (rng.random((n, c)) > 0.3).astype(float)
    return scores, labels, mask


def test_micro_auroc_pools_the_observed_entries_only():
    scores, labels, mask = masked_case()
    observed = mask > 0
    assert micro_auroc(scores, labels, mask) == pytest.approx(roc_auc_score(labels[observed], scores[observed]))
    assert micro_auroc(scores, labels) == pytest.approx(roc_auc_score(labels.ravel(), scores.ravel()))
    flipped = np.where(observed, labels, 1.0 - labels)
    assert micro_auroc(scores, flipped, mask) == micro_auroc(scores, labels, mask)


def decollated_batches(scores, labels, mask, batch_size=16):
    """Batches as a MONAI evaluator leaves them: decollated output (pred, label) and batch (label_mask)."""
    batches = []
    for start in range(0, len(labels), batch_size):
        rows = range(start, min(start + batch_size, len(labels)))
        batches.append(
            [
                {
                    "pred_prob": torch.tensor(scores[i], dtype=torch.float32),
                    "label": torch.tensor(labels[i], dtype=torch.float32),
                    "label_mask": torch.tensor(mask[i], dtype=torch.float32),
                }
                for i in rows
            ]
        )
    return batches


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_handler_reads_the_mask_from_the_batch(average):
    scores, labels, mask = masked_case()
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
