"""Probability-map file names: unique per image path, readable stem."""

import hashlib
from pathlib import Path

from cxrkd_monai.handlers.fracture_prediction_recorder import map_file_name


def test_same_file_name_in_two_folders_gives_two_map_names():
    chexpert = map_file_name("/data/chexpert/patient1/study1/view1_frontal.jpg")
    mimic = map_file_name("/data/mimic/p10/s5/view1_frontal.jpg")
    assert chexpert != mimic
    assert chexpert.startswith("view1_frontal_") and chexpert.endswith("_prob.nii.gz")
    digest = hashlib.sha1(b"/data/chexpert/patient1/study1/view1_frontal.jpg").hexdigest()[:8]
    assert chexpert == f"view1_frontal_{digest}_prob.nii.gz"


def test_stem_drops_only_the_image_suffix():
    assert map_file_name("/d/p0001.s01.nii.gz").startswith("p0001.s01_")
    assert map_file_name("/d/scan.DCM").startswith("scan_")
    # a relative path is hashed as the absolute path it names, so the name does not depend on how it was listed
    assert map_file_name("images/a.png") == map_file_name(str(Path.cwd() / "images" / "a.png"))
