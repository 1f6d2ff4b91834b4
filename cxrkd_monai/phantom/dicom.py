"""Synthetic DICOM chest radiographs made from the phantom's images, so that DICOM in, DICOM SR out can be tried
without any patient data.

Each image becomes one CR instance (Computed Radiography Image Storage, ``MONOCHROME2``, ``BitsStored`` equal to
the image's bit depth, no rescale and no window), alone in its own study and series. Read back by
:class:`~cxrkd_monai.transforms.LoadCXR`, such a file gives exactly the intensities of its source image: stored
values divided by ``2**BitsStored - 1``, as a PNG's are divided by its type's maximum.

The study, series and instance UIDs are derived from the pixel data (``pydicom.uid.generate_uid`` with the pixels'
digest as entropy), so writing the same image again gives the same UIDs and different images never share one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from cxrkd_monai.data.datalist import load_datalist

__all__ = ["CR_IMAGE_STORAGE", "write_phantom_dicom_studies", "write_radiograph_dicom"]

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
"""SOP Class UID of Computed Radiography Image Storage."""

SYNTHETIC_DESCRIPTION = "Synthetic phantom radiograph, not a patient image"


def write_radiograph_dicom(
    pixels: np.ndarray,
    path: str | Path,
    patient_id: str,
    study_date: str = "20260101",
    series_description: str = SYNTHETIC_DESCRIPTION,
) -> Dataset:
    """Write one frontal (PA) chest radiograph as a single-instance CR study.

    Args:
        pixels: ``(rows, columns)`` = ``(H, W)`` array of ``uint8`` or ``uint16``, 0 dark (air), the maximum bright
            (bone); stored as is, ``BitsAllocated`` = ``BitsStored`` = the type's bit depth.
        path: the file to write (parent folders are created).
        patient_id: ``PatientID``; ``PatientName`` is ``Phantom^<patient_id>``.
        study_date: ``StudyDate`` (``YYYYMMDD``).
        series_description: ``SeriesDescription``, saying that the image is synthetic.

    Returns:
        the dataset written, with its ``StudyInstanceUID``, ``SeriesInstanceUID`` and ``SOPInstanceUID``.

    Raises:
        ValueError: ``pixels`` is not a 2D ``uint8``/``uint16`` array, naming ``path``, its shape and dtype.

    Example::

        ds = write_radiograph_dicom(np.asarray(Image.open("images/p0001_s01.png")), "dicom/p0001_s01.dcm", "p0001")
        ds.Modality, ds.PhotometricInterpretation   # ('CR', 'MONOCHROME2')
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16) or pixels.size == 0:
        raise ValueError(
            f"{path}: a radiograph is a non-empty 2D uint8 or uint16 array (rows, columns), got shape "
            f"{pixels.shape} and dtype {pixels.dtype}."
        )
    digest = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
    bits = pixels.dtype.itemsize * 8

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[digest, "instance"])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[digest, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[digest, "series"])
    ds.PatientName = f"Phantom^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Chest PA"
    ds.SeriesDescription = series_description
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "cxrkd-monai phantom"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    # PA view as read: columns run towards the patient's left, rows towards the feet
    ds.PatientOrientation = ["L", "F"]
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(size) for size in pixels.shape)
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_phantom_dicom_studies(
    datalist: str | Path, output_dir: str | Path, key: str = "test", max_images: int = 3
) -> Path:
    """Write the first ``max_images`` images of a phantom datalist's ``key`` list as DICOM studies.

    Output in ``output_dir``:

    - ``<image stem>/<image stem>.dcm``: one folder per study (a MONAI Deploy app reads one study's folder);
    - ``datalist.json``: ``{"test": ["<image stem>/<image stem>.dcm", ...]}``, the datalist a bundle's
      ``inference.json`` reads with ``--datalist``.

    Args:
        datalist: a datalist written by :func:`cxrkd_monai.phantom.generate_phantom_dataset` (8-bit PNG images
            and a ``patient_id`` per item).
        output_dir: the folder to write into (created).
        key: the datalist list to take the images from.
        max_images: how many images to write, at least 1.

    Returns:
        the path of ``datalist.json``.

    Raises:
        ValueError: ``max_images`` below 1, or an item without ``patient_id`` (naming the datalist and the image).
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}.")
    output_dir = Path(output_dir)
    written = []
    for item in load_datalist(str(datalist), key)[:max_images]:
        if not item.get("patient_id"):
            raise ValueError(f"Datalist {datalist} '{key}': item {item['image']} has no 'patient_id'.")
        image = Path(item["image"])
        with Image.open(image) as source:
            pixels = np.asarray(source)
        relative = Path(image.stem) / f"{image.stem}.dcm"
        write_radiograph_dicom(pixels, output_dir / relative, patient_id=str(item["patient_id"]))
        written.append(relative.as_posix())
    datalist_path = output_dir / "datalist.json"
    datalist_path.write_text(json.dumps({"test": written}, indent=2) + "\n")
    return datalist_path
