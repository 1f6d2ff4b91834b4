import warnings

import pytest
import torch

from cxrkd_monai.networks.fracture_fpn import FractureFPN

SMALL = {"block_inplanes": (8, 16, 32, 64), "fpn_channels": 16, "layers": (1, 1, 1, 1)}


@pytest.mark.parametrize("output_stride", [4, 8])
@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_output_shape(output_stride, size):
    net = FractureFPN(in_channels=1, num_classes=2, output_stride=output_stride, **SMALL)
    logits = net(torch.rand(2, 1, *size))
    assert logits.shape == (2, 2, size[0] // output_stride, size[1] // output_stride)


def test_initial_probabilities_are_low():
    net = FractureFPN(num_classes=2, **SMALL).eval()
    with torch.no_grad():
        prob = torch.sigmoid(net(torch.rand(1, 1, 64, 64)))
    assert prob.mean().item() < 0.2


def test_gradients_reach_the_stem():
    net = FractureFPN(num_classes=3, in_channels=2, **SMALL)
    target = torch.zeros(2, 3, 16, 16)
    target[:, :, 8, 8] = 1.0
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(torch.rand(2, 2, 64, 64)), target)
    loss.backward()
    for name in ("backbone.conv1.weight", "backbone.layer4.0.conv1.weight", "fpn.inner_blocks.0.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("output_stride", [4, 8])
def test_trace_and_script_match_eager(output_stride):
    net = FractureFPN(output_stride=output_stride, **SMALL).eval()
    image = torch.rand(1, 1, 96, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, torch.rand(1, 1, 64, 64))
        scripted = torch.jit.script(net)
        expected = net(image)
        torch.testing.assert_close(traced(image), expected)
        torch.testing.assert_close(scripted(image), expected)


@pytest.mark.parametrize("shape", [(1, 1, 64, 80), (1, 1, 50, 64)])
def test_size_not_divisible_by_32_raises(shape):
    net = FractureFPN(**SMALL)
    with pytest.raises(ValueError, match=str(list(shape)).replace("[", r"\[").replace("]", r"\]")):
        net(torch.rand(*shape))


def test_invalid_output_stride_raises():
    with pytest.raises(ValueError, match="output_stride=16"):
        FractureFPN(output_stride=16)
