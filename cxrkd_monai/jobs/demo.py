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

from cxrkd_monai.bundle.commands import bundle_arguments
from cxrkd_monai.bundle.packaged_bundles import bundle_path
from cxrkd_monai.bundle.trained_bundle import export_trained_bundle
from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.phantom.dicom import write_phantom_dicom_studies

__all__ = ["run_demo"]

# package data: the repository's bundles/ in a source checkout, their installed copy in a wheel
VKD_BUNDLE = bundle_path("cxr_vkd_classification")
AALS_BUNDLE = bundle_path("cxr_aals_fracture_detection")

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
DEMO_LATENT_DIM = 64


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
        "latent_dim": DEMO_LATENT_DIM,
        "text_cache_dir": str(work_dir / "text_embeddings"),
        # the preprocessed cache goes with the run, not into the bundle folder (an installed package)
        "cache_dir": str(work_dir / "cache" / "preprocessed"),
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
            latent_dim=DEMO_LATENT_DIM,
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
        # the preprocessed cache goes with the run, not into the bundle folder (an installed package)
        "cache_dir": str(work_dir / "cache" / "preprocessed"),
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


# How many of the test images the demo also writes as DICOM studies, for the exported bundles and the Deploy apps.
DEMO_DICOM_STUDIES = 3
VKD_FIGURES = {
    "val_macro_auroc": "macro_auroc",
    "micro_auroc": "micro_auroc",
    "macro_f1_at_0.5": "macro_f1_at_0.5",
    "micro_f1_at_0.5": "micro_f1_at_0.5",
    "ece": "ece",
}
AALS_FIGURES = {
    "val_auroc": "mean_auroc",
    "val_auroc_rib_fracture": "rib_auroc",
    "val_auroc_clavicle_fracture": "clavicle_auroc",
    "val_froc": "mean_froc",
}


def _synthetic_figures(metrics: dict, names: dict[str, str]) -> dict[str, float]:
    """The demo's test figures as metadata ``eval_metrics``, each labelled synthetic; undefined ones left out."""
    return {
        f"synthetic_demo_test_{label}": metrics[key]
        for key, label in names.items()
        if isinstance(metrics.get(key), float) and math.isfinite(metrics[key])
    }


def export_demo_bundles(
    out: Path, vkd: dict, aals: dict, vkd_image_size: int, aals_image_size: int, batch_size: int, provenance: str
) -> dict[str, Path]:
    """Hand the trained VKD model and the AALS student over as bundle folders ``out/bundles/<name>`` (Model Zoo
    layout, checked like the source bundles), write the first test images as DICOM studies in ``out/dicom`` and
    run each exported bundle's ``inference.json`` on them, as a user would; the predictions land in
    ``<bundle>/predictions``.

    The demo's overrides that shape each network and its input are merged into the exported configs, and so is its
    batch size: VKD's Monte Carlo draws depend on the batch, so its evaluation reproduces the demo's figures only
    with the same batches."""
    class_names = vkd["class_names"]
    synthetic = {
        "data_source": f"{provenance}; eval_metrics are this demo run's test-split figures on synthetic data and say "
        "nothing about real radiographs.",
        "intended_use": "Demonstration of the workflow only: weights trained on synthetic radiographs. Not for "
        "clinical use.",
    }
    letterbox = "single channel radiograph, intensity scaled to [0, 1], letterboxed (aspect kept, zero padding) to"
    bundles = {
        "cxr_vkd_classification": export_trained_bundle(
            VKD_BUNDLE,
            out / "bundles" / VKD_BUNDLE.name,
            out / "vkd" / "vkd" / "models" / "model.pt",
            overrides={
                "class_names": class_names,
                "image_size": [vkd_image_size, vkd_image_size],
                "latent_dim": DEMO_LATENT_DIM,
                "batch_size": batch_size,
                "pretrained": False,
                **DEMO_IMAGE_ENCODER,
            },
            metadata_updates={
                **synthetic,
                "eval_metrics": _synthetic_figures(vkd["vkd"], VKD_FIGURES),
                "image_classes": f"{letterbox} {vkd_image_size} x {vkd_image_size}",
                "label_classes": f"{len(class_names)} phantom findings, multi-label binary",
                "pred_classes": f"{len(class_names)} per-class probabilities ({', '.join(class_names)})",
            },
            version_label="demo",
        ),
        "cxr_aals_fracture_detection": export_trained_bundle(
            AALS_BUNDLE,
            out / "bundles" / AALS_BUNDLE.name,
            out / "aals" / "models" / "student_aals.pt",
            overrides={
                "image_size": [aals_image_size, aals_image_size],
                "batch_size": batch_size,
                "pretrained": False,
                **DEMO_DETECTOR,
            },
            metadata_updates={
                **synthetic,
                "eval_metrics": _synthetic_figures(aals["student, AALS"], AALS_FIGURES),
                "image_classes": f"{letterbox} {aals_image_size} x {aals_image_size}",
            },
            version_label="demo",
        ),
    }
    shutil.rmtree(out / "dicom", ignore_errors=True)
    dicom_datalist = write_phantom_dicom_studies(
        out / "data" / "datalist_vkd.json", out / "dicom", key="test", max_images=DEMO_DICOM_STUDIES
    )
    for bundle in bundles.values():
        _run(bundle, ["inference.json"], datalist=str(dicom_datalist), num_workers=0)
    return bundles


def format_handover(bundles: dict[str, Path], dicom_dir: Path) -> str:
    """Where the exported bundles, the DICOM studies and the bundles' predictions on them are."""
    lines = ["Exported bundles (Model Zoo layout, weights trained on synthetic data):"]
    lines += [f"  {path}" for path in bundles.values()]
    lines.append(f"Synthetic DICOM studies (CR): {dicom_dir}; the bundles' predictions on them:")
    lines += [f"  {path / 'predictions' / 'predictions.csv'}" for path in bundles.values()]
    lines.append("Both MONAI Deploy apps on them (DICOM SR out): make deploy-demo")
    return "\n".join(lines)


def write_demo_reports(out: Path, aals_image_size: int) -> dict[str, Path]:
    """The HTML evaluation reports of the demo's test runs (``cxrkd report``): VKD against its image-only baseline,
    and the AALS student against the stage-1 teacher, with the inference's probability maps and the student's
    stage-2 statistics. Each lands in ``<run folder>/report/report.html``."""
    from cxrkd_monai.report import write_report

    notice = "Synthetic data: these figures show the pipeline works; they say nothing about real radiographs."
    data_dir = out / "data"
    return {
        "VKD against its image-only baseline": write_report(
            out / "vkd" / "vkd" / "eval",
            compare=[out / "vkd" / "baseline" / "eval"],
            datalist=data_dir / "datalist_vkd.json",
            notice=notice,
        ),
        "AALS student against the stage-1 teacher": write_report(
            out / "aals" / "eval_student_aals",
            compare=[out / "aals" / "eval_teacher"],
            datalist=data_dir / "datalist_fracture.json",
            maps_dir=out / "aals" / "predictions",
            logs_dir=out / "aals" / "logs_student_aals",
            notice=notice,
            image_size=[aals_image_size, aals_image_size],
        ),
    }


def format_reports(reports: dict[str, Path]) -> str:
    """Where the evaluation reports are (one HTML file each, figures inline: open it in a browser)."""
    lines = ["\nEvaluation reports (open in a browser):"]
    return "\n".join(lines + [f"  {name}: {path}" for name, path in reports.items()])


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
    """Generate the synthetic data, run both bundles, print their tables, hand the trained models over as bundle
    folders run on synthetic DICOM studies (:func:`export_demo_bundles`), and end with the two HTML evaluation
    reports (:func:`write_demo_reports`). Returns all figures and the bundles' and reports' paths."""
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
    provenance = f"The demo's synthetic radiographs (`cxrkd phantom`, {num_patients} patients, seed {seed})"
    bundles = export_demo_bundles(out, vkd, aals, vkd_image_size, aals_image_size, batch_size, provenance)
    report = [format_vkd_table(vkd), "", format_aals_table(aals), "", format_handover(bundles, out / "dicom")]
    total = time.perf_counter() - started
    report.append(f"\nTotal demo time: {total:.0f} s.")
    report.append("Synthetic data: these figures show the pipelines work; they say nothing about real radiographs.")
    text = "\n".join(report)
    print(text)
    (out / "results.txt").write_text(text + "\n")
    reports = write_demo_reports(out, aals_image_size)
    print(format_reports(reports))
    bundle_paths = {name: str(path) for name, path in bundles.items()}
    report_paths = {name: str(path) for name, path in reports.items()}
    figures = {"vkd": vkd, "aals": aals, "bundles": bundle_paths, "reports": report_paths, "seconds": total}
    (out / "results.json").write_text(json.dumps(figures, indent=1, default=str))
    return figures
