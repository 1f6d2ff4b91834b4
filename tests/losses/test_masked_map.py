"""Support-weighted BCE (minimised at the target) and the masked map mean of the detector's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrkd_monai.losses import MaskedMapLoss, SupportWeightedBCEWithLogitsLoss
from cxrkd_monai.transforms import FractureTargetMapd

POS_WEIGHT = 10.0


def _hand_weighted_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """``w * -(y log p + (1 - y) log(1 - p))`` written out, ``w = pos_weight`` where ``y > 0``."""
    p = torch.sigmoid(logits)
    weight = torch.where(target > 0, torch.full_like(target, pos_weight), torch.ones_like(target))
    return -weight * (target * p.log() + (1.0 - target) * (1.0 - p).log())


def _blob(size: int = 16) -> torch.Tensor:
    """A box-sized Gaussian blob as stage 1 renders it, ``(1, 2, size, size)``: one rib box, no clavicle."""
    render = FractureTargetMapd(num_classes=2, output_stride=4)
    item = render({"image": torch.zeros(1, 4 * size, 4 * size), "boxes": np.array([[12.0, 20.0, 40.0, 36.0, 0]])})
    return item["target"][None]


def test_support_weighted_bce_matches_hand_formula():
    logits = torch.tensor([[[-2.0, 0.0, 1.5, 3.0]]])
    target = torch.tensor([[[0.0, 0.135, 0.5, 1.0]]])
    loss = SupportWeightedBCEWithLogitsLoss(pos_weight=POS_WEIGHT, reduction="none")
    torch.testing.assert_close(loss(logits, target), _hand_weighted_bce(logits, target, POS_WEIGHT))
    assert SupportWeightedBCEWithLogitsLoss(POS_WEIGHT)(logits, target).item() == pytest.approx(
        _hand_weighted_bce(logits, target, POS_WEIGHT).mean().item(), rel=1e-6
    )
    per_type = SupportWeightedBCEWithLogitsLoss(torch.tensor([2.0, 5.0]).view(2, 1), reduction="sum")
    two_types = torch.zeros(2, 1)
    # log 2 on each type's one support pixel, weighted 2 and 5
    assert per_type(two_types, torch.full((2, 1), 0.5)).item() == pytest.approx(7.0 * np.log(2.0), rel=1e-6)


@pytest.mark.parametrize("target", [0.01, 0.135, 0.5, 0.9, 1.0 - 1e-4])
def test_support_weighted_bce_is_minimised_at_the_target(target):
    """The gradient in the logit is ``w * (sigmoid(x) - y)``: zero at ``sigmoid(x) = y``, unlike pos_weight BCE."""
    y = torch.tensor([target], dtype=torch.float64)
    logit = torch.logit(y).requires_grad_()
    SupportWeightedBCEWithLogitsLoss(POS_WEIGHT, reduction="sum")(logit, y).backward()
    assert abs(logit.grad.item()) < 1e-12
    # torch's pos_weight BCE has the gradient -(w - 1) y (1 - y) there; its minimiser is w y / ((w - 1) y + 1)
    biased = torch.logit(y).requires_grad_()
    torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(POS_WEIGHT, dtype=torch.float64))(biased, y).backward()
    assert biased.grad.item() == pytest.approx(-(POS_WEIGHT - 1.0) * target * (1.0 - target), rel=1e-9)
    minimiser = POS_WEIGHT * target / ((POS_WEIGHT - 1.0) * target + 1.0)
    at_minimiser = torch.logit(torch.tensor([minimiser], dtype=torch.float64)).requires_grad_()
    torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(POS_WEIGHT, dtype=torch.float64))(at_minimiser, y).backward()
    assert abs(at_minimiser.grad.item()) < 1e-12


def test_free_map_trained_on_a_fixed_blob_reaches_it():
    """Gradient descent on a free logit map with the support-weighted loss learns the blob as drawn."""
    target = _blob()
    assert 0.0 < target[target > 0].min() < 0.2, "the blob has a low flank, where pos_weight BCE would inflate it"
    logits = torch.zeros_like(target, requires_grad=True)
    loss_fn = MaskedMapLoss(SupportWeightedBCEWithLogitsLoss(POS_WEIGHT, reduction="none"))
    optimizer = torch.optim.Adam([logits], lr=0.3)
    for _ in range(300):
        optimizer.zero_grad()
        loss_fn(logits, target).backward()
        optimizer.step()
    error = (torch.sigmoid(logits.detach()) - target).abs().max().item()
    # Adam gets within about 7e-4 of each pixel's value in these steps; the pos_weight minimiser
    # 10y / (9y + 1) would be off by up to 0.52 (at y = 0.24) on the flank
    assert error < 5e-3


def test_masked_map_loss_leaves_unselected_maps_out():
    logits = torch.tensor([[[[0.0, 2.0]], [[-1.0, 1.0]]], [[[0.5, -0.5]], [[3.0, 0.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, 1.0]], [[float("nan"), 0.3]]], [[[0.2, 0.0]], [[0.0, 0.0]]]])
    mask = torch.tensor([[True, False], [True, True]])
    pixel_loss = SupportWeightedBCEWithLogitsLoss(POS_WEIGHT, reduction="none")
    loss = MaskedMapLoss(pixel_loss)(logits, target, mask)
    hand = _hand_weighted_bce(logits.detach(), torch.nan_to_num(target), POS_WEIGHT)
    # three maps of two pixels count: item 0 type 0, item 1 types 0 and 1
    expected = (hand[0, 0].sum() + hand[1, 0].sum() + hand[1, 1].sum()) / 6
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.equal(logits.grad[0, 1], torch.zeros(1, 2)), "the unselected map gets no gradient"
    pair = MaskedMapLoss(pixel_loss)(logits.detach(), (target, mask))
    assert pair.item() == pytest.approx(expected.item(), rel=1e-6)
    assert MaskedMapLoss(pixel_loss)(logits.detach(), target, torch.zeros(2, 2, dtype=torch.bool)).item() == 0.0


def test_masked_map_loss_rejects_bad_shapes_and_losses():
    loss = MaskedMapLoss(SupportWeightedBCEWithLogitsLoss(POS_WEIGHT, reduction="none"))
    with pytest.raises(ValueError, match=r"mask \(2, 3\) must be \(B, K\) = \(2, 2\)"):
        loss(torch.zeros(2, 2, 4), torch.zeros(2, 2, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction='none'"):
        MaskedMapLoss(SupportWeightedBCEWithLogitsLoss(POS_WEIGHT))(torch.zeros(2, 2, 4), torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="pos_weight must be positive"):
        SupportWeightedBCEWithLogitsLoss(0.0)
    with pytest.raises(ValueError, match="reduction"):
        SupportWeightedBCEWithLogitsLoss(1.0, reduction="max")
