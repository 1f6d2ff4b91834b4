"""Per-image fracture predictions: image-level probabilities, detections and probability maps on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import NibabelWriter

from cxrkd_monai.transforms.calibration import OperatingPointCalls
from cxrkd_monai.transforms.detection import detect_in_original_pixels
from cxrkd_monai.transforms.failures import FAILURE_KEY, failure_reason
from cxrkd_monai.transforms.geometry import LetterboxGeometry
from cxrkd_monai.transforms.image_score import image_scores

__all__ = ["FracturePredictionRecorder", "map_file_name"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".dicom", ".png", ".jpg", ".jpeg")


def map_file_name(image_name: str) -> str:
    """``<stem>_<hash>_prob.nii.gz`` for an image path: its file name without the image suffix, then the first 8 hex
    digits of the SHA-1 of its absolute path.

    Example::

        map_file_name("/data/chexpert/p1/study1/view1_frontal.jpg")   # 'view1_frontal_<8 hex digits>_prob.nii.gz'
    """
    path = Path(image_name)
    name = path.name
    stem = next((name[: -len(suffix)] for suffix in IMAGE_SUFFIXES if name.lower().endswith(suffix)), name)
    digest = hashlib.sha1(str(path.absolute()).encode("utf-8")).hexdigest()[:8]
    return f"{stem}_{digest}_prob.nii.gz"


class FracturePredictionRecorder:
    """``record_fn`` for :class:`~cxrkd_monai.handlers.PredictionWriter` in fracture inference.

    For each image of a batch it returns one record::

        {"image": "<path>", "rib_fracture_probability": 0.93, "clavicle_fracture_probability": 0.02,
         "detections": [{"class": "rib_fracture", "x": 412.5, "y": 230.0, "score": 0.93}, ...],
         "probability_map": "maps/<image stem>_<path hash>_prob.nii.gz"}

    The image-level probability of a type is the maximum of its map over the image area, not the letterbox
    padding (:func:`~cxrkd_monai.transforms.image_scores`). Detections are the map's peaks, in
    original-image pixels (x = column, y = row, continuous coordinates). The probability map is resampled from the
    letterbox grid to the original image size (:meth:`~cxrkd_monai.transforms.LetterboxGeometry.grid_to_original_image`,
    any aspect ratio) and written by MONAI's :class:`NibabelWriter` as NIfTI ``(W, H, 1, K)`` (a singleton z
    axis, then one channel per type, ``K = 1`` included), in the axis order of the loaded
    image, so it overlays the input directly. Its name adds the first 8 hex digits of the SHA-1 of the image's
    absolute path to the image's stem, so that images of the same name in different folders (``view1_frontal.jpg``
    of two datasets) get different maps; ``probability_map`` is relative to ``output_dir``, the folder of the
    predictions files, so it stays valid when the folder is moved.

    Args:
        class_names: the K fracture types, in map-channel order.
        output_dir: folder of the ``maps/`` subfolder; ``None`` skips writing maps.
        peak_threshold, nms_kernel_size, max_peaks: detection settings, see
            :func:`~cxrkd_monai.transforms.find_peaks`.
        pred_key, image_key, geometry_key: keys of the probability maps in ``engine.state.output`` and of the
            image (its ``filename_or_obj`` metadata names the record) and geometry in ``engine.state.batch``.
        label_key: batch key of the image-level labels ``(B, K)``; where the batch has them (evaluation), each
            record adds ``label_<type>``, and ``patient_id`` where the batch has that, so that an evaluation can
            be recomputed per patient from the file alone.
        calibration_file: the model's ``calibration.json``
            (:func:`~cxrkd_monai.transforms.calibration_file_beside` the checkpoint); ``None`` records no calls. A
            missing file calls at the defaults: image-level probability ``>= 0.5``, every detection.
        operating_point: image-level rule, ``"youden"``, ``"sensitivity"`` or ``"ppv"``.
        lesion_operating_point: false positives per image of the lesion-level point (one of the calibration's
            ``fp_per_image_targets``).
        keep_uncalled_detections: keep the detections below the lesion threshold (``"called": false``) in the
            record; otherwise only the called ones are listed.

    With a ``calibration_file`` each record also states its operating points and calls
    (:class:`~cxrkd_monai.transforms.OperatingPointCalls`)::

        {..., "calibrated_rib_fracture": 0.81, "threshold_rib_fracture": 0.44, "positive_rib_fracture": 1.0,
         "operating_point": "youden", "lesion_operating_point": 1.0, "lesion_threshold_rib_fracture": 0.073,
         "detections": [{"class": "rib_fracture", "x": 412.5, "y": 230.0, "score": 0.93, "called": true}, ...]}

    ``positive_<type>`` is ``None`` and ``lesion_threshold_<type>`` is ``None`` (no detection called) where the
    calibration has no such point for the type (no positive or no lesion in its labelled set). Without a calibration
    file the operating points are ``"default"``, the lesion threshold is ``peak_threshold``.

    An image whose record cannot be made (its map cannot be written, ...) gets ``{"image": "<path>", "failure":
    "<ErrorType>: <message>"}`` instead, and the other images of the batch their records: the
    :class:`~cxrkd_monai.handlers.PredictionWriter` hands it to ``errors.csv``.

    Input: ``batch`` with ``image`` (a collated MetaTensor) and ``geometry`` ``(B, 4, D)``; ``output`` with
    ``pred`` probabilities ``(B, K, *S')`` (apply the sigmoid in the evaluator's postprocessing).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_dir: str | None = None,
        peak_threshold: float = 0.05,
        nms_kernel_size: int = 3,
        max_peaks: int = 20,
        pred_key: str = "pred",
        image_key: str = "image",
        geometry_key: str = "geometry",
        label_key: str = "image_label",
        calibration_file: str | Path | None = None,
        operating_point: str = "youden",
        lesion_operating_point: float = 1.0,
        keep_uncalled_detections: bool = True,
    ) -> None:
        self.class_names = list(class_names)
        self.map_dir = None if output_dir is None else Path(output_dir) / "maps"
        self.peak_threshold = peak_threshold
        self.nms_kernel_size = nms_kernel_size
        self.max_peaks = max_peaks
        self.pred_key = pred_key
        self.image_key = image_key
        self.geometry_key = geometry_key
        self.label_key = label_key
        self.keep_uncalled_detections = keep_uncalled_detections
        self.calls = None if calibration_file is None else OperatingPointCalls(calibration_file, operating_point)
        self.lesion_operating_point: float | str = "default"
        self.lesion_thresholds = [float(peak_threshold)] * len(self.class_names)
        if self.calls is not None and self.calls.calibration is not None:
            self.lesion_thresholds = self.calls.calibration.lesion_thresholds(lesion_operating_point)
            self.lesion_operating_point = float(lesion_operating_point)

    def __call__(self, batch: dict[str, Any], output: dict[str, Any]) -> list[dict]:
        prob_maps = torch.as_tensor(output[self.pred_key]).detach().float().cpu()
        if prob_maps.shape[1] != len(self.class_names):
            raise ValueError(
                f"FracturePredictionRecorder: maps have {prob_maps.shape[1]} channels, "
                f"class_names has {len(self.class_names)}."
            )
        if self.geometry_key not in batch:
            raise KeyError(f"FracturePredictionRecorder: batch has no '{self.geometry_key}'; apply Letterboxd.")
        names = self._image_names(batch)
        records = []
        patients = batch.get("patient_id")
        labels = None if batch.get(self.label_key) is None else torch.as_tensor(batch[self.label_key]).tolist()
        for index, (name, prob_map, packed_geometry) in enumerate(zip(names, prob_maps, batch[self.geometry_key])):
            record: dict[str, Any] = {"image": name}
            if patients is not None:
                record["patient_id"] = patients[index]
            if labels is not None:
                record.update({f"label_{c}": y for c, y in zip(self.class_names, labels[index], strict=True)})
            try:
                record.update(self._predictions(name, prob_map, packed_geometry))
            except Exception as error:
                # this image alone fails: the prediction writer lists it with its reason, the batch goes on
                record = {"image": name, FAILURE_KEY: failure_reason(error)}
            records.append(record)
        return records

    def _predictions(self, name: str, prob_map: torch.Tensor, packed_geometry: torch.Tensor) -> dict[str, Any]:
        """One image's probabilities, calls, detections and map file, from its ``(K, *S')`` map and ``(4, D)``
        geometry."""
        geometry = LetterboxGeometry.from_tensor(torch.as_tensor(packed_geometry).cpu())
        record: dict[str, Any] = {}
        image_probability = image_scores(prob_map, geometry)
        for class_name, probability in zip(self.class_names, image_probability.tolist()):
            record[f"{class_name}_probability"] = probability
        detections = detect_in_original_pixels(
            prob_map, geometry, self.peak_threshold, self.nms_kernel_size, self.max_peaks
        )
        if self.calls is not None:
            record.update(self._calls(image_probability))
        record["detections"] = self._detection_records(detections)
        if self.map_dir is not None:
            map_path = self._write_map(name, geometry.grid_to_original_image(prob_map))
            record["probability_map"] = map_path.relative_to(self.map_dir.parent).as_posix()
        return record

    def _calls(self, image_probability: torch.Tensor) -> dict[str, Any]:
        """The image-level and lesion-level operating points and the image-level calls, for ``(K,)`` probabilities."""
        calibrated, threshold, positive = self.calls(image_probability.double(), name="image-level probabilities")
        record: dict[str, Any] = {}
        for index, class_name in enumerate(self.class_names):
            record[f"calibrated_{class_name}"] = float(calibrated[index])
            record[f"threshold_{class_name}"] = None if threshold[index].isnan() else float(threshold[index])
            record[f"positive_{class_name}"] = None if positive[index].isnan() else float(positive[index])
        record["operating_point"] = self.calls.operating_point
        record["lesion_operating_point"] = self.lesion_operating_point
        for class_name, lesion_threshold in zip(self.class_names, self.lesion_thresholds):
            record[f"lesion_threshold_{class_name}"] = None if np.isnan(lesion_threshold) else lesion_threshold
        return record

    def _detection_records(self, detections: list[np.ndarray]) -> list[dict[str, Any]]:
        """One dict per detection, with ``called`` (score at or above its type's lesion threshold) when calling."""
        records = []
        for class_name, class_peaks, lesion_threshold in zip(self.class_names, detections, self.lesion_thresholds):
            for peak in class_peaks:
                coordinates = dict(zip(("x", "y", "z"), peak[:-1].tolist()))
                record = {"class": class_name, **coordinates, "score": float(peak[-1])}
                if self.calls is not None:
                    # a NaN threshold (no lesion-level point for the type) calls nothing
                    record["called"] = bool(peak[-1] >= lesion_threshold)
                    if not (record["called"] or self.keep_uncalled_detections):
                        continue
                records.append(record)
        return records

    def _image_names(self, batch: dict[str, Any]) -> list[str]:
        image = batch[self.image_key]
        names = getattr(image, "meta", {}).get("filename_or_obj")
        if names is None:
            raise KeyError(
                f"FracturePredictionRecorder: batch '{self.image_key}' carries no 'filename_or_obj' metadata; "
                "load images with LoadImaged(image_only=True) so records can name their files."
            )
        return [str(n) for n in ([names] if isinstance(names, str) else names)]

    def _write_map(self, image_name: str, prob_map: torch.Tensor) -> Path:
        path = self.map_dir / map_file_name(image_name)
        self.map_dir.mkdir(parents=True, exist_ok=True)
        writer = NibabelWriter(output_dtype=np.float32)
        # keep the singleton z and channel axes: squeezed, a one-type map would be a 2-D array under the 3-D
        # affine, which MONAI's resampler cannot size
        writer.set_data_array(prob_map.clamp(0.0, 1.0), channel_dim=0, squeeze_end_dims=False)
        writer.set_metadata({"affine": np.eye(4), "original_affine": np.eye(4)}, resample=False)
        writer.write(str(path), verbose=False)
        return path
