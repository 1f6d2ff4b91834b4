import math

import pytest
import torch

from cxrkd_monai.errors import InvalidItemError
from cxrkd_monai.transforms import EnsureLabelMaskd, ValidateVKDItemd


def test_existing_mask_becomes_a_float_tensor_and_a_missing_one_is_all_ones():
    assert torch.equal(EnsureLabelMaskd(3)({"label_mask": [1, 0, 1]})["label_mask"], torch.tensor([1.0, 0.0, 1.0]))
    filled = EnsureLabelMaskd(3)({"label": [0, 1, 0]})
    assert torch.equal(filled["label_mask"], torch.ones(3)) and filled["label_mask"].dtype == torch.float32
    with pytest.raises(ValueError, match="num_classes"):
        EnsureLabelMaskd(0)


def test_mask_of_the_wrong_length_names_the_item():
    item = {"image": "images/p0007_s01.png", "label": [0, 1, 0], "label_mask": [1, 1], "report": "x"}
    with pytest.raises(InvalidItemError, match=r"images/p0007_s01.png: 'label_mask' has 2 values, expected 3"):
        ValidateVKDItemd(3)(item)


def test_mask_values_other_than_0_or_1_name_the_item():
    item = {"image": "a.png", "label": [0, 1], "label_mask": [1, 0.5], "report": "x"}
    with pytest.raises(InvalidItemError, match=r"a.png: 'label_mask' must hold 0/1 values"):
        ValidateVKDItemd(2)(item)


def test_nan_label_under_a_zero_mask_passes():
    item = {"image": "a.png", "label": [0, math.nan], "label_mask": [1, 0], "report": "x"}
    assert ValidateVKDItemd(2)(item) is item
