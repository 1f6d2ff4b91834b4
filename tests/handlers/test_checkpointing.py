"""Resumable checkpoints: atomic saving, restored random generators, best-model tracking and the overwrite guard."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, RandAffined, RandGaussianNoised, RandScaleIntensityd

from cxrkd_monai.handlers import (
    AtomicCheckpointSaver,
    BestMetricState,
    GradScalerState,
    RandomStates,
    find_last_checkpoint,
    refuse_to_overwrite,
)
from cxrkd_monai.losses.annealing import CyclicalAnnealingSchedule

VKD_TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "bundles" / "cxr_vkd_classification" / "configs" / "train.json"


def _augmentation() -> Compose:
    keys = ["image"]
    transforms = Compose(
        [
            RandAffined(keys, prob=0.5, rotate_range=0.3, translate_range=4),
            RandGaussianNoised(keys, prob=0.5),
            RandScaleIntensityd(keys, factors=0.2, prob=0.5),
        ]
    )
    transforms.set_random_state(seed=7)
    return transforms


def _draws(transforms: Compose) -> list:
    """One draw from every generator a training step may use."""
    augmented = transforms({"image": torch.ones(1, 8, 8)})["image"]
    return [torch.rand(3), np.random.rand(3), random.random(), augmented.as_tensor().clone()]


def _assert_same_draws(first: list, second: list) -> None:
    torch.testing.assert_close(first[0], second[0], rtol=0, atol=0)
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
    torch.testing.assert_close(first[3], second[3], rtol=0, atol=0)


def test_random_states_replay_global_and_transform_draws(tmp_path):
    transforms = _augmentation()
    for _ in range(5):  # move every generator away from its seed
        _draws(transforms)
    states = RandomStates(transforms)
    torch.save(states.state_dict(), tmp_path / "rng.pt")
    expected = [_draws(transforms) for _ in range(4)]

    # a fresh process would rebuild the transforms from the config, with their generators at the seed
    fresh = _augmentation()
    RandomStates(fresh).load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    for reference in expected:
        _assert_same_draws(reference, _draws(fresh))


def test_random_states_find_the_generators_nested_in_dictionary_transforms():
    transforms = _augmentation()
    generators = RandomStates(transforms).transform_generators()
    rand_affined = transforms.transforms[0]
    nested = [rand_affined.R, rand_affined.rand_affine.R, rand_affined.rand_affine.rand_affine_grid.R]
    assert all(any(generator is candidate for generator in generators) for candidate in nested)
    assert transforms.R in generators


def test_random_states_reject_a_changed_transform_chain():
    saved = RandomStates(_augmentation()).state_dict()
    shorter = Compose([RandScaleIntensityd("image", factors=0.2, prob=0.5)])
    with pytest.raises(ValueError, match="transform chain changed"):
        RandomStates(shorter).load_state_dict(saved)


def _engine_with_metric(values: list[float]) -> Engine:
    engine = Engine(lambda e, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics["auroc"] = values[e.state.epoch - 1]

    return engine


def _best_model_saver(save_dir, network) -> AtomicCheckpointSaver:
    return AtomicCheckpointSaver(
        save_dir=str(save_dir),
        save_dict={"model": network},
        save_key_metric=True,
        key_metric_name="auroc",
        key_metric_filename="model.pt",
    )


def test_resumed_best_model_saver_never_replaces_a_better_model(tmp_path):
    network = torch.nn.Linear(2, 1)
    saver = _best_model_saver(tmp_path, network)
    engine = _engine_with_metric([0.708])
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    best_bytes = (tmp_path / "model.pt").read_bytes()
    state = saver.state_dict()
    assert state == {"_saved": [(pytest.approx(0.708), "model_key_metric=0.7080.pt")]}

    # the resumed run: new weights, a new saver given the interrupted run's tracking list, a worse score
    torch.nn.init.constant_(network.weight, 5.0)
    resumed = _best_model_saver(tmp_path, network)
    resumed.load_state_dict(state)
    engine = _engine_with_metric([0.458, 0.9])
    resumed.attach(engine)
    engine.run([0], max_epochs=1)
    assert (tmp_path / "model.pt").read_bytes() == best_bytes

    engine.run([0], max_epochs=2)  # a better score does replace it
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].eq(5.0).all()


def test_best_model_saver_without_the_restored_list_would_replace_it(tmp_path):
    """The failure mode of a resume that forgets the tracking list (what the bundles did before)."""
    network = torch.nn.Linear(2, 1)
    engine = _engine_with_metric([0.708])
    _best_model_saver(tmp_path, network).attach(engine)
    engine.run([0], max_epochs=1)
    best_bytes = (tmp_path / "model.pt").read_bytes()
    torch.nn.init.constant_(network.weight, 5.0)
    engine = _engine_with_metric([0.458])
    _best_model_saver(tmp_path, network).attach(engine)
    engine.run([0], max_epochs=1)
    assert (tmp_path / "model.pt").read_bytes() != best_bytes


def test_a_save_that_fails_midway_leaves_the_previous_best_model_intact(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 1)
    saver = _best_model_saver(tmp_path, network)
    engine = _engine_with_metric([0.5, 0.9])
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    best_bytes = (tmp_path / "model.pt").read_bytes()

    def killed_while_writing(obj, file, **kwargs):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    assert (tmp_path / "model.pt").read_bytes() == best_bytes
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.pt"]


def _interval_saver(save_dir, network) -> AtomicCheckpointSaver:
    return AtomicCheckpointSaver(
        save_dir=str(save_dir), save_dict={"model": network, "optimizer": torch.optim.SGD(network.parameters(), 0.1)},
        file_prefix="model", save_interval=1, n_saved=1,
    )


def test_the_last_checkpoint_is_deleted_only_after_its_successor_is_written(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, batch: None)
    _interval_saver(tmp_path, network).attach(engine)
    engine.run([0], max_epochs=2)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model_checkpoint_epoch=2.pt"]

    def killed_while_writing(obj, file, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=3)
    assert find_last_checkpoint(tmp_path, "model").name == "model_checkpoint_epoch=2.pt"


def test_an_adopted_checkpoint_of_the_interrupted_run_is_superseded(tmp_path):
    network = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, batch: None)
    _interval_saver(tmp_path, network).attach(engine)
    engine.run([0], max_epochs=2)

    resumed_engine = Engine(lambda e, batch: None)
    resumed_engine.load_state_dict({"epoch": 2, "max_epochs": 4, "epoch_length": 1})
    resumed = _interval_saver(tmp_path, network)
    resumed.adopt_interval_checkpoint(find_last_checkpoint(tmp_path, "model"))
    resumed.attach(resumed_engine)
    resumed_engine.run([0], max_epochs=4)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model_checkpoint_epoch=4.pt"]


def test_find_last_checkpoint_orders_epochs_numerically_and_per_prefix(tmp_path):
    for name in ("model_checkpoint_epoch=9.pt", "model_checkpoint_epoch=10.pt", "teacher_checkpoint_epoch=30.pt"):
        (tmp_path / name).touch()
    (tmp_path / "tmpabc123").touch()  # what an atomic save killed midway leaves behind
    assert find_last_checkpoint(tmp_path, "model").name == "model_checkpoint_epoch=10.pt"
    assert find_last_checkpoint(tmp_path, "teacher").name == "teacher_checkpoint_epoch=30.pt"
    with pytest.raises(FileNotFoundError, match="student_checkpoint_epoch=N.pt"):
        find_last_checkpoint(tmp_path, "student")


def test_refuse_to_overwrite_names_the_earlier_run(tmp_path):
    refuse_to_overwrite(tmp_path, "model.pt", "model")  # empty folder: a fresh run may start
    (tmp_path / "teacher.pt").touch()
    (tmp_path / "teacher_checkpoint_epoch=40.pt").touch()
    refuse_to_overwrite(tmp_path, "model.pt", "model")  # stage 1's files do not block stage 2
    (tmp_path / "model_checkpoint_epoch=36.pt").touch()
    with pytest.raises(FileExistsError, match=r"model_checkpoint_epoch=36\.pt.*--resume True"):
        refuse_to_overwrite(tmp_path, "model.pt", "model")
    (tmp_path / "model_checkpoint_epoch=36.pt").unlink()
    (tmp_path / "model.pt").touch()
    with pytest.raises(FileExistsError, match="model.pt"):
        refuse_to_overwrite(tmp_path, "model.pt", "model")


def test_best_metric_state_round_trip():
    evaluator = SupervisedEvaluator(device="cpu", val_data_loader=[0], network=torch.nn.Identity())
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.708, 2
    saved = BestMetricState(evaluator).state_dict()
    fresh = SupervisedEvaluator(device="cpu", val_data_loader=[0], network=torch.nn.Identity())
    assert fresh.state.best_metric_epoch == -1
    BestMetricState(fresh).load_state_dict(saved)
    assert (fresh.state.best_metric, fresh.state.best_metric_epoch) == (pytest.approx(0.708), 2)


def _bundle_beta_schedule(schedule: dict) -> tuple[object, object]:
    """The VKD bundle's β handler (a ``ParamSchedulerHandler`` of ``train#handlers``) and the loss it sets, with
    ``schedule`` as the bundle's ``beta_schedule``."""
    parser = ConfigParser()
    parser.read_config(str(VKD_TRAIN_CONFIG))
    parser["beta_schedule"] = schedule
    index = next(i for i, h in enumerate(parser["train#handlers"]) if h["_target_"] == "ParamSchedulerHandler")
    return parser.get_parsed_content(f"train#handlers#{index}"), parser.get_parsed_content("loss")


def test_beta_schedule_position_is_restored_with_the_trainer_state():
    """The β schedule is a pure function of the iteration, so the trainer's own state carries its position."""
    schedule = {"_target_": "cxrkd_monai.losses.CyclicalAnnealingSchedule", "total_steps": 12, "num_cycles": 2,
                "max_value": 1.0, "ratio": 0.5}  # fmt: skip

    def run(engine_state: dict | None, max_epochs: int) -> tuple[Engine, list[float]]:
        handler, loss = _bundle_beta_schedule(schedule)
        seen = []
        engine = Engine(lambda e, batch: seen.append(loss.beta))
        handler.attach(engine)
        if engine_state is not None:
            engine.load_state_dict(engine_state)
        engine.run(range(4), max_epochs=max_epochs)
        return engine, seen

    _, uninterrupted = run(None, max_epochs=3)
    interrupted, first_part = run(None, max_epochs=1)
    _, resumed_part = run(interrupted.state_dict(), max_epochs=3)
    assert first_part + resumed_part == uninterrupted
    # every iteration, the first included, trains with the schedule's value for its 0-based step
    reference = CyclicalAnnealingSchedule(total_steps=12, num_cycles=2, max_value=1.0, ratio=0.5)
    assert uninterrupted == pytest.approx([reference(step) for step in range(12)])


def test_grad_scaler_state_follows_the_scaler_the_trainer_creates_at_run_time():
    class Trainer:
        scaler = None

    trainer = Trainer()
    state = GradScalerState(trainer)
    assert state.state_dict() == {}  # no AMP: nothing to save, and loading nothing is harmless
    state.load_state_dict({})

    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer.scaler.scale(torch.ones(()))  # the scale tensor is created lazily, by the first scaled loss
    trainer.scaler.update(new_scale=96.0)
    saved = state.state_dict()
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # what a resumed run starts with
    state.load_state_dict(saved)
    assert trainer.scaler.get_scale() == 96.0
