"""Stop training at the first non-finite loss, naming where it happened and which images were in the batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

__all__ = ["FiniteLossGuard", "batch_file_names"]


def batch_file_names(
    batch: Mapping[str, Any], filename_key: str = "image_filename", image_key: str = "image"
) -> list[str]:
    """The source files of a collated batch's images, or ``[]`` when the batch does not carry them.

    Looked up in order: ``batch[filename_key]`` (a list of paths, e.g. copied from the datalist before the
    image is loaded), the ``filename_or_obj`` of ``batch[image_key]`` when it is a
    :class:`~monai.data.MetaTensor`, and ``batch[f"{image_key}_meta_dict"]["filename_or_obj"]``.
    """
    sources: list[Any] = [batch.get(filename_key)]
    image = batch.get(image_key)
    if isinstance(image, MetaTensor):
        sources.append(image.meta.get("filename_or_obj"))
    meta_dict = batch.get(f"{image_key}_meta_dict")
    if isinstance(meta_dict, Mapping):
        sources.append(meta_dict.get("filename_or_obj"))
    for names in sources:
        if names is None:
            continue
        return [str(names)] if isinstance(names, (str, bytes)) else [str(name) for name in names]
    return []


class FiniteLossGuard:
    """Raise :class:`FloatingPointError` as soon as an iteration's loss is NaN or infinite.

    Attached to :data:`monai.engines.utils.IterationEvents.LOSS_COMPLETED`, so it runs after the forward
    pass and before the backward pass: the step that produced the bad loss never reaches the weights, and
    training stops there instead of carrying NaN weights into validation (where it would surface much
    later, as a metric library's "Input contains NaN"). The message names the first non-finite loss term
    (with ``term_keys``), the epoch, the iteration (within the epoch and overall) and the batch's image files
    (see :func:`batch_file_names`), so the offending input can be found. It never quotes batch content other
    than the file names (no report text).

    Args:
        loss_key: key of the scalar loss in ``engine.state.output``.
        filename_key: batch key holding the images' file names.
        image_key: batch key of the images, whose meta data is the fallback source of the file names.
        term_keys: keys of the loss's terms in ``engine.state.output``, checked in this order before the loss,
            so that the message names the term that failed (e.g. ``("bce_posterior", "kl", "bce_prior")``
            for :class:`~cxrkd_monai.engines.VKDTrainer`, which attaches such a guard itself).

    Example (bundle JSON, in ``train#handlers``)::

        {"_target_": "cxrkd_monai.handlers.FiniteLossGuard"}
    """

    def __init__(
        self,
        loss_key: str = Keys.LOSS,
        filename_key: str = "image_filename",
        image_key: str = "image",
        term_keys: Sequence[str] = (),
    ) -> None:
        self.loss_key = loss_key
        self.filename_key = filename_key
        self.image_key = image_key
        self.term_keys = tuple(term_keys)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        keys = (*self.term_keys, self.loss_key)
        values = [torch.as_tensor(engine.state.output[key]).detach() for key in keys]
        finite = torch.stack([torch.isfinite(value).all().to(values[-1].device) for value in values])
        if bool(finite.all()):  # one device synchronisation per iteration
            return
        key, value = next((k, v) for k, v, ok in zip(keys, values, finite.tolist()) if not ok)
        name = "loss" if key == self.loss_key else f"loss term {key!r}"
        raise FloatingPointError(
            f"Training {name} is not finite ({value.float().cpu().tolist()}) at {self._where(engine)}."
        )

    def _where(self, engine: Engine) -> str:
        """``"epoch e, iteration i of n (iteration k overall); images of the batch: ..."``."""
        state = engine.state
        epoch_length = state.epoch_length or state.iteration
        names = batch_file_names(state.batch, self.filename_key, self.image_key)
        images = (
            ", ".join(names)
            if names
            else f"file names unavailable (batch keys: {sorted(state.batch)}; add '{self.filename_key}')"
        )
        return (
            f"epoch {state.epoch}, iteration {(state.iteration - 1) % epoch_length + 1} of {epoch_length} "
            f"(iteration {state.iteration} overall); images of the batch: {images}"
        )
