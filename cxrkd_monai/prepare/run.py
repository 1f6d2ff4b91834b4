"""``cxrkd prepare <dataset> --root ... --out datalist.json``: run one dataset adapter and report what it did."""

from __future__ import annotations

import inspect
import logging

from cxrkd_monai.prepare.registry import get_adapter

__all__ = ["adapter_options", "run_prepare"]

logger = logging.getLogger(__name__)


def adapter_options(dataset: str) -> list[str]:
    """The option names the adapter of ``dataset`` accepts, besides ``root``."""
    names: list[str] = []
    for cls in get_adapter(dataset).__mro__:
        if "__init__" not in vars(cls):
            continue
        for parameter in inspect.signature(cls.__init__).parameters.values():
            named = parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            if named and parameter.name not in ("self", "root", *names):
                names.append(parameter.name)
    return names


def run_prepare(dataset: str, root: str, out: str, **options) -> dict:
    """Write the datalist of ``dataset`` found at ``root`` to ``out`` (and ``<name>.summary.json`` next to it).

    Args:
        dataset: an adapter name, see :data:`cxrkd_monai.prepare.ADAPTERS`.
        root: the dataset folder.
        out: the datalist JSON to write.
        **options: adapter options (``views``, ``fractions``, ``seed``, ``official_split``, ``class_names``,
            ``uncertain_policy``, ``blank_policy`` (default per dataset, recorded in the datalist),
            ``empty_report``, ...; see :func:`adapter_options`).

    Returns:
        the run summary: items written per split, skips per reason, label prevalence per split.

    Example::

        run_prepare("openi", "iu_xray", "openi.json", check_images=False)
    """
    unknown = sorted(set(options) - set(adapter_options(dataset)))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for dataset {dataset!r}; it accepts {adapter_options(dataset)}.")
    summary = get_adapter(dataset)(root, **options).prepare(out)
    for reason, count in summary["skipped"].items():
        logger.info("%s: skipped %d for %s", dataset, count, reason)
    return summary
