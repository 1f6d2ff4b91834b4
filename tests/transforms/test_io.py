import logging
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import PILReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from cxrkd_monai.errors import InputError
from cxrkd_monai.transforms.geometry import Letterboxd, LetterboxGeometry
from cxrkd_monai.transforms.io import (
    IntensityRangeWarning,
    LoadCXR,
    LoadCXRd,
    NonFiniteIntensityWarning,
    PhotometricMismatchWarning,
    UnreadableImageError,
)

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr_format_samples"
TRUE_MONOCHROME1 = SAMPLES / "pydicom_data_RG1_UNCI_cr_chest.dcm"
JPEG_BASELINE = SAMPLES / "siim_cr_chest_pa_jpegbaseline.dcm"
FALSE_MONOCHROME1 = SAMPLES / "siim_cr_chest_pa_monochrome1_fake.dcm"
NIH_PNG = SAMPLES / "nih_00000001_000.png"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real format samples not found at {SAMPLES}")

# Regions read off the images by eye, as (x slice, y slice) on the loaded (W, H) grid.
RG1_LUNG, RG1_SPINE = (slice(350, 550), slice(700, 1000)), (slice(880, 960), slice(1100, 1300))
SIIM_LUNG, SIIM_SPINE = (slice(220, 340), slice(380, 560)), (slice(490, 535), slice(400, 640))


def write_dicom(path, pixels, modality="DX", photometric="MONOCHROME2", bits_stored=12, frames=1, **tags):
    """A minimal uncompressed DICOM of ``pixels`` (rows, columns) with made-up patient identifiers."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "ID-4711-XYZ", "19700101"
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def ramp(rows=40, columns=48, maximum=4095):
    return (np.arange(rows * columns).reshape(rows, columns) * 7 % (maximum + 1)).astype(np.uint16)


def chest_phantom(size=64):
    """Display-oriented (rows, columns) 12-bit frontal chest: dark lung fields either side of a bright mediastinum."""
    image = np.full((size, size), 2500, dtype=np.uint16)
    image[int(0.2 * size) : int(0.7 * size), int(0.1 * size) : int(0.4 * size)] = 600
    image[int(0.2 * size) : int(0.7 * size), int(0.6 * size) : int(0.9 * size)] = 600
    image[:, int(0.44 * size) : int(0.56 * size)] = 3800
    return image


@needs_samples
def test_true_monochrome1_cr_loads_with_dark_lungs_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = LoadCXR()(TRUE_MONOCHROME1)
    assert image.shape == (1, 1841, 1955) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert image[0][RG1_LUNG].mean() + 0.2 < image[0][RG1_SPINE].mean()
    assert image.meta["original_size"].tolist() == [1841, 1955]
    assert image.meta["source_format"] == "dicom" and image.meta["modality"] == "CR"
    # The file's PixelSpacing is 0\0, which means unknown.
    assert np.isnan(image.meta["pixel_spacing"]).all()


@needs_samples
def test_true_monochrome1_follows_window_and_bits_stored():
    ds = pydicom.dcmread(TRUE_MONOCHROME1)
    stored = ds.pixel_array.astype(np.float64)
    # Window 15000/30000 (LINEAR) on a 15-bit range, then MONOCHROME1 inversion.
    windowed = np.clip(((stored - 14999.5) / 29999 + 0.5), 0, 1)
    expected = 1.0 - windowed
    image = LoadCXR()(TRUE_MONOCHROME1)[0].numpy()
    np.testing.assert_allclose(image, expected.T, atol=1e-4)


@needs_samples
def test_jpeg_baseline_dicom_keeps_spacing_and_matches_pixel_data():
    image = LoadCXR()(JPEG_BASELINE)
    ds = pydicom.dcmread(JPEG_BASELINE)
    np.testing.assert_allclose(image[0].numpy(), ds.pixel_array.T / 255.0, atol=1e-6)
    assert image.meta["pixel_spacing"].tolist() == [0.168, 0.168]
    assert image[0][SIIM_LUNG].mean() + 0.2 < image[0][SIIM_SPINE].mean()


@needs_samples
def test_false_monochrome1_follows_pixel_data_by_default_and_the_tag_on_request():
    with pytest.warns(PhotometricMismatchWarning, match="siim_cr_chest_pa_monochrome1_fake.dcm"):
        auto = LoadCXR()(FALSE_MONOCHROME1)
    truth = LoadCXR()(JPEG_BASELINE)
    assert torch.equal(auto.as_tensor(), truth.as_tensor())
    assert auto[0][SIIM_LUNG].mean() + 0.2 < auto[0][SIIM_SPINE].mean()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tagged = LoadCXR(photometric="tag")(FALSE_MONOCHROME1)
    np.testing.assert_allclose(tagged.numpy(), 1.0 - truth.numpy(), atol=1e-6)
    assert tagged[0][SIIM_LUNG].mean() > tagged[0][SIIM_SPINE].mean()


def test_auto_photometric_check_covers_both_tags_and_skips_lateral_views(tmp_path):
    phantom = chest_phantom()
    write_dicom(tmp_path / "true_m2.dcm", phantom)
    write_dicom(tmp_path / "true_m1.dcm", 4095 - phantom, photometric="MONOCHROME1")
    write_dicom(tmp_path / "false_m2.dcm", 4095 - phantom)
    write_dicom(tmp_path / "lateral_m2.dcm", 4095 - phantom, ViewPosition="LL")
    expected = phantom.T / 4095.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(LoadCXR()(tmp_path / "true_m2.dcm")[0].numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(LoadCXR()(tmp_path / "true_m1.dcm")[0].numpy(), expected, atol=1e-6)
        # No anatomical prior for a lateral view: the tag is followed.
        np.testing.assert_allclose(LoadCXR()(tmp_path / "lateral_m2.dcm")[0].numpy(), 1 - expected, atol=1e-6)
    with pytest.warns(PhotometricMismatchWarning, match="MONOCHROME2 contradicts"):
        np.testing.assert_allclose(LoadCXR()(tmp_path / "false_m2.dcm")[0].numpy(), expected, atol=1e-6)


@needs_samples
def test_png_matches_monai_pil_reader_orientation():
    ours = LoadCXRd(keys="image")({"image": str(NIH_PNG)})["image"]
    monai = Compose([LoadImaged("image", reader=PILReader()), EnsureChannelFirstd("image")])({"image": str(NIH_PNG)})
    assert ours.shape == monai["image"].shape == (1, 512, 512)
    np.testing.assert_allclose(ours.numpy(), monai["image"].numpy() / 255.0, atol=1e-6)
    assert ours.meta["source_format"] == "png"


def test_png_axis_zero_is_the_column(tmp_path):
    pixels = np.zeros((20, 30), dtype=np.uint8)  # rows (y), columns (x)
    pixels[5, 25] = 255
    Image.fromarray(pixels).save(tmp_path / "dot.png")
    with pytest.warns(IntensityRangeWarning):
        image = LoadCXR()(tmp_path / "dot.png")
    assert image.shape == (1, 30, 20)
    assert image[0, 25, 5] == 1.0 and image.sum() == 1.0


def test_sixteen_bit_png_scales_by_65535_and_twelve_bit_content_warns(tmp_path):
    full = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(full).save(tmp_path / "full.png")
    image = LoadCXR()(tmp_path / "full.png")
    np.testing.assert_allclose(image[0].numpy(), full.T / 65535.0, atol=1e-6)

    Image.fromarray((full >> 4).astype(np.uint16)).save(tmp_path / "twelve.png")
    with pytest.warns(IntensityRangeWarning, match="twelve.png"):
        LoadCXR()(tmp_path / "twelve.png")


def test_nifti_keeps_axes_and_unit_range(tmp_path):
    array = np.random.default_rng(0).random((30, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.diag([0.2, 0.3, 1, 1])), tmp_path / "cxr.nii.gz")
    image = LoadCXR()(tmp_path / "cxr.nii.gz")
    assert image.shape == (1, 30, 20)
    np.testing.assert_allclose(image[0].numpy(), array, atol=1e-6)
    np.testing.assert_allclose(image.meta["pixel_spacing"], [0.2, 0.3], atol=1e-6)


def test_nifti_out_of_range_is_rescaled_with_warning(tmp_path):
    array = np.linspace(-1000, 3000, 32 * 32).reshape(32, 32).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "raw.nii")
    with pytest.warns(IntensityRangeWarning, match="outside"):
        image = LoadCXR()(tmp_path / "raw.nii")
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_dicom_rescale_and_bits_stored_scaling(tmp_path):
    pixels = ramp()
    write_dicom(tmp_path / "plain.dcm", pixels, bits_stored=12)
    image = LoadCXR(photometric="tag")(tmp_path / "plain.dcm")
    np.testing.assert_allclose(image[0].numpy(), pixels.T / 4095.0, atol=1e-6)

    # Rescale maps stored [0, 4095] to [-1024, 3071]; without a window that is the output range.
    write_dicom(tmp_path / "rescaled.dcm", pixels, RescaleSlope=1, RescaleIntercept=-1024)
    rescaled = LoadCXR(photometric="tag")(tmp_path / "rescaled.dcm")
    np.testing.assert_allclose(rescaled[0].numpy(), pixels.T / 4095.0, atol=1e-6)


def test_dicom_window_and_monochrome1(tmp_path):
    pixels = ramp()
    write_dicom(tmp_path / "w.dcm", pixels, photometric="MONOCHROME1", WindowCenter=2048, WindowWidth=1024)
    image = LoadCXR(photometric="tag")(tmp_path / "w.dcm")[0].numpy()
    windowed = np.clip((pixels - 2047.5) / 1023 + 0.5, 0, 1)
    np.testing.assert_allclose(image, 1.0 - windowed.T, atol=1e-4)


def test_jpeg2000_dicom_decodes(tmp_path):
    pixels = ramp(48, 40)
    ds = write_dicom(tmp_path / "raw.dcm", pixels)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "j2k.dcm").file_meta.TransferSyntaxUID == JPEG2000Lossless
    decoded = LoadCXR(photometric="tag")(tmp_path / "j2k.dcm")
    np.testing.assert_allclose(decoded[0].numpy(), pixels.T / 4095.0, atol=1e-6)


def test_wrong_modality_multiframe_truncated_and_unreadable_files_name_the_file(tmp_path):
    write_dicom(tmp_path / "ct.dcm", ramp(), modality="CT")
    with pytest.raises(UnreadableImageError, match=r"ct\.dcm.*Modality 'CT'"):
        LoadCXR()(tmp_path / "ct.dcm")

    write_dicom(tmp_path / "cine.dcm", np.stack([ramp(), ramp()]), frames=2)
    with pytest.raises(UnreadableImageError, match=r"cine\.dcm.*multi-frame"):
        LoadCXR()(tmp_path / "cine.dcm")

    full = (tmp_path / "plain.dcm")
    write_dicom(full, ramp())
    (tmp_path / "truncated.dcm").write_bytes(full.read_bytes()[:-1500])
    with pytest.raises(UnreadableImageError, match=r"truncated\.dcm"):
        LoadCXR()(tmp_path / "truncated.dcm")

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(UnreadableImageError, match=r"broken\.png"):
        LoadCXR()(tmp_path / "broken.png")

    with pytest.raises(UnreadableImageError, match=r"absent\.png.*does not exist"):
        LoadCXR()(tmp_path / "absent.png")


@needs_samples
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")  # pydicom on the cut JPEG fragments
@pytest.mark.parametrize("sample", [TRUE_MONOCHROME1, JPEG_BASELINE], ids=["uncompressed", "jpeg-baseline"])
@pytest.mark.parametrize("size", [600, 3000])
def test_real_dicom_cut_short_is_reported_as_truncated_not_as_a_modality(tmp_path, sample, size):
    # Cut to 600 bytes the header ends before Modality (or just after it), and there is no pixel data at all.
    cut = tmp_path / f"cut_{size}.dcm"
    cut.write_bytes(sample.read_bytes()[:size])
    message = r"cut_\d+\.dcm' (is truncated|cannot be decoded|is not a valid)"
    with pytest.raises(UnreadableImageError, match=message) as error:
        LoadCXR()(cut)
    assert "Modality" not in str(error.value)
    assert "truncated" in str(error.value)


def test_file_that_is_no_dicom_at_all_names_the_file(tmp_path):
    (tmp_path / "text.dcm").write_text("not a DICOM file")
    with pytest.raises(UnreadableImageError, match=r"text\.dcm' is not a valid DICOM file or is truncated"):
        LoadCXR()(tmp_path / "text.dcm")


def test_dicom_with_zero_rescale_slope_is_rejected(tmp_path):
    write_dicom(tmp_path / "flat.dcm", ramp(), RescaleSlope=0, RescaleIntercept=5)
    with pytest.raises(UnreadableImageError, match=r"flat\.dcm' has an invalid output range \[5\.0, 5\.0\]"):
        LoadCXR()(tmp_path / "flat.dcm")


def test_a_few_nan_pixels_are_set_to_zero_and_counted_in_a_warning(tmp_path):
    array = np.linspace(-100.0, 300.0, 20 * 10).reshape(20, 10).astype(np.float32)
    array[3, 4] = np.nan  # one pixel in 200 = 0.5 %, under the 1 % default
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "one_nan.nii")
    with (
        pytest.warns(IntensityRangeWarning, match=r"values span \[-100, 300\]"),
        pytest.warns(NonFiniteIntensityWarning, match=r"one_nan\.nii.*1 of 200 pixels are NaN or infinite"),
    ):
        image = LoadCXR()(tmp_path / "one_nan.nii")
    assert torch.isfinite(image).all()
    expected = (array.astype(np.float64) + 100.0) / 400.0  # min-max of the finite pixels: -100 and 300
    expected[3, 4] = 0.0
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "fill"),
    [("all_nan", lambda a: a.fill(np.nan)), ("half_inf", lambda a: a.__setitem__(slice(0, 10), np.inf))],
)
def test_an_all_or_mostly_non_finite_image_is_an_error(tmp_path, name, fill):
    array = np.ones((20, 10), dtype=np.float32)
    fill(array)
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / f"{name}.nii")
    with pytest.raises(UnreadableImageError, match=rf"{name}\.nii.*non-finite.*max_nonfinite_fraction=0\.01"):
        LoadCXR()(tmp_path / f"{name}.nii")


def test_nonfinite_fraction_is_configurable(tmp_path):
    array = np.full((10, 10), 0.5, dtype=np.float32)
    array[0, :5] = np.nan  # 5 %
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "five.nii")
    with pytest.raises(UnreadableImageError, match="5 non-finite"):
        LoadCXR()(tmp_path / "five.nii")
    with pytest.warns(NonFiniteIntensityWarning):
        image = LoadCXRd("image", max_nonfinite_fraction=0.1)({"image": tmp_path / "five.nii"})["image"]
    assert float(image[0, 0, 0]) == 0.0 and float(image[0, 9, 9]) == 0.5
    with pytest.raises(ValueError, match="max_nonfinite_fraction"):
        LoadCXR(max_nonfinite_fraction=1.0)


def test_image_read_errors_are_documented_input_errors():
    assert issubclass(UnreadableImageError, InputError) and issubclass(UnreadableImageError, ValueError)


def test_patient_identifiers_reach_neither_metadata_nor_logs(tmp_path, caplog):
    # Display-oriented pixels under a MONOCHROME1 tag: the loader warns, naming the file and nothing else.
    ds = write_dicom(tmp_path / "who.dcm", chest_phantom(), photometric="MONOCHROME1", AccessionNumber="ACC-99")
    identifiers = [str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, "ACC-99"]
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = LoadCXRd(keys="image")({"image": str(tmp_path / "who.dcm")})["image"]
    emitted = " ".join([caplog.text, *(str(w.message) for w in caught), repr(image.meta), str(image.meta)])
    assert [w.category for w in caught] == [PhotometricMismatchWarning] and "who.dcm" in str(caught[0].message)
    assert set(image.meta) <= {"filename_or_obj", "source_format", "original_size", "pixel_spacing", "modality",
                               "view_position", "spatial_shape", "affine", "space"}
    for identifier in identifiers:
        assert identifier not in emitted


@needs_samples
def test_boxes_and_points_round_trip_through_letterbox_on_a_real_radiograph():
    data = LoadCXRd(keys="image")({"image": str(TRUE_MONOCHROME1)})
    boxes = np.array([[100.0, 200.0, 400.5, 900.0, 0], [1500.2, 10.0, 1840.0, 1954.0, 1]])
    points = np.array([[0.5, 0.5, 0], [1840.5, 1954.5, 1], [920.0, 977.5, 0]])
    out = Letterboxd("image", spatial_size=64, box_keys="boxes", point_keys="points")(
        {**data, "boxes": boxes.copy(), "points": points.copy()}
    )
    assert out["image"].shape == (1, 64, 64)
    geometry = LetterboxGeometry.from_tensor(out["geometry"])
    assert geometry.original_size == (1841, 1955)
    np.testing.assert_allclose(geometry.boxes_to_original(out["boxes"])[:, :4], boxes[:, :4], atol=1.0)
    np.testing.assert_allclose(geometry.to_original(out["points"][:, :2]), points[:, :2], atol=1.0)
    # The image keeps its aspect ratio: padding only along x, the shorter side.
    assert geometry.pad_before[0] > 0 and geometry.pad_before[1] == 0
