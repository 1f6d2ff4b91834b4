"""The VKD report's content: headline figures, discrimination, calibration, uncertainty, errors, comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cxrkd_monai.report import figures
from cxrkd_monai.report.display_images import load_display_image, load_saliency_map
from cxrkd_monai.report.ground_truth import RunTruth
from cxrkd_monai.report.html import Card, ReportFigure, Section
from cxrkd_monai.report.page_parts import comparison_section, interval_detail, subgroup_section
from cxrkd_monai.report.resampling import PatientResampling
from cxrkd_monai.report.run_outputs import EvaluationRun
from cxrkd_monai.report.settings import ReportSettings
from cxrkd_monai.report.tables import vkd_table
from cxrkd_monai.report.vkd_statistics import MACRO, VKDStatistics, vkd_auroc_statistic, vkd_statistics

__all__ = ["vkd_sections"]


def _error_thumbnails(run: EvaluationRun, truth: RunTruth, statistics: VKDStatistics) -> figures.Figure:
    panels = []
    for error in statistics.confident_errors:
        image, size = load_display_image(run.images[error.image_index], max_side=384)
        name = run.class_names[error.class_index]
        kind = "false positive" if error.label == 0 else "false negative"
        saliency = run.saliency_maps[error.image_index] if run.saliency_maps else None
        title = (
            f"{Path(run.images[error.image_index]).name}\n{name}: {kind}\n"
            f"p = {error.probability:.2f} ± {error.std:.2f} (label {error.label})"
        )
        panels.append(
            figures.ImagePanel(
                image=image,
                size=size,
                title=title + (f"\nGrad-CAM: {saliency[1]}" if saliency else ""),
                probability_map=load_saliency_map(saliency[0], max_side=384) if saliency else None,
                frame_colour="#d62728",
            )
        )
    return figures.thumbnails_figure(panels, columns=4)


def vkd_sections(
    run: EvaluationRun,
    truth: RunTruth,
    settings: ReportSettings,
    resampling: PatientResampling,
    references: Sequence[EvaluationRun],
    figures_dir: Path,
) -> tuple[list[Card], list[Section]]:
    """Headline cards and sections of a VKD evaluation, each figure saved as PNG in ``figures_dir``.

    ``references`` are other VKD evaluations of the same images (e.g. the image-only baseline), already in ``run``'s
    image order; each gets a side-by-side section with paired differences.
    """
    statistics = vkd_statistics(run, truth, resampling, num_bins=settings.ece_bins)
    p, y, observed = run.probabilities, truth.labels, truth.observed

    def saved(figure, name: str, caption: str, wide: bool = False) -> ReportFigure:
        return ReportFigure(figures.save_figure(figure, figures_dir / f"{name}.png"), caption, wide)

    cards = [
        Card("Macro AUROC", f"{statistics.auroc[MACRO].estimate:.3f}", interval_detail(statistics.auroc[MACRO])),
        Card("Micro AUROC", f"{statistics.micro_auroc.estimate:.3f}", interval_detail(statistics.micro_auroc)),
        Card("ECE", f"{statistics.ece.estimate:.3f}", interval_detail(statistics.ece)),
        Card("Test set", f"{len(run.images)} images", f"{len(set(truth.patient_ids.tolist()))} patients"),
    ]
    discrimination = Section(
        title="Discrimination",
        anchor="discrimination",
        paragraphs=[
            "AUROC per finding over the observed labels, with 95% intervals from a patient-level bootstrap "
            f"({resampling.num_resamples} resamples of patients, all images of a patient together)."
        ],
        tables=[vkd_table(statistics, run.class_names, run.metrics)],
        figures=[
            saved(
                figures.roc_curves_figure(p, y, observed, run.class_names, statistics.auroc),
                "roc_curves",
                "ROC curve per finding; the legend gives the AUROC and its 95% CI.",
            ),
            saved(
                figures.pr_curves_figure(p, y, observed, run.class_names),
                "pr_curves",
                "Precision-recall curve per finding; AP = average precision, a random model scores the prevalence.",
            ),
        ],
    )
    calibration = Section(
        title="Calibration",
        anchor="calibration",
        paragraphs=[
            f"Expected calibration error over all observed (image, finding) entries, {settings.ece_bins} equal-width "
            f"bins: {statistics.ece.format()}. Bars under the diagonal are over-confident bins, above it "
            "under-confident."
        ],
        figures=[
            saved(
                figures.reliability_figure(p, y, observed, settings.ece_bins, statistics.ece.estimate),
                "reliability",
                "Reliability diagram: observed positive rate per predicted-probability bin; entries per bin below.",
            ),
        ],
    )
    uncertainty = Section(
        title="Uncertainty",
        anchor="uncertainty",
        paragraphs=[
            "Does a high Monte Carlo standard deviation mark a wrong prediction? Mean std of decisions right at 0.5: "
            f"{statistics.mean_std_right:.3f}; of wrong ones: {statistics.mean_std_wrong:.3f}. Ranking every entry by "
            f"its std alone separates wrong from right decisions with AUROC {statistics.error_auroc.format()} "
            "(0.5 is chance)."
        ],
        figures=[
            saved(
                figures.uncertainty_figure(run.stds, p, y, observed, statistics.error_auroc),
                "uncertainty",
                "Monte Carlo std against the error of each observed entry.",
                wide=True,
            ),
        ],
    )
    sections = [discrimination, calibration, uncertainty]
    if statistics.confident_errors:
        sections.append(
            Section(
                title="Most confident errors",
                anchor="errors",
                paragraphs=[
                    f"The {len(statistics.confident_errors)} observed entries decided wrongly at 0.5 that lie furthest "
                    "from their label: probability ± Monte Carlo std, and the label. Where the run saved Grad-CAM "
                    "saliency maps (evaluation with explanations on), each image shows its map for the class named."
                ],
                figures=[
                    saved(
                        _error_thumbnails(run, truth, statistics),
                        "confident_errors",
                        "Most confident errors, most confident first.",
                        wide=True,
                    )
                ],
            )
        )
    ours = vkd_auroc_statistic(run, truth)
    for reference in references:
        section, differences = comparison_section(
            run,
            reference,
            ours,
            vkd_auroc_statistic(reference, truth),
            resampling,
            figures_dir / f"compare_{len(sections)}.png",
            "AUROC",
        )
        sections.append(section)
        delta = differences[MACRO]
        cards.append(Card(f"Δ macro AUROC vs {reference.name}", f"{delta.estimate:+.3f}", interval_detail(delta, True)))
    sections.append(subgroup_section(truth, run.class_names, ours, MACRO, resampling))
    return cards, sections
