"""The Ignite handler ``MultiLabelF1``, and the metric handlers that the VKD bundle's configs build."""

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.handlers import from_engine
from sklearn.metrics import f1_score, roc_auc_score

from cxrkd_monai.handlers import MultiLabelF1
from cxrkd_monai.metrics import expected_calibration_error, micro_f1, per_class_f1
from tests.conftest import VKD_CONFIGS, masked_f1_case
from tests.handlers.conftest import decollated_batches


def test_class_without_positives_or_predictions_is_left_out_of_the_macro_mean():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.4]])
    labels = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    values = per_class_f1(probabilities, labels)
    assert values[0] == pytest.approx(2 / 3) and math.isnan(values[1])
    engine = Engine(lambda e, batch: batch)
    MultiLabelF1(["a", "b"]).attach(engine, "f1")
    engine.run([(torch.tensor(probabilities), torch.tensor(labels))])
    expected = f1_score(labels, probabilities >= 0.5, average="macro", zero_division=np.nan)
    assert engine.state.metrics["f1"] == pytest.approx(expected) == pytest.approx(2 / 3)


def test_bundle_evaluation_metrics_are_what_their_names_say():
    """The VKD bundle's key metric and evaluate.json metrics, built from the configs, against sklearn on the
    observed entries: macro F1 is the mean of per-class F1 (not MONAI ConfusionMatrix's micro F1), and no metric
    scores a masked entry."""
    probabilities, labels, mask = masked_f1_case()
    class_names = ["c0", "c1", "c2", "c3"]
    parser = ConfigParser()
    parser.read_config([str(VKD_CONFIGS / "train.json"), str(VKD_CONFIGS / "evaluate.json")])
    parser["class_names"] = class_names
    metrics = {
        **parser.get_parsed_content("validate#key_metric"),
        **parser.get_parsed_content("validate#additional_metrics"),
    }
    assert set(metrics) == {
        "val_macro_auroc",
        "micro_auroc",
        "macro_f1_at_0.5",
        "micro_f1_at_0.5",
        "ece",
        "calibrated_ece",
    }
    # the ECE of the calibrated probabilities reads the calibration transform's output, which these batches lack
    del metrics["calibrated_ece"]

    def run(label_values):
        engine = Engine(lambda e, batch: batch)
        for name, handler in metrics.items():
            handler.attach(engine, name)
        engine.run(decollated_batches(probabilities, label_values, mask))
        return dict(engine.state.metrics)

    values = run(labels)
    observed = mask > 0
    per_class_y = [labels[observed[:, c], c] for c in range(4)]
    per_class_p = [probabilities[observed[:, c], c] for c in range(4)]
    macro_f1 = np.mean([f1_score(y, p >= 0.5) for y, p in zip(per_class_y, per_class_p)])
    assert values["macro_f1_at_0.5"] == pytest.approx(macro_f1)
    assert values["micro_f1_at_0.5"] == pytest.approx(f1_score(labels[observed], probabilities[observed] >= 0.5))
    assert values["macro_f1_at_0.5"] != pytest.approx(values["micro_f1_at_0.5"])
    assert values["val_macro_auroc"] == pytest.approx(
        np.mean([roc_auc_score(y, p) for y, p in zip(per_class_y, per_class_p)])
    )
    assert values["micro_auroc"] == pytest.approx(roc_auc_score(labels[observed], probabilities[observed]))
    assert values["ece"] == pytest.approx(
        expected_calibration_error(probabilities[observed][:, None], labels[observed][:, None], 10)
    )
    for name, f1 in zip(class_names, [f1_score(y, p >= 0.5) for y, p in zip(per_class_y, per_class_p)]):
        assert values[f"macro_f1_at_0.5_{name}"] == pytest.approx(f1)

    assert run(np.where(observed, labels, 1.0 - labels)) == values  # flipping what is masked changes nothing


def test_handler_with_mask_from_batch_matches_function():
    probabilities, labels, mask = masked_f1_case(seed=9)
    engine = Engine(lambda e, batch: batch)
    MultiLabelF1(
        ["a", "b", "c", "d"],
        average="micro",
        output_transform=from_engine(["pred_prob", "label"]),
        mask_transform=from_engine(["label_mask"]),
    ).attach(engine, "f1")
    engine.run(decollated_batches(probabilities, labels, mask))
    assert engine.state.metrics["f1"] == pytest.approx(micro_f1(probabilities, labels, mask))


def test_invalid_average_is_named():
    with pytest.raises(ValueError, match="average .* 'weighted'"):
        MultiLabelF1(["a"], average="weighted")
