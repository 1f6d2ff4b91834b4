"""The main job on the built-in default: synthetic data → both bundles trained, evaluated, inferred → tables.

Everything runs through the bundles' own JSON configs (``monai.bundle.run``), exactly as a user runs
them, with demo-sized overrides (small images, few epochs) so that the whole job fits a 2-core CPU.
The figures are what this run measured on synthetic data; they say nothing about real radiographs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from monai.bundle import run as bundle_run

from cxrkd_monai.bundle_commands import bundle_arguments
from cxrkd_monai.data.phantom import generate_phantom_dataset

__all__ = ["BUNDLES_DIR", "run_demo"]

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
VKD_BUNDLE = BUNDLES_DIR / "cxr_vkd_classification"
AALS_BUNDLE = BUNDLES_DIR / "cxr_aals_fracture_detection"

logger = logging.getLogger(__name__)


def _run(bundle: Path, configs: list[str], **overrides) -> None:
    # ImageNet weights are downloaded on first use, which an offline demo cannot do.
    bundle_run(**bundle_arguments(bundle, configs, **{"pretrained": False, **overrides}))


# DenseNet-121 (the bundle default) takes several seconds per step on a 2-core CPU; the demo swaps in a
# small MONAI DenseNet for VKD and its baseline alike, through the bundle's own `network_def` override.
DEMO_IMAGE_ENCODER = {
    "network_def#image_encoder": {
        "_target_": "DenseNet",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 128,
        "init_features": 16,
        "growth_rate": 16,
        "block_config": [2, 4, 6, 4],
    },
    "network_def#image_feature_dim": 128,
}


def _read_metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.3f}"


def run_vkd(data_dir: Path, work_dir: Path, image_size: int, epochs: int, batch_size: int) -> dict[str, dict]:
    """Train VKD and its image-only baseline, evaluate both on the test split, run inference."""
    datalist = data_dir / "datalist_vkd.json"
    class_names = json.loads(datalist.read_text())["class_names"]
    common = {
        "dataset_dir": str(data_dir),
        "class_names": class_names,
        "image_size": [image_size, image_size],
        "epochs": epochs,
        "batch_size": batch_size,
        "num_workers": 0,
        "learning_rate": 1e-3,
        "latent_dim": 64,
        "text_cache_dir": str(work_dir / "text_embeddings"),
        **DEMO_IMAGE_ENCODER,
    }
    results = {}
    for variant, use_text in (("vkd", True), ("baseline", False)):
        run_dir = work_dir / variant
        paths = {"ckpt_dir": str(run_dir / "models"), "output_dir": str(run_dir / "eval")}
        started = time.perf_counter()
        _run(VKD_BUNDLE, ["train.json"], use_text=use_text, **common, **paths)
        _run(VKD_BUNDLE, ["train.json", "evaluate.json"], use_text=use_text, **common, **paths)
        _run(
            VKD_BUNDLE,
            ["inference.json"],
            dataset_dir=str(data_dir),
            class_names=class_names,
            image_size=[image_size, image_size],
            latent_dim=64,
            num_workers=0,
            **DEMO_IMAGE_ENCODER,
            ckpt_path=str(run_dir / "models" / "model.pt"),
            output_dir=str(run_dir / "predictions"),
        )
        results[variant] = _read_metrics(run_dir / "eval" / "metrics.json")
        results[variant]["seconds"] = time.perf_counter() - started
    results["class_names"] = class_names
    return results


def format_vkd_table(results: dict) -> str:
    """Per-class test AUROC, then macro and micro AUROC, macro and micro F1 at 0.5 and ECE, VKD next to its
    image-only baseline; every figure over the observed labels only (``label_mask``)."""
    lines = [
        "VKD classification (test split, AUROC)",
        f"{'class':<22}{'VKD':>8}{'baseline':>10}",
    ]
    for name in results["class_names"]:
        key = f"val_macro_auroc_{name}"
        lines.append(f"{name:<22}{_fmt(results['vkd'].get(key)):>8}{_fmt(results['baseline'].get(key)):>10}")
    for label, key in (
        ("macro AUROC", "val_macro_auroc"),
        ("micro AUROC", "micro_auroc"),
        ("macro F1 at 0.5", "macro_f1_at_0.5"),
        ("micro F1 at 0.5", "micro_f1_at_0.5"),
        ("ECE (lower better)", "ece"),
    ):
        lines.append(f"{label:<22}{_fmt(results['vkd'].get(key)):>8}{_fmt(results['baseline'].get(key)):>10}")
    lines.append(f"{'train+eval+infer (s)':<22}{results['vkd']['seconds']:8.0f}{results['baseline']['seconds']:10.0f}")
    return "\n".join(lines)


# A light FPN so that the teacher and two students train in a few minutes on a 2-core CPU.
DEMO_DETECTOR = {"fpn_channels": 32, "layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128]}
AALS_VARIANTS = (
    ("teacher (stage 1)", "teacher.pt"),
    ("student, AALS", "student_aals.pt"),
    ("student, no sharpening", "student_none.pt"),
)


def run_aals(
    data_dir: Path, work_dir: Path, image_size: int, teacher_epochs: int, student_epochs: int, batch_size: int
) -> dict[str, dict]:
    """Stage 1 teacher, then students with and without sharpening; each evaluated on the test split."""
    models = work_dir / "models"
    common = {
        "dataset_dir": str(data_dir),
        "ckpt_dir": str(models),
        "image_size": [image_size, image_size],
        "batch_size": batch_size,
        "num_workers": 0,
        **DEMO_DETECTOR,
    }
    started = time.perf_counter()
    _run(
        AALS_BUNDLE,
        ["train_teacher.json"],
        epochs=teacher_epochs,
        learning_rate=3e-3,
        output_dir=str(work_dir / "logs_teacher"),
        **common,
    )
    sharpening_figures = {}
    for mode in ("aals", "none"):
        log_dir = work_dir / f"logs_student_{mode}"
        _run(
            AALS_BUNDLE,
            ["train_teacher.json", "train_student.json"],
            epochs=student_epochs,
            learning_rate=1e-3,
            sharpening=mode,
            ckpt_name=f"student_{mode}.pt",
            output_dir=str(log_dir),
            **common,
        )
        # the last epoch's D_P statistics (PseudoPositiveRate), written by the student config's MetricsWriter
        sharpening_figures[f"student_{mode}.pt"] = _read_metrics(log_dir / "train_metrics.json")
    results = {}
    for label, checkpoint in AALS_VARIANTS:
        eval_dir = work_dir / f"eval_{Path(checkpoint).stem}"
        _run(
            AALS_BUNDLE,
            ["train_teacher.json", "evaluate.json"],
            ckpt_path=str(models / checkpoint),
            output_dir=str(eval_dir),
            **common,
        )
        results[label] = {**_read_metrics(eval_dir / "metrics.json"), **sharpening_figures.get(checkpoint, {})}
    _run(
        AALS_BUNDLE,
        ["inference.json"],
        dataset_dir=str(data_dir),
        image_size=[image_size, image_size],
        num_workers=0,
        ckpt_path=str(models / "student_aals.pt"),
        output_dir=str(work_dir / "predictions"),
        **DEMO_DETECTOR,
    )
    results["seconds"] = time.perf_counter() - started
    return results


def format_aals_table(results: dict) -> str:
    """Image-level AUROC per fracture type and FROC score, teacher and students side by side.

    The students' rows end with what sharpening did to their D_P targets in the last training epoch: the
    share of D_P pixels it raised above the teacher (0 without sharpening), the pseudo-positive rate, and
    the share of D_P map area above 0.5, which must stay small (fractures are) rather than creep to 1.
    """
    labels = [label for label, _ in AALS_VARIANTS]
    header = f"{'metric':<24}" + "".join(f"{label:>24}" for label in labels)
    rows = [
        ("rib AUROC", "val_auroc_rib_fracture"),
        ("clavicle AUROC", "val_auroc_clavicle_fracture"),
        ("rib FROC", "val_froc_rib_fracture"),
        ("clavicle FROC", "val_froc_clavicle_fracture"),
        ("mean FROC", "val_froc"),
        ("D_P pixels raised", "dp_raised_fraction"),
        ("pseudo-positive rate", "pseudo_positive_rate"),
        ("D_P area above 0.5", "dp_positive_area"),
    ]
    lines = ["AALS fracture detection (test split)", header]
    for name, key in rows:
        lines.append(f"{name:<24}" + "".join(f"{_fmt(results[label].get(key)):>24}" for label in labels))
    lines.append(f"{'train+eval+infer (s)':<24}{results['seconds']:24.0f}")
    return "\n".join(lines)


def run_demo(
    output_dir: str = "demo_output",
    num_patients: int = 240,
    seed: int = 0,
    phantom_size: int = 256,
    vkd_image_size: int = 96,
    vkd_epochs: int = 12,
    batch_size: int = 16,
    aals_image_size: int = 256,
    aals_teacher_epochs: int = 25,
    aals_student_epochs: int = 8,
) -> dict:
    """Generate the synthetic data, run both bundles and print their tables. Returns all figures."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(output_dir).resolve()
    # a demo starts afresh: the bundles refuse to train over the best model of an earlier run in the same folder
    for earlier_run in (out / "vkd", out / "aals"):
        shutil.rmtree(earlier_run, ignore_errors=True)
    started = time.perf_counter()
    data_dir = out / "data"
    generate_phantom_dataset(
        output_dir=str(data_dir), num_patients=num_patients, seed=seed, image_size=(phantom_size, phantom_size)
    )
    vkd = run_vkd(data_dir, out / "vkd", vkd_image_size, vkd_epochs, batch_size)
    aals = run_aals(data_dir, out / "aals", aals_image_size, aals_teacher_epochs, aals_student_epochs, batch_size)
    report = [format_vkd_table(vkd), "", format_aals_table(aals)]
    total = time.perf_counter() - started
    report.append(f"\nTotal demo time: {total:.0f} s.")
    report.append("Synthetic data: these figures show the pipelines work; they say nothing about real radiographs.")
    text = "\n".join(report)
    print(text)
    (out / "results.txt").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"vkd": vkd, "aals": aals, "seconds": total}, indent=1, default=str))
    return {"vkd": vkd, "aals": aals, "seconds": total}
