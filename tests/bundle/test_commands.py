import json
import logging
import shutil
import sys
from pathlib import Path

import fire
import pytest

from cxrkd_monai.bundle.commands import bundle_arguments, bundle_command, run_bundle_in_process, run_bundle_subprocess
from tests.conftest import VKD_CONFIGS

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


def _tiny_bundle(root: Path, run: list[str]) -> Path:
    """A bundle folder whose ``configs/run.json`` evaluates the ``run`` expressions, with the VKD logging.conf."""
    (root / "configs").mkdir(parents=True)
    shutil.copy(VKD_CONFIGS / "logging.conf", root / "configs" / "logging.conf")
    (root / "configs" / "run.json").write_text(json.dumps({"imports": ["$import logging"], "run": run}))
    return root


def test_an_in_process_run_appends_its_records_to_the_log_and_a_failure_names_it(tmp_path):
    say = "$logging.getLogger('tiny_bundle').warning('reached step ' + str(@step))"
    bundle = _tiny_bundle(tmp_path / "bundle", [say])
    log = tmp_path / "logs" / "run.log"
    assert run_bundle_in_process(bundle, ["run.json"], log, step=1) >= 0.0
    text = log.read_text()
    assert text.startswith("$ monai.bundle.run in process: --config_file") and "reached step 1" in text

    broken = _tiny_bundle(tmp_path / "broken", [say, "$int('not a number')"])
    with pytest.raises(RuntimeError, match=r"broken \['run.json'\] failed in this process; log .*run.log") as raised:
        run_bundle_in_process(broken, ["run.json"], log, step=2)
    assert "int('not a number')" in str(raised.value.__cause__)  # the bundle's own error, chained
    assert "reached step 1" in log.read_text() and "reached step 2" in log.read_text()  # appended, not replaced
    assert all(not isinstance(h, logging.FileHandler) for h in logging.getLogger().handlers)  # detached again


@pytest.mark.slow
def test_a_subprocess_run_appends_its_output_to_the_log_and_a_failure_quotes_it(tmp_path):
    say = "$logging.getLogger('tiny_bundle').warning('reached step ' + str(@step))"
    log = tmp_path / "logs" / "run.log"
    assert run_bundle_subprocess(_tiny_bundle(tmp_path / "bundle", [say]), ["run.json"], log, step=1) > 0.0
    text = log.read_text()
    assert text.startswith(f"$ {sys.executable} -m monai.bundle run --config_file") and "reached step 1" in text

    broken = _tiny_bundle(tmp_path / "broken", [say, "$int('not a number')"])
    with pytest.raises(RuntimeError, match=r"broken \['run.json'\] failed \(exit 1\); log .*run.log") as raised:
        run_bundle_subprocess(broken, ["run.json"], log, step=2)
    assert "reached step 2" in str(raised.value) and "not a number" in str(raised.value)  # the log's end, quoted
    assert "reached step 1" in log.read_text()  # appended, not replaced
