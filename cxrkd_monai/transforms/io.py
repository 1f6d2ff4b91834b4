"""Load a chest radiograph from DICOM, PNG/JPEG or NIfTI into the package's single intensity contract.

Every source comes out as a ``(1, W, H)`` float32 :class:`monai.data.MetaTensor` in ``[0, 1]`` where 0 is
dark (air, lung) and 1 is bright (bone). Axis 0 is x (column) and axis 1 is y (row), as MONAI's image readers
return them, so a PNG loaded here equals ``LoadImaged(reader=PILReader)`` followed by ``EnsureChannelFirstd``.

Intensity policy per source:

- DICOM: stored values go through the modality LUT (rescale slope/intercept or Modality LUT Sequence), then the
  VOI LUT Sequence or the first window (``pydicom.pixels.apply_voi_lut``). The result is scaled by the output
  range that ``BitsStored`` and the modality transform imply, so a 15-bit image is not squeezed into the bottom
  half of a 16-bit range. MONOCHROME1 is inverted. With ``photometric="auto"`` (default) a frontal view is
  then checked against chest anatomy: lungs must be darker than the mediastinum. A file whose tag contradicts
  its pixels (a MONOCHROME1 tag on MONOCHROME2 data, or the reverse) is followed by its pixel data and a
  :class:`PhotometricMismatchWarning` names the file; ``photometric="tag"`` trusts the tag unconditionally.
- PNG/JPEG: 8-bit data is divided by 255, 16-bit data by 65535; colour is converted to luminance.
- NIfTI: data already in ``[0, 1]`` is kept, ``uint8``/``uint16`` data is divided by its type's maximum, any
  other range is min-max scaled with a :class:`IntensityRangeWarning`.

Non-finite pixels (NaN, +-inf; only float NIfTI or float TIFF data can hold them): when at most
``max_nonfinite_fraction`` (default 1 %) of the pixels are non-finite, the image is scaled from its finite pixels,
the non-finite ones are set to 0 (dark, like letterbox padding) and a :class:`NonFiniteIntensityWarning` names the
file and gives the count; above that fraction (an all- or mostly-NaN image) :class:`UnreadableImageError` is raised.

A run-time range check warns (:class:`IntensityRangeWarning`) when the 0.5-99.5 percentile span of the loaded
image is under ``min_dynamic_range``: typical of 12-bit data stored in a 16-bit PNG, or of a wrong window.

DICOM patient identifiers never leave this module: only the keys listed in :data:`CXR_META_KEYS` are written to
the metadata (next to MONAI's own ``affine`` and ``space``), and errors and warnings name the file, never the patient.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from cxrkd_monai.errors import UnreadableImageError

__all__ = [
    "CXR_META_KEYS",
    "IntensityRangeWarning",
    "LoadCXR",
    "LoadCXRd",
    "NonFiniteIntensityWarning",
    "PhotometricMismatchWarning",
    "UnreadableImageError",
]

CXR_META_KEYS = (
    "filename_or_obj",
    "source_format",
    "original_size",
    "pixel_spacing",
    "modality",
    "view_position",
    "spatial_shape",
)
"""The only metadata keys a loaded image carries. ``pixel_spacing`` is ``(x, y)`` in mm, NaN when unknown."""

DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD")
# A frontal chest radiograph has lungs clearly darker than the mediastinum; a reversal beyond this margin (in the
# [0, 1] scale) is taken as a contradiction of the photometric tag, a smaller one as no evidence either way.
PHOTOMETRIC_MARGIN = 0.05


class IntensityRangeWarning(UserWarning):
    """A loaded image whose intensities look un-normalised."""


class PhotometricMismatchWarning(UserWarning):
    """A DICOM photometric tag that contradicts the anatomy in the pixel data."""


class NonFiniteIntensityWarning(UserWarning):
    """An image with a few NaN or infinite pixels, which were set to 0."""


class LoadCXR(Transform):
    """Read one radiograph file into a ``(1, W, H)`` float32 MetaTensor in ``[0, 1]`` (0 dark, 1 bone).

    Args:
        photometric: ``"auto"`` follows the DICOM tag unless the frontal anatomy contradicts it (then the pixel
            data wins and a warning is issued); ``"tag"`` always follows the tag.
        allowed_modalities: DICOM Modality values accepted; anything else raises.
        min_dynamic_range: warn when the 0.5-99.5 percentile span of the loaded image is below this.
        max_nonfinite_fraction: the largest fraction of NaN/infinite pixels that is set to 0 with a
            :class:`NonFiniteIntensityWarning`; more raises :class:`UnreadableImageError`.

    Input: a path (``str`` or ``Path``) to ``.dcm``/``.dicom`` (or any file with the DICOM preamble),
    ``.png``, ``.jpg``/``.jpeg``, ``.nii``/``.nii.gz``.
    Output: ``(1, W, H)`` float32 MetaTensor; ``meta`` holds :data:`CXR_META_KEYS` and MONAI's ``affine``
    (diagonal pixel spacing, 1 where unknown) and nothing else.

    Raises:
        UnreadableImageError: truncated or undecodable file, not a valid DICOM (no pixel data), multi-frame or
            colour DICOM, a modality outside ``allowed_modalities``, an impossible bit depth or rescale, an empty
            or non-2D image, more than ``max_nonfinite_fraction`` non-finite pixels; the message names the file.

    Example::

        image = LoadCXR()("chest.dcm")
        image.shape, image.meta["original_size"]   # (1, W, H), array([W, H])
    """

    def __init__(
        self,
        photometric: str = "auto",
        allowed_modalities: Sequence[str] = ("CR", "DX", "DR"),
        min_dynamic_range: float = 0.2,
        max_nonfinite_fraction: float = 0.01,
    ) -> None:
        if photometric not in ("auto", "tag"):
            raise ValueError(f"photometric must be 'auto' or 'tag', got {photometric!r}.")
        if not 0.0 <= max_nonfinite_fraction < 1.0:
            raise ValueError(f"max_nonfinite_fraction must be in [0, 1), got {max_nonfinite_fraction}.")
        self.photometric = photometric
        self.allowed_modalities = tuple(m.upper() for m in allowed_modalities)
        self.min_dynamic_range = min_dynamic_range
        self.max_nonfinite_fraction = max_nonfinite_fraction

    def __call__(self, path: str | Path) -> MetaTensor:
        path = Path(path)
        if not path.is_file():
            raise UnreadableImageError(f"Image file {str(path)!r} does not exist.")
        source_format = _source_format(path)
        meta = {"modality": "", "view_position": "", "pixel_spacing": (float("nan"), float("nan"))}
        if source_format == "dicom":
            image, dicom_meta = self._read_dicom(path)
            meta.update(dicom_meta)
        elif source_format == "nifti":
            raw, spacing = _read_nifti(path)
            image = self._scale(raw, path)
            meta["pixel_spacing"] = spacing
        else:
            image = self._scale(_read_pil(path), path)
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        self._check_range(image, path)
        width, height = image.shape
        spacing = np.asarray(meta["pixel_spacing"], dtype=np.float64)
        affine = np.diag([*(np.nan_to_num(spacing, nan=1.0)), 1.0, 1.0])
        meta.update(
            filename_or_obj=str(path),
            source_format=source_format,
            original_size=np.array([width, height], dtype=np.int64),
            pixel_spacing=spacing,
            spatial_shape=np.array([width, height], dtype=np.int64),
        )
        return MetaTensor(torch.from_numpy(image[None]), affine=torch.as_tensor(affine), meta=meta)

    def _read_dicom(self, path: Path) -> tuple[np.ndarray, dict]:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut

        try:
            ds = pydicom.dcmread(path)
        except Exception as error:
            raise UnreadableImageError(
                f"DICOM file {str(path)!r} is not a valid DICOM file or is truncated ({path.stat().st_size} bytes): "
                f"{type(error).__name__}: {error}"
            ) from error
        if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise UnreadableImageError(
                f"DICOM file {str(path)!r} is truncated or not a valid DICOM image: no pixel data found in its "
                f"{path.stat().st_size} bytes."
            )
        try:
            modality = str(ds.get("Modality", "")).upper()
            if modality not in self.allowed_modalities:
                raise UnreadableImageError(
                    f"DICOM file {str(path)!r} has Modality {modality or '(missing)'!r}; "
                    f"only {list(self.allowed_modalities)} radiographs are accepted."
                )
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            if frames != 1:
                raise UnreadableImageError(
                    f"DICOM file {str(path)!r} is multi-frame (NumberOfFrames={frames}); "
                    "a chest radiograph is one frame."
                )
            photometric = str(ds.get("PhotometricInterpretation", ""))
            if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("SamplesPerPixel", 1)) != 1:
                raise UnreadableImageError(
                    f"DICOM file {str(path)!r} has PhotometricInterpretation {photometric!r}; "
                    "a radiograph must be MONOCHROME1 or MONOCHROME2."
                )
            low, high = _dicom_output_range(ds)
            stored = ds.pixel_array
            values = apply_voi_lut(apply_modality_lut(stored, ds), ds).astype(np.float64)
            view = str(ds.get("ViewPosition", "")).upper()
            spacing = _dicom_spacing(ds)
        except UnreadableImageError:
            raise
        except Exception as error:
            raise UnreadableImageError(
                f"DICOM file {str(path)!r} cannot be decoded (truncated or corrupt pixel data, or an invalid "
                f"header value): {type(error).__name__}: {error}"
            ) from error
        if stored.ndim != 2 or stored.size == 0:
            raise UnreadableImageError(f"DICOM file {str(path)!r} decodes to shape {stored.shape}, not one 2D frame.")
        if not (np.isfinite(low) and np.isfinite(high) and high > low):
            raise UnreadableImageError(
                f"DICOM file {str(path)!r} has an invalid output range [{low}, {high}] (BitsStored, rescale or LUT "
                "descriptor)."
            )
        if not np.isfinite(values).all():
            raise UnreadableImageError(f"DICOM file {str(path)!r} decodes to non-finite values (rescale or window).")
        image = (values - low) / (high - low)
        if photometric == "MONOCHROME1":
            image = 1.0 - image
        if self.photometric == "auto" and view not in LATERAL_VIEWS:
            contrast = _lung_mediastinum_contrast(np.clip(image, 0.0, 1.0))
            if contrast < -PHOTOMETRIC_MARGIN:
                warnings.warn(
                    f"{str(path)!r}: PhotometricInterpretation {photometric} contradicts the pixel data (lung fields "
                    f"brighter than the mediastinum by {-contrast:.2f}); the image was inverted to follow the "
                    "pixel data. Use photometric='tag' to trust the tag.",
                    PhotometricMismatchWarning,
                    stacklevel=3,
                )
                image = 1.0 - image
        meta = {"modality": modality, "view_position": view, "pixel_spacing": spacing}
        return image.T, meta

    def _scale(self, array: np.ndarray, path: Path) -> np.ndarray:
        """``array`` (float64 or the integer type read from the file) scaled to ``[0, 1]`` under the module's
        intensity and non-finite policies."""
        if array.size == 0:
            raise UnreadableImageError(f"Image file {str(path)!r} has no pixels (shape {array.shape}).")
        if array.dtype in (np.uint8, np.uint16):
            return array.astype(np.float64) / np.iinfo(array.dtype).max
        array = array.astype(np.float64)
        finite = np.isfinite(array)
        nonfinite = int(array.size - np.count_nonzero(finite))
        if nonfinite == 0:
            return _scale_float(array, path)
        if nonfinite > self.max_nonfinite_fraction * array.size:
            raise UnreadableImageError(
                f"Image file {str(path)!r} has {nonfinite} non-finite (NaN or infinite) pixels out of {array.size}, "
                f"more than max_nonfinite_fraction={self.max_nonfinite_fraction}."
            )
        warnings.warn(
            f"{str(path)!r}: {nonfinite} of {array.size} pixels are NaN or infinite; the image is scaled from its "
            "finite pixels and those are set to 0.",
            NonFiniteIntensityWarning,
            stacklevel=3,
        )
        scaled = np.zeros_like(array)
        scaled[finite] = _scale_float(array[finite], path)
        return scaled

    def _check_range(self, image: np.ndarray, path: Path) -> None:
        low, high = np.percentile(image, (0.5, 99.5))
        if high - low < self.min_dynamic_range:
            warnings.warn(
                f"{str(path)!r}: intensities span only [{low:.3f}, {high:.3f}] of [0, 1]; the input looks "
                "un-normalised (e.g. 12-bit data in a 16-bit PNG, or a wrong window).",
                IntensityRangeWarning,
                stacklevel=3,
            )


class LoadCXRd(MapTransform):
    """Dictionary wrapper of :class:`LoadCXR`: replaces the path under each key with the loaded image.

    Input: ``data[key]`` a file path. Output: ``data[key]`` a ``(1, W, H)`` float32 MetaTensor in ``[0, 1]``.

    Example::

        LoadCXRd(keys="image")({"image": "images/p0001_s01.png"})["image"].shape   # (1, W, H)
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        photometric: str = "auto",
        allowed_modalities: Sequence[str] = ("CR", "DX", "DR"),
        min_dynamic_range: float = 0.2,
        max_nonfinite_fraction: float = 0.01,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadCXR(photometric, allowed_modalities, min_dynamic_range, max_nonfinite_fraction)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


def _source_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(".png"):
        return "png"
    if name.endswith((".jpg", ".jpeg")):
        return "jpeg"
    with open(path, "rb") as handle:
        handle.seek(128)
        if handle.read(4) == b"DICM":
            return "dicom"
    raise UnreadableImageError(
        f"Image file {str(path)!r} has no recognised suffix (.dcm, .dicom, .png, .jpg, .jpeg, .nii, .nii.gz) "
        "and no DICOM preamble."
    )


def _dicom_output_range(ds) -> tuple[float, float]:
    """The value range after the modality and VOI transforms, as PS3.3 C.11 defines it from BitsStored."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.BitsStored)
    low, high = (0, 2**bits - 1) if int(ds.PixelRepresentation) == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    # An empty value means absent; a present slope of 0 is kept, and rejected by the caller as an empty range.
    slope = float(ds.RescaleSlope) if ds.get("RescaleSlope") not in (None, "") else 1.0
    intercept = float(ds.RescaleIntercept) if ds.get("RescaleIntercept") not in (None, "") else 0.0
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _dicom_spacing(ds) -> tuple[float, float]:
    """``(x, y)`` spacing in mm from PixelSpacing (row, column order in DICOM), else ImagerPixelSpacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is None or isinstance(value, str) or len(value) != 2:
            continue
        row, column = float(value[0]), float(value[1])
        if np.isfinite(row) and np.isfinite(column) and row > 0 and column > 0:
            return column, row
    return float("nan"), float("nan")


def _lung_mediastinum_contrast(image_rows_cols: np.ndarray) -> float:
    """Median mediastinum minus median lung-field intensity of a frontal view given as ``(rows, columns)``."""
    h, w = image_rows_cols.shape
    rows = slice(int(0.25 * h), int(0.6 * h))
    lungs = np.concatenate(
        [
            image_rows_cols[rows, int(0.15 * w) : int(0.35 * w)].ravel(),
            image_rows_cols[rows, int(0.65 * w) : int(0.85 * w)].ravel(),
        ]
    )
    mediastinum = image_rows_cols[int(0.25 * h) : int(0.75 * h), int(0.45 * w) : int(0.55 * w)]
    if lungs.size == 0 or mediastinum.size == 0:
        return 0.0  # too small an image to hold both regions: no evidence either way
    return float(np.median(mediastinum) - np.median(lungs))


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as pil:
            pil.load()
            if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(pil, dtype=np.float64) / 65535.0
            elif pil.mode == "F":
                array = np.asarray(pil, dtype=np.float64)
            else:
                array = np.asarray(pil.convert("L"), dtype=np.float64) / 255.0
    except Exception as error:
        message = f"Image file {str(path)!r} cannot be decoded: {type(error).__name__}: {error}"
        raise UnreadableImageError(message) from error
    return array.T


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """The stored 2D array (its own dtype; scaling is :meth:`LoadCXR._scale`) and the ``(x, y)`` spacing."""
    import nibabel as nib

    try:
        nifti = nib.load(str(path))
        array = np.asarray(nifti.dataobj)
        zooms = nifti.header.get_zooms()
    except Exception as error:
        message = f"NIfTI file {str(path)!r} cannot be decoded: {type(error).__name__}: {error}"
        raise UnreadableImageError(message) from error
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise UnreadableImageError(f"NIfTI file {str(path)!r} has shape {array.shape}; expected one 2D radiograph.")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise UnreadableImageError(f"NIfTI file {str(path)!r} holds {array.dtype} data; expected a grey-level image.")
    spacing = tuple(float(zoom) if np.isfinite(zoom) and zoom > 0 else float("nan") for zoom in zooms[:2])
    return array, spacing if len(spacing) == 2 else (float("nan"), float("nan"))


def _scale_float(array: np.ndarray, path: Path) -> np.ndarray:
    """Finite float64 ``array`` kept when already in ``[0, 1]``, else min-max scaled to it with a warning."""
    low, high = float(np.min(array)), float(np.max(array))
    if low >= 0.0 and high <= 1.0:
        return array
    warnings.warn(
        f"{str(path)!r}: values span [{low:.4g}, {high:.4g}], outside [0, 1]; min-max scaled to [0, 1].",
        IntensityRangeWarning,
        stacklevel=4,
    )
    # Halves, so that a span wider than the largest float64 (e.g. -1e308 to 1e308) does not overflow to inf.
    half_span = max(0.5 * high - 0.5 * low, np.finfo(np.float64).tiny)
    return (0.5 * array - 0.5 * low) / half_span
