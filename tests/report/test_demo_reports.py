"""``make demo`` ends with the two HTML evaluation reports and prints where they are (a tiny demo run)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_ends_with_both_reports(tiny_demo):
    _, figures, printed = tiny_demo
    names = {"VKD against its image-only baseline", "AALS student against the stage-1 teacher"}
    assert set(figures["reports"]) == names
    tail = printed[printed.index("Total demo time") :]  # the reports come after the demo's own figures
    for path in figures["reports"].values():
        assert path in tail
        page = Path(path).read_text()
        assert "Against baseline/eval" in page or "Against aals/eval_teacher" in page
        assert page.count("data:image/png;base64,") >= 5
