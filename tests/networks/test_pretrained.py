import pytest
import torch
from monai.networks.nets import DenseNet121
from monai.networks.nets.resnet import ResNet

from cxrkd_monai.networks import FractureFPN, VKDNet
from cxrkd_monai.networks.pretrained import (
    IMAGENET_RESNET_URLS,
    PretrainedWeightsError,
    densenet_state_dict_to_monai,
    load_resnet_imagenet,
)


def _random_like(state_dict, generator):
    return {
        key: torch.randint(0, 100, value.shape, generator=generator) if value.dtype == torch.int64
        else torch.randn(value.shape, generator=generator)
        for key, value in state_dict.items()
    }


def _torchvision_densenet121_file(path):
    """A DenseNet-121 ImageNet file as torchvision publishes it: RGB stem, old "norm.1" names, 1000-way head,
    no batch-norm step counters."""
    monai_layout = DenseNet121(spatial_dims=2, in_channels=3, out_channels=1000).state_dict()
    renamed = {}
    for key, value in monai_layout.items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("class_layers.out", "classifier")
        for name in ("norm1", "relu1", "conv1", "norm2", "relu2", "conv2"):
            key = key.replace(f".layers.{name}.", f".{name[:-1]}.{name[-1]}.")
        renamed[key] = value
    state_dict = _random_like(renamed, torch.Generator().manual_seed(0))
    torch.save(state_dict, path)
    return state_dict


def _torchvision_resnet18_file(path):
    """A ResNet-18 ImageNet file in torchvision's layout: RGB stem, plain downsample convolutions, ``fc``."""
    backbone = ResNet("basic", [2, 2, 2, 2], [64, 128, 256, 512], spatial_dims=2, n_input_channels=3,
                      conv1_t_stride=2, feed_forward=False, bias_downsample=False)
    state_dict = _random_like(
        {**backbone.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)},
        torch.Generator().manual_seed(1),
    )
    torch.save(state_dict, path)
    return state_dict


def test_vkd_encoder_loads_a_torchvision_densenet_file_with_summed_rgb_stem(tmp_path):
    weights = _torchvision_densenet121_file(tmp_path / "densenet121.pth")
    net = VKDNet(num_classes=3, in_channels=1, backbone_weights=str(tmp_path / "densenet121.pth"))
    loaded = net.image_encoder.state_dict()
    torch.testing.assert_close(loaded["features.conv0.weight"], weights["features.conv0.weight"].sum(1, keepdim=True))
    assert loaded["features.conv0.weight"].shape == (64, 1, 7, 7)
    torch.testing.assert_close(
        loaded["features.denseblock3.denselayer5.layers.conv2.weight"],
        weights["features.denseblock3.denselayer5.conv.2.weight"],
    )
    torch.testing.assert_close(loaded["features.norm5.running_var"], weights["features.norm5.running_var"])
    # The summed stem gives a grey image the response the RGB filters give it replicated on three channels.
    grey = torch.rand(1, 1, 32, 32)
    rgb_response = torch.nn.functional.conv2d(
        grey.expand(1, 3, 32, 32), weights["features.conv0.weight"], stride=2, padding=3
    )
    torch.testing.assert_close(net.image_encoder.features.conv0(grey), rgb_response, rtol=1e-4, atol=1e-4)


def test_monai_layout_densenet_file_loads_unchanged(tmp_path):
    reference = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1024)
    state_dict = _random_like(reference.state_dict(), torch.Generator().manual_seed(2))
    state_dict["features.conv0.weight"] = torch.randn(64, 3, 7, 7)
    assert densenet_state_dict_to_monai(state_dict).keys() == state_dict.keys()
    torch.save({"state_dict": state_dict}, tmp_path / "monai.pt")
    net = VKDNet(num_classes=2, backbone_weights=str(tmp_path / "monai.pt"))
    loaded = net.image_encoder.state_dict()
    torch.testing.assert_close(loaded["features.denseblock1.denselayer1.layers.norm1.weight"],
                               state_dict["features.denseblock1.denselayer1.layers.norm1.weight"])


def test_fpn_backbone_loads_a_torchvision_resnet18_file_with_summed_rgb_stem(tmp_path):
    weights = _torchvision_resnet18_file(tmp_path / "resnet18.pth")
    net = FractureFPN(in_channels=1, num_classes=2, pretrained=True, backbone_weights=str(tmp_path / "resnet18.pth"))
    loaded = net.backbone.state_dict()
    torch.testing.assert_close(loaded["conv1.weight"], weights["conv1.weight"].sum(1, keepdim=True))
    for key in ("layer4.1.conv2.weight", "layer3.0.downsample.0.weight", "layer2.0.downsample.1.running_mean"):
        torch.testing.assert_close(loaded[key], weights[key])
    assert "fc.weight" not in loaded
    assert net(torch.rand(1, 1, 64, 64)).shape == (1, 2, 16, 16)


def test_weights_of_another_architecture_are_refused_by_name(tmp_path):
    _torchvision_resnet18_file(tmp_path / "resnet18.pth")
    with pytest.raises(PretrainedWeightsError, match=r"resnet18.pth.*does not fit the network: .*missing"):
        FractureFPN(layers=(3, 4, 6, 3), backbone_weights=str(tmp_path / "resnet18.pth"))
    with pytest.raises(PretrainedWeightsError, match=r"--pretrained False"):
        FractureFPN(layers=(1, 1, 1, 1), block_inplanes=(16, 32, 64, 128), pretrained=True)
    with pytest.raises(PretrainedWeightsError, match=r"missing.pth.*does not exist"):
        VKDNet(num_classes=2, backbone_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(TypeError, match="--pretrained False"):
        FractureFPN(pretrained="false")
    with pytest.raises(ValueError, match="custom image_encoder"):
        VKDNet(num_classes=2, image_encoder=torch.nn.Flatten(), pretrained=True)


def test_failed_download_says_what_to_set(tmp_path, monkeypatch):
    def offline(url, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    backbone = FractureFPN().backbone
    with pytest.raises(PretrainedWeightsError) as error:
        load_resnet_imagenet(backbone, (2, 2, 2, 2), (64, 128, 256, 512), in_channels=1)
    message = str(error.value)
    assert IMAGENET_RESNET_URLS["resnet18"] in message
    assert "--pretrained False" in message and "--backbone_weights /path/to/file.pth" in message


def test_failed_densenet_download_says_what_to_set(monkeypatch):
    import monai.networks.nets.densenet as monai_densenet

    def offline(url, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(monai_densenet, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsError, match=r"DenseNet-121.*--pretrained False.*--backbone_weights"):
        VKDNet(num_classes=2, pretrained=True)
