"""Batch preparation that passes the report text's features to the network beside the image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys as Keys

__all__ = ["PrepareTextBatch"]


class PrepareTextBatch(PrepareBatch):
    """``(image, label, (), {"text_features": h_t})`` from a dictionary batch with reports.

    MONAI's evaluators hand the extra positional and keyword arguments of a four-item ``prepare_batch`` to the
    inferer, so an evaluator with this preparation and a
    :class:`~cxrkd_monai.inferers.PosteriorPriorInferer` scores VKD's text posterior path. The text is encoded
    without gradients.

    Args:
        text_encoder: maps a list of B report strings to ``(B, T)`` features, e.g. the bundle's
            :class:`~cxrkd_monai.data.TextEmbeddingCache`.
        report_key: batch key of the report strings.
        image_key: batch key of the image ``(B, C, *S)``.
        label_key: batch key of the labels ``(B, K)``.

    Example::

        SupervisedEvaluator(..., inferer=PosteriorPriorInferer(), prepare_batch=PrepareTextBatch(text_encoder))
    """

    def __init__(
        self,
        text_encoder: Callable[[Sequence[str]], torch.Tensor],
        report_key: str = "report",
        image_key: str = Keys.IMAGE,
        label_key: str = Keys.LABEL,
    ) -> None:
        if text_encoder is None:
            raise ValueError("PrepareTextBatch needs a text_encoder (the bundle's use_text is off).")
        self.text_encoder = text_encoder
        self.report_key = report_key
        self.image_key = image_key
        self.label_key = label_key

    def __call__(
        self,
        batchdata: dict[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict[str, torch.Tensor]]:
        for key in (self.image_key, self.label_key, self.report_key):
            if key not in batchdata:
                raise KeyError(f"PrepareTextBatch: batch has no '{key}' (keys: {sorted(batchdata)}).")
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        label = torch.as_tensor(batchdata[self.label_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        with torch.no_grad():
            text_features = self.text_encoder(list(batchdata[self.report_key]))
        return image, label, (), {"text_features": text_features.to(device=device, non_blocking=non_blocking)}
