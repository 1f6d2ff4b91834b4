import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrkd_monai.metrics import micro_auroc, per_class_auroc
from tests.conftest import masked_auroc_case


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


def test_micro_auroc_pools_the_observed_entries_only():
    scores, labels, mask = masked_auroc_case()
    observed = mask > 0
    assert micro_auroc(scores, labels, mask) == pytest.approx(roc_auc_score(labels[observed], scores[observed]))
    assert micro_auroc(scores, labels) == pytest.approx(roc_auc_score(labels.ravel(), scores.ravel()))
    flipped = np.where(observed, labels, 1.0 - labels)
    assert micro_auroc(scores, flipped, mask) == micro_auroc(scores, labels, mask)
