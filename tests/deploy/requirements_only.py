"""Runs a module as ``python -m`` does, able to import only what an app's ``requirements.txt`` installs.

Usage::

    python tests/deploy/requirements_only.py deploy/cxr_vkd_app/requirements.txt deploy.cxr_vkd_app -i in -o out -m b

A ``sys.meta_path`` finder refuses every top-level module that belongs to an installed distribution outside the
allowed set, as if it were not installed (``ModuleNotFoundError``): the distributions named in the requirements
file and the MONAI Deploy App SDK (the packager installs it), with everything they require (``importlib.metadata``,
the extras each requirement asks for), and ``cxrkd-monai`` itself (``monai-deploy package --add``), whose own
installed requirements are not followed: the file stands in for them. The standard library and modules of no
distribution (the repository's ``deploy`` apps) are allowed. Refused names are printed to
stderr on exit (``requirements-only: refused ...``); libraries that probe optional modules cause some of them.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.metadata as metadata
import re
import runpy
import sys
from pathlib import Path

from packaging.requirements import Requirement

SDK = "monai-deploy-app-sdk"
PACKAGE = "cxrkd-monai"


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-``, ``_`` and ``.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_in(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def dependency_closure(requirements: list[Requirement]) -> set[str]:
    """Normalised names of the distributions ``requirements`` install, with their extras, transitively."""
    allowed: dict[str, set[str]] = {}
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name, extras = normalise(requirement.name), set(requirement.extras)
        if name in allowed and extras <= allowed[name]:
            continue
        allowed.setdefault(name, set()).update(extras)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here, so nothing of it can be imported either
        for line in requires:
            dependency = Requirement(line)
            environments = [{"extra": extra} for extra in ("", *allowed[name])]
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in environments):
                pending.append(dependency)
    return set(allowed)


class RequirementsOnlyFinder(importlib.abc.MetaPathFinder):
    """Refuses top-level modules whose every owning distribution is outside ``allowed``."""

    def __init__(self, allowed: set[str], source: str) -> None:
        self.owners = {
            module: {normalise(name) for name in names} for module, names in metadata.packages_distributions().items()
        }
        self.allowed = allowed
        self.source = source
        self.refused: set[str] = set()

    def is_refused(self, module: str) -> bool:
        owners = self.owners.get(module.partition(".")[0], set())
        return bool(owners) and not owners & self.allowed

    def find_spec(self, fullname, path=None, target=None):
        if self.is_refused(fullname):
            top = fullname.partition(".")[0]
            self.refused.add(top)
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: it belongs to {sorted(self.owners[top])}, which {self.source} does "
                "not install.",
                name=fullname,
            )
        return None


def main() -> None:
    requirements_file, module, *arguments = sys.argv[1:]
    requirements = requirements_in(Path(requirements_file))
    allowed = dependency_closure([*requirements, Requirement(SDK)]) | {PACKAGE}
    finder = RequirementsOnlyFinder(allowed, requirements_file)
    # modules imported before the finder (packaging, for one) are imported again through it
    for name in [name for name in sys.modules if finder.is_refused(name)]:
        del sys.modules[name]
    sys.meta_path.insert(0, finder)
    atexit.register(lambda: print(f"requirements-only: refused {sorted(finder.refused)}", file=sys.stderr))
    sys.argv = [module, *arguments]
    sys.path[0] = str(Path.cwd())  # as `python -m` has it, instead of this script's folder
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
