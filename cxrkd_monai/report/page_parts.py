"""Pieces both report pages use: the interval line of a headline card, the comparison and subgroup sections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.report import figures
from cxrkd_monai.report.ground_truth import RunTruth
from cxrkd_monai.report.html import ReportFigure, Section
from cxrkd_monai.report.resampling import NamedStatistic, PatientResampling
from cxrkd_monai.report.run_outputs import EvaluationRun
from cxrkd_monai.report.subgroups import SUBGROUP_FIELDS, subgroup_tables
from cxrkd_monai.report.tables import comparison_table, subgroup_table

__all__ = ["comparison_section", "interval_detail", "subgroup_section"]


def interval_detail(interval: BootstrapInterval, signed: bool = False) -> str:
    """``95% CI 0.741 to 0.873`` (signed: ``+0.012``), or ``95% CI n/a`` where no resample defined it."""
    if not math.isfinite(interval.low):
        return "95% CI n/a"
    number = "+.3f" if signed else ".3f"
    return f"{interval.confidence:.0%} CI {interval.low:{number}} to {interval.high:{number}}"


def subgroup_section(
    truth: RunTruth,
    class_names: Sequence[str],
    statistic: NamedStatistic,
    overall_name: str,
    resampling: PatientResampling,
) -> Section:
    """Subgroup tables for the fields the datalist carries, or a sentence saying it carries none of them.

    ``statistic`` holds the per-class AUROC under each class name and the headline value under ``overall_name``.
    """
    tables = subgroup_tables(truth.items, statistic, class_names, overall_name, resampling)
    if tables:
        paragraph = (
            "Per-class AUROC estimates in each subgroup, and the headline figure with its patient-level 95% CI "
            "(resampled within the subgroup). Small subgroups give wide intervals."
        )
    else:
        paragraph = f"The datalist carries none of the subgroup fields ({', '.join(SUBGROUP_FIELDS)}) for these images."
    return Section(
        title="Subgroups",
        anchor="subgroups",
        paragraphs=[paragraph],
        tables=[subgroup_table(table, class_names, overall_name) for table in tables],
    )


def comparison_section(
    run: EvaluationRun,
    reference: EvaluationRun,
    ours: NamedStatistic,
    theirs: NamedStatistic,
    resampling: PatientResampling,
    figure_path: Path,
    statistic_name: str,
) -> tuple[Section, dict[str, BootstrapInterval]]:
    """``run`` against ``reference`` on the same images: each named value side by side, and the paired difference.

    Args:
        run, reference: two evaluations of the same images, in the same order.
        ours, theirs: the same named statistic (row label -> value) of each run, as functions of image indices.
        resampling: the bootstrap settings; one seed gives both runs the same resampled patients.
        figure_path: where the forest plot of the differences is saved.
        statistic_name: what the rows measure (``"AUROC"``), for captions.

    Returns:
        The section, and the difference interval of each row.
    """

    def both_and_difference(index: np.ndarray) -> dict[tuple[str, str], float]:
        """Each run's value and their difference on one resample: each run's statistic is computed once."""
        a, b = ours(index), theirs(index)
        return {
            **{(n, "ours"): a[n] for n in a},
            **{(n, "theirs"): b[n] for n in a},
            **{(n, "difference"): a[n] - b[n] for n in a},
        }

    intervals = resampling.intervals(both_and_difference)
    names = [name for name, part in intervals if part == "ours"]
    estimates = {name: (intervals[(name, "ours")], intervals[(name, "theirs")]) for name in names}
    differences = {name: intervals[(name, "difference")] for name in names}
    figure = figures.auroc_difference_figure(differences, run.name, reference.name)
    section = Section(
        title=f"Against {reference.name}",
        anchor=f"compare-{figure_path.stem}",
        paragraphs=[
            f"{run.name} and {reference.name} scored on the same {len(run.images)} images; each difference is "
            "bootstrapped on the same resampled patients for both runs (paired)."
        ],
        tables=[comparison_table(run.name, reference.name, estimates, differences, statistic_name)],
        figures=[
            ReportFigure(
                figures.save_figure(figure, figure_path),
                f"{statistic_name} difference {run.name} − {reference.name}, paired 95% CI; green: the interval lies "
                "above 0, red: below 0, black: it includes 0.",
                wide=True,
            )
        ],
    )
    return section, differences
