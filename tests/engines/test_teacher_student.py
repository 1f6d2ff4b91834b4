"""TeacherStudentTrainer on tiny tensors: EMA update, per-type targets, sharpening modes, D_P loss, guards."""

from __future__ import annotations

import math

import pytest
import torch

from cxrkd_monai.engines.teacher_student import TeacherStudentTrainer, load_stage1_weights
from cxrkd_monai.handlers.finite_loss import FiniteLossGuard
from cxrkd_monai.handlers.pseudo_positive_rate import PseudoPositiveRate
from cxrkd_monai.losses import masked_map_mean
from cxrkd_monai.transforms.geometry import LetterboxGeometry

A0, THRESHOLD, WEIGHT, POS_WEIGHT = 4.0, 0.4, 0.5, 10.0

# Per item: record label and annotated types. Item 0 is D_R with a drawn rib fracture and an undrawn
# clavicle fracture; item 1 is D_P with a rib fracture only; item 2 is D_N; item 3 is D_R with a drawn rib
# fracture and no clavicle fracture.
RECORDS = [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
ANNOTATED = [[True, False], [False, False], [False, False], [True, False]]
SOFT = torch.tensor([[False, True], [True, False], [False, False], [False, False]])


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv2d(1, 2, kernel_size=3, padding=1)


def _batch(items: list[int], seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    n = len(items)
    target = torch.zeros(n, 2, 6, 6)
    for row, item in enumerate(items):
        if ANNOTATED[item][0]:
            target[row, 0, 2:4, 2:4] = 1.0
    return {
        "image": torch.rand(n, 1, 6, 6, generator=generator) * 4.0,
        "target": target,
        "image_label": torch.tensor([RECORDS[i] for i in items]),
        "annotated": torch.tensor([ANNOTATED[i] for i in items]),
        "image_filename": [f"images/item{i}.png" for i in items],
    }


def _collated(output: list[dict]) -> dict:
    """The trainer's decollated output stacked back into batch tensors; ``loss`` (repeated per item) once."""
    assert all(item["loss"] == output[0]["loss"] for item in output), "every item carries the batch loss"
    return {
        key: torch.as_tensor(output[0][key]) if key == "loss" else torch.stack([item[key] for item in output])
        for key in output[0]
    }


def _hard_loss() -> torch.nn.Module:
    return torch.nn.BCEWithLogitsLoss(pos_weight=torch.full((2, 1, 1), POS_WEIGHT), reduction="none")


def _trainer(tmp_path, network, batch, sharpening="aals", decay=0.9, lr=0.1, **kwargs) -> TeacherStudentTrainer:
    checkpoint = tmp_path / "teacher.pt"
    if not checkpoint.exists():
        torch.save(_network().state_dict(), checkpoint)
    settings = {
        "device": "cpu",
        "max_epochs": 1,
        "train_data_loader": [batch],
        "network": network,
        "optimizer": torch.optim.SGD(network.parameters(), lr=lr),
        "loss_function": _hard_loss(),
        "stage1_checkpoint": str(checkpoint),
        "sharpening": sharpening,
        "teacher_decay": decay,
        "pseudo_label_weight": WEIGHT,
        "sharpening_strength": A0,
        "sharpening_threshold": THRESHOLD,
    }
    return TeacherStudentTrainer(**{**settings, **kwargs})


def _hand_aals(y: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
    """The AALS formula written out: S(y) = sigmoid(a logit(y) + (1 - a) logit(t)), a = a0 - (a0 - 1) y_max."""
    y_max = y.amax(dim=(-2, -1), keepdim=True)
    a = A0 - (A0 - 1.0) * y_max
    logit = lambda p: torch.log(p / (1.0 - p))  # noqa: E731
    s = torch.sigmoid(a * logit(y) + (1.0 - a) * math.log(THRESHOLD / (1.0 - THRESHOLD)))
    return s if symmetric else torch.where(y > THRESHOLD, torch.maximum(s, y), y)


def _hand_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Per-pixel BCE written out: -(w y log p + (1 - y) log(1 - p))."""
    p = torch.sigmoid(logits)
    return -(pos_weight * target * p.log() + (1.0 - target) * (1.0 - p).log())


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
def test_targets_follow_record_and_annotation_per_type(tmp_path, sharpening):
    """Record 0: zeros on any image; annotated: blobs, pos-weighted; record 1 without region: teacher, plain BCE."""
    batch = _batch([0, 1, 2, 3])
    trainer = _trainer(tmp_path, _network(), batch, sharpening=sharpening)
    with torch.no_grad():
        logits = _network()(batch["image"])  # the stage-1 weights: both the student's and the teacher's
    teacher_prob = torch.sigmoid(logits[[0, 1]])  # the items with a soft map
    expected_target = {
        "aals": _hand_aals(teacher_prob),
        "symmetric": _hand_aals(teacher_prob, symmetric=True),
        "none": teacher_prob,
    }[sharpening]
    # hard maps: (0, rib) blobs, (1, clavicle) zeros although the teacher sees something there, D_N zeros,
    # (3, rib) blobs, (3, clavicle) zeros
    hard_maps = [(0, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    hard = torch.stack([_hand_bce(logits[i, k], batch["target"][i, k], POS_WEIGHT) for i, k in hard_maps]).mean()
    # soft maps: (0, clavicle) and (1, rib), plain BCE against the (sharpened) teacher map
    soft = torch.stack([_hand_bce(logits[0, 1], expected_target[0, 1]), _hand_bce(logits[1, 0], expected_target[1, 0])])

    trainer.run()
    output = _collated(trainer.state.output)
    torch.testing.assert_close(output["dp_mask"], SOFT)
    torch.testing.assert_close(output["dp_teacher"][[0, 1]], teacher_prob, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(output["dp_target"][[0, 1]], expected_target, atol=1e-5, rtol=1e-5)
    # items 2 and 3 have no soft map: the teacher did not run on them and their entries stay zero
    assert not output["dp_teacher"][[2, 3]].any() and not output["dp_target"][[2, 3]].any()
    torch.testing.assert_close(output["loss"], hard + WEIGHT * soft.mean(), atol=1e-5, rtol=1e-5)


def test_record_negative_type_of_a_dp_image_gets_zeros_not_a_sharpened_map(tmp_path):
    """Only the record-positive type of a D_P image is distilled; the loss equals BCE against zeros elsewhere."""
    batch = _batch([1])
    trainer = _trainer(tmp_path, _network(), batch, sharpening="aals")
    with torch.no_grad():
        logits = _network()(batch["image"])[0]
    teacher_clavicle = torch.sigmoid(logits[1])
    assert (teacher_clavicle > THRESHOLD).any(), "the teacher must see something a sharpened target would keep"
    expected = (
        _hand_bce(logits[1], torch.zeros(6, 6), POS_WEIGHT).mean()
        + WEIGHT * _hand_bce(logits[0], _hand_aals(torch.sigmoid(logits[None, :1]))[0, 0]).mean()
    )
    trainer.run()
    torch.testing.assert_close(_collated(trainer.state.output)["loss"], expected, atol=1e-5, rtol=1e-5)


def test_aals_raises_teacher_values_above_threshold_only(tmp_path):
    batch = _batch([0, 1])
    trainer = _trainer(tmp_path, _network(), batch, sharpening="aals")
    trainer.run()
    output = _collated(trainer.state.output)
    teacher, target = output["dp_teacher"][output["dp_mask"]], output["dp_target"][output["dp_mask"]]
    above = teacher > THRESHOLD
    assert above.any() and (~above).any()
    assert torch.all(target[above] > teacher[above])
    torch.testing.assert_close(target[~above], teacher[~above])


class _FreeLogits(torch.nn.Module):
    """A map of free logits, the same for every image: the D_P loss alone decides where it goes."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.full((1, 2, 4, 4), value))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(images), -1, -1, -1)


@pytest.mark.parametrize(
    ("sharpening", "teacher_value"),
    [("none", 0.1), ("none", 0.6), ("aals", 0.1), ("aals", 0.6), ("symmetric", 0.3), ("symmetric", 0.6)],
)
def test_dp_loss_is_minimised_at_its_target(tmp_path, sharpening, teacher_value):
    """A constant teacher map and a fixed target: the student converges to the target, not to 10y/(9y+1)."""
    checkpoint = tmp_path / "teacher.pt"
    torch.save(_FreeLogits(math.log(teacher_value / (1 - teacher_value))).state_dict(), checkpoint)
    student = _FreeLogits()
    batch = {
        "image": torch.zeros(1, 1, 16, 16),
        "target": torch.zeros(1, 2, 4, 4),
        "image_label": torch.ones(1, 2),
        "annotated": torch.zeros(1, 2, dtype=torch.bool),
    }
    # The D_P term is a mean over 32 pixels, so each logit's gradient is (p - y) / 32 and this step size
    # moves it by 4 (p - y): a contraction (dp/dlogit <= 1/4) that converges without overshooting.
    trainer = TeacherStudentTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=60,
        train_data_loader=[batch],
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=4.0 * 32),
        loss_function=_hard_loss(),
        stage1_checkpoint=str(checkpoint),
        sharpening=sharpening,
        teacher_decay=1.0 - 1e-12,  # the EMA step leaves a float32 teacher unchanged: the target stays fixed
        pseudo_label_weight=1.0,
        sharpening_strength=A0,
        sharpening_threshold=THRESHOLD,
    )
    with torch.no_grad():
        student.logits.fill_(0.0)  # start the student away from the teacher
    trainer.run()
    teacher_map = torch.full((1, 1, 4, 4), teacher_value)
    expected = {"aals": _hand_aals(teacher_map), "symmetric": _hand_aals(teacher_map, symmetric=True)}.get(
        sharpening, teacher_map
    )
    torch.testing.assert_close(_collated(trainer.state.output)["dp_target"][:, :1], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.sigmoid(student.logits.detach()), expected.expand(1, 2, 4, 4), atol=1e-4, rtol=0)


def test_mil_mode_uses_soft_map_maximum_against_positive_record(tmp_path):
    batch = _batch([0, 1, 2, 3])
    trainer = _trainer(tmp_path, _network(), batch, sharpening="mil")
    with torch.no_grad():
        logits = _network()(batch["image"])
    hard_maps = [(0, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    hard = torch.stack([_hand_bce(logits[i, k], batch["target"][i, k], POS_WEIGHT) for i, k in hard_maps]).mean()
    image_prob = torch.sigmoid(torch.stack([logits[0, 1].max(), logits[1, 0].max()]))
    mil = -image_prob.log().mean()

    trainer.run()
    output = _collated(trainer.state.output)
    torch.testing.assert_close(output["loss"], hard + WEIGHT * mil, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output["dp_target"][[0, 1]], torch.sigmoid(logits[[0, 1]]))


def test_mil_mode_takes_the_maximum_over_the_image_area_only(tmp_path):
    """A 6 x 3 image letterboxed into the 6 x 6 grid fills rows 1 to 3 (map stride 1); the rest is padding."""
    batch = _batch([0, 1, 2, 3])
    batch["geometry"] = LetterboxGeometry.fit((6, 3), (6, 6)).to_tensor()[None].expand(4, -1, -1)
    trainer = _trainer(tmp_path, _network(), batch, sharpening="mil")
    with torch.no_grad():
        logits = _network()(batch["image"])
    hard_maps = [(0, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    hard = torch.stack([_hand_bce(logits[i, k], batch["target"][i, k], POS_WEIGHT) for i, k in hard_maps]).mean()
    image_prob = torch.sigmoid(torch.stack([logits[0, 1, :, 1:4].max(), logits[1, 0, :, 1:4].max()]))
    assert image_prob.max() < torch.sigmoid(torch.stack([logits[0, 1].max(), logits[1, 0].max()])).max()

    trainer.run()
    output = _collated(trainer.state.output)
    torch.testing.assert_close(output["loss"], hard + WEIGHT * -image_prob.log().mean(), atol=1e-5, rtol=1e-5)


def test_batch_without_soft_maps_has_hard_loss_only(tmp_path):
    batch = _batch([2, 3])
    trainer = _trainer(tmp_path, _network(), batch)
    with torch.no_grad():
        expected = _hand_bce(_network()(batch["image"]), batch["target"], POS_WEIGHT).mean()
    trainer.run()
    output = _collated(trainer.state.output)
    torch.testing.assert_close(output["loss"], expected, atol=1e-6, rtol=1e-6)
    assert not output["dp_mask"].any() and not output["dp_target"].any() and output["dp_target"].shape == (2, 2, 6, 6)


def test_sharpening_statistics_are_logged_per_epoch(tmp_path):
    batch = _batch([0, 1, 2, 3])
    trainer = _trainer(tmp_path, _network(), batch, key_train_metric={"pseudo_positive_rate": PseudoPositiveRate()})
    trainer.run()
    output = _collated(trainer.state.output)
    target, teacher = output["dp_target"][output["dp_mask"]], output["dp_teacher"][output["dp_mask"]]
    assert target.shape == (2, 6, 6)
    metrics = trainer.state.metrics
    assert metrics["pseudo_positive_rate"] == pytest.approx((target.amax(dim=(-2, -1)) > 0.5).float().mean().item())
    assert metrics["dp_raised_fraction"] == pytest.approx((target > teacher).float().mean().item())
    assert metrics["dp_positive_area"] == pytest.approx((target > 0.5).float().mean().item())
    assert 0.0 < metrics["dp_raised_fraction"] < 1.0


def test_nan_loss_stops_training_naming_epoch_iteration_and_images(tmp_path):
    batches = [_batch([0, 1]), _batch([2, 3])]
    batches[1]["image"][0, 0, 0, 0] = float("nan")
    network = _network()
    trainer = _trainer(
        tmp_path, network, batches[0], max_epochs=2, train_data_loader=batches, train_handlers=[FiniteLossGuard()]
    )
    with pytest.raises(FloatingPointError) as error:
        trainer.run()
    message = str(error.value)
    assert "epoch 1, iteration 2 of 2" in message
    assert "images/item2.png" in message and "images/item3.png" in message
    assert torch.isfinite(network.weight).all(), "the guard runs before the backward pass"


def test_weighted_soft_target_loss_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="pos_weight"):
        _trainer(tmp_path, _network(), _batch([1]), soft_target_loss=_hard_loss())


def test_mean_reduced_loss_is_named(tmp_path):
    trainer = _trainer(tmp_path, _network(), _batch([0, 1]), loss_function=torch.nn.BCEWithLogitsLoss())
    with pytest.raises(ValueError, match="loss_function.*reduction='none'"):
        trainer.run()


def test_masked_map_mean_ignores_unselected_non_finite_values():
    values = torch.tensor([[[1.0, 2.0], [float("nan"), float("inf")]]])
    assert masked_map_mean(values, torch.tensor([[True, False]])).item() == pytest.approx(1.5)


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
            loss_function=_hard_loss(),
            stage1_checkpoint=str(missing),
        )
    assert str(missing) in str(error.value)


@pytest.mark.parametrize(("argument", "value"), [("sharpening", "hard"), ("decay", 1.0)])
def test_invalid_settings_are_named(tmp_path, argument, value):
    kwargs = {"sharpening": "aals", "decay": 0.9, argument: value}
    name = "sharpening" if argument == "sharpening" else "teacher_decay"
    with pytest.raises(ValueError, match=name):
        _trainer(tmp_path, _network(), _batch([1]), **kwargs)


@pytest.mark.parametrize("key", ["annotated", "image_label"])
def test_batch_without_per_type_keys_is_named(tmp_path, key):
    batch = _batch([0, 1])
    del batch[key]
    trainer = _trainer(tmp_path, _network(), batch)
    with pytest.raises(KeyError, match=key):
        trainer.run()
