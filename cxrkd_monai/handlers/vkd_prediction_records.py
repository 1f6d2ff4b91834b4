"""VKD per-image prediction records (probability and Monte Carlo std per class) for the prediction writer."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["VKDPredictionRecords"]


class VKDPredictionRecords:
    """Turns decollated evaluator items into one record per image for :class:`~cxrkd_monai.handlers.PredictionWriter`.

    Each record: ``image`` (the source file), ``prob_<class>`` and ``std_<class>`` for every class, and, when a
    :class:`~cxrkd_monai.handlers.SaliencyWriter` explained the image, ``saliency`` (the map's path relative to
    the output folder) and ``saliency_class``.
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
            records.append(record)
        return records
