"""The bundle settings a report needs (datalist, split, fracture scoring), read from the run's configs.

A run folder is the ``output_dir`` of ``evaluate.json``, by default ``<bundle_root>/eval``. The configs are looked for
in ``<run folder>/configs`` and ``<run folder>/../configs`` (a bundle root); where neither holds the bundle's config
files, the bundle shipped with the package is read (:func:`~cxrkd_monai.bundle.packaged_bundles.bundle_path`).
Overrides (``dataset_dir=...``, ``image_size=[...]``) apply as in ``monai.bundle run``, so a report sees the values
the run was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from cxrkd_monai.bundle.packaged_bundles import bundle_path

__all__ = ["BUNDLE_CONFIGS", "ReportSettings", "resolve_settings"]

BUNDLE_CONFIGS = {
    "vkd": ("cxr_vkd_classification", ("train.json", "evaluate.json")),
    "fracture": ("cxr_aals_fracture_detection", ("train_teacher.json", "evaluate.json")),
}
"""Per run kind: the bundle's name and the config files whose merge ``evaluate.json`` runs."""


@dataclass(frozen=True)
class ReportSettings:
    """What the report reads from the bundle configuration.

    Attributes:
        datalist: the datalist whose ``split`` the run evaluated (labels, patients, annotations, subgroup fields).
        split: the datalist key evaluated (``evaluate_split``, ``"test"`` by default).
        config_files: the config files read (empty when ``datalist`` and ``split`` were given and no config was).
        image_size, output_stride, fp_per_image, point_radius: fracture scoring (the map pixel size behind each
            detection's hit radius, the FROC operating points, the point hit radius); ``None`` for VKD runs.
        ece_bins: bins of the expected calibration error (VKD), as ``evaluate.json``'s ``ece`` metric uses.
    """

    datalist: Path
    split: str
    config_files: tuple[Path, ...] = ()
    image_size: tuple[int, ...] | None = None
    output_stride: int | None = None
    fp_per_image: tuple[float, ...] | None = None
    point_radius: float | None = None
    ece_bins: int = 10


def _config_files(run_dir: Path, kind: str) -> list[Path]:
    bundle_name, names = BUNDLE_CONFIGS[kind]
    for folder in (run_dir / "configs", run_dir.parent / "configs", bundle_path(bundle_name) / "configs"):
        if all((folder / name).is_file() for name in names):
            return [folder / name for name in names]
    raise FileNotFoundError(
        f"No {', '.join(names)} in {run_dir / 'configs'}, {run_dir.parent / 'configs'} or the packaged bundle; "
        "pass config_file=[...] naming the run's configs, or datalist=... (and split=...)."
    )


def resolve_settings(
    run_dir: str | Path,
    kind: str,
    datalist: str | Path | None = None,
    split: str | None = None,
    config_file: str | Sequence[str] | None = None,
    **overrides: Any,
) -> ReportSettings:
    """The settings of the run in ``run_dir``: explicit arguments first, then the run's configs with ``overrides``.

    Args:
        run_dir: the run folder (``evaluate.json``'s ``output_dir``).
        kind: ``"vkd"`` or ``"fracture"``.
        datalist: the datalist path, instead of the config's ``datalist``.
        split: the evaluated datalist key, instead of the config's ``evaluate_split``.
        config_file: config file(s) to read instead of looking next to the run.
        overrides: config ids and values, as given to ``monai.bundle run`` (``dataset_dir``, ``image_size``...).

    Raises:
        FileNotFoundError: no config is found, or the datalist does not exist (the path is named).
    """
    if kind not in BUNDLE_CONFIGS:
        raise ValueError(f"kind must be one of {sorted(BUNDLE_CONFIGS)}, got {kind!r}.")
    run_dir = Path(run_dir).resolve()
    if config_file is not None:
        files = [Path(config_file)] if isinstance(config_file, (str, Path)) else [Path(f) for f in config_file]
    else:
        files = _config_files(run_dir, kind)
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update({"bundle_root": str(run_dir.parent), **overrides})

    def value(key: str, default: Any = None) -> Any:
        return parser.get_parsed_content(key) if key in parser else default

    datalist_path = Path(datalist if datalist is not None else value("datalist"))
    if not datalist_path.is_file():
        raise FileNotFoundError(
            f"Datalist {str(datalist_path)!r} (from {'the datalist argument' if datalist else 'the config'}) does not "
            "exist; pass datalist=... or dataset_dir=... for this run."
        )
    settings = {
        "datalist": datalist_path,
        "split": split if split is not None else str(value("evaluate_split", "test")),
        "config_files": tuple(files),
        "ece_bins": int(value("validate#additional_metrics#ece#num_bins", 10)),
    }
    if kind == "fracture":
        fp_per_image = tuple(float(rate) for rate in value("fp_per_image"))
        if not fp_per_image or any(not math.isfinite(rate) or rate <= 0 for rate in fp_per_image):
            raise ValueError(f"fp_per_image must be positive rates, got {fp_per_image} from {[str(f) for f in files]}.")
        settings |= {
            "image_size": tuple(int(s) for s in value("image_size")),
            "output_stride": int(value("output_stride")),
            "fp_per_image": fp_per_image,
            "point_radius": float(value("point_radius")),
        }
    return ReportSettings(**settings)
