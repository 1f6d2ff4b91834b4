"""``make demo`` ends with the two HTML evaluation reports and prints where they are (a tiny demo run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrkd_monai.jobs.demo import run_demo

pytestmark = pytest.mark.slow

# the smallest demo whose test split still holds positives of every VKD finding and fractures to find
TINY_DEMO = {
    "num_patients": 24,
    "phantom_size": 64,
    "vkd_image_size": 64,
    "vkd_epochs": 1,
    "batch_size": 8,
    "aals_image_size": 64,
    "aals_teacher_epochs": 1,
    "aals_student_epochs": 1,
}


def test_demo_ends_with_both_reports(tmp_path, capsys):
    figures = run_demo(output_dir=str(tmp_path), **TINY_DEMO)
    printed = capsys.readouterr().out
    names = {"VKD against its image-only baseline", "AALS student against the stage-1 teacher"}
    assert set(figures["reports"]) == names
    tail = printed[printed.index("Total demo time") :]  # the reports come after the demo's own figures
    for path in figures["reports"].values():
        assert path in tail
        page = Path(path).read_text()
        assert "Against baseline/eval" in page or "Against aals/eval_teacher" in page
        assert page.count("data:image/png;base64,") >= 5
