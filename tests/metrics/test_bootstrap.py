import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrkd_monai.metrics.auroc import micro_auroc
from cxrkd_monai.metrics.bootstrap import (
    auroc_difference_intervals,
    auroc_intervals,
    auroc_summary,
    bootstrap_interval,
    bootstrap_intervals,
    bootstrap_metric,
    bootstrap_metric_difference,
    paired_patient_bootstrap_difference,
    patient_bootstrap_interval,
)


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


def _synthetic_predictions(seed=3, num_patients=30, num_classes=3):
    """Two to three images per patient; scores that separate the classes imperfectly; some labels unobserved."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(num_patients), rng.integers(2, 4, num_patients))
    labels = rng.integers(0, 2, (len(patients), num_classes)).astype(float)
    scores = 0.5 * labels + rng.random(labels.shape)
    mask = (rng.random(labels.shape) > 0.1).astype(float)
    return [f"p{p:03d}" for p in patients], scores, labels, mask


def _reference_auroc(scores, labels, mask):
    values = []
    for c in range(labels.shape[1]):
        observed = mask[:, c] > 0.5
        y, s = labels[observed, c], scores[observed, c]
        values.append(roc_auc_score(y, s) if len(np.unique(y)) == 2 else math.nan)
    return values


def test_patient_level_auroc_intervals_match_a_direct_numpy_cluster_bootstrap():
    patients, scores, labels, mask = _synthetic_predictions()
    intervals = auroc_intervals(
        scores, labels, mask, ["a", "b", "c"], groups=patients, num_resamples=200, seed=5
    )

    # reference: patients in order of first appearance, drawn with replacement, each bringing all its images
    unique = list(dict.fromkeys(patients))
    members = [np.flatnonzero(np.array(patients) == p) for p in unique]
    rng = np.random.default_rng(5)
    per_class, macro = [], []
    for _ in range(200):
        index = np.concatenate([members[k] for k in rng.integers(0, len(unique), len(unique))])
        values = _reference_auroc(scores[index], labels[index], mask[index])
        per_class.append(values)
        defined = [v for v in values if not math.isnan(v)]
        macro.append(np.mean(defined) if defined else math.nan)
    per_class, macro = np.array(per_class), np.array(macro)
    for c, name in enumerate(["a", "b", "c"]):
        column = per_class[np.isfinite(per_class[:, c]), c]
        assert intervals[name].low == pytest.approx(np.percentile(column, 2.5), abs=1e-12)
        assert intervals[name].high == pytest.approx(np.percentile(column, 97.5), abs=1e-12)
        assert intervals[name].estimate == pytest.approx(_reference_auroc(scores, labels, mask)[c], abs=1e-12)
    assert intervals["macro"].low == pytest.approx(np.percentile(macro, 2.5), abs=1e-12)
    assert intervals["macro"].high == pytest.approx(np.percentile(macro, 97.5), abs=1e-12)
    assert intervals["macro"].num_defined == 200 and intervals["micro"].low < intervals["micro"].estimate


def test_one_image_per_patient_is_the_image_bootstrap_and_patients_widen_the_interval():
    patients, scores, labels, mask = _synthetic_predictions()
    images = [f"image{i}" for i in range(len(scores))]
    by_image = bootstrap_metric(micro_auroc, scores, labels, mask, groups=images, num_resamples=100, seed=1)
    plain = bootstrap_metric(micro_auroc, scores, labels, mask, num_resamples=100, seed=1)
    assert (by_image.low, by_image.high) == (plain.low, plain.high)

    # every image of a patient shares its labels and scores: the patient, not the image, is the sample
    copies = np.repeat(np.arange(20), 5)
    rng = np.random.default_rng(0)
    patient_labels = rng.integers(0, 2, (20, 1)).astype(float)
    patient_scores = patient_labels * 0.4 + rng.random((20, 1))
    kwargs = {"num_resamples": 400, "seed": 2}
    clustered = bootstrap_metric(
        micro_auroc, patient_scores[copies], patient_labels[copies], groups=copies.tolist(), **kwargs
    )
    naive = bootstrap_metric(micro_auroc, patient_scores[copies], patient_labels[copies], **kwargs)
    assert clustered.estimate == naive.estimate
    assert clustered.high - clustered.low > 1.5 * (naive.high - naive.low)


def test_perfect_classifier_interval_is_one_one():
    patients, _, labels, _ = _synthetic_predictions()
    intervals = auroc_intervals(labels * 0.8 + 0.1, labels, groups=patients, num_resamples=100)
    for interval in intervals.values():
        assert (interval.estimate, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_paired_difference_matches_the_difference_on_shared_resamples():
    patients, scores, labels, mask = _synthetic_predictions()
    reference = scores + np.random.default_rng(9).normal(0, 0.5, scores.shape)
    kwargs = {"groups": patients, "num_resamples": 150, "seed": 4}
    difference = auroc_difference_intervals(scores, reference, labels, mask, **kwargs)
    ours = bootstrap_intervals(
        lambda index: auroc_summary(scores[index], labels[index], mask[index]), len(scores), 150, seed=4,
        groups=patients,
    )  # fmt: skip

    unique = list(dict.fromkeys(patients))
    members = [np.flatnonzero(np.array(patients) == p) for p in unique]
    rng = np.random.default_rng(4)
    differences = []
    for _ in range(150):
        index = np.concatenate([members[k] for k in rng.integers(0, len(unique), len(unique))])
        a = micro_auroc(scores[index], labels[index], mask[index])
        b = micro_auroc(reference[index], labels[index], mask[index])
        differences.append(a - b)
    assert difference["micro"].low == pytest.approx(np.percentile(differences, 2.5), abs=1e-12)
    assert difference["micro"].high == pytest.approx(np.percentile(differences, 97.5), abs=1e-12)
    assert difference["micro"].low > 0  # the noisy reference ranks worse on every plausible resample
    # two nearly equal models err on the same patients: their paired difference varies far less than either
    near = bootstrap_metric_difference(micro_auroc, scores, scores + 0.01 * reference, labels, mask, **kwargs)
    assert near.high - near.low < 0.25 * (ours["micro"].high - ours["micro"].low)
    identical = bootstrap_metric_difference(micro_auroc, scores, scores, labels, mask, **kwargs)
    assert (identical.estimate, identical.low, identical.high) == (0.0, 0.0, 0.0)


def test_named_metric_and_bad_groups():
    intervals = bootstrap_metric(
        lambda s, y: {"mean_score": float(s.mean()), "prevalence": float(y.mean())},
        np.arange(10.0), np.arange(10) % 2, num_resamples=50,
    )  # fmt: skip
    assert set(intervals) == {"mean_score", "prevalence"} and intervals["prevalence"].estimate == 0.5
    assert intervals["mean_score"].as_dict()["lower"] == intervals["mean_score"].low
    with pytest.raises(ValueError, match="groups holds 2 cluster ids for num_items=3"):
        bootstrap_intervals(lambda index: {"v": 0.0}, num_items=3, groups=["a", "b"])
    with pytest.raises(ValueError, match="labels has 4 items and scores 3"):
        bootstrap_metric(micro_auroc, np.zeros((3, 1)), np.zeros((4, 1)))


def test_patient_statistic_helpers_are_the_grouped_bootstrap():
    patients, scores, labels, mask = _synthetic_predictions()

    def statistic(index):
        return micro_auroc(scores[index], labels[index], mask[index])

    def reference(index):
        return micro_auroc(scores[index] ** 3, labels[index], mask[index])  # monotone: the same ranking

    kwargs = {"num_resamples": 60, "seed": 8}
    assert patient_bootstrap_interval(statistic, patients, **kwargs) == bootstrap_metric(
        micro_auroc, scores, labels, mask, groups=patients, **kwargs
    )
    same = paired_patient_bootstrap_difference(statistic, reference, patients, **kwargs)
    assert same.low == same.high == same.estimate == pytest.approx(0.0, abs=1e-12)
