"""VKD per-image prediction records (probability and Monte Carlo std per class) for the prediction writer."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["VKDPredictionRecords"]

_CALIBRATION_COLUMNS = {"pred_calibrated": "calibrated", "pred_threshold": "threshold", "pred_positive": "positive"}


class VKDPredictionRecords:
    """Turns decollated evaluator items into one record per image for :class:`~cxrkd_monai.handlers.PredictionWriter`.

    Each record: ``image`` (the source file), ``prob_<class>`` and ``std_<class>`` for every class, and, when a
    :class:`~cxrkd_monai.handlers.SaliencyWriter` explained the image, ``saliency`` (the map's path relative to
    the output folder) and ``saliency_class``. Then what the item carries of:

    - ``patient_id`` (the datalist's), and ``label_<class>`` for every class (``None`` where ``label_mask`` leaves
      the label unobserved), so that an evaluation can be recomputed, per patient, from the file alone;
    - ``calibrated_<class>``, ``threshold_<class>``, ``positive_<class>`` and ``operating_point`` from
      :class:`~cxrkd_monai.transforms.CalibrateProbabilitiesd` (``positive`` 1 or 0; ``None`` without a threshold).
    """

    def __init__(self, class_names: Sequence[str], image_key: str = "image") -> None:
        self.class_names = list(class_names)
        self.image_key = image_key

    def __call__(self, batch: list[dict], output: list[dict]) -> list[dict]:
        records = []
        for item, out in zip(batch, output, strict=True):
            image = item[self.image_key]
            record = {"image": str(getattr(image, "meta", {}).get("filename_or_obj", ""))}
            prob, std = out["pred_prob"].tolist(), out["pred_std"].tolist()
            record.update({f"prob_{name}": p for name, p in zip(self.class_names, prob, strict=True)})
            record.update({f"std_{name}": s for name, s in zip(self.class_names, std, strict=True)})
            record.update({key: out[key] for key in ("saliency", "saliency_class") if key in out})
            if "patient_id" in item:
                record["patient_id"] = item["patient_id"]
            if "label" in item:
                observed = item["label_mask"].tolist() if "label_mask" in item else [1.0] * len(self.class_names)
                labels = item["label"].tolist()
                record.update(
                    {f"label_{n}": y if m > 0.5 else None for n, y, m in zip(self.class_names, labels, observed)}
                )
            for key, prefix in _CALIBRATION_COLUMNS.items():
                if key in out:
                    values = out[key].tolist()
                    record.update({f"{prefix}_{n}": v for n, v in zip(self.class_names, values, strict=True)})
            if "operating_point" in out:
                record["operating_point"] = out["operating_point"]
            records.append(record)
        return records
