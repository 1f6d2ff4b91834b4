import numpy as np
import pytest
from sklearn.metrics import f1_score

from cxrkd_monai.metrics import micro_f1, per_class_f1
from tests.conftest import masked_f1_case


def test_unmasked_f1_matches_sklearn_macro_micro_and_per_class():
    probabilities, labels, _ = masked_f1_case()
    predicted = probabilities >= 0.5
    assert per_class_f1(probabilities, labels) == pytest.approx(list(f1_score(labels, predicted, average=None)))
    assert np.mean(per_class_f1(probabilities, labels)) == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert micro_f1(probabilities, labels) == pytest.approx(f1_score(labels, predicted, average="micro"))


def test_masked_f1_is_sklearn_on_the_observed_subset():
    probabilities, labels, mask = masked_f1_case()
    observed = mask > 0
    expected = [f1_score(labels[observed[:, c], c], probabilities[observed[:, c], c] >= 0.5) for c in range(4)]
    assert per_class_f1(probabilities, labels, mask) == pytest.approx(expected)
    assert micro_f1(probabilities, labels, mask) == pytest.approx(
        f1_score(labels[observed], probabilities[observed] >= 0.5)
    )
    hidden = np.where(observed, labels, np.nan)
    assert per_class_f1(probabilities, hidden, mask) == per_class_f1(probabilities, labels, mask)
