"""Real-data results of the fracture bundle (``make results``): FracAtlas, teacher and four students, with CIs.

The job runs the bundle exactly as a user does, one ``python -m monai.bundle run`` per step:

1. ``cxrkd prepare fracatlas``: a seeded split, stratified by fracture, with a fraction of the training positives
   keeping their boxes (D_R) and the rest as record-positive images without regions (D_P);
2. the stage-1 teacher (``train_teacher.json``) on D_R and D_N;
3. four stage-2 students from that teacher (``train_student.json``): AALS, no sharpening, symmetric sharpening
   and image-level MIL;
4. one test-split evaluation per model (``evaluate.json``).

Every choice is made on the validation split: each run keeps the checkpoint of its best validation FROC (the
bundle's key metric), and the students start from the teacher's best checkpoint. The test split is evaluated
once per model, with that checkpoint. From each evaluation's ``predictions.json`` and the datalist, image-level
AUROC and FROC are recomputed with a percentile bootstrap over test images (seeded; every model sees the same
resamples); the FROC recomputed on the whole test split is checked against the bundle's own figure. The
pseudo-positive statistics of each student are read per epoch from the TensorBoard scalars its trainer writes.
Everything goes into ``docs/results.md`` with the settings, the command, the date and the wall time.

ImageNet weights cannot be downloaded everywhere: without ``backbone_weights`` the detector is a light ResNet
trained from random weights (so that the job fits about 45 minutes on a 2-core CPU); with a local ResNet-18
weights file it is the bundle's ResNet-18 FPN, initialised from it.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxrkd_monai.bundle.commands import run_bundle_subprocess
from cxrkd_monai.bundle.packaged_bundles import bundle_path
from cxrkd_monai.data import load_datalist
from cxrkd_monai.data.adapters import FracAtlasAdapter
from cxrkd_monai.data.splits import SPLIT_NAMES
from cxrkd_monai.metrics.bootstrap import bootstrap_interval
from cxrkd_monai.metrics.froc import FROCMetric
from cxrkd_monai.transforms.detection import map_pixel_half_diagonal
from cxrkd_monai.transforms.geometry import LetterboxGeometry
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS

__all__ = ["MODELS", "ResultsSettings", "TestImageTruth", "read_test_truth", "run_results", "score_predictions",
           "subsample_datalist"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
AALS_BUNDLE = bundle_path("cxr_aals_fracture_detection")
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "fracatlas_dev"
MODELS = (
    ("teacher (stage 1)", "teacher", None),
    ("student, AALS", "student_aals", "aals"),
    ("student, no sharpening", "student_none", "none"),
    ("student, symmetric", "student_symmetric", "symmetric"),
    ("student, MIL", "student_mil", "mil"),
)
"""(label, checkpoint stem, sharpening mode or None for the teacher), in run order."""

# Light enough that a teacher and four students train in about 45 minutes on 2 CPU cores at 256 px.
LIGHT_DETECTOR = {"layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128], "fpn_channels": 32}
RESNET18_DETECTOR = {"layers": [2, 2, 2, 2], "block_inplanes": [64, 128, 256, 512], "fpn_channels": 64}


@dataclass
class ResultsSettings:
    """Everything that shapes the results; written into ``docs/results.md``.

    The default epochs fit the 45-minute budget on 2 CPU cores with the light detector at 256 px. Measured CPU
    time (1.2-1.9 CPU-seconds per batch of 8) puts an epoch at about 2 minutes for the teacher (902 D_R + D_N
    images) and 3 for a student (all 1,155 training images plus the teacher's pass over D_P) on 2 cores; each
    run adds about a minute of start-up, caching, validation and test evaluation, and the bootstrap about 30 s
    per model.
    """

    image_size: int = 256
    teacher_epochs: int = 6
    student_epochs: int = 2
    batch_size: int = 8
    annotated_fraction: float = 0.3
    seed: int = 0
    num_resamples: int = 1000
    max_images: int | None = None
    backbone_weights: str | None = None
    detector: dict = field(default_factory=dict)
    teacher_learning_rate: float = 0.0
    student_learning_rate: float = 0.0

    def __post_init__(self) -> None:
        pretrained = self.backbone_weights is not None
        self.detector = self.detector or dict(RESNET18_DETECTOR if pretrained else LIGHT_DETECTOR)
        # Fine-tuning rate for a pretrained backbone (the bundle default); from random weights a larger one.
        self.teacher_learning_rate = self.teacher_learning_rate or (1e-4 if pretrained else 1e-3)
        self.student_learning_rate = self.student_learning_rate or (1e-4 if pretrained else 5e-4)


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


def _prepare_data(data_root: Path, data_dir: Path, settings: ResultsSettings) -> Path:
    datalist_path = data_dir / "datalist_fracture.json"
    FracAtlasAdapter(data_root, annotated_fraction=settings.annotated_fraction, seed=settings.seed).prepare(
        datalist_path
    )
    if settings.max_images:
        datalist = json.loads(datalist_path.read_text())
        datalist_path.write_text(json.dumps(subsample_datalist(datalist, settings.max_images, settings.seed), indent=1))
    return datalist_path


def _datalist_counts(datalist: dict) -> dict[str, dict]:
    """Images, study groups and subsets per split of the datalist the models were trained and tested on."""
    return {
        split: {
            "images": len(datalist[split]),
            "groups": len({item["patient_id"] for item in datalist[split]}),
            "subsets": {s: sum(item["subset"] == s for item in datalist[split]) for s in FRACTURE_SUBSETS},
        }
        for split in SPLIT_NAMES
    }


def _bundle_defaults() -> dict:
    return json.loads((AALS_BUNDLE / "configs" / "train_teacher.json").read_text())


def _train_and_evaluate(
    datalist_path: Path, work_dir: Path, settings: ResultsSettings, class_names: list[str]
) -> dict[str, float]:
    """Run the teacher, the students and the test evaluations; return the wall time of each step."""
    models = work_dir / "models"
    common = {
        "dataset_dir": str(datalist_path.parent),
        "ckpt_dir": str(models),
        "class_names": class_names,
        "image_size": [settings.image_size, settings.image_size],
        "batch_size": settings.batch_size,
        "num_workers": 0,
        "pretrained": False,
        "backbone_weights": settings.backbone_weights,
        **settings.detector,
    }
    seconds: dict[str, float] = {}
    for label, stem, sharpening in MODELS:
        logs = work_dir / "logs"
        if sharpening is None:
            configs, extra = ["train_teacher.json"], {
                "epochs": settings.teacher_epochs,
                "learning_rate": settings.teacher_learning_rate,
            }
        else:
            configs, extra = ["train_teacher.json", "train_student.json"], {
                "epochs": settings.student_epochs,
                "learning_rate": settings.student_learning_rate,
                "sharpening": sharpening,
            }
        logger.info("results: training %s", label)
        seconds[f"train {label}"] = run_bundle_subprocess(
            AALS_BUNDLE, configs, logs / f"{stem}.log",
            ckpt_name=f"{stem}.pt", output_dir=str(work_dir / "train" / stem), **extra, **common,
        )  # fmt: skip
    for label, stem, _ in MODELS:
        logger.info("results: evaluating %s on the test split", label)
        seconds[f"test {label}"] = run_bundle_subprocess(
            AALS_BUNDLE, ["train_teacher.json", "evaluate.json"], work_dir / "logs" / f"eval_{stem}.log",
            ckpt_path=str(models / f"{stem}.pt"), output_dir=str(work_dir / "test" / stem), **common,
        )  # fmt: skip
    return seconds


@dataclass
class TestImageTruth:
    """One test image's record labels ``(K,)``, boxes ``(M, 5)`` and points ``(M, 3)`` (original pixels, class
    index last), and the hit radius of a perfectly placed detection (half a map pixel's diagonal)."""

    label: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    min_hit_radius: float


def read_test_truth(
    datalist_path: Path, class_names: list[str], image_size: int, output_stride: int, split: str = "test"
) -> dict[str, TestImageTruth]:
    """Ground truth of each image of the datalist's ``split``, keyed by resolved image path, in original pixels.

    ``image_size`` and ``output_stride`` are the bundle's: they give the letterbox of each image and so the
    hit radius :class:`~cxrkd_monai.metrics.FROCScore` uses.
    """
    images = {}
    map_shape = (image_size // output_stride, image_size // output_stride)
    for item in load_datalist(str(datalist_path), split):
        with Image.open(item["image"]) as image:
            original_size = image.size  # (width, height): axis 0 is x, as the bundle loads it
        geometry = LetterboxGeometry.fit(original_size, (image_size, image_size))
        index = {name: k for k, name in enumerate(class_names)}
        images[str(Path(item["image"]).resolve())] = TestImageTruth(
            label=np.asarray(item["image_label"], dtype=np.float64),
            boxes=np.array([[*b[:4], index[b[4]]] for b in item.get("boxes", [])], dtype=np.float64).reshape(-1, 5),
            points=np.array([[*p[:2], index[p[2]]] for p in item.get("points", [])], dtype=np.float64).reshape(-1, 3),
            min_hit_radius=map_pixel_half_diagonal(geometry, map_shape),
        )
    return images


def score_predictions(
    predictions_path: Path, truth: dict, class_names: list[str], defaults: dict, settings: ResultsSettings
) -> dict[str, Any]:
    """Image-level AUROC per type and mean FROC of a bundle evaluation's ``predictions.json``, with intervals.

    FROC is scored as the bundle scores it (:class:`~cxrkd_monai.metrics.FROCMetric` with the bundle's
    ``fp_per_image`` and ``point_radius`` from ``defaults``, the mean over types with lesions), from the
    detections the bundle wrote. Both statistics are bootstrapped over the images of ``truth`` with
    :func:`~cxrkd_monai.metrics.bootstrap.bootstrap_interval` (``settings.num_resamples``, ``settings.seed``).
    """
    records = {str(Path(r["image"]).resolve()): r for r in json.loads(predictions_path.read_text())}
    missing = sorted(set(truth) - set(records))
    if missing:
        raise RuntimeError(f"{predictions_path} lacks {len(missing)} test image(s), first: {missing[0]}")
    paths = sorted(truth)
    labels = np.stack([truth[p].label for p in paths])
    scores = np.array([[records[p][f"{name}_probability"] for name in class_names] for p in paths])
    detections = []
    for path in paths:
        per_class = []
        for name in class_names:
            found = [[d["x"], d["y"], d["score"]] for d in records[path]["detections"] if d["class"] == name]
            per_class.append(np.array(found, dtype=np.float64).reshape(-1, 3))
        detections.append(per_class)

    def froc(index: np.ndarray) -> float:
        metric = FROCMetric(
            num_classes=len(class_names), class_names=class_names,
            fp_per_image=defaults["fp_per_image"], point_radius=defaults["point_radius"],
        )  # fmt: skip
        for i in index:
            image = truth[paths[i]]
            metric.update(detections[i], image.boxes, image.points, min_hit_radius=image.min_hit_radius)
        defined = [r["score"] for r in metric.compute().values() if math.isfinite(r["score"])]
        return float(np.mean(defined)) if defined else math.nan

    def auroc(k: int):
        def statistic(index: np.ndarray) -> float:
            y = labels[index, k]
            return float(roc_auc_score(y, scores[index, k])) if 0 < y.sum() < len(y) else math.nan

        return statistic

    resampling = {"num_items": len(paths), "num_resamples": settings.num_resamples, "seed": settings.seed}
    return {
        "auroc": {name: bootstrap_interval(auroc(k), **resampling) for k, name in enumerate(class_names)},
        "froc": bootstrap_interval(froc, **resampling),
        "statistics": {"froc": froc, **{f"auroc {name}": auroc(k) for k, name in enumerate(class_names)}},
        "num_images": len(paths),
        "num_positive": labels.sum(axis=0).astype(int).tolist(),
        "num_lesions": int(sum(len(truth[p].boxes) or len(truth[p].points) for p in paths)),
    }


COMPARISONS = (
    ("student_aals", "teacher"),
    ("student_aals", "student_none"),
    ("student_aals", "student_symmetric"),
    ("student_aals", "student_mil"),
    ("student_none", "teacher"),
)
"""(model, reference) pairs whose test-split difference the report bootstraps."""


def paired_differences(scores: dict[str, dict], settings: ResultsSettings) -> dict[tuple[str, str], dict]:
    """Bootstrap interval of ``model - reference`` for each pair of :data:`COMPARISONS` and each statistic.

    Both models are scored on the same test images in the same order (:func:`score_predictions` sorts them), so
    one resample of image indices applies to both: the interval is paired, and narrower than the two separate
    intervals suggest when the models err on the same images.

    Returns:
        ``{(model, reference): {statistic name: BootstrapInterval}}``, statistic names as in
        ``scores[stem]["statistics"]`` (``"froc"``, ``"auroc <class>"``).
    """
    differences = {}
    for model, reference in COMPARISONS:
        ours, theirs = scores[model]["statistics"], scores[reference]["statistics"]
        differences[(model, reference)] = {
            name: bootstrap_interval(
                lambda index, a=ours[name], b=theirs[name]: a(index) - b(index),
                num_items=scores[model]["num_images"],
                num_resamples=settings.num_resamples,
                seed=settings.seed,
            )
            for name in ours
        }
    return differences


def _difference_lines(differences: dict[tuple[str, str], dict], labels: dict[str, str]) -> list[str]:
    """The report's paired-difference table and one plain sentence per comparison of FROC."""
    names = list(next(iter(differences.values())))
    lines = [
        "## Paired differences (test split)",
        "",
        "Each cell is `model − reference` on the same test images with its 95 % paired bootstrap interval (the same "
        "resamples for both models). An interval that includes 0 means this test split cannot tell the two apart.",
        "",
        "| model − reference | " + " | ".join("Δ " + name.replace("froc", "FROC").replace("auroc", "AUROC")
                                            for name in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]  # fmt: skip
    for (model, reference), intervals in differences.items():
        cells = [f"{i.estimate:+.3f} [{i.low:+.3f}, {i.high:+.3f}]" for i in intervals.values()]
        lines.append(f"| {labels[model]} − {labels[reference]} | " + " | ".join(cells) + " |")
    lines.append("")
    for (model, reference), intervals in differences.items():
        froc = intervals["froc"]
        if not math.isfinite(froc.estimate):
            continue
        if froc.low > 0:
            verdict = "higher, and the interval excludes 0"
        elif froc.high < 0:
            verdict = "lower, and the interval excludes 0"
        else:
            verdict = f"{'higher' if froc.estimate > 0 else 'lower'} by the point estimate, but the interval includes 0"
        lines.append(f"- FROC of {labels[model]} vs {labels[reference]}: {froc.estimate:+.3f}, {verdict}.")
    lines.append("")
    return lines


def _sharpening_lines(curves: dict[str, dict], labels: dict[str, str]) -> list[str]:
    """One sentence per student: how much of the D_P maps its last training epoch raised and called positive."""
    lines = []
    for stem, label in labels.items():
        last = {tag: values[-1][1] for tag, values in curves.get(stem, {}).items() if values}
        if "dp_raised_fraction" not in last:
            continue
        lines.append(
            f"- {label}, last epoch: sharpening raised {last['dp_raised_fraction']:.1%} of D_P pixels, "
            f"{last.get('dp_positive_area', math.nan):.1%} of the D_P map area was above 0.5, and "
            f"{last.get('pseudo_positive_rate', math.nan):.1%} of the D_P findings had a target peak above 0.5."
        )
    return ["How much the stage-2 targets differed between the students (from the table below):", "", *lines, ""]


def _limits_lines(settings: ResultsSettings, scores: dict[str, dict], differences: dict) -> list[str]:
    """What bounds the comparison in this run: test-split size, training length, initialisation."""
    any_result = next(iter(scores.values()))
    widths = [interval["froc"].high - interval["froc"].low for interval in differences.values()]
    start = "an ImageNet backbone" if settings.backbone_weights else "random weights (the light detector)"
    return [
        "What limits these comparisons:",
        "",
        f"- The test split holds {sum(any_result['num_positive'])} fractured images with {any_result['num_lesions']} "
        f"boxes; the paired FROC intervals above are {min(widths):.2f} to {max(widths):.2f} wide, so smaller "
        "differences between two models are within resampling noise.",
        f"- The teacher starts from {start} and trains {settings.teacher_epochs} epochs, the students "
        f"{settings.student_epochs} each. AALS only changes teacher values above t = 0.4, so the share of D_P "
        "pixels it raised (above) bounds how far the AALS and no-sharpening students can drift apart.",
        "",
    ]


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


def _report(
    settings: ResultsSettings,
    class_names: list[str],
    counts: dict[str, dict],
    scores: dict[str, dict],
    bundle_froc: dict[str, float],
    curves: dict[str, dict],
    seconds: dict[str, float],
    invocation: str,
    started: datetime.datetime,
    total_seconds: float,
    differences: dict[tuple[str, str], dict],
    rescored: datetime.datetime | None = None,
) -> str:
    pretrained = settings.backbone_weights is not None
    lines = [
        "# Real-data results: fracture detection on FracAtlas",
        "",
        f"Generated by {invocation} on {started:%Y-%m-%d %H:%M} UTC; wall time {total_seconds / 60:.1f} min"
        f" ({sys.platform}, {_cpu_description()})."
        + (
            f" Re-scored from that run's saved test predictions with `--rescore True` on {rescored:%Y-%m-%d %H:%M} UTC"
            " (no retraining)."
            if rescored
            else ""
        ),
        "",
        "FracAtlas (Abedeen et al., Scientific Data 2023, CC BY 4.0) holds real musculoskeletal radiographs with",
        "fracture boxes: hands, legs, hips and shoulders, **not chest radiographs**. It is the openly licensed real",
        "set with boxes at hand, so these figures test whether the bundle learns on real files and whether AALS",
        "helps there; they are not the chest rib/clavicle figures of the paper.",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        f"| data | FracAtlas development copy, `cxrkd prepare fracatlas`, seed {settings.seed}; one class "
        f"{class_names} |",
        f"| split | {_split_counts(counts)} |",
        "| training subsets | "
        + ", ".join(f"{name} {n}" for name, n in counts["training"]["subsets"].items())
        + f" (D_R: the {settings.annotated_fraction:.0%} of training positives that keep their boxes) |",
        f"| image size | {settings.image_size} × {settings.image_size} px (letterboxed; the images are at most 512 px)"
        " |",
        "| initialisation | "
        + (
            "ImageNet ResNet-18 from the local file given as `backbone_weights` "
            f"({Path(settings.backbone_weights).name})"
            if pretrained
            else "**random (from scratch)**: ImageNet weights cannot be downloaded here; pass "
            "`--backbone_weights /path/to/resnet18.pth` to start from them"
        )
        + " |",
        f"| detector | layers {settings.detector['layers']}, block_inplanes {settings.detector['block_inplanes']}, "
        f"FPN {settings.detector['fpn_channels']} channels, output stride {_bundle_defaults()['output_stride']} |",
        f"| teacher | {settings.teacher_epochs} epochs, Adam lr {settings.teacher_learning_rate:g}, batch "
        f"{settings.batch_size}, cosine annealing |",
        f"| students | {settings.student_epochs} epochs each, Adam lr {settings.student_learning_rate:g}; other "
        "stage-2 values are the bundle defaults (a0 4, t 0.4, λ 1, EMA decay 0.99) |",
        "| model selection | each run keeps its best-validation-FROC checkpoint; students start from the "
        "teacher's; the test split is evaluated once per model |",
        f"| intervals | 95 % percentile bootstrap over test images, {settings.num_resamples} resamples, seed "
        f"{settings.seed}, the same resamples for every model |",
    ]
    if settings.max_images:
        lines.append(f"| subsample | **at most about {settings.max_images} images (a quick check, not results)** |")
    lines += ["", "## Test split", ""]
    header = "| model | " + " | ".join(f"AUROC {name} [95 % CI]" for name in class_names)
    lines += [header + " | FROC [95 % CI] | FROC (bundle) | best val FROC (epoch) |",
              "|---" * (len(class_names) + 4) + "|"]  # fmt: skip
    for label, stem, _ in MODELS:
        result = scores[stem]
        val = curves[stem].get("val_froc", [])
        best = max(val, key=lambda point: point[1]) if val else None
        cells = [result["auroc"][name].format() for name in class_names]
        best_cell = f"{best[1]:.3f} ({best[0]})" if best else "n/a"
        lines.append(
            f"| {label} | " + " | ".join(cells)
            + f" | {result['froc'].format()} | {_fmt(bundle_froc[stem])} | {best_cell} |"
        )  # fmt: skip
    any_result = next(iter(scores.values()))
    lines += [
        "",
        f"Test split: {any_result['num_images']} images, {any_result['num_positive']} fractured, "
        f"{any_result['num_lesions']} boxes. FROC is the mean sensitivity at {_bundle_defaults()['fp_per_image']} "
        "false positives per image (a detection inside a box of its type is a hit); 'FROC (bundle)' is the "
        "bundle's own `metrics.json` figure on the same predictions, which the recomputation must equal.",
        "",
    ]
    labels = {stem: label for label, stem, _ in MODELS}
    lines += _difference_lines(differences, labels)
    lines += _sharpening_lines(curves, {stem: label for label, stem, mode in MODELS if mode is not None})
    lines += _limits_lines(settings, scores, differences)
    lines += [
        "## Pseudo-positive statistics per epoch (students, training split)",
        "",
        "Every epoch-level training statistic the stage-2 trainer records (read from its TensorBoard scalars), "
        "then the validation FROC of that epoch. `pseudo_positive_rate` is the fraction of record-positive D_P "
        "findings whose stage-2 target peak exceeds the bundle's `pseudo_positive_threshold` (0.5).",
        "",
    ]
    for label, stem, sharpening in MODELS:
        if sharpening is None:
            continue
        tags = sorted(tag for tag in curves[stem] if not tag.startswith("val_"))
        tags += [tag for tag in ("val_froc",) if tag in curves[stem]]
        lines += [f"**{label}**", "", "| epoch | " + " | ".join(tags) + " |", "|---" * (len(tags) + 1) + "|"]
        epochs = sorted({epoch for tag in tags for epoch, _ in curves[stem][tag]})
        for epoch in epochs:
            values = [dict(curves[stem][tag]).get(epoch) for tag in tags]
            lines.append(f"| {epoch} | " + " | ".join(_fmt(v) for v in values) + " |")
        lines.append("")
    lines += ["## Wall time", "", "| step | minutes |", "|---|---|"]
    lines += [f"| {step} | {value / 60:.1f} |" for step, value in seconds.items()]
    lines += [f"| total (with data preparation and bootstrap) | {total_seconds / 60:.1f} |", ""]
    return "\n".join(lines)


def _split_counts(counts: dict[str, dict]) -> str:
    return ", ".join(
        f"{split} {counts[split]['images']} images ({counts[split]['groups']} study groups)" for split in SPLIT_NAMES
    )


def _cpu_description() -> str:
    return f"{os.cpu_count()} CPU cores"


def run_results(
    output_dir: str = "runs/results",
    data_root: str = str(DEFAULT_DATA),
    report: str = str(REPO_ROOT / "docs" / "results.md"),
    rescore: bool = False,
    **settings: Any,
) -> dict:
    """Prepare FracAtlas, train the teacher and four students, evaluate each once on test, write ``report``.

    Args:
        output_dir: working folder (datalist, checkpoints, logs, test predictions).
        data_root: the FracAtlas folder (``labels.csv``, ``boxes.csv``, ``images/``).
        report: the Markdown file written.
        rescore: score the test predictions already in ``output_dir`` again and rewrite ``report`` without
            training or evaluating anything (after a change to the scoring or the report). The settings, date,
            command and wall times stay those of the run recorded in ``output_dir/results.json``.
        **settings: :class:`ResultsSettings` fields, e.g. ``image_size``, ``teacher_epochs``, ``student_epochs``,
            ``max_images`` (a quick check on a subsample), ``backbone_weights`` (a local ResNet-18 file).

    Returns:
        the figures written to the report, also saved as ``output_dir/results.json``.

    Raises:
        FileNotFoundError: ``rescore`` without a ``results.json`` of an earlier run in ``output_dir``.
    """
    work_dir = Path(output_dir).resolve()
    started = time.perf_counter()
    if rescore:
        recorded = work_dir / "results.json"
        if not recorded.is_file():
            raise FileNotFoundError(f"--rescore needs the results.json of an earlier run, not found: {recorded}")
        previous = json.loads(recorded.read_text())
        options = ResultsSettings(**previous["settings"])
        started_at = datetime.datetime.fromisoformat(previous["started_at"])
        command, invocation, seconds = previous["command"], previous["invocation"], previous["seconds"]
        datalist_path = work_dir / "data" / "datalist_fracture.json"
    else:
        options = ResultsSettings(**settings)
        started_at = datetime.datetime.now(datetime.timezone.utc)
        command = " ".join(["python -m cxrkd_monai.results", *sys.argv[1:]])
        invocation = f"`make results` (`{command}`)" if os.environ.get("MAKELEVEL") else f"`{command}`"
        datalist_path = _prepare_data(Path(data_root), work_dir / "data", options)
    datalist = json.loads(datalist_path.read_text())
    class_names, counts = datalist["class_names"], _datalist_counts(datalist)
    if not rescore:
        seconds = _train_and_evaluate(datalist_path, work_dir, options, class_names)

    defaults = _bundle_defaults()
    truth = read_test_truth(datalist_path, class_names, options.image_size, defaults["output_stride"])
    scores, bundle_froc, curves = {}, {}, {}
    for _, stem, _ in MODELS:
        test_dir = work_dir / "test" / stem
        scores[stem] = score_predictions(test_dir / "predictions.json", truth, class_names, defaults, options)
        bundle_froc[stem] = float(json.loads((test_dir / "metrics.json").read_text()).get("val_froc", math.nan))
        curves[stem] = _epoch_scalars(work_dir / "train" / stem)
        recomputed, reported = scores[stem]["froc"].estimate, bundle_froc[stem]
        if not (math.isclose(recomputed, reported, abs_tol=1e-6) or math.isnan(recomputed + reported)):
            logger.warning(
                "%s: FROC recomputed from predictions.json (%.6f) differs from the bundle's metrics.json (%.6f).",
                stem, recomputed, bundle_froc[stem],
            )  # fmt: skip
    total = previous["total_seconds"] if rescore else time.perf_counter() - started
    differences = paired_differences(scores, options)
    rescored = datetime.datetime.now(datetime.timezone.utc) if rescore else None
    text = _report(
        options, class_names, counts, scores, bundle_froc, curves, seconds, invocation, started_at, total, differences,
        rescored,
    )  # fmt: skip
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text(text)
    figures = {
        "settings": asdict(options),
        "started_at": started_at.isoformat(),
        "command": command,
        "invocation": invocation,
        "seconds": seconds,
        "total_seconds": total,
        "models": {
            stem: {
                "auroc": {name: asdict(interval) for name, interval in result["auroc"].items()},
                "froc": asdict(result["froc"]),
                "bundle_froc": bundle_froc[stem],
                "epochs": curves[stem],
            }
            for stem, result in scores.items()
        },
        "differences": {
            f"{model} - {reference}": {name: asdict(interval) for name, interval in intervals.items()}
            for (model, reference), intervals in differences.items()
        },
    }
    (work_dir / "results.json").write_text(json.dumps(figures, indent=1))
    logger.info("results: wrote %s in %.1f min", report, total / 60)
    return figures


def _command_line(
    output_dir: str = "runs/results",
    data_root: str = str(DEFAULT_DATA),
    report: str = str(REPO_ROOT / "docs" / "results.md"),
    rescore: bool = False,
    **settings: Any,
) -> None:
    """``python -m cxrkd_monai.results [--image_size 256] [--max_images 60] [--rescore True] ...``; see
    :func:`run_results`."""
    run_results(output_dir, data_root, report, rescore, **settings)


def main(argv: Sequence[str] | None = None) -> None:
    import fire

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fire.Fire(_command_line, command=list(argv) if argv is not None else None)


if __name__ == "__main__":
    main()
