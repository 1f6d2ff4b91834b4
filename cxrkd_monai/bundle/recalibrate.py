"""Refit a trained bundle's calibration on a site's own labelled images, without retraining.

``cxrkd recalibrate BUNDLE --datalist site.json`` runs the bundle's own configs on the datalist's images and fits on
the uncalibrated outputs, against the datalist's labels:

- VKD: ``configs/inference.json`` (the same loader, letterbox, network and Monte Carlo inferer as any inference);
  its probabilities ``prob_<class>`` against the items' ``label`` and ``label_mask``;
- fracture detector (an inference config with ``lesion_fp_per_image``): the bundle's evaluation,
  ``configs/train_teacher.json`` + ``configs/evaluate.json`` with the datalist key as ``evaluate_split``, the same
  path as the validation in training; the image-level probabilities (each type's map maximum) against
  ``image_label``, and the detections matched to the items' boxes and points (FROC), for the lesion-level points.

It writes

- the per-class temperatures and the Youden, sensitivity-target and PPV-target operating points, and a detector's
  lesion-level operating points (:func:`~cxrkd_monai.metrics.fit_calibration`), to ``models/calibration.json``,
  which inference applies;
- the same, mirrored into ``configs/metadata.json`` under ``calibration`` for a reader of the bundle.

The weights never change, and the fit starts from the uncalibrated probabilities, so running it twice on the same
data writes the same files.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from monai.bundle import ConfigParser, ConfigWorkflow

from cxrkd_monai.data import load_datalist
from cxrkd_monai.metrics.calibration_fitting import fit_calibration
from cxrkd_monai.metrics.froc import FROCMetric
from cxrkd_monai.transforms.calibration import CALIBRATION_FILENAME, Calibration
from cxrkd_monai.utils.atomic_files import json_safe, write_text_atomically

__all__ = ["calibration_metadata", "recalibrate_bundle"]

logger = logging.getLogger(__name__)

INFERENCE = Path("configs") / "inference.json"
METADATA = Path("configs") / "metadata.json"
DETECTOR_EVALUATION = (Path("configs") / "train_teacher.json", Path("configs") / "evaluate.json")
CHECKPOINT = Path("models") / "model.pt"


def calibration_metadata(calibration: Calibration) -> dict[str, Any]:
    """The ``calibration`` entry of a bundle's metadata: temperatures by class, targets, operating points, source.

    ``operating_points`` maps each rule (``youden``, ``sensitivity``, ``ppv``) to the per-class threshold on the
    calibrated probability and the sensitivity, specificity and PPV it had where it was chosen; a detector's
    ``lesion_operating_points`` map each false-positive rate to the per-type detection-score threshold and the
    lesion sensitivity and false positives per image it had.
    """
    entry = {"file": f"models/{CALIBRATION_FILENAME}", **calibration.content()}
    del entry["class_names"]
    entry["temperature"] = dict(zip(calibration.class_names, calibration.temperature))
    return entry


def _uncalibrated_predictions(bundle: Path, datalist: Path, datalist_key: str) -> list[dict]:
    """The prediction records of the bundle's inference on the datalist's images (failed images left out)."""
    with tempfile.TemporaryDirectory() as output_dir:
        workflow = ConfigWorkflow(
            config_file=str(bundle / INFERENCE),
            meta_file=str(bundle / METADATA),
            logging_file=False,
            workflow_type="infer",
            bundle_root=str(bundle),
            ckpt_path=str(bundle / CHECKPOINT),
            datalist=str(datalist),
            datalist_key=datalist_key,
            output_dir=output_dir,
            num_workers=0,
            exit_on_failure=False,
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        return json.loads((Path(output_dir) / "predictions.json").read_text())


def _classifier_outputs(
    bundle: Path, datalist: Path, datalist_key: str, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VKD: ``(N, C)`` uncalibrated probabilities of the readable images, their labels and label masks."""
    listed = load_datalist(str(datalist), datalist_key, class_names=class_names)
    items = {str(Path(item["image"]).resolve()): item for item in listed}
    records = _uncalibrated_predictions(bundle, datalist, datalist_key)
    if not records:
        raise ValueError(f"No image of {datalist} '{datalist_key}' could be read; nothing to calibrate on.")
    if len(records) < len(items):
        logger.warning("%d of %d images of %s could not be read and are left out of the calibration.",
                       len(items) - len(records), len(items), datalist)  # fmt: skip
    matched = [items[str(Path(record["image"]).resolve())] for record in records]
    probabilities = np.array([[record[f"prob_{name}"] for name in class_names] for record in records])
    labels = np.array([item["label"] for item in matched], dtype=np.float64)
    mask = np.array([item.get("label_mask", [1] * len(class_names)) for item in matched], dtype=np.float64)
    return probabilities, labels, mask


def _detector_outputs(
    bundle: Path, datalist: Path, datalist_key: str, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray, FROCMetric]:
    """Fracture detector: ``(N, K)`` image-level probabilities, labels, and the FROC matches of the same images, from
    the bundle's own evaluation of the datalist key."""
    with tempfile.TemporaryDirectory() as output_dir:
        workflow = ConfigWorkflow(
            config_file=[str(bundle / config) for config in DETECTOR_EVALUATION],
            meta_file=str(bundle / METADATA),
            logging_file=False,
            workflow_type=None,
            bundle_root=str(bundle),
            ckpt_path=str(bundle / CHECKPOINT),
            datalist=str(datalist),
            evaluate_split=datalist_key,
            class_names=class_names,
            output_dir=output_dir,
            num_workers=0,
            # no preprocessed cache inside the bundle folder
            cache_dir="",
        )
        workflow.initialize()
        workflow.run()
        froc = workflow.parser.get_parsed_content("validate#key_metric#val_froc").froc_metric
        records = json.loads((Path(output_dir) / "predictions.json").read_text())
        workflow.finalize()
    if not records:
        raise ValueError(f"{datalist} '{datalist_key}' holds no image; nothing to calibrate on.")
    probabilities = np.array([[record[f"{name}_probability"] for name in class_names] for record in records])
    labels = np.array([[record[f"label_{name}"] for name in class_names] for record in records], dtype=np.float64)
    return probabilities, labels, froc


def recalibrate_bundle(
    bundle: str | Path,
    datalist: str | Path,
    datalist_key: str = "validation",
    sensitivity_target: float | None = None,
    ppv_target: float | None = None,
) -> Calibration:
    """Fits the calibration of ``bundle`` on the labelled items of ``datalist`` and writes it into the bundle.

    Args:
        bundle: a bundle folder with trained weights ``models/model.pt``.
        datalist: the bundle's kind of datalist with labels: VKD ``label``, optional ``label_mask``, top-level
            ``class_names``; fracture ``image_label``, ``boxes`` and ``points``.
        datalist_key: the datalist key whose items are used.
        sensitivity_target, ppv_target: targets of the ``"sensitivity"`` and ``"ppv"`` operating points; by default
            the bundle's ``inference.json`` values.

    Returns:
        the :class:`~cxrkd_monai.transforms.Calibration` written to ``models/calibration.json``.

    Raises:
        FileNotFoundError: naming a missing bundle file or datalist.
        ValueError: the datalist's classes differ from the bundle's or its split is empty (an
            :class:`~cxrkd_monai.errors.InvalidDatalistError`), or none of its images could be read.

    Example::

        recalibrate_bundle("cxr_vkd_classification", "site/datalist_vkd.json", datalist_key="test")
    """
    bundle, datalist = Path(bundle), Path(datalist)
    for path in (bundle / INFERENCE, bundle / METADATA, bundle / CHECKPOINT, datalist):
        if not path.is_file():
            raise FileNotFoundError(f"file {path} does not exist; recalibration needs a bundle with its weights.")
    config = ConfigParser()
    config.read_config(str(bundle / INFERENCE))
    class_names = list(config.get_parsed_content("class_names"))
    if sensitivity_target is None:
        sensitivity_target = config.get_parsed_content("sensitivity_target")
    if ppv_target is None:
        ppv_target = config.get_parsed_content("ppv_target")

    source = f"{datalist.name}:{datalist_key}"
    if "lesion_fp_per_image" in config:
        probabilities, labels, froc = _detector_outputs(bundle, datalist, datalist_key, class_names)
        calibration = fit_calibration(
            probabilities, labels, None, class_names, sensitivity_target, ppv_target, source, froc=froc,
            fp_per_image_targets=config.get_parsed_content("lesion_fp_per_image"),
        )  # fmt: skip
    else:
        probabilities, labels, mask = _classifier_outputs(bundle, datalist, datalist_key, class_names)
        calibration = fit_calibration(probabilities, labels, mask, class_names, sensitivity_target, ppv_target, source)
    write_text_atomically(bundle / "models" / CALIBRATION_FILENAME, calibration.to_json())
    metadata = json.loads((bundle / METADATA).read_text())
    metadata["calibration"] = json_safe(calibration_metadata(calibration))
    write_text_atomically(bundle / METADATA, json.dumps(metadata, indent=4) + "\n")
    logger.info("Recalibrated %s on %d images of %s '%s'.", bundle, len(probabilities), datalist, datalist_key)
    return calibration
