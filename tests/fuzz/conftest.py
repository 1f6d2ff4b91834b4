"""Property-based fuzzing of the input boundary (image loader, report processing, datalist reader, empty splits,
class-name order) and of the letterbox geometry.

Every generated case must end in a valid output or in one of the package's documented
:class:`~cxrkd_monai.errors.InputError` types. The cases are counted per target; the count is printed in the
terminal summary, and a run of every target with fewer than :data:`MIN_TOTAL_CASES` cases fails. Hypothesis runs
derandomized (a fixed seed per test) with no example database, so every CI run checks the same cases.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

MIN_TOTAL_CASES = 500
TARGETS = ("dicom", "png_jpeg", "nifti", "reports", "datalist", "splits", "class_names", "geometry")

settings.register_profile(
    "fuzz",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

CASES: Counter[str] = Counter()
"""Generated cases run so far in this session, per target."""


class CaseCounter:
    """Counts the generated cases of one fuzz target: call it once per case; ``cases`` is this test's count."""

    def __init__(self, target: str) -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown fuzz target {target!r}; expected one of {TARGETS}")
        self.target = target
        self.cases = 0

    def __call__(self) -> None:
        self.cases += 1
        CASES[self.target] += 1


def _fuzz_settings(max_examples: int) -> settings:
    return settings(settings.get_profile("fuzz"), max_examples=max_examples)


@pytest.fixture
def fuzz_settings():
    """``fuzz_settings(n)``: the reproducible fuzz profile with ``n`` generated cases, as a test decorator."""
    return _fuzz_settings


@pytest.fixture
def case_counter():
    """``case_counter(target)``: a :class:`CaseCounter` for ``target`` (one of :data:`TARGETS`)."""
    return CaseCounter


def _all_targets_ran() -> bool:
    return all(CASES[target] > 0 for target in TARGETS)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not CASES:
        return
    per_target = ", ".join(f"{target} {CASES[target]}" for target in TARGETS)
    total = sum(CASES.values())
    terminalreporter.write_sep("-", "fuzz cases")
    terminalreporter.write_line(f"fuzz: {total} generated cases ({per_target}); at least {MIN_TOTAL_CASES} required")
    if _all_targets_ran() and total < MIN_TOTAL_CASES:
        terminalreporter.write_line(f"fuzz: FAILED, only {total} < {MIN_TOTAL_CASES} cases ran", red=True)


def pytest_sessionfinish(session, exitstatus) -> None:
    if _all_targets_ran() and sum(CASES.values()) < MIN_TOTAL_CASES:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
