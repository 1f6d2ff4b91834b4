"""The layout of the test suite: shared test helpers live in ``conftest.py`` files, never in test modules.

A test module that imports from another one runs that module's top level (and its module-level set-up) in a
second place, and hides from its reader where the helper lives. Each test module may import from the package,
from third-party libraries and from the ``conftest.py`` files (``from tests.workflows.conftest import ...``).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import imported_modules

TESTS = Path(__file__).resolve().parent


def imports_of_test_modules(tests_root: Path) -> list[str]:
    """``"<file>:<line> imports <module>"`` for each import, in a Python file under ``tests_root`` (the folder of
    the ``tests`` package), of a test module (a ``test_*.py`` file under ``tests_root``)."""
    violations = []
    for path in sorted(tests_root.rglob("*.py")):
        relative = path.relative_to(tests_root.parent)
        for line, module in imported_modules(path, tests_root, with_from_module=True):
            parts = module.split(".")
            if parts[0] != tests_root.name or not parts[-1].startswith("test_"):
                continue
            if tests_root.parent.joinpath(*parts).with_suffix(".py").is_file():
                violations.append(f"{relative}:{line} imports {module}")
    return violations


def test_no_test_module_imports_another_test_module():
    violations = imports_of_test_modules(TESTS)
    assert not violations, "move the shared helpers into the nearest common conftest.py:\n" + "\n".join(violations)


def test_the_check_names_every_way_of_importing_a_test_module(tmp_path):
    tests_root = tmp_path / "tests"
    (tests_root / "engines").mkdir(parents=True)
    (tests_root / "engines" / "test_trainer.py").write_text("HELPER = 1\n")
    (tests_root / "engines" / "conftest.py").write_text("SHARED = 2\n")
    (tests_root / "test_absolute.py").write_text("from tests.engines.test_trainer import HELPER\n")
    (tests_root / "test_module.py").write_text("from tests.engines import test_trainer\n")
    (tests_root / "engines" / "test_relative.py").write_text("def test_x():\n    from .test_trainer import HELPER\n")
    (tests_root / "test_plain.py").write_text("import tests.engines.test_trainer\n")
    (tests_root / "test_from_conftest.py").write_text("from tests.engines.conftest import SHARED\n")
    assert imports_of_test_modules(tests_root) == [
        "tests/engines/test_relative.py:2 imports tests.engines.test_trainer",
        "tests/test_absolute.py:1 imports tests.engines.test_trainer",
        "tests/test_module.py:1 imports tests.engines.test_trainer",
        "tests/test_plain.py:1 imports tests.engines.test_trainer",
    ]
