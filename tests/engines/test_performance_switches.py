"""AMP, channels_last and torch.compile switches: on CPU they must leave results within tolerance."""

import pytest
import torch
from ignite.engine import Events
from monai.networks.nets import DenseNet
from torch.utils.data import DataLoader

from cxrkd_monai.engines import VKDTrainer
from cxrkd_monai.losses import VKDLoss
from cxrkd_monai.networks import FractureFPN, VKDNet


def tiny_vkd() -> VKDNet:
    torch.manual_seed(0)
    encoder = DenseNet(
        spatial_dims=2, in_channels=1, out_channels=16, init_features=8, growth_rate=8, block_config=(2, 2)
    )
    return VKDNet(num_classes=3, image_encoder=encoder, image_feature_dim=16, text_feature_dim=8, latent_dim=4)


def batches():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 1, 32, 32, generator=generator)
    labels = (torch.rand(8, 3, generator=generator) > 0.5).float()
    reports = [f"report {i}" for i in range(8)]
    items = [{"image": images[i], "label": labels[i], "report": reports[i]} for i in range(8)]
    return DataLoader(items, batch_size=4, shuffle=False)


def text_features(reports):
    return torch.stack([torch.full((8,), float(len(r)) / 10.0) for r in reports])


def one_epoch_losses(**trainer_options) -> list[float]:
    network = tiny_vkd()
    losses = []
    trainer = VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=batches(),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01),
        loss_function=VKDLoss(beta=0.1),
        text_encoder=text_features,
        **trainer_options,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    torch.manual_seed(2)
    trainer.run()
    return losses


def test_channels_last_gives_the_same_predictions():
    network = tiny_vkd().eval()
    image = torch.rand(2, 1, 32, 32)
    reference = network(image)
    network = network.to(memory_format=torch.channels_last)
    channels_last_image = image.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(network(channels_last_image), reference, atol=1e-5, rtol=1e-4)


def test_bfloat16_autocast_on_cpu_stays_close_to_float32():
    reference = one_epoch_losses()
    mixed = one_epoch_losses(amp=True, amp_kwargs={"dtype": torch.bfloat16})
    assert mixed != reference  # autocast really ran in reduced precision
    torch.testing.assert_close(torch.tensor(mixed), torch.tensor(reference), rtol=5e-2, atol=5e-2)


@pytest.mark.slow
def test_compiled_networks_match_eager():
    vkd = tiny_vkd().eval()
    image = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(torch.compile(vkd)(image), vkd(image), atol=1e-4, rtol=1e-4)
    fpn = FractureFPN(fpn_channels=8, layers=(1, 1, 1, 1), block_inplanes=(8, 8, 16, 16)).eval()
    image = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(torch.compile(fpn)(image), fpn(image), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_compiled_vkd_training_step_trains():
    losses = one_epoch_losses(compile=True)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
