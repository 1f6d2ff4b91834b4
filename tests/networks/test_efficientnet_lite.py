"""EfficientNet-Lite0 built with MONAI's EfficientNet, and its ImageNet weights from the packaged file."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from cxrkd_monai.networks import FractureFPN, VKDNet
from cxrkd_monai.networks.efficientnet_lite import EfficientNetLite0, EfficientNetLite0Features
from cxrkd_monai.networks.pretrained import (
    PretrainedWeightsError,
    efficientnet_lite0_weights_file,
    efficientnet_state_dict_to_monai,
)
from cxrkd_monai.visualize import SALIENCY_TARGET_LAYERS, VKDSaliency

MILITARY_UNIFORM = 652  # ImageNet class index


def _packaged_state_dict() -> dict:
    return torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)


def _grace_hopper() -> torch.Tensor:
    """matplotlib's sample photograph as the weights expect it: shorter side resized to 224 (bilinear), centre
    crop 224 x 224, RGB in [0, 1], ``(1, 3, H, W)``."""
    image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    scale = 224 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def test_packaged_file_renamed_to_monai_keys_is_exactly_the_network_state():
    packaged = _packaged_state_dict()
    net = EfficientNetLite0(pretrained=True)
    renamed = efficientnet_state_dict_to_monai(packaged, net)
    assert renamed.keys() == net.state_dict().keys()
    assert len(packaged) == 296
    # The flat block 15 is the last block of stage 6 (B0 repeats its seven stages 1, 2, 2, 3, 3, 4, 1 times).
    loaded = net.state_dict()
    torch.testing.assert_close(loaded["_blocks.6.15._project_conv.weight"], packaged["_blocks.15._project_conv.weight"])
    torch.testing.assert_close(loaded["_blocks.1.2._bn1.running_var"], packaged["_blocks.2._bn1.running_var"])
    for key, value in renamed.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # MONAI-layout keys pass the renaming unchanged.
    assert efficientnet_state_dict_to_monai(loaded, net).keys() == loaded.keys()


def test_grace_hopper_is_classified_as_a_military_uniform():
    net = EfficientNetLite0(in_channels=3, pretrained=True).eval()
    with torch.no_grad():
        probabilities = net(_grace_hopper()).softmax(dim=1)[0]
    assert int(probabilities.argmax()) == MILITARY_UNIFORM
    # The converted TensorFlow weights with the Lite builder's inputs, (pixel - 127) / 128, give 0.317 (the
    # EfficientNet-PyTorch reference implementation gives the same logits); ImageNet's per-channel mean/std would
    # give 0.381 and no normalisation 0.169, so the tolerance, which absorbs resampling differences between
    # Pillow versions, still tells the normalisation apart.
    assert float(probabilities[MILITARY_UNIFORM]) == pytest.approx(0.317, abs=0.02)


def test_input_normalisation_is_the_lite_builders():
    net = EfficientNetLite0()
    image = torch.tensor([0.0, 127 / 255, 1.0])
    torch.testing.assert_close(net.normalize_input(image), torch.tensor([-127 / 128, 0.0, 1.0]))


def test_one_channel_stem_is_the_summed_rgb_filters_and_sees_a_grey_image_as_rgb():
    grey_net = EfficientNetLite0(in_channels=1, pretrained=True).eval()
    rgb_net = EfficientNetLite0(in_channels=3, pretrained=True).eval()
    rgb_stem = _packaged_state_dict()["_conv_stem.weight"]
    assert grey_net._conv_stem.weight.shape == (32, 1, 3, 3)
    torch.testing.assert_close(grey_net._conv_stem.weight, rgb_stem.sum(dim=1, keepdim=True))
    # The normalisation is the same on every channel, so normalising g once equals normalising (g, g, g): the
    # whole network agrees, up to float32 rounding of the summed filters.
    grey = _grace_hopper().mean(dim=1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(grey_net(grey), rgb_net(grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_relu6_replaces_swish_everywhere():
    net = EfficientNetLite0()
    activations = [module for name, module in net.named_modules() if name.endswith("_swish")]
    assert len(activations) == 1 + 16 and all(isinstance(module, torch.nn.ReLU6) for module in activations)
    assert isinstance(net._head_activation, torch.nn.ReLU6)
    net.set_swish(memory_efficient=False)
    assert all(isinstance(module, torch.nn.ReLU6) for name, module in net.named_modules() if name.endswith("_swish"))


def test_file_that_does_not_fit_is_refused_naming_it(tmp_path):
    packaged = _packaged_state_dict()
    extra = {**packaged, "_blocks.16._bn0.weight": torch.ones(3)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(PretrainedWeightsError, match=r"extra.pth.*1 unused key\(s\) \['_blocks.16._bn0.weight'\]"):
        EfficientNetLite0(weights_path=str(tmp_path / "extra.pth"))
    lacking = {key: value for key, value in packaged.items() if key != "_blocks.3._bn2.weight"}
    torch.save(lacking, tmp_path / "lacking.pth")
    with pytest.raises(PretrainedWeightsError, match=r"lacking.pth.*1 missing key\(s\) \['_blocks.2.3._bn2.weight'\]"):
        EfficientNetLite0(weights_path=str(tmp_path / "lacking.pth"))


def test_pretrained_loading_needs_no_network(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    net = FractureFPN(backbone="efficientnet-lite0", pretrained=True)
    torch.testing.assert_close(net.backbone._conv_stem.weight, _packaged_state_dict()["_conv_stem.weight"].sum(1, True))


def test_feature_extractor_gives_four_stages_at_strides_4_to_32_and_no_unused_parameters():
    net = EfficientNetLite0Features(in_channels=1)
    stages = net(torch.rand(2, 1, 64, 96))
    assert [tuple(stage.shape) for stage in stages] == [(2, 24, 16, 24), (2, 40, 8, 12), (2, 112, 4, 6), (2, 320, 2, 3)]
    sum(stage.sum() for stage in stages).backward()
    assert all(parameter.grad is not None for parameter in net.parameters())


@pytest.mark.parametrize("output_stride", [4, 8])
def test_fracture_fpn_on_efficientnet_lite0_is_scriptable(output_stride):
    net = FractureFPN(num_classes=2, backbone="efficientnet-lite0", output_stride=output_stride).eval()
    image = torch.rand(1, 1, 64, 96)
    logits = net(image)
    assert logits.shape == (1, 2, 64 // output_stride, 96 // output_stride)
    torch.testing.assert_close(torch.jit.script(net)(image), logits)


def test_vkd_on_efficientnet_lite0_uses_the_pooled_1280_feature():
    net = VKDNet(num_classes=3, backbone="efficientnet-lite0", latent_dim=8, hidden_dim=8).eval()
    assert net.image_feature_dim == 1280 and isinstance(net.image_encoder._fc, torch.nn.Identity)
    assert net.encode_image(torch.rand(2, 1, 64, 64)).shape == (2, 1280)
    projected = VKDNet(num_classes=3, backbone="efficientnet-lite0", image_feature_dim=64, latent_dim=8, hidden_dim=8)
    assert projected.image_encoder._fc.in_features == 1280 and projected.image_encoder._fc.out_features == 64


def test_backbone_choices_are_checked():
    with pytest.raises(ValueError, match=r"backbone must be one of .*'efficientnet-lite0'.*got backbone='resnet50'"):
        FractureFPN(backbone="resnet50")
    with pytest.raises(ValueError, match=r"set them to None for backbone 'efficientnet-lite0'"):
        FractureFPN(backbone="efficientnet-lite0", layers=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"backbone must be one of .*got backbone='resnet18'"):
        VKDNet(num_classes=2, backbone="resnet18")
    with pytest.raises(ValueError, match="image_feature_dim must be given with a custom image_encoder"):
        VKDNet(num_classes=2, image_encoder=torch.nn.Flatten())
    assert FractureFPN(backbone="resnet34").backbone.layer3.__len__() == 6


def test_saliency_target_layer_holds_the_maps_that_pool_into_h_x():
    net = VKDNet(num_classes=3, backbone="efficientnet-lite0", pretrained=True, latent_dim=8, hidden_dim=8).eval()
    layer = dict(net.named_modules())[SALIENCY_TARGET_LAYERS["efficientnet-lite0"]]
    recorded = []
    handle = layer.register_forward_hook(lambda module, inputs, output: recorded.append(output))
    image = _grace_hopper().mean(dim=1, keepdim=True)
    with torch.no_grad():
        features = net.encode_image(image)
    handle.remove()
    (maps,) = recorded
    assert maps.shape == (1, 1280, 7, 7)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), features)
    saliency = VKDSaliency(net, SALIENCY_TARGET_LAYERS["efficientnet-lite0"])
    assert saliency(image, class_index=0).shape == (1, 1, 224, 224)
