"""Imports of the optional parts of the package, each installed with one extra of ``cxrkd-monai``.

``import cxrkd_monai`` needs only the runtime dependencies (``install_requires`` in ``setup.cfg``), which is all a
MONAI Deploy application package installs besides its own additions. The ONNX Runtime backend, MLflow tracking
and the HTML reports import their packages when they are chosen, through :func:`import_from_extra`, so a missing
one names the extra that installs it instead of failing at ``import cxrkd_monai``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["DISTRIBUTION_NAME", "import_from_extra"]

DISTRIBUTION_NAME = "cxrkd-monai"


def import_from_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Imports ``module``, or says which extra of ``cxrkd-monai`` installs it.

    Args:
        module: the module to import, e.g. ``"onnxruntime"``.
        extra: the extra of ``setup.cfg`` that lists its distribution, e.g. ``"onnx"``.
        purpose: what needs it, for the message, e.g. ``"the ONNX Runtime inference backend"``.

    Returns:
        the imported module.

    Raises:
        ImportError: naming ``module``, ``purpose`` and the ``pip install "cxrkd-monai[<extra>]"`` that
            installs it, chained to the original error.

    Example::

        onnxruntime = import_from_extra("onnxruntime", "onnx", "the ONNX Runtime inference backend")
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the module {module!r}, which is not installed: "
            f'pip install "{DISTRIBUTION_NAME}[{extra}]".'
        ) from error
