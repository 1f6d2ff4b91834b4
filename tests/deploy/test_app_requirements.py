"""The Deploy apps' requirements.txt: generated from setup.cfg, and enough for the package and each app to run.

``requirements_only.py`` runs a module able to import only what a requirements file installs (plus the MONAI
Deploy App SDK), the way an application package built from it would. The app runs need the SDK (``.venv-deploy``);
the rest run in the core environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxrkd_monai.deploy.app_requirements import APP_FOLDERS, app_requirements, requirements_text
from cxrkd_monai.phantom.dicom import write_radiograph_dicom

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS_ONLY = Path(__file__).resolve().with_name("requirements_only.py")
VKD_REQUIREMENTS = REPO / "deploy" / "cxr_vkd_app" / "requirements.txt"


def run_with_requirements_only(requirements: Path, module: str, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REQUIREMENTS_ONLY), str(requirements), module, *arguments]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("app", APP_FOLDERS)
def test_app_requirements_are_the_ones_generated_from_setup_cfg(app):
    written = (REPO / "deploy" / app / "requirements.txt").read_text()
    assert written == requirements_text(REPO / "setup.cfg"), (
        f"deploy/{app}/requirements.txt differs from setup.cfg; run python -m cxrkd_monai.deploy.app_requirements"
    )


def test_app_requirements_are_install_requires_then_the_extras_less_the_packager(tmp_path):
    setup_cfg = tmp_path / "setup.cfg"
    setup_cfg.write_text(
        "[options]\ninstall_requires =\n    torch>=2.3\n    pydicom>=2.4\n    # a comment\n    numpy\n"
        "[options.extras_require]\nonnx =\n    onnxruntime\n    numpy\n"
        "deploy =\n    monai-deploy-app-sdk==4.0.0\n    Holoscan_CLI==4.2.0\n    highdicom>=0.22\n"
        "report =\n    matplotlib\n"
    )
    assert app_requirements(setup_cfg) == ["torch>=2.3", "pydicom>=2.4", "numpy", "onnxruntime", "highdicom>=0.22"]
    assert app_requirements(setup_cfg, extras=()) == ["torch>=2.3", "pydicom>=2.4", "numpy"]
    with pytest.raises(KeyError, match=r"setup\.cfg has no extra 'tracking' in \[options\.extras_require\]"):
        app_requirements(setup_cfg, extras=("tracking",))
    with pytest.raises(FileNotFoundError, match="missing.cfg"):
        app_requirements(tmp_path / "missing.cfg")


@pytest.mark.slow
def test_the_package_imports_from_the_app_requirements_and_an_optional_part_names_its_extra(tmp_path):
    """``cxrkd --help`` imports every subpackage; ``cxrkd report`` needs the ``report`` extra, which the app's
    requirements leave out, so it fails naming that extra (and shows that the finder refuses what is not listed)."""
    help_run = run_with_requirements_only(VKD_REQUIREMENTS, "cxrkd_monai.cli", "--help")
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    assert "recalibrate" in help_run.stdout + help_run.stderr  # fire writes help to stderr when piped

    report_run = run_with_requirements_only(VKD_REQUIREMENTS, "cxrkd_monai.cli", "report", str(tmp_path))
    assert report_run.returncode != 0
    assert "needs the module 'matplotlib', which is not installed: pip install \"cxrkd-monai[report]\"" in (
        report_run.stderr
    )
    assert "'matplotlib'" in report_run.stderr.splitlines()[-1]  # the finder's list of refused modules


@pytest.mark.slow
@pytest.mark.parametrize("app", APP_FOLDERS)
def test_each_app_runs_on_a_synthetic_study_from_its_requirements_only(app, tmp_path):
    pytest.importorskip("monai.deploy.operators", reason="the MONAI Deploy App SDK (extra 'deploy') is not installed")
    # the tiny bundles of the app tests: seeded initial weights, 64 px, the shipped configs otherwise
    from tests.deploy.conftest import FRACTURE_TINY, VKD_TINY, make_tiny_bundle

    bundle_name, overrides = {
        "cxr_vkd_app": ("cxr_vkd_classification", VKD_TINY),
        "cxr_fracture_app": ("cxr_aals_fracture_detection", FRACTURE_TINY),
    }[app]
    bundle = make_tiny_bundle(REPO / "bundles" / bundle_name, tmp_path / "models" / bundle_name, overrides)
    pixels = np.random.default_rng(0).integers(0, 4096, size=(96, 80), dtype=np.uint16)
    source = write_radiograph_dicom(pixels, tmp_path / "study" / "image.dcm", patient_id="p0001")

    output = tmp_path / "output"
    run = run_with_requirements_only(
        REPO / "deploy" / app / "requirements.txt",
        f"deploy.{app}",
        "-i", str(tmp_path / "study"), "-o", str(output), "-m", str(bundle),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-5000:]
    result = json.loads((output / "result.json").read_text())
    assert result["sop_instance_uid"] == source.SOPInstanceUID
    reports = [pydicom.dcmread(path) for path in output.glob("*.dcm")]
    assert reports and all(sr.Modality == "SR" for sr in reports)
    assert all(sr.StudyInstanceUID == source.StudyInstanceUID for sr in reports)
