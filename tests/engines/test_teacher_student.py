"""TeacherStudentTrainer on tiny tensors: EMA update, per-subset losses, sharpening modes, checkpoint errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxrkd_monai.engines.fracture_handlers import PseudoPositiveRate
from cxrkd_monai.engines.teacher_student import TeacherStudentTrainer, load_stage1_weights

A0, THRESHOLD, WEIGHT = 4.0, 0.4, 0.5


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv2d(1, 2, kernel_size=3, padding=1)


def _batch(subsets: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n = len(subsets)
    target = torch.zeros(n, 2, 6, 6)
    target[0, 0, 2:4, 2:4] = 1.0
    return {
        "image": torch.rand(n, 1, 6, 6, generator=generator) * 4.0,
        "target": target,
        "subset_index": torch.tensor(subsets),
        "image_label": torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]][:n]),
    }


def _trainer(tmp_path, network, batch, sharpening="aals", decay=0.9, lr=0.1, **kwargs) -> TeacherStudentTrainer:
    checkpoint = tmp_path / "teacher.pt"
    if not checkpoint.exists():
        torch.save(_network().state_dict(), checkpoint)
    return TeacherStudentTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[batch],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr),
        loss_function=torch.nn.BCEWithLogitsLoss(),
        stage1_checkpoint=str(checkpoint),
        sharpening=sharpening,
        teacher_decay=decay,
        pseudo_label_weight=WEIGHT,
        sharpening_strength=A0,
        sharpening_threshold=THRESHOLD,
        **kwargs,
    )


def _hand_aals(y: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
    """The AALS formula written out: S(y) = sigmoid(a logit(y) + (1 - a) logit(t)), a = a0 - (a0 - 1) y_max."""
    y_max = y.amax(dim=(-2, -1), keepdim=True)
    a = A0 - (A0 - 1.0) * y_max
    logit = lambda p: torch.log(p / (1.0 - p))  # noqa: E731
    s = torch.sigmoid(a * logit(y) + (1.0 - a) * math.log(THRESHOLD / (1.0 - THRESHOLD)))
    return s if symmetric else torch.where(y > THRESHOLD, torch.maximum(s, y), y)


def test_student_and_teacher_start_from_stage1_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, _network(seed=5), _batch([0, 1]))
    reference = _network().state_dict()
    for name, value in reference.items():
        torch.testing.assert_close(trainer.network.state_dict()[name], value)
        torch.testing.assert_close(trainer.teacher.state_dict()[name], value)
    assert not trainer.teacher.training


def test_checkpoint_saved_with_model_key_loads(tmp_path):
    path = tmp_path / "dict.pt"
    torch.save({"model": _network(seed=3).state_dict()}, path)
    network = _network(seed=4)
    load_stage1_weights(network, path)
    torch.testing.assert_close(network.weight, _network(seed=3).weight)


def test_teacher_is_ema_of_student_with_configured_decay(tmp_path):
    decay = 0.9
    trainer = _trainer(tmp_path, _network(), _batch([0, 1, 2]), decay=decay)
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    trainer.run()
    student_after = trainer.network.state_dict()
    for name, before in teacher_before.items():
        assert not torch.allclose(student_after[name], before), "the student must have moved for this check"
        expected = decay * before + (1.0 - decay) * student_after[name]
        torch.testing.assert_close(trainer.teacher.state_dict()[name], expected)


@pytest.mark.parametrize("sharpening", ["aals", "symmetric", "none"])
def test_loss_uses_supervised_maps_for_dr_dn_and_teacher_targets_for_dp(tmp_path, sharpening):
    batch = _batch([0, 1, 2, 1])
    trainer = _trainer(tmp_path, _network(), batch, sharpening=sharpening)
    with torch.no_grad():
        logits = _network()(batch["image"])  # the stage-1 weights: both the student's and the teacher's
    teacher_prob = torch.sigmoid(logits[[1, 3]])
    expected_target = {
        "aals": _hand_aals(teacher_prob),
        "symmetric": _hand_aals(teacher_prob, symmetric=True),
        "none": teacher_prob,
    }[sharpening]
    supervised = F.binary_cross_entropy_with_logits(logits[[0, 2]], batch["target"][[0, 2]])
    pseudo = F.binary_cross_entropy_with_logits(logits[[1, 3]], expected_target)

    trainer.run()
    output = trainer.state.output
    torch.testing.assert_close(output["dp_target"], expected_target, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output["dp_label"], batch["image_label"][[1, 3]])
    torch.testing.assert_close(output["loss"].detach(), supervised + WEIGHT * pseudo, atol=1e-6, rtol=1e-6)


def test_aals_raises_teacher_values_above_threshold_only(tmp_path):
    batch = _batch([1, 1])
    trainer = _trainer(tmp_path, _network(), batch, sharpening="aals")
    trainer.run()
    with torch.no_grad():
        teacher_prob = torch.sigmoid(_network()(batch["image"]))
    target = trainer.state.output["dp_target"]
    above = teacher_prob > THRESHOLD
    assert above.any() and (~above).any()
    assert torch.all(target[above] > teacher_prob[above])
    torch.testing.assert_close(target[~above], teacher_prob[~above])


def test_mil_mode_uses_map_maximum_against_record_label(tmp_path):
    batch = _batch([0, 1, 2, 1])
    trainer = _trainer(tmp_path, _network(), batch, sharpening="mil")
    with torch.no_grad():
        logits = _network()(batch["image"])
    supervised = F.binary_cross_entropy_with_logits(logits[[0, 2]], batch["target"][[0, 2]])
    image_prob = torch.sigmoid(logits[[1, 3]]).amax(dim=(-2, -1))
    record = batch["image_label"][[1, 3]]
    mil = -(record * image_prob.log() + (1 - record) * (1 - image_prob).log()).mean()

    trainer.run()
    torch.testing.assert_close(trainer.state.output["loss"].detach(), supervised + WEIGHT * mil, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(trainer.state.output["dp_target"], torch.sigmoid(logits[[1, 3]]))


def test_batch_without_dp_items_has_supervised_loss_only(tmp_path):
    batch = _batch([0, 2])
    trainer = _trainer(tmp_path, _network(), batch)
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(_network()(batch["image"]), batch["target"])
    trainer.run()
    torch.testing.assert_close(trainer.state.output["loss"].detach(), expected)
    assert trainer.state.output["dp_target"].shape[0] == 0


def test_pseudo_positive_rate_is_logged_per_epoch(tmp_path):
    batch = _batch([0, 1, 2, 1])
    trainer = _trainer(tmp_path, _network(), batch, key_train_metric={"pseudo_positive_rate": PseudoPositiveRate()})
    trainer.run()
    target = trainer.state.output["dp_target"]
    labels = batch["image_label"][[1, 3]]
    peaks_positive = target.amax(dim=(-2, -1)) > 0.5
    record_positive = labels > 0.5
    expected_rate = (peaks_positive & record_positive).sum().item() / record_positive.sum().item()
    assert trainer.state.metrics["pseudo_positive_rate"] == pytest.approx(expected_rate)
    assert trainer.state.metrics["record_prevalence"] == pytest.approx(3 / 4)


def test_missing_stage1_checkpoint_names_path_and_stage1(tmp_path):
    network = _network()
    missing = tmp_path / "models" / "teacher.pt"
    with pytest.raises(FileNotFoundError, match="stage 1") as error:
        TeacherStudentTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=[_batch([1])],
            network=network,
            optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
            loss_function=torch.nn.BCEWithLogitsLoss(),
            stage1_checkpoint=str(missing),
        )
    assert str(missing) in str(error.value)


@pytest.mark.parametrize(("argument", "value"), [("sharpening", "hard"), ("decay", 1.0)])
def test_invalid_settings_are_named(tmp_path, argument, value):
    kwargs = {"sharpening": "aals", "decay": 0.9, argument: value}
    name = "sharpening" if argument == "sharpening" else "teacher_decay"
    with pytest.raises(ValueError, match=name):
        _trainer(tmp_path, _network(), _batch([1]), **kwargs)


def test_batch_without_subset_index_is_named(tmp_path):
    batch = _batch([0, 1])
    del batch["subset_index"]
    trainer = _trainer(tmp_path, _network(), batch)
    with pytest.raises(KeyError, match="subset_index"):
        trainer.run()
