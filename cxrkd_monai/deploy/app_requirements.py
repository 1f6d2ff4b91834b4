"""The Deploy apps' ``requirements.txt``, generated from ``setup.cfg`` so that there is one list of dependencies.

``monai-deploy package`` installs an app's ``requirements.txt`` into the application package and puts the
package source (``--add``) on its ``PYTHONPATH``; nothing else is installed besides the MONAI Deploy App SDK. The
file therefore lists:

- ``install_requires``: what ``import cxrkd_monai`` and the bundles' inference configs need;
- the extras in :data:`APP_EXTRAS`: ``onnx`` (ONNX Runtime, the bundles' inference backend on CPU) and ``deploy``
  (``highdicom``), less the distributions in :data:`INSTALLED_BY_PACKAGER` (the SDK and the packager itself).

Regenerate both apps' files after editing ``setup.cfg``::

    python -m cxrkd_monai.deploy.app_requirements            # writes deploy/*/requirements.txt

``tests/deploy/test_app_requirements.py`` fails while a file differs from what this writes.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "APP_EXTRAS",
    "APP_FOLDERS",
    "INSTALLED_BY_PACKAGER",
    "app_requirements",
    "distribution_name",
    "requirements_text",
    "write_app_requirements",
]

APP_EXTRAS = ("onnx", "deploy")
"""Extras of ``setup.cfg`` whose distributions an app needs besides ``install_requires``."""
INSTALLED_BY_PACKAGER = ("monai-deploy-app-sdk", "holoscan-cli")
"""Distributions of those extras that ``monai-deploy package`` provides itself (the SDK) or that only package."""
APP_FOLDERS = ("cxr_vkd_app", "cxr_fracture_app")
"""The apps under the repository's ``deploy/`` folder."""

REPOSITORY = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def distribution_name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (PEP 503: lower case, runs of ``-_.`` as ``-``)."""
    return re.sub(r"[-_.]+", "-", _NAME.match(requirement.strip()).group()).lower()


def _listed(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def app_requirements(setup_cfg: str | Path, extras: Sequence[str] = APP_EXTRAS) -> list[str]:
    """The requirement lines an app needs: ``install_requires``, then ``extras`` less :data:`INSTALLED_BY_PACKAGER`.

    Args:
        setup_cfg: the package's ``setup.cfg``.
        extras: names of ``[options.extras_require]`` entries to add, in order.

    Returns:
        the requirement lines as ``setup.cfg`` writes them (pins and markers kept), each distribution once.

    Raises:
        FileNotFoundError: naming ``setup_cfg`` when it does not exist.
        KeyError: naming ``setup_cfg`` and the missing ``install_requires`` or extra.
    """
    setup_cfg = Path(setup_cfg)
    if not setup_cfg.is_file():
        raise FileNotFoundError(f"{setup_cfg} does not exist.")
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    if not config.has_option("options", "install_requires"):
        raise KeyError(f"{setup_cfg} has no [options] install_requires.")
    lines = _listed(config["options"]["install_requires"])
    available = config["options.extras_require"] if config.has_section("options.extras_require") else {}
    for extra in extras:
        if extra not in available:
            raise KeyError(f"{setup_cfg} has no extra {extra!r} in [options.extras_require] (has {sorted(available)}).")
        lines += [line for line in _listed(available[extra]) if distribution_name(line) not in INSTALLED_BY_PACKAGER]
    requirements, seen = [], set()
    for line in lines:
        if distribution_name(line) not in seen:
            seen.add(distribution_name(line))
            requirements.append(line)
    return requirements


def requirements_text(setup_cfg: str | Path) -> str:
    """The content of an app's ``requirements.txt``: a header naming its source, then :func:`app_requirements`."""
    header = (
        "# Generated from setup.cfg by `python -m cxrkd_monai.deploy.app_requirements`; edit setup.cfg instead.\n"
        f"# install_requires, then the extras {', '.join(APP_EXTRAS)} less what the packager installs "
        f"({', '.join(INSTALLED_BY_PACKAGER)}).\n"
        "# The package itself is added with `monai-deploy package --add` (see README.md).\n"
    )
    return header + "".join(f"{line}\n" for line in app_requirements(setup_cfg))


def write_app_requirements(repository: str | Path = REPOSITORY) -> list[Path]:
    """Writes ``deploy/<app>/requirements.txt`` of every app in :data:`APP_FOLDERS` from ``repository/setup.cfg``.

    Returns:
        the files written.
    """
    repository = Path(repository)
    text = requirements_text(repository / "setup.cfg")
    written = []
    for app in APP_FOLDERS:
        path = repository / "deploy" / app / "requirements.txt"
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_app_requirements():
        print(f"Wrote {path}")
