import math

import pytest
import torch

from cxrkd_monai.losses.aals import LabelSharpening, asymmetric_label_sharpening


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _map(values, peak=None):
    """A (1, 1, 1, N) map holding ``values`` (and ``peak`` as an extra pixel when given)."""
    values = list(values) + ([] if peak is None else [peak])
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


def test_hand_computed_value():
    a = 4.0 - 3.0 * 0.6
    expected = _sigmoid(a * _logit(0.6) + (1.0 - a) * _logit(0.4))
    out = asymmetric_label_sharpening(_map([0.6]), a0=4.0, threshold=0.4)
    assert a == pytest.approx(2.2)
    assert out.item() == pytest.approx(expected, abs=1e-9)
    assert out.item() == pytest.approx(0.798763, abs=1e-6)


def test_threshold_is_a_fixed_point():
    for peak in (0.4, 0.5, 0.9):
        out = asymmetric_label_sharpening(_map([0.4], peak=peak), asymmetric=False)
        assert out[0, 0, 0, 0].item() == pytest.approx(0.4, abs=1e-12)


def test_asymmetric_keeps_low_values_and_never_lowers():
    y = torch.linspace(0.0, 0.9, 91, dtype=torch.float64).view(1, 1, 1, -1)
    out = asymmetric_label_sharpening(y)
    low = y <= 0.4
    assert torch.equal(out[low], y[low])
    assert torch.all(out >= y)
    assert torch.all(out[y > 0.4] > y[y > 0.4])


def test_identity_when_peak_is_one():
    y = _map([0.1, 0.3, 0.5, 0.8], peak=1.0)
    out = asymmetric_label_sharpening(y, asymmetric=False, eps=1e-12)
    torch.testing.assert_close(out[..., :4], y[..., :4], atol=1e-9, rtol=0)


def test_sharpening_is_stronger_when_peak_is_low():
    low_peak = asymmetric_label_sharpening(_map([0.5], peak=0.5))[0, 0, 0, 0].item()
    high_peak = asymmetric_label_sharpening(_map([0.5], peak=0.95))[0, 0, 0, 0].item()
    assert low_peak > high_peak > 0.5
    a_low, a_high = 4.0 - 3.0 * 0.5, 4.0 - 3.0 * 0.95
    assert low_peak == pytest.approx(_sigmoid(a_low * _logit(0.5) + (1 - a_low) * _logit(0.4)))
    assert high_peak == pytest.approx(_sigmoid(a_high * _logit(0.5) + (1 - a_high) * _logit(0.4)))


def test_peak_is_taken_per_image_and_class():
    y = torch.full((2, 2, 4, 4), 0.5, dtype=torch.float64)
    y[0, 1, 0, 0] = 0.9
    out = asymmetric_label_sharpening(y)
    assert out[0, 0, 1, 1] == out[1, 0, 1, 1] == out[1, 1, 1, 1]
    assert out[0, 1, 1, 1] < out[0, 0, 1, 1]


def test_symmetric_lowers_values_below_threshold():
    y = _map([0.1, 0.3], peak=0.6)
    out = LabelSharpening(mode="symmetric")(y)
    assert torch.all(out[..., :2] < y[..., :2])
    a = 4.0 - 3.0 * 0.6
    assert out[0, 0, 0, 0].item() == pytest.approx(_sigmoid(a * _logit(0.1) + (1 - a) * _logit(0.4)))


def test_modes_of_the_module():
    y = torch.rand(2, 2, 8, 8, requires_grad=True)
    assert torch.equal(LabelSharpening(mode="none")(y), y.detach())
    aals = LabelSharpening(mode="aals", a0=3.0, threshold=0.3)(y)
    assert not aals.requires_grad
    torch.testing.assert_close(aals, asymmetric_label_sharpening(y.detach(), a0=3.0, threshold=0.3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"a0": 0.5}, "a0=0.5"), ({"threshold": 0.0}, "threshold=0.0"), ({"threshold": 1.2}, "threshold=1.2")],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        asymmetric_label_sharpening(_map([0.5]), **kwargs)
    with pytest.raises(ValueError, match=message):
        LabelSharpening(**kwargs)


def test_unknown_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="aals.*symmetric.*none.*mode='mil'"):
        LabelSharpening(mode="mil")


def test_map_without_spatial_axes_raises():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        asymmetric_label_sharpening(torch.rand(3))
