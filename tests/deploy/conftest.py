"""A tiny run of the demo, shared by the hand-over tests and the Deploy app tests (which run in ``.venv-deploy``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrkd_monai.demo import run_demo

# About half a minute on 2 CPU cores; enough patients and epochs that the test AUROCs are not all 0.5.
TINY_DEMO = {
    "num_patients": 24,
    "phantom_size": 64,
    "vkd_image_size": 64,
    "vkd_epochs": 2,
    "batch_size": 8,
    "aals_image_size": 64,
    "aals_teacher_epochs": 3,
    "aals_student_epochs": 1,
}


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, dict]:
    """``run_demo`` with :data:`TINY_DEMO` settings: its output folder and the figures it returned."""
    output_dir = tmp_path_factory.mktemp("demo_output")
    return output_dir, run_demo(output_dir=str(output_dir), **TINY_DEMO)
