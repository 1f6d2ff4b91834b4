"""Synthetic CR studies from phantom images: a valid single-instance study that loads to the source's intensities."""

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import UID

from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.phantom.dicom import CR_IMAGE_STORAGE, write_phantom_dicom_studies, write_radiograph_dicom
from cxrkd_monai.transforms import LoadCXR


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom_dataset(root, num_patients=10, seed=1, image_size=(80, 64))
    return root


def test_phantom_studies_are_cr_monochrome2_with_their_patient_and_one_study_each(phantom, tmp_path):
    datalist = write_phantom_dicom_studies(phantom / "datalist_vkd.json", tmp_path / "dicom", max_images=2)
    items = json.loads((phantom / "datalist_vkd.json").read_text())["test"][:2]
    written = json.loads(datalist.read_text())["test"]
    assert written == [f"{Path(item['image']).stem}/{Path(item['image']).stem}.dcm" for item in items]
    datasets = [pydicom.dcmread(datalist.parent / relative) for relative in written]
    for item, ds in zip(items, datasets):
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == CR_IMAGE_STORAGE
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert (ds.Modality, ds.PhotometricInterpretation, ds.BodyPartExamined) == ("CR", "MONOCHROME2", "CHEST")
        assert ds.PatientID == item["patient_id"]
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert UID(uid).is_valid
        assert (ds.Rows, ds.Columns) == (64, 80)
        source = np.asarray(Image.open(phantom / item["image"]))
        np.testing.assert_array_equal(ds.pixel_array, source)
    uids = [(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in datasets]
    assert len({uid for triple in uids for uid in triple}) == 6


def test_dicom_loads_to_exactly_the_png_intensities(phantom, tmp_path):
    datalist = write_phantom_dicom_studies(phantom / "datalist_vkd.json", tmp_path / "dicom", max_images=1)
    dicom_file = datalist.parent / json.loads(datalist.read_text())["test"][0]
    png_file = phantom / json.loads((phantom / "datalist_vkd.json").read_text())["test"][0]["image"]
    from_dicom, from_png = LoadCXR()(dicom_file), LoadCXR()(png_file)
    assert from_dicom.meta["source_format"] == "dicom" and from_dicom.meta["modality"] == "CR"
    assert from_dicom.shape == from_png.shape == (1, 80, 64)
    assert np.array_equal(from_dicom.numpy(), from_png.numpy())


def test_sixteen_bit_pixels_are_stored_with_sixteen_bits_and_load_scaled_by_65535(tmp_path):
    pixels = np.linspace(0, 65535, 48 * 40).reshape(40, 48).astype(np.uint16)
    ds = write_radiograph_dicom(pixels, tmp_path / "a.dcm", patient_id="x1")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 16, 15)
    loaded = LoadCXR(photometric="tag")(tmp_path / "a.dcm")
    np.testing.assert_allclose(loaded[0].numpy(), (pixels / 65535.0).T, atol=1e-7)


def test_uids_follow_the_pixels_same_image_same_uids_other_image_other_uids(tmp_path):
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64).astype(np.uint8)
    first = write_radiograph_dicom(pixels, tmp_path / "1.dcm", patient_id="p1")
    again = write_radiograph_dicom(pixels, tmp_path / "2.dcm", patient_id="p1")
    other = write_radiograph_dicom(pixels[::-1].copy(), tmp_path / "3.dcm", patient_id="p1")
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    assert [first[key].value for key in keys] == [again[key].value for key in keys]
    assert not {first[key].value for key in keys} & {other[key].value for key in keys}


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), np.zeros((0, 4), np.uint8)]
)
def test_pixels_other_than_a_2d_grey_image_are_refused_naming_the_file(pixels, tmp_path):
    with pytest.raises(ValueError, match=r"bad\.dcm: a radiograph is a non-empty 2D uint8 or uint16 array"):
        write_radiograph_dicom(pixels, tmp_path / "bad.dcm", patient_id="p1")
    assert not (tmp_path / "bad.dcm").exists()


def test_items_without_patient_and_a_count_below_one_are_refused(phantom, tmp_path):
    with pytest.raises(ValueError, match="max_images must be at least 1, got 0"):
        write_phantom_dicom_studies(phantom / "datalist_vkd.json", tmp_path, max_images=0)
    content = json.loads((phantom / "datalist_vkd.json").read_text())
    content["test"][0].pop("patient_id")
    (phantom / "no_patient.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"no_patient\.json 'test': item .*\.png has no 'patient_id'"):
        write_phantom_dicom_studies(phantom / "no_patient.json", tmp_path)
