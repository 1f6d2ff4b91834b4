"""Packs a bundle folder as the zip that the MONAI Model Zoo and ``monai.bundle download`` expect.

The archive holds one top folder named after the bundle (MONAI Bundle specification, "Archive Format")::

    <name>/configs/...          every config, metadata.json included
    <name>/docs/...             README.md, data_license.txt
    <name>/LICENSE
    <name>/large_files.yml      where the weights are published (URL and hash)
    <name>/models/...           only with include_weights: model.pt, and model.ts / model.onnx if exported

Run outputs inside the bundle folder (``eval/``, ``predictions/``, caches) are never packed. Entries are
written in sorted order with a fixed timestamp, so the same files always give the same zip (and hash).
Unpack one with ``python -m monai.bundle download --name <name> --url <url> --bundle_dir <dir>``; a
``file://`` URL works for a local zip.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

__all__ = ["check_bundle_archive", "pack_bundle"]

_PACKED_FOLDERS = ("configs", "docs")
_PACKED_FILES = ("LICENSE", "large_files.yml")
_WEIGHT_FILES = ("model.pt", "model.ts", "model.onnx")
# Zip timestamps cannot predate 1980; a constant one keeps archives byte-identical across runs.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "__")) for part in path.relative_to(root).parts)


def _bundle_members(bundle_dir: Path, include_weights: bool) -> list[Path]:
    members = []
    for folder in _PACKED_FOLDERS:
        if (bundle_dir / folder).is_dir():
            members += [
                path for path in (bundle_dir / folder).rglob("*") if path.is_file() and not _is_hidden(path, bundle_dir)
            ]
    members += [bundle_dir / name for name in _PACKED_FILES if (bundle_dir / name).is_file()]
    if include_weights:
        checkpoint = bundle_dir / "models" / "model.pt"
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"include_weights=True but the checkpoint {checkpoint} does not exist; train the bundle or "
                "download its weights with `python -m monai.bundle download_large_files` first."
            )
        members += [path for name in _WEIGHT_FILES if (path := bundle_dir / "models" / name).is_file()]
    return sorted(members)


def pack_bundle(bundle_dir: str | Path, output_zip: str | Path, include_weights: bool = False) -> Path:
    """Writes ``bundle_dir`` as a Model Zoo / Hugging Face style zip ``<name>/...`` to ``output_zip``.

    Args:
        bundle_dir: the bundle folder; its name becomes the archive's top folder.
        output_zip: the zip file to write (its parent folders are created).
        include_weights: also pack ``models/model.pt`` (required then) and ``models/model.ts`` /
            ``models/model.onnx`` when they exist. Without it the weights are found through
            ``large_files.yml``.

    Returns:
        the path of the zip.

    Raises:
        FileNotFoundError: naming ``configs/metadata.json`` when the folder is not a bundle, or the missing
            ``models/model.pt`` when ``include_weights`` is set.

    Example::

        pack_bundle("bundles/cxr_vkd_classification", "dist/cxr_vkd_classification_v0.1.0.zip")
    """
    bundle_dir = Path(bundle_dir).resolve()
    metadata = bundle_dir / "configs" / "metadata.json"
    if not metadata.is_file():
        raise FileNotFoundError(
            f"{bundle_dir} is not a MONAI bundle: {metadata} does not exist (the specification requires it)."
        )
    output_zip = Path(output_zip)
    output_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in _bundle_members(bundle_dir, include_weights):
            arcname = PurePosixPath(bundle_dir.name, *path.relative_to(bundle_dir).parts)
            info = zipfile.ZipInfo(str(arcname), date_time=_ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return output_zip


def check_bundle_archive(zip_path: str | Path) -> str:
    """Checks that a zip unpacks to one bundle folder holding ``configs/metadata.json``.

    Args:
        zip_path: the archive, e.g. written by :func:`pack_bundle` or downloaded from a release.

    Returns:
        the bundle name (the archive's top folder).

    Raises:
        ValueError: naming ``zip_path`` and what is wrong: entries outside one top folder, or no
            ``<name>/configs/metadata.json``.

    Example::

        name = check_bundle_archive("dist/cxr_vkd_classification_v0.1.0.zip")  # "cxr_vkd_classification"
    """
    with zipfile.ZipFile(zip_path) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
    tops = sorted({PurePosixPath(name).parts[0] for name in names if len(PurePosixPath(name).parts) > 1})
    loose = [name for name in names if len(PurePosixPath(name).parts) == 1]
    # A zip of the bundle's contents rather than of its folder has "configs" (or "docs", "models") on top.
    if len(tops) != 1 or loose or tops[0] in (*_PACKED_FOLDERS, "models"):
        raise ValueError(
            f"{zip_path} must hold exactly one bundle folder <name>/configs/..., got top folders {tops} and "
            f"loose files {loose}."
        )
    name = tops[0]
    if f"{name}/configs/metadata.json" not in names:
        raise ValueError(f"{zip_path} is not a MONAI bundle: it has no {name}/configs/metadata.json.")
    return name
