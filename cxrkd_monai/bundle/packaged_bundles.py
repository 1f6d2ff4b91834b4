"""Where the project's two MONAI bundles are, as package data of ``cxrkd_monai``.

The bundles live in the repository's top-level ``bundles/`` folder, where MONAI's tooling and users read them.
``cxrkd_monai/_bundles`` links to that folder, and the wheel carries its files (configs, docs, licence, large-file
list) under the same name, so one lookup through ``importlib.resources`` serves a source checkout, an editable
install and an installed wheel alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUNDLE_NAMES", "bundle_path", "bundles_dir"]

BUNDLE_NAMES = ("cxr_vkd_classification", "cxr_aals_fracture_detection")


def bundles_dir() -> Path:
    """The folder holding the bundles (resolved: the repository's ``bundles/`` in a source checkout).

    Raises:
        FileNotFoundError: the installation carries no bundles (a zipped install, or a broken link).
    """
    folder = resources.files("cxrkd_monai") / "_bundles"
    if not isinstance(folder, Path) or not folder.is_dir():
        raise FileNotFoundError(
            f"The cxrkd_monai installation carries no bundle folder ({folder}): install the package from its wheel "
            "or, in a source checkout, keep the link cxrkd_monai/_bundles -> ../bundles."
        )
    return folder.resolve()


def bundle_path(name: str) -> Path:
    """The folder of the bundle ``name`` (one of :data:`BUNDLE_NAMES`), holding ``configs/metadata.json``.

    Example::

        bundle_run(config_file=str(bundle_path("cxr_vkd_classification") / "configs" / "inference.json"), ...)

    Raises:
        FileNotFoundError: no bundle of that name; the message lists those there are.
    """
    folder = bundles_dir()
    path = folder / name
    if not (path / "configs" / "metadata.json").is_file():
        available = sorted(child.name for child in folder.iterdir() if (child / "configs" / "metadata.json").is_file())
        raise FileNotFoundError(f"No bundle '{name}' in {folder}; the bundles there: {', '.join(available)}.")
    return path
