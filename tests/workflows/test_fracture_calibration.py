"""The fracture bundle's operating points end to end: fitted on validation beside the best model in training, carried
by the exported bundle, applied by its inference and stated in its findings, refitted by ``cxrkd recalibrate``."""

from __future__ import annotations

import json
import math
import re

import pytest

from cxrkd_monai.bundle.recalibrate import recalibrate_bundle
from cxrkd_monai.bundle.trained_bundle import export_trained_bundle
from cxrkd_monai.deploy.findings import fracture_findings
from cxrkd_monai.transforms.calibration import Calibration
from tests.conftest import run_to_completion
from tests.workflows.conftest import (
    FRACTURE_BUNDLE,
    FRACTURE_TINY,
    copy_of_bundle_root,
    fracture_workflow,
)

pytestmark = pytest.mark.slow

TYPES = ["rib_fracture", "clavicle_fracture"]
POINT_LINE = r"\w+ point: x [0-9.]+, y [0-9.]+, score [0-9.]+"


@pytest.fixture(scope="module")
def teacher(stage1_teacher, tmp_path_factory):
    return copy_of_bundle_root(stage1_teacher, tmp_path_factory)


def test_training_fits_the_operating_points_of_the_best_model_beside_it(teacher, phantom):
    # the stage-1 checkpoint keeps its own file, so that the student trained into the same folder cannot replace it
    assert not (teacher / "models" / "calibration.json").exists()
    calibration = Calibration.load(teacher / "models" / "teacher_calibration.json")
    validation = json.loads((phantom / "datalist_fracture.json").read_text())["validation"]
    assert calibration.class_names == TYPES and calibration.fitted_on["num_images"] == len(validation)
    assert set(calibration.operating_points) == {"youden", "sensitivity", "ppv"}
    assert calibration.fp_per_image_targets == [0.5, 1.0, 2.0]
    assert set(calibration.lesion_operating_points) == {"0.5", "1", "2"}


def test_exported_bundle_calls_at_its_operating_points_and_recalibrates_byte_identically(teacher, phantom, tmp_path):
    overrides = {
        key: FRACTURE_TINY[key] for key in ("image_size", "layers", "block_inplanes", "fpn_channels", "pretrained")
    }
    bundle = export_trained_bundle(FRACTURE_BUNDLE, tmp_path / "bundle", teacher / "models" / "teacher.pt", overrides)
    shipped = Calibration.load(bundle / "models" / "calibration.json")
    assert shipped == Calibration.load(teacher / "models" / "teacher_calibration.json")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    stored = json.loads(shipped.to_json())
    assert metadata["calibration"]["lesion_operating_points"] == stored["lesion_operating_points"]

    output_dir = tmp_path / "predictions"
    run_to_completion(
        fracture_workflow(
            str(bundle / "configs" / "inference.json"),
            "infer",
            bundle_root=str(bundle),
            dataset_dir=str(phantom),
            output_dir=str(output_dir),
            peak_threshold=0.0,
        )
    )
    lesion_thresholds = shipped.lesion_thresholds(1.0)
    for record in json.loads((output_dir / "predictions.json").read_text()):
        assert (record["operating_point"], record["lesion_operating_point"]) == ("youden", 1.0)
        for name, threshold in zip(TYPES, lesion_thresholds):
            assert record[f"lesion_threshold_{name}"] == (None if math.isnan(threshold) else threshold)
        # inference lists only the called points
        assert all(d["called"] and d["score"] >= record[f"lesion_threshold_{d['class']}"] for d in record["detections"])
        lines = fracture_findings(record, metadata["calibration"]).splitlines()
        assert lines[0].startswith("Operating point: youden (") and lines[0].endswith("chosen on validation)")
        called = [name for name in TYPES if record[f"positive_{name}"] == 1.0]
        assert lines[1] == f"Findings: {', '.join(called) or 'none'}"
        assert sum(re.fullmatch(POINT_LINE, line) is not None for line in lines) == len(record["detections"])

    refitted = recalibrate_bundle(bundle, phantom / "datalist_fracture.json", datalist_key="test")
    test_items = json.loads((phantom / "datalist_fracture.json").read_text())["test"]
    assert refitted.fitted_on["num_images"] == len(test_items) and refitted.fitted_on["source"].endswith(":test")
    assert set(refitted.lesion_operating_points) == {"0.5", "1", "2"}
    files = [bundle / "models" / "calibration.json", bundle / "configs" / "metadata.json"]
    first = [path.read_bytes() for path in files]
    recalibrate_bundle(bundle, phantom / "datalist_fracture.json", datalist_key="test")
    assert [path.read_bytes() for path in files] == first
    assert not (bundle / "cache").exists()  # the evaluation it runs keeps no preprocessed cache in the bundle
