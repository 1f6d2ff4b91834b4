"""Methods compared over several training seeds on one test split, with patient-level intervals.

Each evaluation run (one *arm*, e.g. the AALS student, trained with one seed) is scored by a named statistic of
image indices: ``AUROC`` (the mean over classes, or types, of the image-level AUROC) and, for fracture runs,
``FROC`` (the mean over types with lesions of the FROC score), both exactly as the bundles' ``metrics.json`` compute
them (:mod:`cxrkd_monai.report.fracture_statistics`, :mod:`cxrkd_monai.report.vkd_statistics`). All runs are aligned
to one image order, and one :class:`~cxrkd_monai.report.resampling.PatientResampling` draws the patients for all
of them at once, so that on every resample

- each run's value,
- each arm's mean over its seeds, and
- each paired difference ``arm − reference`` (of the means over seeds, and per common seed)

come from the same patients. Errors that two arms make on the same patients cancel in their difference, and the
variation between seeds enters the interval of a mean only through the seeds that were run: three seeds show how
much a result moves with the seed, they do not average it away.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.report.fracture_statistics import MEAN_AUROC, MEAN_FROC, fracture_statistic
from cxrkd_monai.report.ground_truth import RunTruth, match_ground_truth
from cxrkd_monai.report.resampling import NamedStatistic, PatientResampling, mean_of_defined
from cxrkd_monai.report.run_outputs import EvaluationRun, load_evaluation_run
from cxrkd_monai.report.settings import resolve_settings
from cxrkd_monai.report.vkd_statistics import MACRO, vkd_auroc_statistic

__all__ = ["AUROC", "FROC", "ScoredRun", "SeedComparison", "compare_seeds", "score_run"]

AUROC = "AUROC"
"""Mean image-level AUROC over classes (VKD macro AUROC) or fracture types."""
FROC = "FROC"
"""Mean FROC score over the fracture types with lesions (fracture runs only)."""


@dataclass(frozen=True)
class ScoredRun:
    """One evaluation run of one arm and seed, with its ground truth and its statistic of image indices.

    Attributes:
        arm: the method (``"aals"``, ``"baseline"``, ...).
        seed: the training seed.
        run: the evaluation outputs.
        truth: the datalist's labels, patients and lesions for ``run``'s images.
        statistic: image indices ``(n,)`` (into ``run.images``) -> ``{AUROC: ..., FROC: ...}`` (FROC for fracture
            runs only).
    """

    arm: str
    seed: int
    run: EvaluationRun
    truth: RunTruth
    statistic: NamedStatistic


def score_run(
    arm: str, seed: int, run_dir: str | Path, datalist: str | Path, split: str = "test", **overrides
) -> ScoredRun:
    """Read the evaluation in ``run_dir`` and build its statistic against ``datalist``'s ``split``.

    Args:
        arm, seed: which method and training seed the run is.
        run_dir: ``evaluate.json``'s ``output_dir``.
        datalist: the datalist the run evaluated.
        split: the evaluated split.
        overrides: bundle settings the run was given that change fracture scoring (``image_size``).
    """
    run = load_evaluation_run(run_dir)
    settings = resolve_settings(run_dir, run.kind, datalist=datalist, split=split, **overrides)
    truth = match_ground_truth(run, settings)
    if run.kind == "fracture":
        values = fracture_statistic(run, truth, settings, with_sensitivities=False)

        def statistic(index: np.ndarray) -> dict[str, float]:
            value = values(index)
            return {AUROC: value[MEAN_AUROC], FROC: value[MEAN_FROC]}

    else:
        aurocs = vkd_auroc_statistic(run, truth)

        def statistic(index: np.ndarray) -> dict[str, float]:
            return {AUROC: aurocs(index)[MACRO]}

    return ScoredRun(arm=arm, seed=seed, run=run, truth=truth, statistic=statistic)


@dataclass
class SeedComparison:
    """Intervals of every run, every arm's mean over seeds and every paired difference (see the module docstring).

    Attributes:
        runs: ``{(arm, seed): {statistic: interval}}``.
        means: ``{arm: {statistic: interval}}``, the mean over the arm's seeds.
        differences: ``{(arm, reference): {statistic: interval}}``, of the two means over seeds.
        seed_differences: ``{(arm, reference): {seed: {statistic: interval}}}`` for each seed both arms ran.
        num_images: test images.
        num_patients: distinct patients among them (the resampled units).
    """

    runs: dict[tuple[str, int], dict[str, BootstrapInterval]]
    means: dict[str, dict[str, BootstrapInterval]]
    differences: dict[tuple[str, str], dict[str, BootstrapInterval]]
    seed_differences: dict[tuple[str, str], dict[int, dict[str, BootstrapInterval]]]
    num_images: int
    num_patients: int


def _alignment(scored: ScoredRun, images: list[str], patients: np.ndarray) -> np.ndarray:
    """Indices into ``scored.run.images`` that put its images in ``images``' order; checks the patients agree."""
    position = {image: i for i, image in enumerate(scored.run.images)}
    if set(position) != set(images):
        difference = sorted(set(position) ^ set(images))
        raise ValueError(
            f"{scored.run.run_dir} scored {len(position)} images, the first run {len(images)}; they differ in "
            f"{len(difference)}, first: {difference[0]}. Compare evaluations of the same test split."
        )
    order = np.array([position[image] for image in images])
    if not np.array_equal(scored.truth.patient_ids[order], patients):
        raise ValueError(
            f"{scored.run.run_dir}: its datalist gives the test images other patients than the first run's."
        )
    return order


def compare_seeds(
    scored: Sequence[ScoredRun],
    comparisons: Sequence[tuple[str, str]],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> SeedComparison:
    """Bootstrap every run, every arm's mean over seeds and each ``(arm, reference)`` of ``comparisons``.

    Args:
        scored: the runs, all of the same test images (any order; a peer of another kind is fine).
        comparisons: ``(arm, reference)`` pairs; each arm must be among ``scored``.
        num_resamples, confidence, seed: of the patient-level bootstrap.

    Raises:
        ValueError: the runs hold different images or patients, or a comparison names an arm without runs.
    """
    if not scored:
        raise ValueError("compare_seeds needs at least one scored run.")
    images, patients = list(scored[0].run.images), scored[0].truth.patient_ids
    orders = [_alignment(run, images, patients) for run in scored]
    seeds: dict[str, list[int]] = {}
    for run in scored:
        seeds.setdefault(run.arm, []).append(run.seed)
    unknown = sorted({arm for pair in comparisons for arm in pair} - set(seeds))
    if unknown:
        raise ValueError(f"Comparisons name arm(s) {unknown} without runs; arms run: {sorted(seeds)}.")

    def statistic(index: np.ndarray) -> dict[Hashable, float]:
        values: dict[Hashable, float] = {}
        per_run = {(run.arm, run.seed): run.statistic(order[index]) for run, order in zip(scored, orders)}
        for (arm, run_seed), value in per_run.items():
            values |= {("run", arm, run_seed, name): v for name, v in value.items()}
        means = {
            arm: {
                name: mean_of_defined([per_run[(arm, s)][name] for s in arm_seeds])
                for name in per_run[(arm, arm_seeds[0])]
            }
            for arm, arm_seeds in seeds.items()
        }
        values |= {("mean", arm, name): v for arm, mean in means.items() for name, v in mean.items()}
        for arm, reference in comparisons:
            shared = [name for name in means[arm] if name in means[reference]]
            values |= {
                ("difference", arm, reference, name): means[arm][name] - means[reference][name] for name in shared
            }
            for common in sorted(set(seeds[arm]) & set(seeds[reference])):
                values |= {
                    ("seed difference", arm, reference, common, name): per_run[(arm, common)][name]
                    - per_run[(reference, common)][name]
                    for name in shared
                }
        return values

    intervals = PatientResampling(patients, num_resamples, confidence, seed).intervals(statistic)
    comparison = SeedComparison({}, {}, {}, {}, num_images=len(images), num_patients=len(set(patients.tolist())))
    for key, interval in intervals.items():
        kind, *rest = key
        if kind == "run":
            arm, run_seed, name = rest
            comparison.runs.setdefault((arm, run_seed), {})[name] = interval
        elif kind == "mean":
            arm, name = rest
            comparison.means.setdefault(arm, {})[name] = interval
        elif kind == "difference":
            arm, reference, name = rest
            comparison.differences.setdefault((arm, reference), {})[name] = interval
        else:
            arm, reference, common, name = rest
            comparison.seed_differences.setdefault((arm, reference), {}).setdefault(common, {})[name] = interval
    return comparison
