"""The rank-sum AUROC equals the scikit-learn AUROC the metrics use, ties and masks included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrkd_monai.metrics import per_class_auroc
from cxrkd_monai.metrics.rank_auroc import per_class_rank_auroc, rank_auroc


def test_hand_computed_pairs_count_ties_as_half():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 -> 1/2) (0.4>0.1) -> 3.5 / 4
    assert rank_auroc(np.array([1, 1, 0, 0]), np.array([0.8, 0.4, 0.4, 0.1])) == pytest.approx(0.875)


def test_one_label_value_has_no_auroc():
    assert math.isnan(rank_auroc(np.zeros(4), np.arange(4.0)))


@pytest.mark.parametrize("seed", range(5))
def test_equals_per_class_auroc_on_tied_masked_scores(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (60, 4)).astype(float)
    scores = np.round(rng.uniform(size=(60, 4)), 1)  # many ties
    mask = rng.uniform(size=(60, 4)) > 0.2
    labels[~mask] = np.nan
    labels[:, 3] = np.where(mask[:, 3], 1.0, labels[:, 3])  # one observed value only: undefined
    expected = per_class_auroc(scores, labels, mask)
    actual = per_class_rank_auroc(scores, labels, mask)
    np.testing.assert_allclose(actual[:3], expected[:3], rtol=0, atol=1e-12)
    assert math.isnan(actual[3]) and math.isnan(expected[3])
    assert actual[0] == pytest.approx(roc_auc_score(labels[mask[:, 0], 0], scores[mask[:, 0], 0]), abs=1e-12)
