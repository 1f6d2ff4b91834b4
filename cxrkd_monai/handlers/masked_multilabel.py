"""Ignite handler of the masked multi-label metrics: reads the label mask from the evaluator's batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import IgniteMetricHandler

from cxrkd_monai.metrics.masked import MaskedMultiLabelMetric, as_batch, observed_entries

__all__ = ["MaskedMultiLabelHandler"]


class MaskedMultiLabelHandler(IgniteMetricHandler):
    """Ignite handler for a :class:`~cxrkd_monai.metrics.MaskedMultiLabelMetric`.

    ``output_transform`` takes ``engine.state.output`` to ``(pred, label)``; ``mask_transform`` takes
    ``engine.state.batch`` to the label mask, because evaluators put the prediction and label in their output but
    leave the rest of the batch where it is. Without ``mask_transform`` every entry is observed (or
    ``output_transform`` may return ``(pred, label, mask)`` itself). Batch tensors and decollated lists are both
    accepted. At completion, per-class values are stored as ``engine.state.metrics[f"{name}_{class_name}"]`` so
    that stats, TensorBoard and metric writers see them.

    Args:
        metric_fn: the metric.
        output_transform: ``engine.state.output`` -> ``(pred, label)``.
        mask_transform: ``engine.state.batch`` -> ``mask``, e.g.
            ``monai.handlers.from_engine(['label_mask'])``.
    """

    def __init__(
        self,
        metric_fn: MaskedMultiLabelMetric,
        output_transform: Callable = lambda x: x,
        mask_transform: Callable | None = None,
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=False)
        self.mask_transform = mask_transform

    @torch.no_grad()
    def iteration_completed(self, engine) -> None:
        output = tuple(self._output_transform(engine.state.output))
        if self.mask_transform is not None:
            if len(output) != 2:
                raise ValueError(
                    f"With mask_transform set, output_transform must give (pred, label), got {len(output)} items."
                )
            output = (*output, self.mask_transform(engine.state.batch))
        self.update(output)

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        if len(output) not in (2, 3):
            raise ValueError(f"output must be (pred, label) or (pred, label, mask), got {len(output)} items.")
        y_pred, y, *mask = output
        self.metric_fn(as_batch(y_pred), as_batch(y), mask=as_batch(mask[0]) if mask else None)

    def completed(self, engine, name: str) -> None:
        super().completed(engine, name)
        for class_name, value in self.metric_fn.per_class.items():
            engine.state.metrics[f"{name}_{class_name}"] = value

    def bootstrap_statistic(self, name: str) -> tuple[int, Callable[[np.ndarray], dict[str, float]]]:
        """The number of images accumulated and a function of image indices giving the metric on them.

        The function takes an int array of indices (``(n,)``, repeats allowed) and returns the values
        :meth:`completed` reports, ``{name: value, f"{name}_{class_name}": per-class value}``, computed as at
        completion (the same threshold, bins and observed labels). The metric's ``per_class`` of the full
        evaluation is restored after each call. The images are this process's only.
        """
        metric = self.metric_fn
        scores, labels, observed = observed_entries(*metric.get_buffer())

        def statistic(index: np.ndarray) -> dict[str, float]:
            reported = dict(metric.per_class)
            value = metric.compute_observed(scores[index], labels[index], observed[index])
            resampled = {f"{name}_{c}": v for c, v in metric.per_class.items()}
            metric.per_class = reported
            return {name: value, **resampled}

        return len(scores), statistic
