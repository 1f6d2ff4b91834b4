import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrkd_monai.metrics.bootstrap import bootstrap_interval


def _auroc(labels, scores):
    def statistic(index):
        if len(np.unique(labels[index])) < 2:
            return math.nan
        return roc_auc_score(labels[index], scores[index])

    return statistic


def test_interval_matches_a_direct_numpy_bootstrap_with_the_same_seed():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 40)
    scores = labels * 0.6 + rng.random(40)
    interval = bootstrap_interval(_auroc(labels, scores), num_items=40, num_resamples=300, seed=11)

    draws = np.random.default_rng(11)
    values = []
    for _ in range(300):
        index = draws.integers(0, 40, 40)
        if len(np.unique(labels[index])) == 2:
            values.append(roc_auc_score(labels[index], scores[index]))
    assert interval.estimate == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert interval.low == pytest.approx(np.percentile(values, 2.5), abs=1e-12)
    assert interval.high == pytest.approx(np.percentile(values, 97.5), abs=1e-12)
    assert interval.num_defined == len(values) and interval.num_resamples == 300
    assert interval.low < interval.estimate < interval.high


def test_undefined_resamples_are_dropped_and_counted():
    labels = np.array([1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    interval = bootstrap_interval(_auroc(labels, scores), num_items=6, num_resamples=200, seed=0)
    missing_positive = (1 - 1 / 6) ** 6  # a resample without the one positive image has no AUROC
    assert 200 * missing_positive - 30 < 200 - interval.num_defined < 200 * missing_positive + 30
    assert interval.estimate == 1.0 and interval.low == interval.high == 1.0
    assert interval.format() == "1.000 [1.000, 1.000]"


def test_constant_statistic_and_bad_arguments():
    interval = bootstrap_interval(lambda index: 0.5, num_items=3, num_resamples=10)
    assert (interval.estimate, interval.low, interval.high, interval.num_defined) == (0.5, 0.5, 0.5, 10)
    nothing = bootstrap_interval(lambda index: math.nan, num_items=3, num_resamples=5)
    assert math.isnan(nothing.low) and nothing.num_defined == 0 and nothing.format() == "n/a"
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(lambda index: 0.0, num_items=3, confidence=95)
    with pytest.raises(ValueError, match="num_items"):
        bootstrap_interval(lambda index: 0.0, num_items=0)
