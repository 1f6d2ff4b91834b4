"""Fuzzing LoadCXR with generated DICOM, PNG/JPEG and NIfTI files: odd tags, bit depths, NaN, truncation.

The only outcomes allowed: a ``(1, W, H)`` float32 MetaTensor, finite and in ``[0, 1]``, or an
:class:`~cxrkd_monai.errors.UnreadableImageError` naming the file.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from monai.data import MetaTensor
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrkd_monai.errors import UnreadableImageError
from cxrkd_monai.transforms.io import LoadCXR

DICOM_CASES, PIL_CASES, NIFTI_CASES = 160, 140, 140
LOAD = LoadCXR()
NAN, INF = float("nan"), float("inf")


def load_or_named_error(path: Path, width: int, height: int) -> None:
    """Loads ``path``; passes for a valid ``(1, width, height)`` image or an error naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = LOAD(path)
        except UnreadableImageError as error:
            assert path.name in str(error)
            return
    assert isinstance(image, MetaTensor) and image.dtype == torch.float32
    assert tuple(image.shape) == (1, width, height)
    assert torch.isfinite(image).all()
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def cut(path: Path, size: int | None) -> None:
    """Truncate the file at ``path`` to ``size`` bytes (``None`` leaves it whole)."""
    if size is not None:
        path.write_bytes(path.read_bytes()[:size])


@st.composite
def dicom_cases(draw):
    photometric = draw(
        st.sampled_from(["MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL", "PALETTE COLOR", "MONOCHROME3", ""])
    )
    window = st.tuples(st.sampled_from([0.0, 100.0, 2048.0, -5.0, NAN]), st.sampled_from([1.0, 0.0, -10.0, 4096.0]))
    return {
        "rows": draw(st.integers(1, 12)),
        "columns": draw(st.integers(1, 12)),
        "bits_allocated": draw(st.sampled_from([8, 16, 32])),
        "bits_stored_offset": draw(st.integers(-33, 1)),  # BitsStored = BitsAllocated + offset, clipped at 0
        "representation": draw(st.sampled_from([0, 1])),
        "photometric": photometric,
        "samples": draw(st.sampled_from([1, 1, 3])),
        "frames": draw(st.sampled_from([None, 1, 1, 2])),
        "modality": draw(st.sampled_from(["DX", "CR", "DR", "CT", ""])),
        "slope": draw(st.one_of(st.none(), st.sampled_from([1.0, 0.0, -1.0, 2.5, 1e-30, NAN, INF]))),
        "intercept": draw(st.one_of(st.none(), st.sampled_from([0.0, -1024.0, 1e30, NAN]))),
        "window": draw(st.one_of(st.none(), window)),
        "spacing": draw(st.one_of(st.none(), st.sampled_from([[0.1, 0.1], [0.0, -1.0], [NAN, 0.2], [0.3]]))),
        "view": draw(st.sampled_from(["PA", "AP", "LL", ""])),
        "pixel_length_delta": draw(st.sampled_from([0, 0, 0, -1, -6, 4])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "cut": draw(st.one_of(st.none(), st.none(), st.integers(0, 3000))),
    }


def write_dicom(path: Path, case: dict) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(case["seed"])])
    ds.Modality = case["modality"]
    ds.ViewPosition = case["view"]
    ds.Rows, ds.Columns = case["rows"], case["columns"]
    ds.SamplesPerPixel = case["samples"]
    ds.PhotometricInterpretation = case["photometric"]
    ds.BitsAllocated = case["bits_allocated"]
    ds.BitsStored = max(0, case["bits_allocated"] + case["bits_stored_offset"])
    ds.HighBit = max(0, ds.BitsStored - 1)
    ds.PixelRepresentation = case["representation"]
    if case["samples"] > 1:
        ds.PlanarConfiguration = 0
    if case["frames"] is not None:
        ds.NumberOfFrames = case["frames"]
    if case["slope"] is not None:
        ds.RescaleSlope = case["slope"]
    if case["intercept"] is not None:
        ds.RescaleIntercept = case["intercept"]
    if case["window"] is not None:
        ds.WindowCenter, ds.WindowWidth = case["window"]
    if case["spacing"] is not None:
        ds.PixelSpacing = case["spacing"]
    length = (
        case["rows"] * case["columns"] * case["samples"] * (case["frames"] or 1) * case["bits_allocated"] // 8
        + case["pixel_length_delta"]
    )
    pixels = np.random.default_rng(case["seed"]).integers(0, 256, size=max(length, 0), dtype=np.uint8).tobytes()
    ds.PixelData = pixels + (b"\0" if len(pixels) % 2 else b"")
    ds["PixelData"].VR = "OB" if case["bits_allocated"] == 8 else "OW"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    cut(path, case["cut"])


def test_dicom_loader_gives_a_valid_image_or_a_named_error(tmp_path, case_counter, fuzz_settings):
    path = tmp_path / "case.dcm"
    count = case_counter("dicom")

    @fuzz_settings(DICOM_CASES)
    @given(dicom_cases())
    def run(case):
        count()
        write_dicom(path, case)
        load_or_named_error(path, case["columns"], case["rows"])

    run()
    assert count.cases >= DICOM_CASES


@st.composite
def pil_cases(draw):
    return {
        "mode": draw(st.sampled_from(["L", "1", "P", "LA", "RGB", "RGBA", "I;16", "I", "CMYK", "F"])),
        "suffix": draw(st.sampled_from([".png", ".jpg", ".jpeg"])),
        "width": draw(st.integers(1, 16)),
        "height": draw(st.integers(1, 16)),
        "value_range": draw(st.sampled_from([(0.0, 1.0), (-500.0, 4000.0), (0.0, 0.0), (-1e300, 1e300)])),
        "nonfinite": draw(st.sampled_from(["none", "none", "one_nan", "one_inf", "half_nan", "all_nan"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "cut": draw(st.one_of(st.none(), st.none(), st.integers(0, 600))),
    }


def inject_nonfinite(array: np.ndarray, how: str) -> np.ndarray:
    flat = array.reshape(-1).copy()
    if how == "one_nan":
        flat[0] = NAN
    elif how == "one_inf":
        flat[-1] = INF
    elif how == "half_nan":
        flat[: (flat.size + 1) // 2] = NAN
    elif how == "all_nan":
        flat[:] = NAN
    return flat.reshape(array.shape)


def write_pil(path: Path, case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    size = (case["height"], case["width"])
    mode = case["mode"]
    if mode == "F":
        # Float data only fits a TIFF; written under a PNG/JPEG name, as a mislabelled file would be.
        low, high = case["value_range"]
        values = inject_nonfinite(rng.uniform(low, high, size=size).astype(np.float32), case["nonfinite"])
        Image.fromarray(values, mode="F").save(path, format="TIFF")
    elif mode == "I":
        # 32-bit integers: a TIFF under a PNG/JPEG name too.
        Image.fromarray(rng.integers(-(2**31), 2**31 - 1, size=size, dtype=np.int32), mode="I").save(path, "TIFF")
    else:
        maximum = {"I;16": 65535, "I": 2**31 - 1}.get(mode, 255)
        channels = {"LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode, 1)
        values = rng.integers(0, maximum, size=(*size, channels), endpoint=True)
        if channels == 1:
            image = Image.new(mode, (case["width"], case["height"]))
            image.putdata(values.reshape(-1).tolist())
        else:
            image = Image.fromarray(values.astype(np.uint8), mode=mode)
        jpeg_modes = ("L", "RGB", "CMYK")
        image_format = "JPEG" if path.suffix != ".png" and mode in jpeg_modes else "PNG"
        if image_format == "PNG" and mode == "CMYK":
            image = image.convert("RGB")
        image.save(path, format=image_format)
    cut(path, case["cut"])


def test_png_and_jpeg_loader_gives_a_valid_image_or_a_named_error(tmp_path, case_counter, fuzz_settings):
    count = case_counter("png_jpeg")

    @fuzz_settings(PIL_CASES)
    @given(pil_cases())
    def run(case):
        count()
        path = tmp_path / f"case{case['suffix']}"
        write_pil(path, case)
        load_or_named_error(path, case["width"], case["height"])

    run()
    assert count.cases >= PIL_CASES


@st.composite
def nifti_cases(draw):
    width, height = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return {
        "dtype": draw(st.sampled_from(["uint8", "uint16", "int16", "int32", "float32", "float64", "complex64"])),
        "shape": draw(
            st.sampled_from([(width, height), (width, height, 1), (width, height, 1, 1), (width, height, 2), (width,)])
        ),
        "value_range": draw(st.sampled_from([(0.0, 1.0), (-1000.0, 3000.0), (5.0, 5.0), (-1e300, 1e300)])),
        "nonfinite": draw(st.sampled_from(["none", "none", "one_nan", "one_inf", "half_nan", "all_nan"])),
        "suffix": draw(st.sampled_from([".nii", ".nii.gz"])),
        "zooms": draw(st.sampled_from([(0.2, 0.3), (0.0, 1.0), (NAN, 1.0)])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "cut": draw(st.one_of(st.none(), st.none(), st.integers(0, 800))),
    }


def write_nifti(path: Path, case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    dtype = np.dtype(case["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(max(info.min, -(2**31)), min(info.max, 2**31 - 1), size=case["shape"], endpoint=True)
    else:
        low, high = case["value_range"]
        values = inject_nonfinite(rng.uniform(low, high, size=case["shape"]), case["nonfinite"])
        if dtype == np.float32:
            values = np.clip(values, -3e38, 3e38)  # keep finite values finite in float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nib.save(nib.Nifti1Image(values.astype(dtype), np.eye(4)), path)
    # pixdim[1:3] (bytes 80-87 of the NIfTI-1 header) set directly: nibabel refuses to write a zero or NaN zoom.
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    raw = raw[:80] + struct.pack("<2f", *case["zooms"]) + raw[88:]
    path.write_bytes(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)
    cut(path, case["cut"])


def test_nifti_loader_gives_a_valid_image_or_a_named_error(tmp_path, case_counter, fuzz_settings):
    count = case_counter("nifti")

    @fuzz_settings(NIFTI_CASES)
    @given(nifti_cases())
    def run(case):
        count()
        path = tmp_path / f"case{case['suffix']}"
        write_nifti(path, case)
        shape = case["shape"]
        load_or_named_error(path, shape[0], shape[1] if len(shape) > 1 else 1)

    run()
    assert count.cases >= NIFTI_CASES
