"""Per-image fracture predictions: image-level probabilities, detections and probability maps on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import NibabelWriter

from cxrkd_monai.transforms.detection import detect_in_original_pixels
from cxrkd_monai.transforms.geometry import LetterboxGeometry

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

    The image-level probability of a type is the maximum of its map. Detections are the map's peaks, in
    original-image pixels (x = column, y = row, continuous coordinates). The probability map is cropped out of
    the letterbox padding, resized to the original image size and written by MONAI's :class:`NibabelWriter` as
    NIfTI ``(W, H, 1, K)`` (a singleton z axis, then one channel per type), in the axis order of the loaded
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
            geometry = LetterboxGeometry.from_tensor(torch.as_tensor(packed_geometry).cpu())
            record: dict[str, Any] = {"image": name}
            if patients is not None:
                record["patient_id"] = patients[index]
            if labels is not None:
                record.update({f"label_{c}": y for c, y in zip(self.class_names, labels[index], strict=True)})
            image_probability = prob_map.flatten(1).amax(dim=1)
            for class_name, probability in zip(self.class_names, image_probability.tolist()):
                record[f"{class_name}_probability"] = probability
            detections = detect_in_original_pixels(
                prob_map, geometry, self.peak_threshold, self.nms_kernel_size, self.max_peaks
            )
            record["detections"] = [
                {"class": class_name, **dict(zip(("x", "y", "z"), peak[:-1].tolist())), "score": float(peak[-1])}
                for class_name, class_peaks in zip(self.class_names, detections)
                for peak in class_peaks
            ]
            if self.map_dir is not None:
                map_path = self._write_map(name, geometry.grid_to_original_image(prob_map))
                record["probability_map"] = map_path.relative_to(self.map_dir.parent).as_posix()
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
        writer.set_data_array(prob_map.clamp(0.0, 1.0), channel_dim=0)
        writer.set_metadata({"affine": np.eye(4), "original_affine": np.eye(4)}, resample=False)
        writer.write(str(path), verbose=False)
        return path
