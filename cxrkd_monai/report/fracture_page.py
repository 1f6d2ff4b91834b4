"""The fracture report's content: headline figures, FROC, image-level AUROC, overlays, stage-2 sharpening."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cxrkd_monai.metrics.calibration import expected_calibration_error
from cxrkd_monai.report import figures
from cxrkd_monai.report.display_images import load_display_image, load_probability_map
from cxrkd_monai.report.fracture_statistics import (
    MEAN_AUROC,
    MEAN_FROC,
    fracture_auroc_statistic,
    fracture_statistic,
    fracture_statistics,
    image_errors,
)
from cxrkd_monai.report.ground_truth import RunTruth
from cxrkd_monai.report.html import Card, ReportFigure, Section
from cxrkd_monai.report.page_parts import comparison_section, interval_detail, subgroup_section
from cxrkd_monai.report.resampling import PatientResampling
from cxrkd_monai.report.run_outputs import EvaluationRun
from cxrkd_monai.report.settings import ReportSettings
from cxrkd_monai.report.tables import fracture_table, sensitivity_table
from cxrkd_monai.report.training_logs import SHARPENING_SCALARS, read_epoch_scalars

__all__ = ["fracture_sections"]

logger = logging.getLogger(__name__)

NUM_OVERLAYS = 4
"""Images per row of the best/worst overlays."""


def _panel(run: EvaluationRun, truth: RunTruth, settings: ReportSettings, index: int, map_path: Path | None):
    image, size = load_display_image(run.images[index])
    lesions = truth.lesions[index]
    probability_map = None if map_path is None else load_probability_map(map_path).max(axis=-1)
    short = [name.replace("_fracture", "") for name in run.class_names]
    probabilities = " / ".join(f"{n} {p:.2f}" for n, p in zip(short, run.probabilities[index]))
    positive = [n for n, label in zip(short, truth.labels[index]) if label > 0.5]
    return figures.ImagePanel(
        image=image,
        size=size,
        title=f"{Path(run.images[index]).name}\np: {probabilities}\nlabel: {', '.join(positive) or 'none'}",
        probability_map=probability_map,
        boxes=lesions.boxes[:, :4],
        points=lesions.points[:, :2],
        point_radius=settings.point_radius,
        detections=np.concatenate(run.detections[index]) if run.detections[index] else None,
    )


def _overlays(
    run: EvaluationRun, truth: RunTruth, settings: ReportSettings, maps: Mapping[str, Path]
) -> tuple[figures.Figure, str]:
    """Best images (lowest image-level error among positives) and worst images (highest error), with a caption."""
    errors = image_errors(run, truth)
    order = np.argsort(errors, kind="stable")
    order = order[np.isfinite(errors[order])]
    positive = (truth.labels > 0.5).any(axis=1)
    best = [i for i in order if positive[i]][:NUM_OVERLAYS]
    worst = list(order[::-1][:NUM_OVERLAYS])
    rows = {
        "Best": [_panel(run, truth, settings, i, maps.get(run.images[i])) for i in best],
        "Worst": [_panel(run, truth, settings, i, maps.get(run.images[i])) for i in worst],
    }
    with_maps = sum(run.images[i] in maps for i in {*best, *worst})
    caption = (
        "Best: fractured images whose type probabilities lie closest to their labels; worst: images furthest from "
        f"them. {with_maps} of {len({*best, *worst})} panels show the saved probability map (maximum over types)."
    )
    return figures.overlay_figure(rows, columns=NUM_OVERLAYS), caption


def fracture_sections(
    run: EvaluationRun,
    truth: RunTruth,
    settings: ReportSettings,
    resampling: PatientResampling,
    references: Sequence[EvaluationRun],
    figures_dir: Path,
    maps: Mapping[str, Path],
    logs_dir: Path | None,
) -> tuple[list[Card], list[Section]]:
    """Headline cards and sections of a fracture evaluation, each figure saved as PNG in ``figures_dir``.

    Args:
        maps: saved probability map per resolved image path (empty: overlays without maps).
        logs_dir: a stage-2 training folder with TensorBoard events, for the pseudo-positive rate over epochs.
        references: other fracture evaluations of the same images (e.g. the stage-1 teacher), in ``run``'s order.
    """
    statistics = fracture_statistics(run, truth, settings, resampling)
    names = run.class_names

    def saved(figure, name: str, caption: str, wide: bool = False) -> ReportFigure:
        return ReportFigure(figures.save_figure(figure, figures_dir / f"{name}.png"), caption, wide)

    cards = [
        Card(
            "Mean FROC score", f"{statistics.froc[MEAN_FROC].estimate:.3f}", interval_detail(statistics.froc[MEAN_FROC])
        ),
        Card(
            "Mean AUROC", f"{statistics.auroc[MEAN_AUROC].estimate:.3f}", interval_detail(statistics.auroc[MEAN_AUROC])
        ),
        Card("Test set", f"{len(run.images)} images", f"{len(set(truth.patient_ids.tolist()))} patients"),
        Card(
            "Lesions",
            str(sum(statistics.num_lesions)),
            ", ".join(f"{n}: {c}" for n, c in zip(names, statistics.num_lesions)),
        ),
    ]
    detection = Section(
        title="Detection (FROC)",
        anchor="froc",
        paragraphs=[
            "A detection is a peak of the probability map; it finds a lesion when it falls inside the lesion's box or "
            f"within {settings.point_radius:g} px of its point. The FROC score averages the sensitivity at "
            f"{', '.join(f'{r:g}' for r in settings.fp_per_image)} false positives per image. Intervals: patient-level "
            f"bootstrap, {resampling.num_resamples} resamples."
        ],
        tables=[
            fracture_table(statistics, names, run.metrics),
            sensitivity_table(statistics, names, settings.fp_per_image),
        ],
        figures=[
            saved(
                figures.froc_figure(run.froc_curve, settings.fp_per_image, statistics.sensitivity_at),
                "froc",
                "FROC curve per fracture type (froc_curve.csv); dots: sensitivity at each operating point, 95% CI.",
            ),
            saved(
                figures.roc_curves_figure(run.probabilities, truth.labels, truth.observed, names, statistics.auroc),
                "roc_curves",
                "Image-level ROC per fracture type (maximum of the type's map against image_label).",
            ),
        ],
    )
    overlay_figure, overlay_caption = _overlays(run, truth, settings, maps)
    overlays = Section(
        title="Best and worst images",
        anchor="overlays",
        paragraphs=[
            "Probability map (where the run saved it), ground-truth boxes and points, and detections with their "
            "scores, on the original image."
            + ("" if maps else " This run saved no probability maps; pass maps_dir= an inference output to show them.")
        ],
        figures=[saved(overlay_figure, "overlays", overlay_caption, wide=True)],
    )
    sections = [detection, _calibration_section(run, truth, settings, saved), overlays]
    sections.append(_sharpening_section(logs_dir, figures_dir))
    ours = fracture_statistic(run, truth, settings, with_sensitivities=False)
    for reference in references:
        section, differences = comparison_section(
            run,
            reference,
            ours,
            fracture_statistic(reference, truth, settings, with_sensitivities=False),
            resampling,
            figures_dir / f"compare_{len(sections)}.png",
            "AUROC and FROC",
        )
        sections.append(section)
        delta = differences[MEAN_FROC]
        cards.append(Card(f"Δ mean FROC vs {reference.name}", f"{delta.estimate:+.3f}", interval_detail(delta, True)))
    sections.append(subgroup_section(truth, names, fracture_auroc_statistic(run, truth), MEAN_AUROC, resampling))
    return cards, sections


def _calibration_section(
    run: EvaluationRun, truth: RunTruth, settings: ReportSettings, saved: Callable[..., ReportFigure]
) -> Section:
    """Reliability of the image-level probabilities before and after temperature scaling, and the operating points
    the run called at, with what the image-level calls achieve on these images."""
    section = Section(title="Calibration and operating points", anchor="calibration")
    if run.calibrated is None:
        section.paragraphs.append(
            "This run's model has no calibration (no calibration.json beside its checkpoint): its image-level "
            "probabilities are map maxima, not calibrated probabilities, and no operating point was chosen. Training "
            "fits one on the validation split; `cxrkd recalibrate` fits one on labelled images."
        )
        return section
    labels, observed = truth.labels, truth.observed
    reliability = []
    for name, probabilities, title in (
        ("reliability_uncalibrated", run.probabilities, "Map maximum"),
        ("reliability_calibrated", run.calibrated, "Temperature-scaled"),
    ):
        ece = expected_calibration_error(probabilities, labels, settings.ece_bins, observed)
        figure = figures.reliability_figure(probabilities, labels, observed, settings.ece_bins, ece, title)
        caption = f"{title}: every observed (image, type) entry, {settings.ece_bins} equal-width bins."
        reliability.append(saved(figure, name, caption))
    points = run.operating_points
    calls = []
    for index, name in enumerate(run.class_names):
        threshold = points["thresholds"][name]
        seen = observed[:, index]
        positive = labels[seen, index] > 0.5
        if threshold is None or positive.all() or not positive.any():
            calls.append(f"{name}: {'no operating point' if threshold is None else f'threshold {threshold:.4f}'}")
            continue
        called = run.calibrated[seen, index] >= threshold
        calls.append(
            f"{name}: threshold {threshold:.4f}, sensitivity {called[positive].mean():.2f}, specificity "
            f"{1.0 - called[~positive].mean():.2f}"
        )
    lesions = [
        f"{name} score >= {threshold:.4f}" if threshold is not None else f"{name}: none called"
        for name, threshold in points["lesion_thresholds"].items()
    ]
    section.paragraphs += [
        "The image-level probability of a type is the maximum of its map; temperature scaling per type, fitted on the "
        "validation split with the best model (or by `cxrkd recalibrate`), maps it to a calibrated probability "
        "without changing its ranking (AUROC).",
        f"Image-level calls at the {points['image']} operating point (threshold on the calibrated probability, chosen "
        f"where the calibration was fitted); on these {len(run.images)} images: " + "; ".join(calls) + ".",
        f"Points called at {points['lesion_fp_per_image']} false positives per image (a detection-score threshold "
        "per type, chosen where the calibration was fitted): " + "; ".join(lesions) + ".",
    ]
    section.figures += reliability
    return section


def _sharpening_section(logs_dir: Path | None, figures_dir: Path) -> Section:
    section = Section(title="Stage-2 sharpening", anchor="sharpening")
    series = {}
    if logs_dir is not None:
        try:
            series = read_epoch_scalars(logs_dir, list(SHARPENING_SCALARS))
        except FileNotFoundError as error:
            logger.warning("%s", error)
    if not series:
        where = f"in {logs_dir}" if logs_dir is not None else "(pass logs_dir= the stage-2 training output folder)"
        section.paragraphs.append(f"No stage-2 sharpening statistics found {where}; a stage-1 model has none.")
        return section
    last = {tag: values[-1][1] for tag, values in series.items()}
    section.paragraphs.append(
        "Per stage-2 epoch, over the record-positive images without regions (D_P): the share of findings whose "
        "sharpened target has a peak above 0.5 (pseudo-positive rate), the share of pixels sharpening raised above "
        "the teacher, and the share of map area above 0.5 (which must stay small, as fractures are). Last epoch: "
        + ", ".join(
            f"{SHARPENING_SCALARS[tag].split(' (')[0]} {value:.1%}"
            for tag, value in last.items()
            if math.isfinite(value)
        )
        + f". Read from the TensorBoard events in {logs_dir}."
    )
    section.figures.append(
        ReportFigure(
            figures.save_figure(
                figures.training_curve_figure(
                    {SHARPENING_SCALARS[t]: v for t, v in series.items()},
                    "Pseudo-positive rate over stage-2 epochs",
                    "Share of D_P",
                    percent=True,
                ),
                figures_dir / "sharpening.png",
            ),
            "Stage-2 sharpening statistics per epoch.",
        )
    )
    return section
