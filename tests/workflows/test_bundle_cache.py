"""Both bundles train on the preprocessed cache by default: the same losses as the in-memory path (the shared
cache of a two-process torchrun run is checked in ``test_vkd_torchrun.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from cxrkd_monai import cli
from cxrkd_monai.phantom import generate_phantom_dataset
from tests.workflows.conftest import FRACTURE_TINY, cache_index, unique_images, vkd_tiny_overrides

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VKD_CONFIGS = ROOT / "bundles" / "cxr_vkd_classification" / "configs"
FRACTURE_CONFIGS = ROOT / "bundles" / "cxr_aals_fracture_detection" / "configs"
IN_MEMORY = {"cache_dir": None, "cache_rate": 1.0}
# The bundles store images with cache_image_storage "exact": the network sees bitwise the in-memory path's
# inputs, so the losses agree to float32 rounding (measured: bitwise equal). rtol 1e-6 (about ten float32 ulps)
# leaves room only for kernels that reorder sums; uint16 storage would already differ by 6e-4 at the second step.
LOSS_RTOL = 1e-6


def train(configs: Path, files: list[str], overrides: dict, reports: dict | None = None) -> list[float]:
    """Run a bundle's training workflow and return the loss of every iteration; the datasets' cache build
    reports go into ``reports`` when given."""
    workflow = ConfigWorkflow(
        config_file=[str(configs / name) for name in files],
        logging_file=str(configs / "logging.conf"),
        workflow_type="train",
        **overrides,
    )
    workflow.initialize()
    losses = []
    trainer = workflow.parser.get_parsed_content("train#trainer")

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        losses.append(float(engine.state.output[0]["loss"]))

    workflow.run()
    if reports is not None:
        for dataset in ("train#dataset", "validate#dataset"):
            reports[dataset] = workflow.parser.get_parsed_content(dataset).build_report
    workflow.finalize()
    return losses


@pytest.fixture(scope="module")
def vkd_phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("vkd_phantom")
    generate_phantom_dataset(output_dir=str(out), num_patients=16, seed=3, image_size=(72, 64))
    return out


@pytest.fixture(scope="module")
def fracture_phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("fracture_phantom")
    generate_phantom_dataset(out, num_patients=12, image_size=(64, 64), seed=0)
    return out


def test_vkd_trains_on_the_cache_with_the_losses_of_the_in_memory_path(vkd_phantom, tmp_path):
    cache_dir = tmp_path / "cache"
    cached_run = vkd_tiny_overrides(vkd_phantom, tmp_path / "cached", epochs=1, cache_dir=str(cache_dir))
    build_overrides = {key: value for key, value in cached_run.items() if key != "num_workers"}
    prebuilt = cli.cache(str(VKD_CONFIGS.parent), num_workers=2, **build_overrides)  # `cxrkd cache`, 2 processes
    datalist = json.loads((vkd_phantom / "datalist_vkd.json").read_text())
    assert prebuilt["train#dataset"]["built"] == len(datalist["training"])
    assert prebuilt["validate#dataset"]["built"] == len(datalist["validation"])
    reports = {}
    cached = train(VKD_CONFIGS, ["train.json"], cached_run, reports)
    assert reports["train#dataset"].built == reports["validate#dataset"].built == 0  # the run only reads
    memory_run = vkd_tiny_overrides(vkd_phantom, tmp_path / "memory", epochs=1, **IN_MEMORY)
    in_memory = train(VKD_CONFIGS, ["train.json"], memory_run)
    assert len(cached) == len(in_memory) > 1
    np.testing.assert_allclose(cached, in_memory, rtol=LOSS_RTOL)
    index = cache_index(cache_dir)
    assert len(index) == len(np.unique(index["key"])) == unique_images(vkd_phantom / "datalist_vkd.json")


def test_fracture_teacher_and_student_train_on_the_cache_with_the_losses_of_the_in_memory_path(
    fracture_phantom, tmp_path
):
    teacher, student = ["train_teacher.json"], ["train_teacher.json", "train_student.json"]
    losses = {}
    for name, extra in (("cached", {"cache_dir": str(tmp_path / "cache")}), ("memory", IN_MEMORY)):
        overrides = {**FRACTURE_TINY, "bundle_root": str(tmp_path / name), "dataset_dir": str(fracture_phantom)}
        overrides.update(extra)
        losses[name] = (train(FRACTURE_CONFIGS, teacher, overrides), train(FRACTURE_CONFIGS, student, overrides))
    for stage in (0, 1):
        assert len(losses["cached"][stage]) == len(losses["memory"][stage]) > 1
        np.testing.assert_allclose(losses["cached"][stage], losses["memory"][stage], rtol=LOSS_RTOL)
    index = cache_index(tmp_path / "cache")
    assert len(index) == len(np.unique(index["key"]))
    # every training (all subsets, for the student) and validation item has its entry
    assert len(index) == unique_images(fracture_phantom / "datalist_fracture.json")
