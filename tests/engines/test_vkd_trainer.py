"""VKDTrainer on batches as the bundle's data pipeline makes them: label masks from `cxrkd prepare`, mixed with
items that have none."""

import copy

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.networks.nets import DenseNet
from monai.transforms import Compose, EnsureTyped

from cxrkd_monai.engines import VKDTrainer
from cxrkd_monai.losses import VKDLoss
from cxrkd_monai.networks import VKDNet
from cxrkd_monai.transforms import EnsureLabelMaskd, ValidateVKDItemd

NUM_CLASSES = 3


def tiny_vkd() -> VKDNet:
    torch.manual_seed(0)
    encoder = DenseNet(
        spatial_dims=2, in_channels=1, out_channels=16, init_features=8, growth_rate=8, block_config=(2, 2)
    )
    return VKDNet(
        num_classes=NUM_CLASSES, image_encoder=encoder, image_feature_dim=16, text_feature_dim=8, latent_dim=4
    )


def text_features(reports):
    return torch.stack([torch.full((8,), float(len(r)) / 10.0) for r in reports])


def prepared_items() -> list[dict]:
    """Eight items: the first four as `cxrkd prepare` writes them (lists, a mask with zeros), four without a mask."""
    generator = torch.Generator().manual_seed(1)
    items = []
    for i in range(8):
        item = {
            "image": torch.rand(1, 32, 32, generator=generator),
            "label": [float(v) for v in (torch.rand(NUM_CLASSES, generator=generator) > 0.5)],
            "report": f"FINDINGS: report number {i}.",
        }
        if i < 4:
            item["label_mask"] = [1.0, 0.0, 1.0] if i % 2 == 0 else [1.0, 1.0, 1.0]
        items.append(item)
    return items


def loader(items: list[dict]) -> DataLoader:
    """The bundle's VKD item chain (validation, the default mask, typed labels) and MONAI's default collate."""
    transform = Compose(
        [
            ValidateVKDItemd(NUM_CLASSES),
            EnsureLabelMaskd(NUM_CLASSES),
            EnsureTyped(keys="label", dtype=torch.float32, track_meta=False),
        ]
    )
    return DataLoader(Dataset(items, transform), batch_size=4, shuffle=False, num_workers=0)


class RecordingLoss(VKDLoss):
    """The VKD loss, keeping the mask each iteration gave it."""

    def __init__(self):
        super().__init__(beta=0.1)
        self.masks = []

    def forward(self, output, target, mask=None):
        self.masks.append(None if mask is None else mask.clone())
        return super().forward(output, target, mask)


def train_one_epoch(items: list[dict]) -> tuple[list[float], RecordingLoss, VKDNet]:
    network = tiny_vkd()
    loss = RecordingLoss()
    trainer = VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader(items),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.05),
        loss_function=loss,
        text_encoder=text_features,
    )
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    torch.manual_seed(2)
    trainer.run()
    return losses, loss, network


def test_prepared_and_maskless_items_train_with_a_tensor_mask():
    losses, loss, _ = train_one_epoch(prepared_items())
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    torch.testing.assert_close(loss.masks[0], torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]] * 2))
    torch.testing.assert_close(loss.masks[1], torch.ones(4, NUM_CLASSES))  # items without a mask: all observed


def test_labels_under_a_zero_mask_change_neither_loss_nor_weights():
    items = prepared_items()
    flipped = copy.deepcopy(items)
    for index, item in enumerate(flipped[:4]):
        for c, observed in enumerate(item["label_mask"]):
            if not observed:  # 1 - label, or NaN: an unknown label may hold anything
                item["label"][c] = float("nan") if index == 0 else 1.0 - item["label"][c]
    assert [item["label"] for item in flipped] != [item["label"] for item in items]
    losses, _, network = train_one_epoch(items)
    flipped_losses, _, flipped_network = train_one_epoch(flipped)
    assert flipped_losses == losses
    for (name, value), flipped_value in zip(network.state_dict().items(), flipped_network.state_dict().values()):
        assert torch.equal(value, flipped_value), name


def test_a_mask_left_as_a_list_is_named():
    """PyTorch's default collate turns per-item mask lists into a list of C per-class tensors."""
    items = [{k: v for k, v in item.items()} for item in prepared_items()[:4]]
    batch = torch.utils.data.default_collate(items)
    assert isinstance(batch["label_mask"], list)
    network = tiny_vkd()
    trainer = VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.05),
        loss_function=VKDLoss(),
        text_encoder=text_features,
    )
    with pytest.raises(TypeError, match="'label_mask' is a list.*EnsureLabelMaskd"):
        trainer.run()


LEARNING_RATE = 0.1


def one_iteration(network: VKDNet, text_encoder, **options) -> tuple[VKDTrainer, dict]:
    """One VKDTrainer iteration with plain SGD on the first batch of :func:`prepared_items`, seeded."""
    batch = next(iter(loader(prepared_items())))
    trainer = VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=LEARNING_RATE),
        loss_function=VKDLoss(beta=0.5),
        text_encoder=text_encoder,
        **options,
    )
    torch.manual_seed(3)
    trainer.run()
    return trainer, batch


@pytest.mark.parametrize("with_text", [True, False], ids=["vkd", "baseline"])
def test_an_iteration_is_one_sgd_step_on_the_vkd_loss_of_the_training_path(with_text):
    """The reference step by hand: forward_train on the same draws, VKDLoss with the batch's mask, backward, SGD."""
    network, reference = tiny_vkd(), tiny_vkd()
    trainer, batch = one_iteration(network, text_features if with_text else None, num_train_samples=2)

    torch.manual_seed(3)
    reference.train()
    text = text_features(list(batch["report"])) if with_text else None
    outputs = reference.forward_train(batch["image"], text, num_samples=2)
    terms = VKDLoss(beta=0.5)(outputs, batch["label"].float(), batch["label_mask"])
    terms["loss"].backward()

    for (name, trained), initial in zip(network.named_parameters(), reference.parameters()):
        expected = initial.detach() - LEARNING_RATE * (initial.grad if initial.grad is not None else 0.0)
        torch.testing.assert_close(trained.detach(), expected, rtol=1e-5, atol=1e-6, msg=name)
    output = trainer.state.output  # decollated: one dict per image, the loss and its terms repeated in each
    assert len(output) == len(batch["image"])
    for item in output:
        assert item["loss"] == pytest.approx(float(terms["loss"]), rel=1e-5)
        for term in ("bce_prior", "kl", "bce_posterior"):
            assert (term in item) == (term in terms)
            if term in terms:
                assert item[term] == pytest.approx(float(terms[term]), rel=1e-5, abs=1e-7)
    # `pred` is the prior path's probability averaged over the draws, (C,) per image
    pred = torch.stack([item["pred"] for item in output])
    torch.testing.assert_close(pred, torch.sigmoid(outputs.prior_logits.detach()).mean(dim=0))
    if not with_text:  # the baseline never reaches the posterior head
        assert all(parameter.grad is None for parameter in reference.posterior.parameters())


def test_a_batch_without_reports_is_named():
    batch = next(iter(loader(prepared_items())))
    del batch["report"]
    network = tiny_vkd()
    trainer = VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=LEARNING_RATE),
        loss_function=VKDLoss(),
        text_encoder=text_features,
    )
    with pytest.raises(KeyError, match="VKD training batch has no 'report' key"):
        trainer.run()


def test_a_non_finite_loss_term_stops_training_naming_term_epoch_iteration_and_images():
    """As the fracture trainers' FiniteLossGuard: a NaN report feature in the second batch makes the posterior
    NaN; training stops before that step's backward pass, naming the first failing term and the batch's files."""
    items = prepared_items()
    for index, item in enumerate(items):
        item["image_filename"] = f"images/item{index}.png"
    items[5]["report"] = "NaN features"

    def features(reports):
        encoded = text_features(reports)
        encoded[[report == "NaN features" for report in reports]] = float("nan")
        return encoded

    network = tiny_vkd()
    trainer = VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=loader(items),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=LEARNING_RATE),
        loss_function=VKDLoss(),
        text_encoder=features,
    )
    with pytest.raises(FloatingPointError) as error:
        trainer.run()
    message = str(error.value)
    assert message.startswith("Training loss term 'bce_posterior' is not finite (nan) at epoch 1, iteration 2 of 2")
    assert "images/item4.png, images/item5.png, images/item6.png, images/item7.png" in message
    assert "images/item0.png" not in message and "NaN features" not in message
    assert trainer.state.iteration == 2
    assert all(torch.isfinite(parameter).all() for parameter in network.parameters()), "stopped before backward"
