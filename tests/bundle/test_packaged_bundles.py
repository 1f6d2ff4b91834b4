"""The bundles are package data: found through ``bundle_path`` in the source tree, and shipped in the wheel, whose
``cxrkd demo`` runs from a fresh virtual environment outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from cxrkd_monai.bundle.packaged_bundles import BUNDLE_NAMES, bundle_path, bundles_dir
from tests.conftest import TINY_DEMO

REPOSITORY = Path(__file__).resolve().parents[2]
# What a wheel is built from: the build configuration, the files its metadata names, the package and the bundles.
BUILD_INPUTS = ("pyproject.toml", "setup.cfg", "README.md", "LICENSE", "cxrkd_monai", "bundles")


def test_bundle_path_is_the_repository_bundle_in_a_source_checkout():
    for name in BUNDLE_NAMES:
        assert bundle_path(name) == REPOSITORY / "bundles" / name
        assert (bundle_path(name) / "configs" / "metadata.json").is_file()
    assert sorted(path.name for path in bundles_dir().iterdir()) == sorted(BUNDLE_NAMES)


def test_an_unknown_bundle_is_named_with_the_available_ones():
    with pytest.raises(FileNotFoundError, match=r"'cxr_unknown'.*cxr_aals_fracture_detection.*cxr_vkd_classification"):
        bundle_path("cxr_unknown")


def run(command: list, **options) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, **options)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(work: Path) -> Path:
    """``pip wheel`` of a copy of the build inputs (a build in the repository itself could pick up stale modules
    from an earlier ``build/`` folder)."""
    source = work / "source"
    source.mkdir(parents=True)
    for name in BUILD_INPUTS:
        if (REPOSITORY / name).is_dir():  # the link cxrkd_monai/_bundles -> ../bundles stays a link
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(REPOSITORY / name, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(REPOSITORY / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    run([*command, "--wheel-dir", work / "dist", source], timeout=300)
    (wheel,) = (work / "dist").glob("cxrkd_monai-*.whl")
    return wheel


def fresh_venv_with(wheel: Path, venv: Path) -> Path:
    """A new virtual environment with ``wheel`` installed; its dependencies come from this environment's
    site-packages, appended to its path by a ``.pth`` file (no download). Returns the environment's Python."""
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    python = venv / "bin" / "python"
    # installed before the .pth exists, so that pip sees an empty environment and leaves this one alone
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        timeout=300)  # fmt: skip
    site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    (Path(site_packages) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_a_tiny_demo_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path / "build")
    python = fresh_venv_with(wheel, tmp_path / "venv")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["OMP_NUM_THREADS"] = "1"

    where = run(
        [python, "-c", "import json, cxrkd_monai; from cxrkd_monai.bundle.packaged_bundles import bundles_dir; "
         "print(json.dumps([cxrkd_monai.__file__, str(bundles_dir())]))"],
        cwd=outside, env=environment,
    )  # fmt: skip
    module, bundles = (Path(path) for path in json.loads(where.stdout))
    installed = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    assert module == installed / "cxrkd_monai" / "__init__.py"
    assert bundles == installed / "cxrkd_monai" / "_bundles"
    packaged = sorted(path.relative_to(bundles) for path in bundles.rglob("*") if path.is_file())
    for name in BUNDLE_NAMES:
        for required in ("configs/metadata.json", "configs/inference.json", "configs/logging.conf", "LICENSE"):
            assert Path(name) / required in packaged

    # one epoch each: what is checked is that the installed package runs the demo, not its figures
    options = [f"--{key}={value}" for key, value in {**TINY_DEMO, "vkd_epochs": 1, "aals_teacher_epochs": 1}.items()]
    demo = run([tmp_path / "venv" / "bin" / "cxrkd", "demo", "--output_dir", "demo", *options],
               cwd=outside, env=environment, timeout=600)  # fmt: skip
    assert "VKD classification (test split, AUROC)" in demo.stdout
    assert "AALS fracture detection (test split)" in demo.stdout
    assert "macro AUROC" in demo.stdout and "mean FROC" in demo.stdout
    assert (outside / "demo" / "bundles" / "cxr_vkd_classification" / "configs" / "metadata.json").is_file()
    # the demo writes into its output folder only, not into the installed bundles
    assert sorted(path.relative_to(bundles) for path in bundles.rglob("*") if path.is_file()) == packaged
