"""The VKD bundle's own training transforms, parsed from its ``train.json``, for benchmarks that build
their datasets outside a bundle run."""

from __future__ import annotations

from collections.abc import Sequence

from monai.bundle import ConfigParser

from benchmarks.bundle_data import VKD_BUNDLE

__all__ = ["vkd_train_config"]


def vkd_train_config(image_size: int, class_names: Sequence[str], **overrides) -> ConfigParser:
    """The VKD ``train.json`` parser at ``image_size`` px with ``class_names`` (and ``overrides``).

    Parse from it what a benchmark needs, e.g. ``train#preprocessing`` (item checks, decoding, letterbox,
    augmentation) or ``train#augmentation``; nothing is built until asked for.
    """
    parser = ConfigParser()
    parser.read_config(str(VKD_BUNDLE / "configs" / "train.json"))
    parser.update(
        {
            "bundle_root": str(VKD_BUNDLE),
            "image_size": [image_size, image_size],
            "class_names": list(class_names),
            **overrides,
        }
    )
    return parser
