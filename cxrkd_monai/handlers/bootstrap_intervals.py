"""Patient-level bootstrap confidence intervals of an evaluator's multi-label metrics, for ``metrics.json``."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ignite.engine import Engine, Events

from cxrkd_monai.metrics.bootstrap import bootstrap_intervals

__all__ = ["BootstrapIntervals"]

logger = logging.getLogger(__name__)


@contextmanager
def _warnings_silenced(metric_logger: logging.Logger) -> Iterator[None]:
    """A metric warns of a class it cannot score; on resamples that is expected, and said once per metric already."""
    level = metric_logger.level
    metric_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        metric_logger.setLevel(level)


class BootstrapIntervals:
    """Bootstrap intervals of every metric of an evaluator that can be resampled, resampling patients.

    At completion each metric of ``metrics`` (the evaluator's own handlers) that has a ``bootstrap_statistic`` is
    recomputed on resamples of the images it accumulated, with the function that computed it, and so are its
    per-class values:

    - the masked multi-label metrics (:class:`~cxrkd_monai.handlers.MaskedMultiLabelHandler`: ``val_macro_auroc``,
      ``micro_auroc``, ``macro_f1_at_0.5``, ``ece``, ...) with the same threshold, bins and observed labels;
    - the FROC score (:class:`~cxrkd_monai.handlers.FROCScore`, ``val_froc`` and ``val_froc_<type>``), each image
      matched to its lesions once.

    The images of one patient (``group_key`` of each batch item, ``patient_id`` in the datalists) enter and leave a
    resample together; an item without a patient is its own cluster, and with no patient at all the images are
    resampled. Other metrics are left out, with a log line naming them.

    :meth:`summary` gives the result for :class:`~cxrkd_monai.handlers.MetricsWriter`'s ``extra``::

        {"bootstrap": {"num_resamples", "seed", "confidence", "unit": "patient" | "image", "num_units",
                       "intervals": {metric name: {"estimate", "lower", "upper", "num_defined"}}}}

    Attach it before the ``MetricsWriter`` (handlers run in the order given). The evaluation must run in one process
    (``evaluate.json``): the patients of the items are collected locally.

    Args:
        metrics: name -> metric handler, as given to the evaluator.
        num_resamples: bootstrap resamples.
        confidence: coverage of the intervals.
        seed: resampling seed; the same seed gives every metric, and every model evaluated on the same items, the
            same resamples.
        group_key: the batch item key holding the patient.
        image_key: the batch key of the images, which counts the items of a collated batch without patients.

    Example (bundle JSON)::

        "bootstrap_intervals": {"_target_": "cxrkd_monai.handlers.BootstrapIntervals",
                                "metrics": "${**@validate#key_metric, **@validate#additional_metrics}",
                                "num_resamples": "@bootstrap_samples", "confidence": "@bootstrap_level",
                                "seed": "@bootstrap_seed"}
    """

    def __init__(
        self,
        metrics: Mapping[str, Any],
        num_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        group_key: str = "patient_id",
        image_key: str = "image",
    ) -> None:
        self.metrics = {name: h for name, h in metrics.items() if callable(getattr(h, "bootstrap_statistic", None))}
        self.skipped = sorted(set(metrics) - set(self.metrics))
        self.num_resamples, self.confidence, self.seed = int(num_resamples), float(confidence), int(seed)
        self.group_key, self.image_key = group_key, image_key
        self.groups: list[Hashable | None] = []
        self.result: dict[str, Any] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._compute)

    def _reset(self, engine: Engine) -> None:
        self.groups, self.result = [], {}

    def _collect(self, engine: Engine) -> None:
        if engine.state.output is None:
            return
        batch = engine.state.batch
        if isinstance(batch, dict):  # a collated batch (the fracture evaluator does not decollate)
            groups = batch.get(self.group_key)
            self.groups.extend(groups if groups is not None else [None] * len(batch[self.image_key]))
        else:
            self.groups.extend(item.get(self.group_key) for item in batch)

    def _cluster_ids(self) -> tuple[list[Hashable] | None, str]:
        missing = sum(group is None for group in self.groups)
        if missing == len(self.groups):
            return None, "image"
        if missing:
            logger.warning(
                "%d of %d evaluated items carry no %s; each is its own cluster in the bootstrap.",
                missing, len(self.groups), self.group_key,
            )  # fmt: skip
        return [(None, i) if g is None else str(g) for i, g in enumerate(self.groups)], "patient"

    def _compute(self, engine: Engine) -> None:
        if self.skipped:
            logger.info("Bootstrap intervals leave out %d metric(s) without a bootstrap statistic: %s",
                        len(self.skipped), self.skipped)  # fmt: skip
        groups, unit = self._cluster_ids()
        intervals = {}
        for name, metric in self.metrics.items():
            num_images, statistic = metric.bootstrap_statistic(name)
            if num_images != len(self.groups):
                raise RuntimeError(
                    f"Metric {name} holds {num_images} images but {len(self.groups)} were evaluated; bootstrap "
                    "intervals need a single-process evaluation."
                )
            metric_module = type(getattr(metric, "metric_fn", metric)).__module__
            with _warnings_silenced(logging.getLogger(metric_module)):
                found = bootstrap_intervals(
                    statistic, num_images, self.num_resamples, self.confidence, self.seed, groups
                )
            intervals.update({key: interval.as_dict() for key, interval in found.items()})
        num_units = len(self.groups) if groups is None else len(set(groups))
        self.result = {
            "num_resamples": self.num_resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "unit": unit,
            "num_units": num_units,
            "intervals": intervals,
        }
        logger.info("Bootstrap intervals of %d values over %d %ss (%d resamples, seed %d).", len(intervals),
                    num_units, unit, self.num_resamples, self.seed)  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """``{"bootstrap": {...}}`` of the last evaluation (class docstring), for ``MetricsWriter(extra=...)``."""
        return {"bootstrap": self.result}
