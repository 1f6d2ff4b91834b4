import sys
from pathlib import Path

import fire

from cxrkd_monai.bundle.commands import bundle_arguments, bundle_command

BUNDLE = Path("bundles") / "cxr_aals_fracture_detection"


def test_command_line_values_reach_the_bundle_as_the_in_process_arguments():
    overrides = {"pretrained": False, "backbone_weights": None, "image_size": [64, 64], "class_names": ["fracture"],
                 "learning_rate": 1e-4, "dataset_dir": "/data/fracatlas"}  # fmt: skip
    command = bundle_command(BUNDLE, ["train_teacher.json", "train_student.json"], **overrides)
    assert command[:4] == [sys.executable, "-m", "monai.bundle", "run"]
    # monai.bundle parses its command line with fire: the values must come back with their types
    parsed = fire.Fire(lambda **kwargs: kwargs, command=command[4:], name="run")
    assert parsed == bundle_arguments(BUNDLE, ["train_teacher.json", "train_student.json"], **overrides)
    assert parsed["config_file"] == [str(BUNDLE / "configs" / "train_teacher.json"),
                                     str(BUNDLE / "configs" / "train_student.json")]  # fmt: skip
    assert parsed["pretrained"] is False and parsed["backbone_weights"] is None
