"""Ignite handler that writes a Grad-CAM saliency PNG for every image a VKD evaluator predicts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from PIL import Image

from cxrkd_monai.transforms.geometry import LetterboxGeometry
from cxrkd_monai.visualize.overlay import saliency_to_png_array
from cxrkd_monai.visualize.saliency import DEFAULT_TARGET_LAYER, VKDSaliency

__all__ = ["SaliencyWriter"]

logger = logging.getLogger(__name__)


class SaliencyWriter:
    """Explains each image's prediction with :class:`~cxrkd_monai.visualize.VKDSaliency` and writes the map.

    At every ``ITERATION_COMPLETED`` the images of the (decollated) batch are explained for ``explain_class``
    or, when it is ``None``, for each image's most probable class (the largest ``pred_prob``). Each map is
    mapped back to the image's own pixel grid by its letterbox ``geometry`` and written as an 8-bit grey PNG
    ``<output_dir>/<subfolder>/<image stem>_<class>.png`` (upright: rows and columns as in the source). The
    PNG's path relative to ``output_dir`` and the explained class go into the item's output under ``saliency``
    and ``saliency_class``, where a prediction writer attached after this handler records them.

    Args:
        output_dir: the run's output folder (the predictions' folder).
        class_names: the ``C`` class names in prediction order.
        explain_class: a class name to explain for every image, or ``None`` for each image's top class.
        target_layer: the network layer Grad-CAM weights (see :class:`~cxrkd_monai.visualize.VKDSaliency`).
        method: ``"gradcam"`` or ``"gradcampp"``.
        subfolder: folder of the PNGs inside ``output_dir``.
        image_key, geometry_key, prob_key: batch keys of the network-grid image ``(C, W, H)`` and its
            ``(4, 2)`` letterbox geometry, and output key of the class probabilities ``(C,)``.

    The explainer is built from ``engine.network`` at the first iteration (after ``CheckpointLoader`` has
    loaded the weights at ``STARTED``). It needs the PyTorch network: run the bundle with the PyTorch backend.
    """

    def __init__(
        self,
        output_dir: str | Path,
        class_names: Sequence[str],
        explain_class: str | None = None,
        target_layer: str = DEFAULT_TARGET_LAYER,
        method: str = "gradcam",
        subfolder: str = "saliency",
        image_key: str = "image",
        geometry_key: str = "geometry",
        prob_key: str = "pred_prob",
    ) -> None:
        self.class_names = list(class_names)
        if explain_class is not None and explain_class not in self.class_names:
            raise ValueError(f"explain_class {explain_class!r} is not one of the class names {self.class_names}.")
        self.output_dir = Path(output_dir)
        self.explain_class = explain_class
        self.target_layer = target_layer
        self.method = method
        self.subfolder = subfolder
        self.image_key = image_key
        self.geometry_key = geometry_key
        self.prob_key = prob_key
        self._saliency: VKDSaliency | None = None
        self._used_names: set[str] = set()
        self.written = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._explain)
        engine.add_event_handler(Events.COMPLETED, self._report)

    def _reset(self, engine: Engine) -> None:
        self._saliency = None
        self._used_names = set()
        self.written = 0

    def _explain(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        if output is None:
            return
        if self._saliency is None:
            self._saliency = VKDSaliency(engine.network, self.target_layer, self.method)
        images = torch.stack([torch.as_tensor(item[self.image_key]).as_subclass(torch.Tensor) for item in batch])
        if self.explain_class is None:
            classes = [int(torch.as_tensor(out[self.prob_key]).argmax()) for out in output]
        else:
            classes = [self.class_names.index(self.explain_class)] * len(batch)
        maps = self._saliency(images, classes).cpu()
        folder = self.output_dir / self.subfolder
        folder.mkdir(parents=True, exist_ok=True)
        for item, out, saliency_map, class_index in zip(batch, output, maps, classes, strict=True):
            if self.geometry_key in item:
                geometry = LetterboxGeometry.from_tensor(torch.as_tensor(item[self.geometry_key]).cpu())
                saliency_map = geometry.grid_to_original_image(saliency_map).clamp(0.0, 1.0)
            name = self._file_name(item, self.class_names[class_index])
            Image.fromarray(saliency_to_png_array(saliency_map)).save(folder / name)
            out["saliency"] = f"{self.subfolder}/{name}"
            out["saliency_class"] = self.class_names[class_index]
            self.written += 1

    def _file_name(self, item: dict, class_name: str) -> str:
        source = str(getattr(item[self.image_key], "meta", {}).get("filename_or_obj", "") or "image")
        stem = Path(source).name.split(".")[0]
        slug = "".join(c if c.isalnum() else "_" for c in class_name)
        name, repeat = f"{stem}_{slug}.png", 1
        while name in self._used_names:
            name, repeat = f"{stem}_{repeat}_{slug}.png", repeat + 1
        self._used_names.add(name)
        return name

    def _report(self, engine: Engine) -> None:
        logger.info("Wrote %d saliency maps to %s", self.written, self.output_dir / self.subfolder)
