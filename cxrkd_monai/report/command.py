"""``cxrkd report RUN_DIR [--compare OTHER_RUN_DIR ...]``: an evaluation as one self-contained HTML page.

The run folder is the ``output_dir`` of a bundle's ``evaluate.json`` (``metrics.json``, ``predictions.csv`` and, for
the fracture bundle, ``froc_curve.csv``). The report is written to ``<run folder>/report/report.html`` by default,
with every figure inline and also saved as PNG in ``figures/`` next to it.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from cxrkd_monai.report.fracture_page import fracture_sections
from cxrkd_monai.report.ground_truth import match_ground_truth
from cxrkd_monai.report.html import ReportPage, render_report
from cxrkd_monai.report.resampling import PatientResampling
from cxrkd_monai.report.run_outputs import aligned_to, load_evaluation_run, probability_map_paths
from cxrkd_monai.report.settings import resolve_settings
from cxrkd_monai.report.vkd_page import vkd_sections

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

TITLES = {"vkd": "VKD chest X-ray classification", "fracture": "AALS fracture detection"}


def _as_list(values: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if values is None:
        return []
    if isinstance(values, (str, Path)):
        return [Path(values)]
    return [Path(v) for v in values]


def write_report(
    run_dir: str | Path,
    compare: str | Path | Sequence[str | Path] | None = None,
    output_dir: str | Path | None = None,
    datalist: str | Path | None = None,
    split: str | None = None,
    config_file: str | Sequence[str] | None = None,
    maps_dir: str | Path | None = None,
    logs_dir: str | Path | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    notice: str | None = None,
    **overrides,
) -> Path:
    """Write the HTML report of the evaluation in ``run_dir``; returns the path of ``report.html``.

    Args:
        run_dir: the run folder ``evaluate.json`` wrote.
        compare: other run folders evaluated on the same images (VKD: the image-only baseline; fracture: the
            teacher or another student), each shown side by side with paired bootstrap differences.
        output_dir: where ``report.html`` and ``figures/`` go (default ``<run_dir>/report``).
        datalist, split: the datalist and key the run evaluated, instead of the run's config values.
        config_file: the run's config file(s), when they are not in ``<run_dir>/configs`` or ``<run_dir>/../configs``
            (otherwise the source bundle's configs are read).
        maps_dir: fracture: an inference output folder whose ``predictions.csv`` names saved probability maps,
            drawn in the overlays (the evaluation's own maps are used where it saved them).
        logs_dir: fracture: the stage-2 training folder with TensorBoard events (default: the run folder, where
            the bundle's training and evaluation both log).
        num_resamples, confidence, seed: the patient-level bootstrap.
        notice: a line shown at the top of the page (e.g. that the data are synthetic).
        overrides: config values the run was given (``dataset_dir``, ``image_size``...), as for ``monai.bundle run``.
    """
    started = time.perf_counter()
    run = load_evaluation_run(run_dir)
    settings = resolve_settings(run.run_dir, run.kind, datalist, split, config_file, **overrides)
    truth = match_ground_truth(run, settings)
    references = [aligned_to(load_evaluation_run(other), run) for other in _as_list(compare)]
    resampling = PatientResampling(truth.patient_ids, num_resamples=num_resamples, confidence=confidence, seed=seed)
    output_dir = Path(output_dir) if output_dir is not None else run.run_dir / "report"
    figures_dir = output_dir / "figures"
    if run.kind == "vkd":
        cards, sections = vkd_sections(run, truth, settings, resampling, references, figures_dir)
    else:
        maps = {image: path for image, path in zip(run.images, run.probability_maps) if path is not None}
        if maps_dir is not None:
            maps = {**probability_map_paths(maps_dir), **maps}
        if logs_dir is None and any(run.run_dir.glob("events.out.tfevents.*")):
            logs_dir = run.run_dir
        cards, sections = fracture_sections(
            run,
            truth,
            settings,
            resampling,
            references,
            figures_dir,
            maps,
            None if logs_dir is None else Path(logs_dir),
        )
    provenance = [
        ("Run folder", str(run.run_dir)),
        *[("Compared with", str(reference.run_dir)) for reference in references],
        ("Datalist", f"{settings.datalist} ('{settings.split}')"),
        ("Configs read", ", ".join(str(f) for f in settings.config_files) or "none"),
        (
            "Bootstrap",
            f"patient-level percentile bootstrap, {num_resamples} resamples, {confidence:.0%} intervals, seed {seed}",
        ),
        ("Images, patients", f"{len(run.images)}, {len(set(truth.patient_ids.tolist()))}"),
        (
            "Generated",
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            + f" in {time.perf_counter() - started:.0f} s",
        ),
    ]
    page = ReportPage(
        title=f"{TITLES[run.kind]}: evaluation report",
        subtitle=f"{run.name} · {len(run.images)} images of '{settings.split}' · " + ", ".join(run.class_names),
        cards=cards,
        sections=sections,
        provenance=provenance,
        notices=[notice] if notice else [],
    )
    path = render_report(page, output_dir / "report.html")
    logger.info("Wrote %s (%d figures in %s).", path, len(list(figures_dir.glob("*.png"))), figures_dir)
    return path
