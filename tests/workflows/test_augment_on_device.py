"""The training configs' ``augment_on_device`` and ``train_loader`` options, as config values and in real runs.

Off (the default), the random augmentation runs per item in the data loader, as the published figures were
made. On, the loader only reads and collates, and the trainer's batch preparation augments the batch on the
trainer's device with the same transform objects.
"""

import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import DataLoader, ThreadDataLoader
from monai.engines.utils import default_prepare_batch
from monai.transforms import Randomizable

from cxrkd_monai.engines import AugmentingPrepareBatch, PrepareFractureBatch
from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.transforms import BatchAugmentd

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
VKD = BUNDLES / "cxr_vkd_classification" / "configs"
FRACTURE = BUNDLES / "cxr_aals_fracture_detection" / "configs"
TRAINING_CONFIGS = {"vkd": VKD / "train.json", "fracture": FRACTURE / "train_teacher.json"}
BATCH_PREPARATION = {"vkd": default_prepare_batch, "fracture": PrepareFractureBatch}


def parser_for(name: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(TRAINING_CONFIGS[name]))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def random_transforms(preprocessing) -> list:
    return [transform for transform in preprocessing.flatten().transforms if isinstance(transform, Randomizable)]


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_by_default_the_loader_augments_each_item(name):
    parser = parser_for(name)
    assert parser["augment_on_device"] is False and parser["train_loader"] == "DataLoader"
    augmentation = parser.get_parsed_content("train#augmentation")
    assert random_transforms(parser.get_parsed_content("train#preprocessing")) == augmentation
    prepare_batch = parser.get_parsed_content("train#prepare_batch")
    assert not isinstance(prepare_batch, AugmentingPrepareBatch)


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_augment_on_device_moves_the_random_transforms_to_the_batch_preparation(name):
    parser = parser_for(name, augment_on_device=True)
    assert random_transforms(parser.get_parsed_content("train#preprocessing")) == []
    prepare_batch = parser.get_parsed_content("train#prepare_batch")
    assert isinstance(prepare_batch, AugmentingPrepareBatch) and isinstance(prepare_batch.augmentation, BatchAugmentd)
    assert prepare_batch.augmentation.transforms == parser.get_parsed_content("train#augmentation")
    expected = BATCH_PREPARATION[name]
    inner = prepare_batch.prepare_batch
    assert inner is expected if name == "vkd" else isinstance(inner, expected)
    # a resumed run restores the generators of the transforms that now run in the trainer
    states = parser.get_parsed_content("train#checkpoint#objects#random_states")
    generators = {id(generator) for generator in states.transform_generators()}
    assert all(id(transform.R) in generators for transform in prepare_batch.augmentation.transforms)


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
@pytest.mark.parametrize("loader", [DataLoader, ThreadDataLoader])
def test_train_loader_selects_the_loader_class(name, loader):
    parser = parser_for(name, train_loader=loader.__name__, num_workers=0)
    parser["train#dataloader#dataset"] = [{"image": torch.zeros(1, 2, 2)} for _ in range(4)]
    parser["train#dataloader#batch_size"] = 2
    data_loader = parser.get_parsed_content("train#dataloader")
    assert type(data_loader) is loader
    assert [batch["image"].shape for batch in data_loader] == [torch.Size([2, 1, 2, 2])] * 2


@pytest.mark.slow
def test_vkd_trains_with_augmentation_on_the_device_and_a_thread_loader(tmp_path):
    phantom = tmp_path / "phantom"
    generate_phantom_dataset(output_dir=str(phantom), num_patients=8, seed=3, image_size=(72, 64))
    class_names = json.loads((phantom / "datalist_vkd.json").read_text())["class_names"]
    workflow = ConfigWorkflow(
        config_file=str(VKD / "train.json"),
        workflow_type="train",
        logging_file=str(VKD / "logging.conf"),
        bundle_root=str(VKD.parent),
        dataset_dir=str(phantom),
        class_names=class_names,
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        text_cache_dir=str(tmp_path / "text_cache"),
        image_size=[64, 64],
        latent_dim=16,
        epochs=2,
        batch_size=4,
        num_workers=0,
        learning_rate=1e-3,
        inference_mc_samples=2,
        pretrained=False,
        augment_on_device=True,
        train_loader="ThreadDataLoader",
    )
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert isinstance(trainer.prepare_batch, AugmentingPrepareBatch)
    assert isinstance(trainer.data_loader, ThreadDataLoader)
    augmented_batches, losses = [], []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        # the trainer decollates batch and output: one image per item
        loaded = torch.stack([item["image"] for item in engine.state.batch])
        trained = torch.stack([item["image"] for item in engine.state.output])
        assert trained.device == engine.state.device and trained.shape == loaded.shape
        augmented_batches.append(not torch.equal(trained.cpu(), loaded))
        losses.append(float(engine.state.output[0]["loss"]))

    workflow.run()
    workflow.finalize()
    assert any(augmented_batches)  # the trainer stepped on augmented images, the loader delivered plain ones
    assert all(torch.isfinite(torch.tensor(losses)))
    assert (tmp_path / "models" / "model.pt").is_file()
