"""``cxrkd report`` on tiny VKD and fracture run folders: the page, its numbers, its figures, its errors."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxrkd_monai.report import write_report

NUM_RESAMPLES = 200


class _Tables(HTMLParser):
    """Rows of every ``<table>`` of a page, keyed by caption then by the row's first cell; and every ``<img src>``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list[str]]] = {}
        self.images: list[str] = []
        self._caption = self._cell = self._row = None
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._caption = f"table {len(self.tables)}"
            self.tables[self._caption] = {}
        elif tag == "caption":
            self._in_caption, self._text = True, ""
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag == "caption":
            self._in_caption = False
            self.tables[self._text] = self.tables.pop(self._caption)
            self._caption = self._text
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.tables[self._caption][self._row[0]] = self._row[1:]
            self._row = None

    def handle_data(self, data):
        if self._in_caption:
            self._text += data
        elif self._cell is not None:
            self._cell += data


def parse(path: Path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text())
    return parser


def table(page: _Tables, caption_start: str) -> dict[str, list[str]]:
    return next(rows for caption, rows in page.tables.items() if caption.startswith(caption_start))


def interval(cell: str) -> tuple[float, float, float]:
    """``"0.812 [0.741, 0.873]"`` -> (0.812, 0.741, 0.873)."""
    estimate, low, high = (float(v) for v in re.fullmatch(r"([-+\d.]+) \[([-+\d.]+), ([-+\d.]+)\]", cell).groups())
    return estimate, low, high


@pytest.fixture(scope="module")
def vkd_report(vkd_runs, phantom, tmp_path_factory) -> Path:
    return write_report(
        vkd_runs["vkd"][0],
        compare=[vkd_runs["baseline"][0]],
        datalist=phantom / "datalist_vkd.json",
        output_dir=tmp_path_factory.mktemp("vkd_report"),
        num_resamples=NUM_RESAMPLES,
    )


@pytest.fixture(scope="module")
def fracture_report(fracture_run, phantom, tmp_path_factory) -> Path:
    return write_report(
        fracture_run[0],
        datalist=phantom / "datalist_fracture.json",
        output_dir=tmp_path_factory.mktemp("fracture_report"),
        num_resamples=NUM_RESAMPLES,
        **fracture_run[1]["overrides"],
    )


def test_vkd_report_figures_equal_sklearn_and_numpy_on_predictions(vkd_report, vkd_runs):
    arrays = vkd_runs["vkd"][1]
    labels, probabilities = arrays["labels"], arrays["probabilities"]
    metrics = json.loads((vkd_runs["vkd"][0] / "metrics.json").read_text())
    rows = table(parse(vkd_report), "AUROC per finding")
    expected = {}
    for k, name in enumerate(arrays["class_names"]):
        if 0 < labels[:, k].sum() < len(labels):
            expected[name] = roc_auc_score(labels[:, k], probabilities[:, k])
            estimate, low, high = interval(rows[name][2])
            assert estimate == pytest.approx(expected[name], abs=5e-4)
            assert low <= estimate <= high
            assert rows[name][3] == f"{metrics[f'val_macro_auroc_{name}']:.3f}"
        else:
            assert rows[name][2] == "n/a"
        assert rows[name][:2] == [str(len(labels)), str(int(labels[:, k].sum()))]
    assert interval(rows["Macro AUROC"][2])[0] == pytest.approx(np.mean(list(expected.values())), abs=5e-4)
    # ECE by hand: 10 equal-width bins over every (image, class) entry
    p, y = probabilities.ravel(), labels.ravel()
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum((bins == b).mean() * abs(p[bins == b].mean() - y[bins == b].mean()) for b in np.unique(bins))
    assert interval(rows["ECE (lower is better)"][2])[0] == pytest.approx(ece, abs=5e-4)


def test_vkd_report_compares_with_baseline_pairing_the_difference(vkd_report, vkd_runs):
    ours, theirs = vkd_runs["vkd"][1], vkd_runs["baseline"][1]
    rows = table(parse(vkd_report), "vkd/eval against baseline/eval")
    name = ours["class_names"][0]
    difference = roc_auc_score(ours["labels"][:, 0], ours["probabilities"][:, 0]) - roc_auc_score(
        theirs["labels"][:, 0], theirs["probabilities"][:, 0]
    )
    estimate, low, high = interval(rows[name][2])
    assert estimate == pytest.approx(difference, abs=5e-4)
    assert low <= estimate <= high
    assert {"Macro AUROC"} <= set(rows)


def test_every_figure_is_an_embedded_png_also_saved_next_to_the_page(vkd_report, fracture_report):
    for report, expected in (
        (vkd_report, {"roc_curves", "pr_curves", "reliability", "uncertainty", "confident_errors"}),
        (fracture_report, {"froc", "roc_curves", "overlays", "sharpening"}),
    ):
        page = parse(report)
        assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
        for src in page.images:
            with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
                image.load()
                assert min(image.size) > 100
        saved = {path.stem for path in (report.parent / "figures").glob("*.png")}
        assert expected <= saved and len(page.images) == len(saved)
        assert "http://" not in report.read_text() and "https://" not in report.read_text()


def test_fracture_report_froc_matches_the_hand_count_and_metrics_json(fracture_report, fracture_run):
    run_dir, arrays = fracture_run
    detected = arrays["detected_rib_lesions"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    page = parse(fracture_report)
    rows = table(page, "Image-level AUROC and FROC score")
    # five of the eight rib lesions found, no false positive above them: sensitivity 5/8 at every operating point
    assert rows["rib_fracture"][1] == "8"
    froc, low, high = interval(rows["rib_fracture"][4])
    assert froc == pytest.approx(detected / 8, abs=5e-4) == pytest.approx(metrics["val_froc_rib_fracture"])
    assert low <= froc <= high
    assert rows["clavicle_fracture"][4] == "n/a"  # no clavicle lesion in this test split
    rib_auroc = roc_auc_score(arrays["labels"][:, 0], arrays["probabilities"][:, 0])
    assert interval(rows["rib_fracture"][2])[0] == pytest.approx(rib_auroc, abs=5e-4)
    sensitivity = table(page, "Sensitivity at each FROC operating point")["rib_fracture"]
    assert len(sensitivity) == 7 and all(cell.startswith(f"{detected / 8:.2f} [") for cell in sensitivity)
    text = fracture_report.read_text()
    assert "pseudo-positive rate 50.0%" in text  # the last epoch's TensorBoard scalar
    shown = re.search(r"(\d+) of (\d+) panels show the saved probability map", text)
    assert shown and shown.group(1) == shown.group(2)


def test_report_refuses_predictions_of_images_outside_the_datalist(vkd_runs, phantom, tmp_path):
    run_dir = tmp_path / "eval"
    shutil.copytree(vkd_runs["vkd"][0], run_dir)
    rows = (run_dir / "predictions.csv").read_text().splitlines()
    rows[1] = rows[1].replace(".png", "_elsewhere.png", 1)
    (run_dir / "predictions.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"1 image\(s\) of .*predictions.csv are not in .*datalist_vkd.json 'test'"):
        write_report(run_dir, datalist=phantom / "datalist_vkd.json", num_resamples=10)


def test_report_refuses_to_compare_runs_of_different_kinds(vkd_runs, fracture_run, phantom):
    with pytest.raises(ValueError, match="kinds and classes must match"):
        write_report(
            vkd_runs["vkd"][0], compare=[fracture_run[0]], datalist=phantom / "datalist_vkd.json", num_resamples=10
        )


def test_report_names_a_missing_output_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "metrics.json"))):
        write_report(tmp_path)


def test_subgroup_tables_for_the_fields_the_datalist_carries(vkd_runs, phantom, tmp_path):
    arrays = vkd_runs["vkd"][1]
    content = json.loads((phantom / "datalist_vkd.json").read_text())
    patients = sorted({item["patient_id"] for item in content["test"]})
    for item in content["test"]:  # sex and age only; a patient's images share them
        rank = patients.index(item["patient_id"])
        item["sex"] = "F" if rank % 2 else "M"
        item["age"] = 65 if (rank // 2) % 2 else 35  # 60–79 or 18–39
    datalist = phantom / f"datalist_vkd_subgroups_{tmp_path.name}.json"
    datalist.write_text(json.dumps(content))
    report = write_report(vkd_runs["vkd"][0], datalist=datalist, output_dir=tmp_path, num_resamples=50)
    page = parse(report)
    by_sex, by_age = table(page, "By sex"), table(page, "By age band")
    assert set(by_sex) == {"Sex", "F", "M"} and set(by_age) == {"Age band", "18–39", "60–79"}
    assert "By view" not in " ".join(page.tables)  # the datalist carries no view
    female = np.array([item["sex"] == "F" for item in content["test"]])
    female_patients = {item["patient_id"] for item, f in zip(content["test"], female) if f}
    assert by_sex["F"][:2] == [str(female.sum()), str(len(female_patients))]
    k = next(k for k in range(len(arrays["class_names"])) if 0 < arrays["labels"][female, k].sum() < female.sum())
    expected = roc_auc_score(arrays["labels"][female, k], arrays["probabilities"][female, k])
    assert float(by_sex["F"][2 + k]) == pytest.approx(expected, abs=5e-4)


def test_command_line_reports_a_fracture_run_with_config_overrides(fracture_run, phantom, tmp_path):
    command = [
        sys.executable, "-m", "cxrkd_monai.cli", "report", str(fracture_run[0]),
        "--datalist", str(phantom / "datalist_fracture.json"), "--output_dir", str(tmp_path),
        "--num_resamples", "20", "--image_size", "[64, 64]",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(str(tmp_path / "report.html"))
    assert "AALS fracture detection" in (tmp_path / "report.html").read_text()


def test_saved_saliency_maps_are_drawn_on_the_error_thumbnails(vkd_runs, phantom, tmp_path):
    run_dir = tmp_path / "eval"
    shutil.copytree(vkd_runs["vkd"][0], run_dir)
    lines = (run_dir / "predictions.csv").read_text().splitlines()
    (run_dir / "saliency").mkdir()
    rows = [lines[0] + ",saliency,saliency_class"]
    for line in lines[1:]:  # a mid-grey square in the upper left of every image, as a saliency writer's 8-bit PNG
        name = Path(line.split(",")[0]).stem
        saliency = np.zeros((64, 64), dtype=np.uint8)
        saliency[:24, :24] = 128
        Image.fromarray(saliency).save(run_dir / "saliency" / f"{name}.png")
        rows.append(f"{line},saliency/{name}.png,{vkd_runs['vkd'][1]['class_names'][0]}")
    (run_dir / "predictions.csv").write_text("\n".join(rows) + "\n")
    settings = {"datalist": phantom / "datalist_vkd.json", "num_resamples": 10}
    with_maps = write_report(run_dir, output_dir=tmp_path / "with", **settings)
    without_maps = write_report(vkd_runs["vkd"][0], output_dir=tmp_path / "without", **settings)

    def greenish(report: Path) -> float:
        """Share of the thumbnails' pixels that the map's mid colour (turbo at 0.5) tints green."""
        with Image.open(report.parent / "figures" / "confident_errors.png") as figure:
            red, green, blue = np.moveaxis(np.asarray(figure.convert("RGB"), dtype=float), -1, 0)
        return float(((green > red + 30) & (green > blue + 30)).mean())

    assert greenish(without_maps) == 0.0
    assert greenish(with_maps) > 0.01


def test_calibrated_fracture_run_shows_reliability_before_and_after_and_its_operating_points(
    fracture_run, phantom, tmp_path
):
    source, arrays = fracture_run
    run_dir = tmp_path / "eval"
    shutil.copytree(source, run_dir)
    with open(run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = ["rib_fracture", "clavicle_fracture"]
    for row in rows:  # as a calibrated model's evaluation writes them: temperature 2, Youden threshold 0.5 for rib
        for name in names:
            p = float(row[f"{name}_probability"])
            row[f"calibrated_{name}"] = 1 / (1 + math.exp(-math.log(p / (1 - p)) / 2))
        row |= {
            "threshold_rib_fracture": 0.5, "threshold_clavicle_fracture": "", "operating_point": "youden",
            "lesion_operating_point": 1.0, "lesion_threshold_rib_fracture": 0.5,
            "lesion_threshold_clavicle_fracture": "",
        }  # fmt: skip
    with open(run_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = write_report(
        run_dir, datalist=phantom / "datalist_fracture.json", output_dir=tmp_path / "report", num_resamples=20,
        **arrays["overrides"],
    )  # fmt: skip
    saved = {path.stem for path in (report.parent / "figures").glob("*.png")}
    assert {"reliability_uncalibrated", "reliability_calibrated"} <= saved
    text = report.read_text()
    # rib calls: calibrated 0.9 -> 0.75 >= 0.5 (the detected images), 0.02 -> 0.125 < 0.5
    labels, called = arrays["labels"][:, 0] > 0.5, arrays["probabilities"][:, 0] >= 0.5
    sensitivity, specificity = called[labels].mean(), 1 - called[~labels].mean()
    assert f"rib_fracture: threshold 0.5000, sensitivity {sensitivity:.2f}, specificity {specificity:.2f}" in text
    assert "clavicle_fracture: no operating point" in text
    assert "Points called at 1.0 false positives per image" in text and "rib_fracture score &gt;= 0.5000" in text
