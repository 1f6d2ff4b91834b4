"""Phantom datasets and bundle workflows for the benchmarks: the bundles' own configs, small sizes."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

from monai.bundle import ConfigWorkflow

from benchmarks.settings import BenchmarkSettings
from cxrkd_monai.phantom import generate_phantom_dataset

__all__ = [
    "FRACTURE_BUNDLE",
    "PHANTOM_IMAGE_SIZE",
    "REPO_ROOT",
    "VKD_BUNDLE",
    "generate_phantom",
    "vkd_overrides",
    "vkd_workflow",
    "write_vkd_datalist",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
VKD_BUNDLE = REPO_ROOT / "bundles" / "cxr_vkd_classification"
FRACTURE_BUNDLE = REPO_ROOT / "bundles" / "cxr_aals_fracture_detection"

PHANTOM_IMAGE_SIZE = (72, 64)
"""``(W, H)`` of the generated radiographs: not square, so that the letterbox transform has work to do."""

# The phantom generator puts about 60 % of patients in training, with 1 or 2 studies each.
_TRAINING_IMAGES_PER_PATIENT = 0.9


def generate_phantom(directory: str | Path, num_training_images: int, seed: int = 0) -> Path:
    """Write a phantom dataset with about ``num_training_images`` training images to ``directory``."""
    num_patients = max(8, math.ceil(num_training_images / _TRAINING_IMAGES_PER_PATIENT) + 4)
    generate_phantom_dataset(
        output_dir=str(directory), num_patients=num_patients, seed=seed, image_size=PHANTOM_IMAGE_SIZE
    )
    return Path(directory)


def write_vkd_datalist(
    phantom_dir: str | Path, datalist_path: str | Path, num_training: int, num_validation: int = 2
) -> Path:
    """A VKD datalist with exactly ``num_training`` training items taken from ``phantom_dir``.

    The phantom's training items are used in order and repeated from the start when more are asked
    for than it holds. Image paths are made absolute, so the datalist can live in any folder.
    """
    phantom_dir = Path(phantom_dir)
    source = json.loads((phantom_dir / "datalist_vkd.json").read_text())

    def absolute(item: dict) -> dict:
        return {**item, "image": str(phantom_dir / item["image"])}

    training = [
        absolute(item) for item in itertools.islice(itertools.cycle(source["training"]), num_training)
    ]
    validation = [absolute(item) for item in source["validation"][:num_validation]]
    datalist = {"class_names": source["class_names"], "training": training, "validation": validation}
    datalist_path = Path(datalist_path)
    datalist_path.parent.mkdir(parents=True, exist_ok=True)
    datalist_path.write_text(json.dumps(datalist))
    return datalist_path


def vkd_overrides(
    datalist_path: str | Path, run_dir: str | Path, settings: BenchmarkSettings, **extra
) -> dict:
    """Overrides of the VKD bundle's ``train.json`` for a benchmark run writing into ``run_dir``.

    Only paths, sizes and the class list of the phantom change; everything else (transforms, dataset,
    handlers, trainer) is the bundle's own. ``extra`` overrides further keys.
    """
    datalist_path, run_dir = Path(datalist_path), Path(run_dir)
    overrides = {
        "bundle_root": str(VKD_BUNDLE),
        "dataset_dir": str(datalist_path.parent),
        "datalist": str(datalist_path),
        "ckpt_dir": str(run_dir / "models"),
        "output_dir": str(run_dir / "eval"),
        "text_cache_dir": str(run_dir / "text_cache"),
        "cache_dir": str(run_dir / "preprocessed_cache"),
        "class_names": json.loads(datalist_path.read_text())["class_names"],
        "image_size": [settings.image_size, settings.image_size],
        "latent_dim": settings.latent_dim,
        "batch_size": settings.batch_size,
        "inference_mc_samples": settings.inference_mc_samples,
        "pretrained": False,
    }
    overrides.update(extra)
    return overrides


def vkd_workflow(overrides: dict, config_files: tuple[str, ...] = ("train.json",)) -> ConfigWorkflow:
    """The VKD bundle's training workflow with ``overrides``, initialised and ready to ``run()``."""
    configs = VKD_BUNDLE / "configs"
    workflow = ConfigWorkflow(
        config_file=[str(configs / name) for name in config_files],
        workflow_type="train",
        logging_file=str(configs / "logging.conf"),
        **overrides,
    )
    workflow.initialize()
    return workflow
