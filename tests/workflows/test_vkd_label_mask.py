"""The VKD bundle on a datalist mixing masked and unmasked items, with real radiology report text.

The report text is real: Indiana University chest X-ray reports (Open-i), read at run time from the shared data
folder and paired with generated phantom images (the collection's images are not available). Labels and masks
are the phantom's, with some entries masked. A masked entry must change neither the training loss nor any metric,
so the same runs with every masked label flipped must give identical losses and metrics.
"""

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from ignite.engine import Events
from sklearn.metrics import roc_auc_score

from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.prepare.reports import report_from_sections
from tests.workflows.conftest import vkd_tiny_overrides, vkd_workflow

pytestmark = pytest.mark.slow

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
IU_REPORTS = SHARED_DATA / "iu_xray_reports_text" / "indiana_reports.csv"
SPLITS = ("training", "validation", "test")


def real_reports(count: int) -> list[str]:
    """The first ``count`` IU X-ray reports with both findings and impression, as FINDINGS/IMPRESSION text."""
    if not IU_REPORTS.is_file():
        pytest.skip(f"real report text not available: {IU_REPORTS} is missing")
    reports = []
    with open(IU_REPORTS, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["findings"].strip() and row["impression"].strip():
                reports.append(report_from_sections(row["findings"], row["impression"]))
            if len(reports) == count:
                return reports
    raise AssertionError(f"{IU_REPORTS} holds fewer than {count} reports with findings and impression")


@pytest.fixture(scope="module")
def mixed_datalist(tmp_path_factory):
    """Phantom images with real reports; every other item carries a label_mask hiding two classes, the rest none."""
    root = tmp_path_factory.mktemp("masked_phantom")
    generate_phantom_dataset(output_dir=str(root), num_patients=20, seed=5, image_size=(72, 64))
    datalist = json.loads((root / "datalist_vkd.json").read_text())
    items = [item for split in SPLITS for item in datalist[split]]
    num_classes = len(datalist["class_names"])
    for index, (item, report) in enumerate(zip(items, real_reports(len(items)))):
        item["report"] = report
        if index % 2 == 0:
            hidden = {index % num_classes, (index + 3) % num_classes}
            item["label_mask"] = [0.0 if c in hidden else 1.0 for c in range(num_classes)]
    return root, datalist


def flipped_under_mask(datalist: dict) -> dict:
    flipped = copy.deepcopy(datalist)
    for split in SPLITS:
        for item in flipped[split]:
            for c, observed in enumerate(item.get("label_mask", [])):
                if not observed:
                    item["label"][c] = 1 - item["label"][c]
    return flipped


def train_and_evaluate(root: Path, datalist: dict, run_dir: Path) -> tuple[list[float], dict, list[dict]]:
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True)
    for split in SPLITS:
        for item in datalist[split]:
            item["image"] = str(root / item["image"])
    (data_dir / "datalist_vkd.json").write_text(json.dumps(datalist))
    overrides = vkd_tiny_overrides(data_dir, run_dir, epochs=2, evaluate_split="validation")
    workflow = vkd_workflow(["train.json"], "train", **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    workflow.run()
    workflow.finalize()
    evaluation = vkd_workflow(["train.json", "evaluate.json"], "eval", **overrides)
    evaluation.run()
    evaluation.finalize()
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    predictions = json.loads((run_dir / "eval" / "predictions.json").read_text())
    return losses, metrics, predictions


def as_comparable(metrics: dict, prefix: str = "") -> dict:
    """Flat ``{dotted key: value}``, NaN as None; nested entries (the bootstrap intervals) are flattened."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(as_comparable(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = None if isinstance(value, float) and math.isnan(value) else value
    return flat


def test_masked_labels_change_neither_training_loss_nor_metrics(mixed_datalist, tmp_path):
    root, datalist = mixed_datalist
    class_names = datalist["class_names"]
    evaluated = datalist["validation"]
    assert any("label_mask" in it for it in evaluated) and any("label_mask" not in it for it in evaluated)
    assert all(it["report"].startswith("FINDINGS:") for split in SPLITS for it in datalist[split])

    losses, metrics, predictions = train_and_evaluate(root, copy.deepcopy(datalist), tmp_path / "original")
    flipped_losses, flipped_metrics, _ = train_and_evaluate(root, flipped_under_mask(datalist), tmp_path / "flipped")

    assert len(losses) == 2 * math.ceil(len(datalist["training"]) / 8) and all(map(math.isfinite, losses))
    np.testing.assert_allclose(flipped_losses, losses, rtol=1e-6, atol=0)
    for key in ("val_macro_auroc", "micro_auroc", "macro_f1_at_0.5", "micro_f1_at_0.5", "ece"):
        assert key in metrics
    assert as_comparable(flipped_metrics).keys() == as_comparable(metrics).keys()
    for key, value in as_comparable(metrics).items():
        other = as_comparable(flipped_metrics)[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert other == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert other == value, key

    # The bundle's micro AUROC is sklearn's over the observed entries, not over every entry.
    by_image = {Path(record["image"]).name: record for record in predictions}
    scores = np.array([[by_image[Path(it["image"]).name][f"prob_{c}"] for c in class_names] for it in evaluated])
    labels = np.array([it["label"] for it in evaluated], dtype=float)
    mask = np.array([it.get("label_mask", [1.0] * len(class_names)) for it in evaluated]) > 0
    assert metrics["micro_auroc"] == pytest.approx(roc_auc_score(labels[mask], scores[mask]), abs=1e-6)
