"""Fits the calibration of the best model on the validation split and stores it beside the model's checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.utils import evenly_divisible_all_gather

from cxrkd_monai.handlers.froc_score import FROCScore
from cxrkd_monai.metrics.calibration_fitting import fit_calibration
from cxrkd_monai.transforms.calibration import Calibration
from cxrkd_monai.utils.atomic_files import write_text_atomically
from cxrkd_monai.utils.distributed import is_rank0

__all__ = ["CalibrationFitter"]

logger = logging.getLogger(__name__)


class CalibrationFitter:
    """After each validation that sets a new best key metric, fits :func:`~cxrkd_monai.metrics.fit_calibration` on
    its predictions.

    The best-model saver writes ``model.pt`` on the same validations, so ``calibration.json`` always belongs to the
    weights beside it: at the end of training, to the best model, fitted on the validation split. Attach it to the
    validation evaluator (its ``_compare_metrics``, registered with the key metric, has already updated
    ``best_metric_epoch`` when this handler runs). Predictions of every process are gathered; rank 0 writes.

    Args:
        class_names: the ``C`` classes.
        output_file: ``calibration.json`` beside the best model
            (:func:`~cxrkd_monai.transforms.calibration_file_beside`).
        sensitivity_target, ppv_target: targets of the ``"sensitivity"`` and ``"ppv"`` operating points.
        output_transform: ``engine.state.output`` -> ``(probabilities, labels)``, uncalibrated ``(C,)`` per item or
            ``(B, C)`` per batch.
        mask_transform: ``engine.state.batch`` -> label masks; ``None`` when every label is observed.
        froc_metric: a detector's :class:`~cxrkd_monai.handlers.FROCScore` on the same evaluator; with it the
            lesion-level operating points at ``fp_per_image_targets`` are fitted too (it gathers every process's
            detections itself).
        fp_per_image_targets: false positives per image of the lesion-level operating points.

    Example (bundle JSON, in ``validate#handlers``)::

        {"_target_": "cxrkd_monai.handlers.CalibrationFitter", "class_names": "@class_names",
         "output_file": "$cxrkd_monai.transforms.calibration_file_beside(@ckpt_dir + '/model.pt')",
         "sensitivity_target": "@sensitivity_target", "ppv_target": "@ppv_target"}

    The fracture bundle passes each type's map maximum, no mask, and its FROC metric::

        {..., "output_transform": "@validate#additional_metrics#val_auroc#output_transform",
         "mask_transform": null, "froc_metric": "@validate#key_metric#val_froc",
         "fp_per_image_targets": "@lesion_fp_per_image"}
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_file: str | Path,
        sensitivity_target: float = 0.9,
        ppv_target: float = 0.5,
        output_transform: Callable = from_engine(["pred_prob", "label"]),
        mask_transform: Callable | None = from_engine(["label_mask"]),
        froc_metric: FROCScore | None = None,
        fp_per_image_targets: Sequence[float] = (),
    ) -> None:
        if bool(fp_per_image_targets) != (froc_metric is not None):
            raise ValueError("CalibrationFitter: give froc_metric and fp_per_image_targets together, or neither.")
        self.class_names = list(class_names)
        self.froc_metric, self.fp_per_image_targets = froc_metric, [float(rate) for rate in fp_per_image_targets]
        self.output_file = Path(output_file)
        self.sensitivity_target, self.ppv_target = float(sensitivity_target), float(ppv_target)
        self.output_transform, self.mask_transform = output_transform, mask_transform
        self.calibration: Calibration | None = None
        self._batches: list[tuple[torch.Tensor, ...]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._fit_if_best)

    def _reset(self, engine: Engine) -> None:
        self._batches = []

    def _collect(self, engine: Engine) -> None:
        if engine.state.output is None:
            return
        probabilities, labels = self.output_transform(engine.state.output)
        batch = [_stacked(probabilities), _stacked(labels)]
        if self.mask_transform is not None:
            batch.append(_stacked(self.mask_transform(engine.state.batch)))
        self._batches.append(tuple(batch))

    def _fit_if_best(self, engine: Engine) -> None:
        if getattr(engine.state, "best_metric_epoch", None) != engine.state.epoch or not self._batches:
            return
        gathered = [evenly_divisible_all_gather(torch.cat(part), concat=True) for part in zip(*self._batches)]
        if not is_rank0():
            return
        probabilities, labels, *mask = (part.cpu() for part in gathered)
        froc = None if self.froc_metric is None else self.froc_metric.froc_metric
        if self.froc_metric is not None and froc is None:
            raise RuntimeError("CalibrationFitter: the FROC metric has not been computed on this evaluator.")
        self.calibration = fit_calibration(
            probabilities, labels, mask[0] if mask else None, self.class_names, self.sensitivity_target,
            self.ppv_target, froc=froc, fp_per_image_targets=self.fp_per_image_targets,
        )  # fmt: skip
        write_text_atomically(self.output_file, self.calibration.to_json())
        nll = self.calibration.fitted_on
        logger.info(
            "Calibration of the best model (epoch %d) on %d validation images: mean NLL %.4f -> %.4f; wrote %s",
            engine.state.epoch, nll["num_images"], np.nanmean(list(nll["nll_uncalibrated"].values())),
            np.nanmean(list(nll["nll_calibrated"].values())), self.output_file,
        )  # fmt: skip


def _stacked(values: Any) -> torch.Tensor:
    """A ``(B, C)`` float tensor from a batch tensor or a decollated list of ``(C,)`` tensors."""
    if isinstance(values, (list, tuple)):
        return torch.stack([torch.as_tensor(v) for v in values]).double()
    return torch.as_tensor(values).double()
