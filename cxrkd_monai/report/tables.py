"""The report's tables: figures of merit with intervals, paired comparisons, FROC operating points and subgroups.

A :class:`Table` holds formatted strings only; the HTML template lays them out. Intervals read
``estimate [low, high]`` (:meth:`~cxrkd_monai.metrics.bootstrap.BootstrapInterval.format`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.report.fracture_statistics import MEAN_AUROC, MEAN_FROC, FractureStatistics
from cxrkd_monai.report.subgroups import SubgroupTable
from cxrkd_monai.report.vkd_statistics import MACRO, VKDStatistics

__all__ = [
    "Table",
    "comparison_table",
    "fracture_table",
    "sensitivity_table",
    "subgroup_table",
    "vkd_table",
]


@dataclass
class Table:
    """A captioned table of strings; ``emphasised_rows`` are summary rows (macro, mean) set apart."""

    caption: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    emphasised_rows: set[int] = field(default_factory=set)


def _number(value: float | None, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value)
        else f"{value:.{digits}f}"
    )


def _signed(interval: BootstrapInterval) -> str:
    if not math.isfinite(interval.estimate):
        return "n/a"
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def _verdict(interval: BootstrapInterval) -> str:
    if not math.isfinite(interval.estimate) or not math.isfinite(interval.low):
        return "undefined"
    if interval.low > 0:
        return "higher (CI excludes 0)"
    if interval.high < 0:
        return "lower (CI excludes 0)"
    return "no clear difference"


def vkd_table(statistics: VKDStatistics, class_names: Sequence[str], metrics: Mapping[str, float]) -> Table:
    """Per-class and macro AUROC with intervals, then micro AUROC and ECE; the last column is ``metrics.json``."""
    rows = []
    for k, name in enumerate(class_names):
        rows.append(
            [
                name,
                str(statistics.num_observed[k]),
                str(statistics.num_positive[k]),
                statistics.auroc[name].format(),
                _number(metrics.get(f"val_macro_auroc_{name}")),
            ]
        )
    total_observed, total_positive = str(sum(statistics.num_observed)), str(sum(statistics.num_positive))
    rows += [
        ["Macro AUROC", "", "", statistics.auroc[MACRO].format(), _number(metrics.get("val_macro_auroc"))],
        [
            "Micro AUROC",
            total_observed,
            total_positive,
            statistics.micro_auroc.format(),
            _number(metrics.get("micro_auroc")),
        ],
        ["ECE (lower is better)", total_observed, total_positive, statistics.ece.format(), _number(metrics.get("ece"))],
    ]
    return Table(
        caption="AUROC per finding with patient-level bootstrap 95% CI",
        columns=["Finding", "Observed labels", "Positives", "Estimate [95% CI]", "metrics.json"],
        rows=rows,
        note="Observed labels only (label_mask). The last column is what the evaluation wrote; the estimates are "
        "recomputed from predictions.csv and the datalist.",
        emphasised_rows=set(range(len(class_names), len(rows))),
    )


def fracture_table(statistics: FractureStatistics, class_names: Sequence[str], metrics: Mapping[str, float]) -> Table:
    """Per-type and mean image-level AUROC and FROC score with intervals, next to ``metrics.json``."""
    rows = [
        [
            name,
            str(statistics.num_positive[k]),
            str(statistics.num_lesions[k]),
            statistics.auroc[name].format(),
            _number(metrics.get(f"val_auroc_{name}")),
            statistics.froc[name].format(),
            _number(metrics.get(f"val_froc_{name}")),
        ]
        for k, name in enumerate(class_names)
    ]
    rows.append(
        [
            "Mean",
            str(sum(statistics.num_positive)),
            str(sum(statistics.num_lesions)),
            statistics.auroc[MEAN_AUROC].format(),
            _number(metrics.get("val_auroc")),
            statistics.froc[MEAN_FROC].format(),
            _number(metrics.get("val_froc")),
        ]
    )
    return Table(
        caption="Image-level AUROC and FROC score per fracture type, patient-level bootstrap 95% CI",
        columns=[
            "Fracture type",
            "Positive images",
            "Lesions",
            "AUROC [95% CI]",
            "metrics.json",
            "FROC score [95% CI]",
            "metrics.json",
        ],
        rows=rows,
        note="The FROC score is the mean sensitivity at the operating points below; the mean row averages the types "
        "that have lesions. The metrics.json columns are what the evaluation wrote.",
        emphasised_rows={len(rows) - 1},
    )


def sensitivity_table(
    statistics: FractureStatistics, class_names: Sequence[str], fp_per_image: Sequence[float]
) -> Table:
    """Sensitivity with its interval at each false-positive-per-image operating point, one row per type."""
    return Table(
        caption="Sensitivity at each FROC operating point (false positives per image), 95% CI",
        columns=["Fracture type", *[f"{rate:g} FP/image" for rate in fp_per_image]],
        rows=[
            [name, *[statistics.sensitivity_at[name][rate].format(2) for rate in fp_per_image]] for name in class_names
        ],
    )


def comparison_table(
    model: str,
    reference: str,
    estimates: Mapping[str, tuple[BootstrapInterval, BootstrapInterval]],
    differences: Mapping[str, BootstrapInterval],
    statistic_name: str = "AUROC",
) -> Table:
    """Side by side: each statistic of ``model`` and ``reference`` with its own interval, then the paired difference."""
    rows = [
        [name, ours.format(), theirs.format(), _signed(differences[name]), _verdict(differences[name])]
        for name, (ours, theirs) in estimates.items()
    ]
    return Table(
        caption=f"{model} against {reference}: {statistic_name}, same images, paired patient-level bootstrap",
        columns=["", f"{model} [95% CI]", f"{reference} [95% CI]", "Difference [paired 95% CI]", "Verdict"],
        rows=rows,
        note="The difference's interval resamples the same patients for both models, so it is narrower than the two "
        "separate intervals suggest when the models err on the same images. An interval that includes 0 means "
        "this test set cannot tell the two apart.",
        emphasised_rows={i for i, name in enumerate(estimates) if name.startswith(("Macro", "Mean"))},
    )


def subgroup_table(table: SubgroupTable, class_names: Sequence[str], overall_name: str) -> Table:
    """One subgroup field: size, per-class AUROC estimates and the overall figure with its interval."""
    return Table(
        caption=f"By {table.title.lower()}",
        columns=[table.title, "Images", "Patients", *class_names, f"{overall_name} [95% CI]"],
        rows=[
            [
                row.value,
                str(row.num_images),
                str(row.num_patients),
                *[_number(v) for v in row.per_class],
                row.overall.format(),
            ]
            for row in table.rows
        ],
    )
